"""Throughput of eocube.to_zarr (resumable, ledgered) vs zarr-python writing the same array directly.

Run:  .venv/bin/python benchmarks/bench_zarr_write.py [--size 2048] [--dates 24]

Both write the same dask-backed float32 cube with the same chunks and codec (Zstd level 3, format 2),
on the same threaded scheduler, in one run. The ratio eocube/zarr is the cost of the ledger,
metadata and finalisation (1.0 = no overhead). It also writes the cube to sharded Zarr format 3
(one shard per 2x2 dask chunks, the dask chunk as inner chunk) and prints the files of each store.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numcodecs
import numpy as np
import pandas as pd
import zarr

import eocube


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--dates", type=int, default=24)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    t, n = args.dates, args.size
    chunks = (t, 1, args.tile, args.tile)
    data = da.random.default_rng(0).random((t, 2, n, n), chunks=chunks, dtype="float32")
    data = data.persist()  # measure writing, not the random generator
    cube = eocube.make_cube(data, time=pd.date_range("2020-01-01", periods=t, freq="5D"), band=["a", "b"],
                            y=1e6 - 10 * (np.arange(n) + 0.5), x=10 * (np.arange(n) + 0.5), crs="EPSG:32633",
                            name="bench")
    nbytes = data.nbytes
    tmp = Path(tempfile.mkdtemp())
    results: dict[str, float] = {}
    files: dict[str, int] = {}
    with dask.config.set(scheduler="threads"):
        for _ in range(args.repeat):
            target = tmp / "raw.zarr"
            start = time.perf_counter()
            arr = zarr.create_array(str(target), shape=data.shape, chunks=chunks, dtype="float32",
                                    compressors=[numcodecs.Zstd(level=3)], zarr_format=2, overwrite=True)
            da.store(data, arr, lock=False)
            results["zarr"] = min(results.get("zarr", np.inf), time.perf_counter() - start)
            shutil.rmtree(target)
            target = tmp / "eocube.zarr"
            start = time.perf_counter()
            eocube.to_zarr(cube, target, zarr_format=2, progress=False, mode="overwrite")
            results["eocube"] = min(results.get("eocube", np.inf), time.perf_counter() - start)
            files["eocube"] = sum(1 for p in target.rglob("*") if p.is_file())
            shutil.rmtree(target)
            target = tmp / "sharded.zarr"
            start = time.perf_counter()
            eocube.to_zarr(cube, target, zarr_format=3, progress=False, mode="overwrite",
                           shards={"y": 2 * args.tile, "x": 2 * args.tile}, chunks={"y": args.tile, "x": args.tile})
            results["eocube-sharded-v3"] = min(results.get("eocube-sharded-v3", np.inf), time.perf_counter() - start)
            files["eocube-sharded-v3"] = sum(1 for p in target.rglob("*") if p.is_file())
            shutil.rmtree(target)
    shutil.rmtree(tmp)
    print(f"cube {data.shape} float32, {nbytes / 2**20:.0f} MiB, chunks {chunks}, best of {args.repeat}")
    for name, seconds in results.items():
        count = f"  {files[name]} files" if name in files else ""
        print(f"  {name:18s} {seconds:7.2f} s  {nbytes / 2**20 / seconds:8.1f} MiB/s{count}")
    print(f"ratio eocube.to_zarr / zarr-python direct (throughput): {results['zarr'] / results['eocube']:.2f}")


if __name__ == "__main__":
    main()
