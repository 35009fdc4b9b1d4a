#!/usr/bin/env bash
# Install parley into .venv if needed, then run the main job: chat with the bundled model.
# Arguments go to `parley chat` (e.g. ./run.sh models/mine).
source "$(dirname "$0")/scripts/venv.sh" ""
exec .venv/bin/parley chat "$@"
