#!/usr/bin/env bash
# Installs what the test suite needs on a Debian/Ubuntu machine: redis-server, redis-tools,
# memcached, nutcracker, netcat-openbsd (apt) and redis-py, pymemcache, pytest (pip, pinned
# in tests/python/requirements.txt), plus rustfmt/clippy when rustup is present.
#
# Idempotent and fast when everything is already there. Packages installed by apt may start
# system services on 6379/11211/22121; those are stopped again (tests use their own ports).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQS="$ROOT/tests/python/requirements.txt"
PY="${PYTHON:-python3}"

log() { printf '[install-test-deps] %s\n' "$*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        log "not root and no sudo: can only check, not install"
        SUDO=(false)
    fi
fi

have_prog() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

# --- system packages ------------------------------------------------------------------
# package -> a program that proves it is installed
declare -A PROBE=(
    [redis-server]=redis-server
    [redis-tools]=redis-cli
    [memcached]=memcached
    [nutcracker]=nutcracker
    [netcat-openbsd]=nc
)
missing=()
for pkg in redis-server redis-tools memcached nutcracker netcat-openbsd; do
    have_prog "${PROBE[$pkg]}" || missing+=("$pkg")
done
if ! "$PY" -m pip --version >/dev/null 2>&1; then
    missing+=(python3-pip)
fi

stop_services() {
    # Best effort: systemd, then sysvinit `service`, then the packages' pid files.
    local svc
    for svc in redis-server memcached nutcracker; do
        if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
            "${SUDO[@]}" systemctl stop "$svc" >/dev/null 2>&1 || true
            "${SUDO[@]}" systemctl disable "$svc" >/dev/null 2>&1 || true
        fi
        if command -v service >/dev/null 2>&1; then
            "${SUDO[@]}" service "$svc" stop >/dev/null 2>&1 || true
        fi
    done
    local pidfile pid
    for pidfile in /run/redis/redis-server.pid /var/run/redis/redis-server.pid \
        /run/memcached/memcached.pid /var/run/memcached/memcached.pid \
        /run/nutcracker/nutcracker.pid /var/run/nutcracker/nutcracker.pid; do
        if [ -r "$pidfile" ]; then
            pid="$(cat "$pidfile" 2>/dev/null || true)"
            if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
                log "stopping service process $pid ($pidfile)"
                "${SUDO[@]}" kill "$pid" 2>/dev/null || true
            fi
        fi
    done
}

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep apt from starting the daemons at all where invoke-rc.d honours policy-rc.d.
    policy_created=0
    if [ ! -e /usr/sbin/policy-rc.d ] && [ "${#SUDO[@]}" -eq 0 ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        policy_created=1
    fi
    cleanup_policy() { if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
    trap cleanup_policy EXIT
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    cleanup_policy
    trap - EXIT
    stop_services
else
    log "system packages present"
fi

for prog in redis-server redis-cli memcached nutcracker nc; do
    have_prog "$prog" || { log "ERROR: $prog still missing after install"; exit 1; }
done

# --- python packages ------------------------------------------------------------------
# Fast path: every pinned requirement already installed at exactly that version.
if "$PY" - "$REQS" <<'PYEOF'
import sys
from importlib import metadata
ok = True
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if want and have != want:
        ok = False
sys.exit(0 if ok else 1)
PYEOF
then
    log "python packages present"
else
    log "pip installing $(grep -v '^#' "$REQS" | tr '\n' ' ')"
    # Debian 12 marks the system python as externally managed (PEP 668); this is a
    # throwaway test machine, so install anyway.
    PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install --disable-pip-version-check -q -r "$REQS"
fi

# --- rust components ------------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
    for comp in rustfmt clippy; do
        if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
            log "rustup component add $comp"
            rustup component add "$comp"
        fi
    done
fi

log "ok"
