"""The local cluster's malloc settings: a linear fill to Zarr on one worker process, per setting.

Run:  .venv/bin/python benchmarks/bench_malloc_trim.py [--size 1024] [--rounds 2]

distributed's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``). Setting it turns off glibc's dynamic mmap
threshold, so every array over 128 KiB (every chunk) is mapped fresh and its pages
faulted in, then unmapped. Each setting below starts a LocalCluster (1 worker, all
cores as threads), fills a (48, 4, size, size) float32 cube with a random 60 % clear
mask (generated on the worker) linearly and writes it to Zarr with ``eocube.to_zarr``;
it reports wall time, the worker's system and user CPU time and its resident memory
after the write (memory kept from the OS). Alternating rounds, best of each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import dask
import dask.array as da
import numpy as np
import pandas as pd

SETTINGS = {
    "distributed default (TRIM=64KiB)": {"MALLOC_TRIM_THRESHOLD_": 65536},
    "unset (glibc dynamic)": {"MALLOC_TRIM_THRESHOLD_": None},
    "TRIM=128MiB, MMAP=64MiB": {"MALLOC_TRIM_THRESHOLD_": 128 * 2**20, "MALLOC_MMAP_THRESHOLD_": 64 * 2**20},
}


def job(size: int, folder: str, chunk: int = 256) -> float:
    """Seconds of the fill + write on the active cluster."""
    import eocube
    from eocube.fill import fill_gaps

    t = 48
    chunks = (t, 1, chunk, chunk)
    values = da.random.default_rng(0).random((t, 4, size, size), chunks=chunks, dtype=np.float32)
    clear = da.random.default_rng(1).random((t, size, size), chunks=(t, chunk, chunk)) > 0.4
    y = 5e6 - 10 * (np.arange(size) + 0.5)
    x = 4e5 + 10 * (np.arange(size) + 0.5)
    times = pd.date_range("2024-01-01", periods=t, freq="7D")
    cube = eocube.make_cube(values, time=times, band=list("abcd"), y=y, x=x, crs="EPSG:32633")
    mask = cube.isel(band=0, drop=True).copy(data=clear)
    filled = fill_gaps(cube, mask, method="linear")
    start = time.perf_counter()
    eocube.to_zarr(filled, os.path.join(folder, "f.zarr"), mode="overwrite", progress=False)
    return time.perf_counter() - start


def measure(env: dict, size: int, chunk: int) -> tuple[float, float, float, float]:
    """(wall s, worker system s, worker user s, worker RSS GiB after) for one setting."""
    import psutil
    from distributed import Client, LocalCluster

    folder = tempfile.mkdtemp(prefix="eocube-malloc-")
    keys = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in env.items()}
    try:
        with dask.config.set(keys), LocalCluster(n_workers=1, threads_per_worker=os.cpu_count(), processes=True,
                                                  host="127.0.0.1", dashboard_address=None) as lc, Client(lc) as client:
            pid = next(iter(client.run(os.getpid).values()))
            proc = psutil.Process(pid)
            job(size // 4, folder, min(chunk, size // 4))  # warm: imports, numba cache
            before = proc.cpu_times()
            wall = job(size, folder, chunk)
            after = proc.cpu_times()
            rss = proc.memory_info().rss / 2**30
        return wall, after.system - before.system, after.user - before.user, rss
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=256, help="block size along y and x (all dates, one band)")
    args = parser.parse_args()
    best: dict[str, tuple[float, float, float, float]] = {}
    for _ in range(args.rounds):
        for name, env in SETTINGS.items():
            result = measure(env, args.size, args.chunk)
            if name not in best or result[0] < best[name][0]:
                best[name] = result
    gb = 48 * 4 * args.size**2 * 4 / 1e9
    ref = best["distributed default (TRIM=64KiB)"][0]
    print(f"linear fill to Zarr, (48, 4, {args.size}, {args.size}) float32 = {gb:.2f} GB in {args.chunk}² blocks, 1 worker x "
          f"{os.cpu_count()} threads, best of {args.rounds} alternating rounds")
    print(f"{'setting':34s} {'wall s':>7s} {'s/GB':>6s} {'x default':>9s} {'sys s':>6s} {'user s':>7s} {'RSS GiB':>8s}")
    for name, (wall, system, user, rss) in best.items():
        print(f"{name:34s} {wall:7.2f} {wall / gb:6.2f} {wall / ref:9.2f} {system:6.2f} {user:7.2f} {rss:8.2f}")


if __name__ == "__main__":
    main()
