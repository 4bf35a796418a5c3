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
# Compile the gap-filling kernels now, into numba's cache next to them (eocube/fill/__pycache__, or
# $NUMBA_CACHE_DIR when set: use the same one for the jobs), so that a user's first run loads machine
# code instead of compiling it (eocube/fill/_warmup.py says which cases; minutes on 2 cores, once).
# EOCUBE_SKIP_WARMUP=1 skips it.
if [[ "${EOCUBE_SKIP_WARMUP:-0}" != 1 ]]; then
  .venv/bin/python -m eocube.fill._warmup
fi
