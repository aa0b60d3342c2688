#!/usr/bin/env bash
# Install everything Callvault needs on a fresh Debian machine. Idempotent: a second run only
# checks. Creates the virtualenv .venv (override with CALLVAULT_VENV) and installs the project
# with its dev extras. Kafka jars are fetched by `callvault dev up` into ~/.cache/callvault.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v sipp >/dev/null 2>&1 || need_apt+=(sip-tester)        # SIP peer for tests and demo
command -v baresip >/dev/null 2>&1 || need_apt+=(baresip-core)  # TLS + SRTP SIP peer for tests
command -v rsyslogd >/dev/null 2>&1 || need_apt+=(rsyslog rsyslog-gnutls)  # RFC 5425 syslog receiver for SIEM tests
command -v mpg123 >/dev/null 2>&1 || need_apt+=(mpg123)  # an independent MP3 decoder: tests decode recordings
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (apt)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=""
for candidate in python3.11 python3.12 python3.13 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    PY=$candidate; break
  fi
done
[ -n "$PY" ] || { echo "setup: Python >= 3.11 is required" >&2; exit 1; }

VENV=${CALLVAULT_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtualenv $VENV with $PY" >&2
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.callvault-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Callvault and its dependencies into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
