"""Benchmark: a command's work on dask's threaded scheduler vs a local distributed cluster, by job size.

Run:  .venv/bin/python benchmarks/bench_threads_vs_cluster.py [--factors 1,4,16,64] [--rounds 2]

The work is ``eocube gapfill``'s on the bundled sample (68 dates, 101 x 100 px; NDVI filled
linearly where the CLM band says cloudy and IS_DATA says observed, written to Zarr with the
progress bar on), with the sample mirrored and tiled up to ``factor`` times its area (the job's arrays
as the command counts them, bands read plus result: 1x = 10.5 MiB, 16x = 168 MiB, 64x = 670 MiB),
the command's default tile and chunks. Every run is a fresh process (as a command is):
it opens the store and builds the graph (untimed), then times

* threads: ``to_zarr`` on dask's threaded scheduler (2 threads, what a command below
  ``eocube.cluster.threads-below`` does);
* cluster: ``eocube.cluster.connect("local")`` (what ``--cluster local`` starts: one worker per
  2 cores) plus the same ``to_zarr`` on it; the start and the compute are also shown apart.

``--modes`` adds cluster variants (worker processes, worker threads in process, the profiler off,
fewer periodic callbacks; see :data:`VARIANTS`), and ``cluster-before`` runs eocube's default cluster
from another checkout (``--before``: e.g. a worktree of an older commit), for before/after ratios in
one run. The modes and sizes alternate within each round so that a shared machine's load weighs on them
alike; printed are the ratio cluster / threads per size (median and range over rounds), where the
time goes (CPU seconds of the command's process, which holds client and scheduler, and of the
worker processes; task count) and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_store(folder: Path, factor: int) -> Path:
    """The bundled sample mirrored and tiled to ``factor`` times its area (a square number), as Zarr."""
    import dask
    import numpy as np
    import rioxarray  # noqa: F401 - the .rio accessor
    import xarray as xr

    from eocube.datasets import open_sample
    from eocube.io import to_zarr

    path = folder / f"x{factor}.zarr"
    if path.exists():
        return path
    k = round(factor ** 0.5)
    if k * k != factor:
        raise SystemExit(f"--factors: {factor} is not a square number (1, 4, 16, 64, ...)")
    src = open_sample("sentinel2").load()
    v = src.values
    row = np.concatenate([v if i % 2 == 0 else v[..., ::-1] for i in range(k)], axis=-1)
    big = np.concatenate([row if j % 2 == 0 else row[..., ::-1, :] for j in range(k)], axis=-2)
    dy, dx = float(src.y[1] - src.y[0]), float(src.x[1] - src.x[0])
    cube = xr.DataArray(big, dims=src.dims, name=src.name, attrs={"_FillValue": float("nan")}, coords={
        "time": src.time, "band": src.band, "y": float(src.y[0]) + dy * np.arange(big.shape[2]),
        "x": float(src.x[0]) + dx * np.arange(big.shape[3])}).rio.write_crs(src.rio.crs)
    with dask.config.set(scheduler="threads"):
        to_zarr(cube.chunk({"time": -1, "band": 1, "y": 512, "x": 512}), str(path), progress=False)
    return path


VARIANTS: dict[str, dict] = {
    "cluster": {},  # eocube's default
    "cluster-inproc": {"processes": False},  # the worker's threads in the command's process
    "cluster-procs": {"processes": True},  # worker processes
    "cluster-noprofile": {"config": {"distributed.worker.profile.enabled": False}},  # no statistical profiler
    "cluster-inproc-noprofile": {"processes": False, "config": {"distributed.worker.profile.enabled": False}},
    "cluster-lean": {"config": {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "100ms",
                                "distributed.worker.memory.monitor-interval": "500ms",
                                "distributed.admin.system-monitor.interval": "2s"}},  # fewer periodic callbacks
    "cluster-before": {},  # eocube's default, run from the checkout given by --before (e.g. an older commit)
}
"""Cluster variants (``--modes``): keyword arguments of ``connect`` and dask configuration."""


def run_one(store: str, mode: str) -> dict:
    """One run in this (fresh) process: graph untimed, then start (cluster) and compute timed; a dict."""
    import dask
    import psutil

    from eocube.cli._common import open_source
    from eocube.cli.gapfill import _tile
    from eocube.cube import select_bands
    from eocube.fill import fill_gaps
    from eocube.io import to_zarr
    from eocube.masks import clear_from_cloud_band

    tile, _ = _tile(store, None)
    cube, _ = open_source(store, {"time": -1, "band": 1, "y": tile, "x": tile})
    clear = clear_from_cloud_band(cube, "CLM", data_band="IS_DATA")  # as eocube gapfill on the sample
    filled = fill_gaps(select_bands(cube, ["NDVI"]), clear, method="linear")
    nbytes = select_bands(cube, ["NDVI", "CLM", "IS_DATA"]).nbytes + filled.nbytes  # the command's measure
    out = Path(tempfile.mkdtemp(prefix="bench-tvc-")) / "out.zarr"
    me = psutil.Process()
    t0 = time.perf_counter()
    client, workers = None, []
    if mode != "threads":
        from eocube.cluster import connect

        settings = dict(VARIANTS[mode])
        with dask.config.set(settings.pop("config", {})):
            client = connect("local", dashboard_address=None, **settings)
        workers = me.children(recursive=True)
    started = time.perf_counter()
    c0, w0 = me.cpu_times(), [p.cpu_times() for p in workers]
    with dask.config.set(scheduler="threads", num_workers=2) if client is None else dask.config.set({}):
        to_zarr(filled, str(out), progress=True)
    done = time.perf_counter()
    c1, w1 = me.cpu_times(), [p.cpu_times() for p in workers]
    if client is not None:
        from eocube.cluster import close

        close(client)
    shutil.rmtree(out.parent, ignore_errors=True)
    return {"start": started - t0, "compute": done - started, "total": done - t0,
            "cpu_here": c1.user - c0.user + c1.system - c0.system,
            "cpu_workers": sum(b.user - a.user + b.system - a.system for a, b in zip(w0, w1, strict=True)),
            "tasks": len(dict(filled.data.__dask_graph__())), "chunks": filled.data.npartitions,
            "nbytes": nbytes, "tile": tile}


def span(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factors", default="1,4,16", help="sizes, in multiples of the sample's area (square numbers)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--modes", default="threads,cluster",
                    help=f"threads and cluster variants, comma separated: threads, {', '.join(VARIANTS)}")
    ap.add_argument("--before", default=None, help="checkout whose eocube the cluster-before mode imports")
    ap.add_argument("--work", default=None, help="folder for the tiled stores (kept; default: a temporary one)")
    ap.add_argument("--one", nargs=2, metavar=("STORE", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    factors = [int(f) for f in args.factors.split(",")]
    names = [m.strip() for m in args.modes.split(",")]
    if names[0] != "threads" or any(m not in VARIANTS for m in names[1:]):
        raise SystemExit(f"--modes: threads first, then any of {', '.join(VARIANTS)}")
    if "cluster-before" in names and not args.before:
        raise SystemExit("--modes cluster-before needs --before CHECKOUT")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-tvc-"))
    work.mkdir(parents=True, exist_ok=True)
    stores = {f: make_store(work, f) for f in factors}
    print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{args.rounds} rounds, modes and sizes alternating")
    runs: dict[tuple[int, str], list[dict]] = {}
    for r in range(args.rounds):
        modes = names[r % len(names):] + names[:r % len(names)]
        for f in factors:
            for mode in modes:
                env = dict(os.environ)
                if mode == "cluster-before":
                    env["PYTHONPATH"] = args.before
                res = subprocess.run([sys.executable, __file__, "--one", str(stores[f]), mode],
                                     capture_output=True, text=True, check=False, env=env)
                if res.returncode:
                    raise SystemExit(f"{mode} x{f} failed:\n{res.stderr[-3000:]}")
                runs.setdefault((f, mode), []).append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"round {r + 1} done, load average {os.getloadavg()[0]:.2f}", flush=True)
    med = statistics.median
    for mode in names[1:]:
        print(f"\n{mode} against threads:")
        print(f"{'size':>4s} {'arrays':>9s} {'tasks':>6s} {'threads':>8s} {'cluster':>8s} {'(start':>7s} "
              f"{'+ compute)':>10s} {'cluster/threads':>16s} {'compute only':>13s}  CPU s: threads | cluster here + workers")
        for f in factors:
            th, cl = runs[f, "threads"], runs[f, mode]
            ratio = [c["total"] / t["total"] for c, t in zip(cl, th, strict=True)]
            comp = [c["compute"] / t["compute"] for c, t in zip(cl, th, strict=True)]
            print(f"{f:>3d}x {th[0]['nbytes'] / 2**20:7.1f}Mi {th[0]['tasks']:>6d} {med(t['total'] for t in th):7.2f}s "
                  f"{med(c['total'] for c in cl):7.2f}s {med(c['start'] for c in cl):6.2f}s "
                  f"{med(c['compute'] for c in cl):9.2f}s {span(ratio):>16s} {span(comp):>13s}  "
                  f"{med(t['cpu_here'] for t in th):.2f} | {med(c['cpu_here'] for c in cl):.2f} + "
                  f"{med(c['cpu_workers'] for c in cl):.2f}")
    print(f"machine after: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
