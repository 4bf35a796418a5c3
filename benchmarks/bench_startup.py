"""Start-up and small-job costs of the command line, against references measured in the same run.

Run:  .venv/bin/python benchmarks/bench_startup.py [--rounds 3] [--empty-cache-rounds 1]

Every figure is a whole process, started fresh (as a user's shell starts it), the best of
``--rounds`` rounds; the cases run one after the other within a round (alternating rounds),
so that the machine's load weighs on them alike. References:

* ``python -c "import xarray"``: the floor of any xarray-based tool;
* a ``gdalinfo``-like ``rasterio.open`` of a small GeoTIFF (read its profile): a GDAL command.

Cases:

* ``eocube --help``; an input error (``eocube gapfill --source does-not-exist.zarr``);
* ``eocube gapfill`` on the bundled sample (linear, default tile, threads), with the kernels'
  numba cache *warm* (the cache the set-up's warm-up wrote, already used by earlier runs) and
  *cold* (a fresh ``NUMBA_CACHE_DIR`` holding only what a set-up warm-up wrote, never loaded: the
  first run after an install; the warm-up of the linear kernel is timed once and shown, it is
  part of the set-up, not of the run);
* the same work in Python: one process that opens the sample, masks, fills and writes the same
  Zarr store and quicklook on dask's threaded scheduler, with the warm cache;
* optional (``--empty-cache-rounds``): ``eocube gapfill`` with an empty numba cache (no
  warm-up at all: what a user pays when set-up skipped the warm-up), for information.

Targets (issue 16): ``--help`` and the input error within 1.5x ``import xarray``; the warm gap
fill within 3x the in-process Python run; the cold one within 2 s of the warm one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
EOCUBE = [PYTHON, "-m", "eocube"]

WARM_UP_LINEAR = """
from eocube.fill._warmup import _cube
from eocube.fill import fill_gaps
import dask
with dask.config.set(scheduler="synchronous"):
    fill_gaps(*_cube("float32", None, True), method="linear").compute()
"""
"""The set-up warm-up restricted to the sample's case (float32 blocks as read from Zarr, linear)."""

SAME_WORK_IN_PYTHON = """
import sys
from pathlib import Path
import dask
import eocube
from eocube.datasets import open_sample
from eocube.fill import fill_gaps
from eocube.masks import clear_from_cloud_band
from eocube.plot import gapfill_quicklook

out = Path(sys.argv[1])
with dask.config.set(scheduler="threads"):
    cube = open_sample("sentinel2", chunks={"time": -1, "band": 1, "y": 101, "x": 101})
    clear = clear_from_cloud_band(cube, "CLM", data_band="IS_DATA")
    observed = cube.sel(band=["NDVI"])
    filled = fill_gaps(observed, clear, method="linear")
    eocube.to_zarr(filled, out, provenance={"method": "linear"})
    gapfill_quicklook(observed, clear.compute(), eocube.open_zarr(out), Path(str(out) + ".png"))
"""
"""What ``eocube gapfill`` does on the sample, as a Python user would write it (threaded scheduler)."""


def timed(cmd: list[str], env: dict[str, str] | None = None, expect: int = 0) -> float:
    """Seconds to run ``cmd`` to completion (its output discarded); its exit status must be ``expect``."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != expect:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode} (expected {expect}):\n{proc.stderr[-2000:]}")
    return seconds


def make_geotiff(path: Path) -> None:
    """A small GeoTIFF for the rasterio reference."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=1, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(400000, 5000000, 10, 10)) as dst:
        dst.write(np.zeros((1, 256, 256), "uint16"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; each case keeps its best")
    parser.add_argument("--empty-cache-rounds", type=int, default=1,
                        help="rounds of the informational empty-numba-cache case (0: skip)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="eocube-bench-startup-"))
    try:
        tif = work / "small.tif"
        make_geotiff(tif)
        # the warm cache: whatever the set-up left, plus one run so that it holds the sample's case
        timed([*EOCUBE, "gapfill", "--out", str(work / "prime.zarr"), "--no-progress"])
        setup_cache = work / "numba-setup"
        warm_up_s = timed([PYTHON, "-c", WARM_UP_LINEAR], env={"NUMBA_CACHE_DIR": str(setup_cache)})

        counter = iter(range(10**6))

        def out() -> str:
            return str(work / f"out-{next(counter)}.zarr")

        def cold_run() -> float:
            fresh = work / f"numba-{next(counter)}"
            shutil.copytree(setup_cache, fresh)
            return timed([*EOCUBE, "gapfill", "--out", out(), "--no-progress"], env={"NUMBA_CACHE_DIR": str(fresh)})

        cases = {
            "python -c 'import xarray'": lambda: timed([PYTHON, "-c", "import xarray"]),
            "rasterio open (gdalinfo-like)": lambda: timed(
                [PYTHON, "-c", f"import rasterio; rasterio.open({str(tif)!r}).profile"]),
            "eocube --help": lambda: timed([*EOCUBE, "--help"]),
            "eocube gapfill: input error": lambda: timed(
                [*EOCUBE, "gapfill", "--source", "does-not-exist.zarr", "--out", out()], expect=2),
            "eocube gapfill sample (warm)": lambda: timed([*EOCUBE, "gapfill", "--out", out(), "--no-progress"]),
            "eocube gapfill sample (cold)": cold_run,
            "same work in Python (threads)": lambda: timed([PYTHON, "-c", SAME_WORK_IN_PYTHON, out()]),
        }
        best = {name: float("inf") for name in cases}
        for r in range(args.rounds):
            for name, run in cases.items():
                best[name] = min(best[name], run())
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        empty = float("inf")
        for _ in range(args.empty_cache_rounds):
            empty = min(empty, timed([*EOCUBE, "gapfill", "--out", out(), "--no-progress"],
                                     env={"NUMBA_CACHE_DIR": str(work / f"numba-empty-{next(counter)}")}))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    xr_s, gdal_s = best["python -c 'import xarray'"], best["rasterio open (gdalinfo-like)"]
    python_s, warm_s = best["same work in Python (threads)"], best["eocube gapfill sample (warm)"]
    targets = {
        "eocube --help": ("<= 1.5x import xarray", best["eocube --help"] / xr_s <= 1.5),
        "eocube gapfill: input error": ("<= 1.5x import xarray", best["eocube gapfill: input error"] / xr_s <= 1.5),
        "eocube gapfill sample (warm)": ("<= 3x Python", warm_s / python_s <= 3),
        "eocube gapfill sample (cold)": ("<= warm + 2 s", best["eocube gapfill sample (cold)"] <= warm_s + 2),
    }
    print(f"best of {args.rounds} alternating rounds, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'case':34s} {'seconds':>8s} {'x xarray':>9s} {'x rasterio':>11s} {'x Python':>9s}  target")
    for name, seconds in best.items():
        target, met = targets.get(name, ("", None))
        mark = "" if met is None else (" (met)" if met else " (NOT met)")
        print(f"{name:34s} {seconds:8.2f} {seconds / xr_s:9.2f} {seconds / gdal_s:11.2f} {seconds / python_s:9.2f}"
              f"  {target}{mark}")
    print(f"cold - warm: {best['eocube gapfill sample (cold)'] - warm_s:+.2f} s "
          f"(the set-up's warm-up of the linear kernel took {warm_up_s:.1f} s, once)")
    if args.empty_cache_rounds:
        print(f"eocube gapfill sample, empty numba cache (no warm-up at set-up): {empty:.2f} s "
              f"({empty - warm_s:+.2f} s over warm)")


if __name__ == "__main__":
    main()
