#!/usr/bin/env bash
# The README's test command. Works on a fresh Debian/Ubuntu machine: installs what the
# tests need (redis-server, chromium + chromium-driver, wrk; the package with its
# dev/local/postgres/bench extras in .venv),
# then runs the whole suite. Tests start their own redis-server on free loopback ports;
# PostgreSQL tests run when a server is reachable (SLEEPTIME_TEST_POSTGRES_URL, default
# postgresql+psycopg://postgres@127.0.0.1:5432/test) and are skipped otherwise.
#
# ./scripts/test.sh --fast: the fast tier only (tests/conftest.py, "tiers": no process,
# no server, no model but fake or scripted ones), in the existing .venv, installing
# nothing; the inner loop while editing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fast" ]; then
    shift
    if [ ! -x .venv/bin/python ]; then
        echo "no .venv yet: run ./scripts/test.sh once (it installs what the tests need)" >&2
        exit 2
    fi
    exec .venv/bin/python -m pytest -q -p no:cacheprovider --fast "$@"
fi

MISSING=""
command -v redis-server >/dev/null 2>&1 || MISSING="$MISSING redis-server"
# the dashboard's browser test drives Debian's chromium through its chromedriver
[ -x /usr/bin/chromium ] || MISSING="$MISSING chromium"
[ -x /usr/bin/chromedriver ] || MISSING="$MISSING chromium-driver"
# the HTTP benchmark's load generator (its test runs it when present)
command -v wrk >/dev/null 2>&1 || MISSING="$MISSING wrk"
if [ -n "$MISSING" ]; then
    echo "installing$MISSING ..."
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
# llama-cpp-python compiles llama.cpp on first install (~5 min on 2 cores), for a
# portable x86-64-v3 target (scripts/install-llama.sh says why); the wheel is cached.
bash scripts/install-llama.sh
python -m pip install -q -e ".[dev,local,postgres,bench]"

python -m pytest -q -p no:cacheprovider "$@"
