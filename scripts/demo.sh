#!/usr/bin/env bash
# One command for the demo on a fresh machine: install, start the local stack, push calls through
# the pipeline and show where the rows landed. Extra arguments go to `callvault demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${CALLVAULT_VENV:-.venv}
exec "$VENV/bin/callvault" demo "$@"
