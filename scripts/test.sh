#!/usr/bin/env bash
# One command for the full test suite on a fresh machine: install, start the test stack (its own
# home and ports, beside any dev stack), run every test, stop the stack. Extra arguments go to
# pytest. Integration tests never skip: a service that cannot start fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${CALLVAULT_VENV:-.venv}
PY="$VENV/bin/python"
"$PY" -m tests.stackctl up
trap '"$PY" -m tests.stackctl down' EXIT
"$PY" -m pytest -p no:cacheprovider "$@"
