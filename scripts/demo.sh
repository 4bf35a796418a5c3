#!/usr/bin/env bash
# Set-up command 1: create the environment and run the main job on the embedded default
# (bundled real Sentinel-2 sample, local Dask cluster, local Zarr). Extra arguments go to `eocube gapfill`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
exec .venv/bin/eocube gapfill "$@"
