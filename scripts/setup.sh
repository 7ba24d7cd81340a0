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
# The core with every extra, and the framework integration packages (editable).
packages=(-e ".[all,dev]")
for integration in integrations/*/; do
  [ -f "$integration/pyproject.toml" ] && packages+=(-e "$integration")
done
stale=0
[ -f "$stamp" ] || stale=1
for project in pyproject.toml integrations/*/pyproject.toml; do
  [ -f "$project" ] && [ "$project" -nt "$stamp" ] && stale=1
done
if [ "$stale" -eq 1 ]; then
  echo "Installing molmo-rag, its extras and integrations into .venv (log: .venv/install.log)..." >&2
  if ! { .venv/bin/python -m pip install --upgrade pip \
         && .venv/bin/python -m pip install "${packages[@]}"; } >.venv/install.log 2>&1; then
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
