"""Compile the gap-filling kernels ahead of time, into numba's on-disk cache (run at set-up).

``python -m eocube.fill._warmup`` (``scripts/setup-env.sh`` runs it) calls every method,
the quality band and the composites on small synthetic cubes, as the command line and
:func:`eocube.fill.fill_gaps` call them (dask blocks of all dates x one band, a shared and a
per-band mask, float32, float64, uint16 and int16 data, with and without a nodata value), so
that numba compiles the signatures a user's run needs and writes them to its cache
(``cache=True``). Blocks come in two layouts that numba compiles separately: fresh
C-contiguous arrays (what Zarr, COG and STAC reads hand over: every dtype) and strided views of
an in-memory array (a notebook's ``cube.chunk(...)``: float32 and float64). The cases run in
parallel processes, one per case (at most one per core).
The user's first run then loads machine code instead of compiling it (7 to 11 s for the linear kernel alone on a 2-core machine).

Where the cache lives (numba's rules): ``$NUMBA_CACHE_DIR`` when set, else the
``__pycache__`` folder next to the kernels (``eocube/fill/__pycache__``; for an editable
install that is the source tree), else, when that folder is not writable (a system-wide
install), numba's folder in the user's cache directory. Run the warm-up with the same
``NUMBA_CACHE_DIR`` as the jobs. An entry stays valid while the kernel's source file keeps
its modification time and size (a checkout that rewrites the file recompiles it) and serves
the same CPU model only: compile on the compute nodes' kind of CPU (e.g. the warm-up as the
first step of a job) when login and compute nodes differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

SIZES = {"t": 12, "y": 8, "x": 8}
"""The synthetic cube: enough dates for every method's windows, tiny images."""


def _cube(dtype: str, nodata: float | None, contiguous: bool = True, bands: int = 1):
    """A small cube of ``dtype`` on a real grid, chunked as the command line chunks (dates x one band).

    ``contiguous``: each block a fresh C-contiguous array (as read from a store); else views of one array.
    """
    import pandas as pd

    from ..cube import make_cube

    rng = np.random.default_rng(0)
    t, b, h, w = SIZES["t"], bands, SIZES["y"], SIZES["x"]
    data = (rng.random((t, b, h, w)) * 1000 + 1).astype(dtype)
    times = pd.date_range("2024-01-01", periods=t, freq="11D")
    cube = make_cube(data, time=times, band=[f"b{i}" for i in range(b)], y=5e6 - 10 * (np.arange(h) + 0.5),
                     x=4e5 + 10 * (np.arange(w) + 0.5), crs="EPSG:32633", nodata=nodata)
    clear = cube.isel(band=0, drop=True).copy(data=rng.random((t, h, w)) > 0.3)
    cube = cube.chunk({"time": -1, "band": 1, "y": h, "x": w})
    clear = clear.chunk({"time": -1, "y": h, "x": w})
    if contiguous:
        cube = cube.copy(data=cube.data.map_blocks(np.ascontiguousarray, meta=np.empty((0,) * 4, cube.dtype)))
        clear = clear.copy(data=clear.data.map_blocks(np.ascontiguousarray, meta=np.empty((0,) * 3, bool)))
    return cube, clear


CASES: tuple[tuple[str, float | int | None, bool | str], ...] = (
    ("float32", None, True), ("float64", None, True), ("uint16", 0, True), ("int16", -9999, True),
    ("float32", None, False), ("float64", None, False), ("float32", None, "bands"))
"""(dtype, nodata, contiguous blocks) of the cubes warmed up: reflectances as float, digital numbers
as integers; blocks as read from stores, and as views of an in-memory float cube. Whittaker and
harmonic take a pixel block's bands as a tuple whose length numba compiles for: the cases compile
one band, and the ``"bands"`` case two to four (a float cube with another nodata value than NaN,
or more bands, compiles on its first run, once)."""


def _jobs(dtype: str, nodata: float | None, contiguous: bool | str) -> list[tuple[str, Callable[[], object]]]:
    """(label, function computing one result) for one case."""
    from . import METHOD_NAMES, composite, days_to_clear, fill_gaps
    from .temporal import SHARED_WORK

    if contiguous == "bands":
        return [(f"{method} {dtype} {n} bands",
                 lambda m=method, n=n: fill_gaps(*_cube(dtype, nodata, True, n), method=m).compute())
                for n in (2, 3, 4) for method in sorted(SHARED_WORK)]

    def cube() -> tuple:
        return _cube(dtype, nodata, contiguous)

    tag = f"{dtype}{'' if contiguous else ' views'}"
    jobs = []
    for method in METHOD_NAMES:
        jobs.append((f"{method} {tag}", lambda m=method: fill_gaps(*cube(), method=m).compute()))
        jobs.append((f"{method} {tag} no mask", lambda m=method: fill_gaps(cube()[0], None, method=m).compute()))
    jobs.append((f"linear {tag} time grid", lambda: fill_gaps(*cube(), method="linear", time_grid="MS").compute()))
    for stat in ("median", "mean"):
        jobs.append((f"composite {stat} {tag}", lambda s=stat: composite(*cube(), stat=s).compute()))
    if dtype == "float32":
        jobs.append((f"quality {tag}", lambda: days_to_clear(cube()[1]).compute()))
        jobs.append((f"quality {tag} time grid", lambda: days_to_clear(cube()[1], time_grid="MS").compute()))
    return jobs


def _run_case(case: tuple[str, float | int | None, bool | str]) -> list[tuple[str, float]]:
    """Run one case's jobs in this process; (label, seconds) of each."""
    import dask

    times = []
    with dask.config.set(scheduler="synchronous"):
        for label, job in _jobs(*case):
            t0 = time.perf_counter()
            job()
            times.append((label, time.perf_counter() - t0))
    return times


def warm_up(verbose: bool = True, processes: int | None = None) -> float:
    """Compile (or load from the cache) every kernel signature a usual run needs; return the seconds taken.

    Parameters
    ----------
    verbose
        Print one line per case and the total.
    processes
        Parallel processes (default: one per case, at most the usable cores); 1 runs here.
    """
    import os
    from concurrent.futures import ProcessPoolExecutor

    start = time.perf_counter()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    processes = processes or max(1, min(len(CASES), cores))
    pool = ProcessPoolExecutor(processes) if processes > 1 else None
    results = pool.map(_run_case, CASES) if pool else map(_run_case, CASES)
    for case, times in zip(CASES, results):
        if verbose:
            layout = {True: "", False: " (views)", "bands": " (2-4 bands)"}[case[2]]
            print(f"  {case[0]}{layout}, nodata {case[1]}: "
                  f"{sum(t for _, t in times):.1f} s", flush=True)
    if pool:
        pool.shutdown()
    seconds = time.perf_counter() - start
    if verbose:
        print(f"eocube: gap-filling kernels compiled into numba's cache in {seconds:.0f} s", flush=True)
    return seconds


if __name__ == "__main__":
    warm_up()
