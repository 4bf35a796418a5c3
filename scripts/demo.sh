#!/usr/bin/env bash
# Set-up command 1: create the environment and run the main job on the embedded default (bundled real
# Sentinel-2 sample, local Zarr; this small job runs on dask's threads in-process, a larger one starts a
# local Dask cluster, --cluster local forces it). Extra arguments go to `eocube gapfill`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
exec .venv/bin/eocube gapfill "$@"
