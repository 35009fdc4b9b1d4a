#!/usr/bin/env bash
# Install parley with its development tools into .venv if needed, lint, type-check, test.
# Arguments go to pytest (e.g. ./test.sh -k decoding).
source "$(dirname "$0")/scripts/venv.sh" dev

# The queue tests start their own redis-server; TLS tests make certificates with openssl.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
# The deployment tests check the systemd units with systemd-analyze.
command -v systemd-analyze >/dev/null || missing+=(systemd)
# The browser test drives Debian's Chromium with Playwright.
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing ${missing[*]} (Debian packages) for the tests..." >&2
    $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
