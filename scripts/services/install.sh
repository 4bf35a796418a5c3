#!/usr/bin/env bash
# Install what the STAC tests (tests/stac/) need: a real STAC API (rustac's in-memory server),
# an HTTP server with range requests (Debian's nginx-light) and an S3 endpoint (moto's server).
# Idempotent: does nothing when everything is already there. Run as root on Debian 12,
# from the repository root, with the project's virtualenv at .venv (override with VENV=...).
set -euo pipefail
VENV="${VENV:-.venv}"
PIP="$VENV/bin/pip"

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "[services] installing Debian package nginx-light"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
    # the packaged service is not used (tests start their own nginx on 127.0.0.1)
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
    service nginx stop >/dev/null 2>&1 || true
fi

if [ ! -x "$VENV/bin/rustac" ] || [ ! -x "$VENV/bin/moto_server" ]; then
    echo "[services] installing PyPI packages rustac, moto[server] into $VENV"
    "$PIP" install -q "rustac>=0.9,<0.10" "moto[server]>=5.0,<6" "boto3>=1.34"
fi

command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { echo "[services] nginx missing after install" >&2; exit 1; }
"$VENV/bin/rustac" --version >/dev/null
"$VENV/bin/moto_server" --help >/dev/null
echo "[services] ready: nginx, rustac, moto_server"
