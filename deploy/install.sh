#!/usr/bin/env bash
# Install parley as systemd services on this machine, or upgrade an installation in place.
#
#   sudo deploy/install.sh
#
# Copies this checkout to /opt/parley, installs it into /opt/parley/.venv, puts the units in
# /etc/systemd/system, and creates /etc/parley/parley.env (from .env.example) and
# /etc/parley/credentials/ if they do not exist yet. Your settings are never overwritten;
# running services are restarted on the new code.
#
# PARLEY_PREFIX, PARLEY_ETC and PARLEY_UNIT_DIR change the three places;
# PARLEY_SKIP_PIP=1 leaves the virtualenv alone (to re-deploy units and settings only).
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=${PARLEY_PREFIX:-/opt/parley}
etc=${PARLEY_ETC:-/etc/parley}
units=${PARLEY_UNIT_DIR:-/etc/systemd/system}

if [ "$(id -u)" -ne 0 ] && [ -z "${PARLEY_PREFIX:-}" ]; then
    echo "install.sh: run it as root (sudo deploy/install.sh)" >&2
    exit 1
fi

echo "parley: code -> $prefix"
mkdir -p "$prefix"
# the checkout without its virtualenv, git data and caches; files gone upstream go here too
tar -C "$src" --exclude=./.venv --exclude=./.git --exclude='__pycache__' \
    --exclude='*.egg-info' --exclude=./.env -cf - . | tar -C "$prefix" -xf -
for stale in $(cd "$prefix" && find core adapters bots -name '*.py' 2>/dev/null); do
    [ -e "$src/$stale" ] || rm -f "$prefix/$stale"
done

if [ "${PARLEY_SKIP_PIP:-0}" != 1 ]; then
    if ! python3 -m venv --help >/dev/null 2>&1; then
        apt-get install -y -qq python3-venv
    fi
    [ -x "$prefix/.venv/bin/python" ] || python3 -m venv "$prefix/.venv"
    echo "parley: dependencies -> $prefix/.venv (TensorFlow takes a few minutes the first time)"
    "$prefix/.venv/bin/pip" install --quiet --upgrade pip
    "$prefix/.venv/bin/pip" install --quiet --upgrade -e "$prefix"
    # the services cannot write to $prefix (ProtectSystem=strict): compile ahead
    "$prefix/.venv/bin/python" -m compileall -q "$prefix/core" "$prefix/adapters" "$prefix/bots"
fi
chmod -R a+rX "$prefix"  # the services run as a dynamic user

echo "parley: settings -> $etc"
install -d -m 0755 "$etc"
# Secrets, one file per setting; each unit loads common/ and its own directory only.
install -d -m 0700 "$etc/credentials"
for part in common web telegram slack; do
    install -d -m 0700 "$etc/credentials/$part"
done
# An installation from before the split kept them side by side (telegram_token, ...).
for file in "$etc"/credentials/*; do
    [ -f "$file" ] || continue
    name=$(basename "$file")
    case $name in
        web_* | telegram_* | slack_*) dest="${name%%_*}/${name#*_}" ;;
        *) dest="common/$name" ;;
    esac
    mv -n "$file" "$etc/credentials/$dest"
    echo "parley: $etc/credentials/$name -> $etc/credentials/$dest"
done
if [ ! -e "$etc/parley.env" ]; then
    install -m 0600 "$src/.env.example" "$etc/parley.env"
    fresh_env=1
fi

echo "parley: units -> $units"
mkdir -p "$units"
for unit in "$src"/deploy/*.service "$src"/deploy/parley.target; do
    sed -e "s|/opt/parley|$prefix|g" -e "s|/etc/parley|$etc|g" "$unit" >"$units/$(basename "$unit")"
    chmod 0644 "$units/$(basename "$unit")"
done

if [ -d /run/systemd/system ] && [ "$units" = /etc/systemd/system ]; then
    systemctl daemon-reload
    # an upgrade: running services move to the new code
    systemctl try-restart 'parley-*.service' || true
fi

cat <<NEXT

parley is installed. Next:
  1. Settings: edit $etc/parley.env${fresh_env:+ (just created from .env.example)}. At least:
       PARLEY_REDIS_URL=redis://127.0.0.1:6379/0      (apt-get install redis-server)
     Secrets can go in files instead, one per setting, each read by its service only:
       echo -n 'TOKEN' > $etc/credentials/telegram/token      (= PARLEY_TELEGRAM_TOKEN)
       echo -n 'redis://:PASSWORD@127.0.0.1:6379/0' > $etc/credentials/common/redis_url
     Check them as the services will:
       $prefix/.venv/bin/parley config check --env-file $etc/parley.env --for worker
  2. Start what you use (the worker's instance name is its /healthz and /metrics port):
       systemctl enable --now parley-worker@9101 parley-web parley-telegram parley-slack
       systemctl enable parley.target
  3. Watch:  journalctl -u 'parley-*' -f      Health: curl localhost:9101/healthz
NEXT
