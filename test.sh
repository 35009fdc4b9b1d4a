#!/usr/bin/env bash
# Install parley with its development tools into .venv if needed, lint, type-check, test.
# Arguments go to pytest (e.g. ./test.sh -k decoding).
source "$(dirname "$0")/scripts/venv.sh" dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
