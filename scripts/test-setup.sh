#!/usr/bin/env bash
# What the test suite needs beyond the project's pinned Python packages: Chromium (tests/test_ui.py
# screenshots the Dagster UI), a PostgreSQL server (tests/test_postgres.py starts a throwaway
# cluster) and dagster-postgres in the project virtualenv. Idempotent: when everything is already
# there it only checks and returns in about a second. `make test` runs it first.
#
#   scripts/test-setup.sh [PYTHON]     # PYTHON: the venv's interpreter (default .venv/bin/python)
#
# System packages come from apt (Debian/Ubuntu), as root or through passwordless sudo. Without
# either, it says what is missing and carries on: the UI screenshot test and the PostgreSQL test
# then skip with that reason.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-.venv/bin/python}

have_chromium() { command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; }
have_postgres() { command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }

missing=()
have_chromium || missing+=(chromium)
have_postgres || missing+=(postgresql)
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then sudo=(); elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=(sudo -n); else sudo=(none); fi
    if [ "${sudo[0]:-}" = none ] || ! command -v apt-get >/dev/null; then
        echo "test-setup: cannot install ${missing[*]} (needs apt-get as root or passwordless sudo); the tests that need them will skip" >&2
    else
        echo "test-setup: installing ${missing[*]} with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

# dagster-postgres is released in lockstep with dagster (1.13.27 <-> 0.29.27): pinning the installed
# dagster lets pip pick the matching release and never move dagster itself.
if ! "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('dagster_postgres') is None)"; then
    version=$("$PYTHON" -c "import dagster; print(dagster.__version__)")
    echo "test-setup: installing dagster-postgres for dagster $version"
    "$PYTHON" -m pip install --quiet dagster-postgres "dagster==$version"
fi
