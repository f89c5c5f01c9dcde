#!/usr/bin/env bash
# Install everything DAMT needs into ./.venv (and, for the QC report tests, Debian's headless
# Chromium when it is missing and apt-get can be used). Safe to run again.
#   bash scripts/setup.sh          # library + CLI + test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch==2.13.0 is the CPU build on these machines; a GPU machine installs its CUDA torch first
# (pyproject accepts any torch>=2.5).
.venv/bin/pip install -q torch==2.13.0 -e '.[test]'
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: chromium not found and apt-get not usable; the QC screenshot test will skip" >&2
  fi
fi
