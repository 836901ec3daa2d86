#!/usr/bin/env bash
# What the test suite needs beyond the project's pinned Python packages (those, dagster-postgres
# included, come with `pip install -c constraints.txt -e '.[test]'`): Chromium (tests/test_ui.py
# screenshots the Dagster UI) and a PostgreSQL server (tests/test_postgres.py starts a throwaway
# cluster). Idempotent: when both are there it only checks and returns at once. `make test` runs it
# first.
#
# System packages come from apt (Debian/Ubuntu), as root or through passwordless sudo. Without
# either, it says what is missing and carries on: the tests that need it then skip, naming it, or
# fail, naming it, under CI=true (tests/components.py).
set -euo pipefail

have_chromium() { command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; }
have_postgres() { command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }

missing=()
have_chromium || missing+=(chromium)
have_postgres || missing+=(postgresql)
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then sudo=(); elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=(sudo -n); else sudo=(none); fi
    if [ "${sudo[0]:-}" = none ] || ! command -v apt-get >/dev/null; then
        echo "test-setup: cannot install ${missing[*]} (needs apt-get as root or passwordless sudo); the tests that need them will skip (fail under CI=true)" >&2
    else
        echo "test-setup: installing ${missing[*]} with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

