#!/usr/bin/env bash
# Install parley into .venv if needed, then run the main job: a group chat in the browser
# with the bundled model, at the address it prints (http://127.0.0.1:8080/r/lobby).
# Arguments go to `parley serve` (e.g. ./run.sh models/mine).
source "$(dirname "$0")/scripts/venv.sh" ""
exec .venv/bin/parley serve "$@"
