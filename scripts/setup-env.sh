#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv: CPU torch, eocube and its test tools.
# Works on a fresh Debian 12 machine with only Python 3.11+ (installs python3-venv if it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [[ ! -x .venv/bin/python ]]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
      echo "python3 -m venv failed: installing Debian's python3-venv" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$PYTHON" -m venv .venv
    else
      echo "error: '$PYTHON -m venv' failed; install your distribution's venv package (Debian: apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
fi
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch first: eocube's own dependency is a range (GPU users bring their CUDA build),
# and an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test,notebook,bench]"
