#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with molmo-rag and every extra,
# and LibreOffice for rendering slide decks. Safe to run again; fast when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.molmo-rag-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "Installing molmo-rag and its extras into .venv (log: .venv/install.log)..." >&2
  if ! { .venv/bin/python -m pip install --upgrade pip \
         && .venv/bin/python -m pip install -e ".[all,dev]"; } >.venv/install.log 2>&1; then
    tail -n 40 .venv/install.log >&2
    exit 1
  fi
  touch "$stamp"
fi

if ! command -v soffice >/dev/null 2>&1 && ! command -v libreoffice >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "Installing LibreOffice (for rendering slide decks)..." >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      libreoffice-impress libreoffice-core fonts-dejavu-core >/dev/null
  else
    echo "LibreOffice not found: slides will fall back to embedded pictures." >&2
  fi
fi
