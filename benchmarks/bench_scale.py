"""A Sentinel-2 tile-year, planned and simulated: graph size, submission, scheduler memory, files; a real slice.

Run:  .venv/bin/python benchmarks/bench_scale.py [--slice 4] [--worker-memory 4GB] [--out /tmp/bench-scale]

What it does:

1. Synthetic STAC items for one MGRS tile over one year: 73 dates (every 5 days), 4 bands at 10 m
   (B02, B03, B04, B08), 6 at 20 m (B05, B06, B07, B8A, B11, B12) and SCL at 20 m, with the real
   Sentinel-2 grid and geometry of tile 35MNM (copied from a published Planetary Computer item in
   tests/stac/data). The hrefs point at small local COGs that stand in for the real ones: the same
   footprint and CRS at 1/16 of the resolution (one COG per band and date class), so reads exercise
   the real loader (open_stac -> rasterio/GDAL warp) at a fraction of the bytes.
2. The whole pipeline of the tile-year, lazily: open_stac (time=1 chunks) -> SCL clear mask ->
   linear gap fill (time=-1) -> a small CNN through apply_model -> sharded Zarr v3 (eocube.to_zarr's
   own tasks, one per shard), with chunks from eocube.plan.plan_chunks. Reported: tasks, graph
   build time, submission time to a local scheduler without workers (nothing runs), scheduler
   memory after submission, files the store would have.
3. A real slice: the full time depth on a 1/slice^2 spatial window (``--slice 4`` = 1/16 of the
   tile), run end to end on a LocalCluster, with peak worker memory, files and bytes written;
   then extrapolated to the tile-year (core-hours, files, bytes).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "tests" / "stac" / "data" / "site2-2020_jun_jul-35MNM.geojson"
BANDS_10M = ["B02", "B03", "B04", "B08"]
BANDS_20M = ["B05", "B06", "B07", "B8A", "B11", "B12"]
DATES = 73
REDUCE = 16  # stand-in COGs have 1/16 of the resolution (160 m / 320 m pixels)
CLASSES = 4  # dates share COGs by date class (date index % CLASSES)


def stand_in_cogs(folder: Path, template: dict) -> dict[tuple[str, int], str]:
    """Small COGs with each asset's footprint and CRS at 1/REDUCE of its resolution."""
    import rasterio
    from affine import Affine

    folder.mkdir(parents=True, exist_ok=True)
    epsg = template["properties"]["proj:epsg"]
    hrefs = {}
    for band in BANDS_10M + BANDS_20M + ["SCL"]:
        asset = template["assets"][band]
        a, _, x0, _, e, y0 = asset["proj:transform"][:6]
        h, w = (s // REDUCE for s in asset["proj:shape"])
        for k in range(CLASSES):
            rng = np.random.default_rng([k, len(band)])
            if band == "SCL":  # vegetation (4) with clouds (9) over a share of the tile
                data = np.where(rng.random((h, w)) < 0.2 + 0.15 * k, 9, 4).astype("uint8")
            else:
                data = (rng.integers(200, 4000, size=(h, w))).astype("uint16")
            path = folder / f"{band}_{k}.tif"
            with rasterio.open(path, "w", driver="COG", width=w, height=h, count=1, dtype=data.dtype,
                               crs=f"EPSG:{epsg}", transform=Affine(a * REDUCE, 0, x0, 0, e * REDUCE, y0),
                               nodata=0, compress="deflate", blocksize=256) as dst:
                dst.write(data, 1)
            hrefs[band, k] = str(path)
    return hrefs


def tile_year_items(hrefs: dict[tuple[str, int], str], template: dict) -> list[dict]:
    """73 items of one tile over 2020, with the template's grid, geometry and metadata."""
    items = []
    for i, day in enumerate(pd.date_range("2020-01-03T08:06:11Z", periods=DATES, freq="5D")):
        item = copy.deepcopy(template)
        item["id"] = f"S2A_MSIL2A_{day:%Y%m%dT%H%M%S}_R078_T35MNM_synthetic"
        item["properties"]["datetime"] = day.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        keep = {}
        for band in BANDS_10M + BANDS_20M + ["SCL"]:
            asset = item["assets"][band]
            asset["href"] = hrefs[band, i % CLASSES]
            asset["raster:bands"] = [{"nodata": 0, "data_type": "uint8" if band == "SCL" else "uint16"}]
            keep[band] = asset
        item["assets"] = keep
        item["links"] = []
        items.append(item)
    return items


def tiny_cnn(n_bands: int):
    """A small CNN (two 3x3 convolutions) standing in for a real model: 10 bands in, 2 out."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(n_bands, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 2, 3, padding=1))


def pipeline(items: list[dict], plan, bounds=None):
    """open_stac -> clear mask -> gap fill -> CNN, chunked by the plan (lazy)."""
    import dask

    import eocube
    from eocube.fill import fill_gaps
    from eocube.masks import clear_from_scl
    from eocube.models import ModelSpec, RunOptions, SourceSpec

    cube = eocube.open_stac(items, assets=BANDS_10M + BANDS_20M + ["SCL"], resolution=10, bounds=bounds,
                            chunks=plan.load, nodata=0)
    clear = clear_from_scl(cube, "SCL")
    spectral = cube.sel(band=BANDS_10M + BANDS_20M)
    filled = fill_gaps(spectral.astype("float32"), clear, method="linear")
    out = eocube.apply_model(filled, tiny_cnn(len(BANDS_10M + BANDS_20M)), ModelSpec(sources=(SourceSpec(layout="band"),)),
                             run=RunOptions(batch_size=8, chunks={"y": plan.model["y"], "x": plan.model["x"]}))
    model = "apply_model (2 conv layers)"
    # the model's blocks gathered into shards: a narrow rechunk, as tasks (dask would pick a p2p
    # shuffle under a client; apply_model does the same for its own input)
    with dask.config.set({"array.rechunk.method": "tasks"}):
        return out.chunk(plan.write), model


def write_tasks(cube, store: str, plan):
    """to_zarr's own tasks for the cube (one per shard), without writing anything."""
    import numpy as np

    from eocube.io import zarr_writer

    kwargs = plan.to_zarr_kwargs()
    p = zarr_writer._plan(cube, store, "out", kwargs.pop("zarr_format"), "overwrite", {"bench": "scale"}, **kwargs)
    nblocks = tuple(len(c) for c in p.cube.chunks)
    pending = list(np.ndindex(*nblocks))
    return zarr_writer._write_tasks(p.cube.data, pending, p.loc, "out", p.record["fingerprint"]), p


@contextlib.contextmanager
def scheduler_process(work: Path):
    """A scheduler alone in its own process on 127.0.0.1 (no workers): its memory is the scheduler's only."""
    import subprocess
    import sys

    from distributed import Client

    info = work / "scheduler.json"
    info.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                             "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if info.exists() and info.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        yield address
    finally:
        with contextlib.suppress(Exception), Client(address, timeout=10) as c:
            c.shutdown()
        proc.terminate()
        proc.wait(timeout=30)


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slice", type=int, default=4, help="run a 1/slice^2 window (default 4: 1/16 of the tile; 0: no slice)")
    parser.add_argument("--worker-memory", default="4GB")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--skip-plan", action="store_true", help="only run the slice")
    args = parser.parse_args()

    from distributed import Client, LocalCluster, wait

    import eocube
    from eocube.plan import plan_chunks

    work = Path(args.out or tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    template = json.loads(TEMPLATE.read_text())["features"][0]
    items = tile_year_items(stand_in_cogs(work / "cogs", template), template)
    shape = (DATES, len(BANDS_10M + BANDS_20M) + 1, 10980, 10980)
    plan = plan_chunks(shape, "float32", worker_memory=args.worker_memory, threads_per_worker=args.threads,
                       model_bands=10, out_bands=2, halo=2, load_itemsize=2)
    print(plan.explain())
    rows: list[tuple[str, str]] = []

    if not args.skip_plan:
        start = rss_mb()
        t0 = time.perf_counter()
        out, model = pipeline(items, plan)
        tasks, _wplan = write_tasks(out, str(work / "tile-year.zarr"), plan)
        build = time.perf_counter() - t0
        from dask.highlevelgraph import HighLevelGraph

        graph = HighLevelGraph.merge(*[t.__dask_graph__() for t in tasks])
        n_tasks = len(graph)
        rows += [("tile-year: model", model), ("tile-year: tasks (whole graph)", f"{n_tasks:,}"),
                 ("tile-year: write tasks (shards)", f"{len(tasks):,}"),
                 ("tile-year: graph build", f"{build:.1f} s"),
                 ("tile-year: client memory for the graph", f"{rss_mb() - start:.0f} MiB"),
                 ("tile-year: files of the store (shards + metadata)", f"{len(tasks) + 16:,}")]
        del graph
        for key, value in rows:
            print(f"{key:<50}  {value}", flush=True)  # the slow part follows: show the numbers so far
        with scheduler_process(work) as address, Client(address) as client:
            def sched_rss(dask_scheduler=None):
                import psutil

                return psutil.Process().memory_info().rss

            before = client.run_on_scheduler(sched_rss)
            t0 = time.perf_counter()
            futures = client.compute(tasks)
            while client.run_on_scheduler(lambda dask_scheduler=None: len(dask_scheduler.tasks)) < len(tasks):
                time.sleep(0.2)
            submit = time.perf_counter() - t0
            n_sched = client.run_on_scheduler(lambda dask_scheduler=None: len(dask_scheduler.tasks))
            after = client.run_on_scheduler(sched_rss)
            client.cancel(futures)
            del futures
        rows += [("tile-year: submission to a scheduler process", f"{submit:.1f} s ({n_sched:,} tasks there)"),
                 ("tile-year: scheduler memory", f"{after / 2**20:.0f} MiB (+{(after - before) / 2**20:.0f} MiB)")]
        del tasks, out

    if args.slice <= 0:
        _print_rows(rows, args)
        return
    # a real slice: full time depth, 1/slice^2 of the tile
    b = template["assets"]["B02"]["proj:transform"]
    x0, y0, side = b[2], b[5], 109800 / args.slice
    bounds = (x0, y0 - side, x0 + side, y0)
    store = work / "slice.zarr"
    shutil.rmtree(store, ignore_errors=True)
    with LocalCluster(n_workers=args.workers, threads_per_worker=args.threads, memory_limit=args.worker_memory,
                      processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        from distributed.diagnostics import MemorySampler

        sampler = MemorySampler()
        out, model = pipeline(items, plan, bounds=bounds)
        t0 = time.perf_counter()
        with sampler.sample("slice", interval=0.5):
            report = eocube.to_zarr(out, store, provenance={"bench": "scale"}, progress=False,
                                    **plan.to_zarr_kwargs())
        wall = time.perf_counter() - t0
        peak = float(np.max(sampler.samples["slice"], axis=0)[1]) / max(1, args.workers) if sampler.samples["slice"] else 0.0
        wait([])
    files = [p for p in store.rglob("*") if p.is_file()]
    nbytes = sum(p.stat().st_size for p in files)
    cores = args.workers * args.threads
    scale = args.slice ** 2
    rows += [("slice", f"{out.shape} (1/{scale} of the tile, {DATES} dates), model: {model}"),
             ("slice: wall time", f"{wall:.1f} s on {cores} cores ({report.chunks_total} shards)"),
             ("slice: peak worker memory", (f"{peak / 2**20:.0f} MiB (limit {args.worker_memory}, planner's "
                                           f"largest task {max(plan.task_memory.values()) / 2**20:.0f} MiB)")),
             ("slice: files / bytes written", f"{len(files)} / {nbytes / 2**20:.1f} MiB"),
             ("tile-year (extrapolated): core-hours", f"{wall * cores * scale / 3600:.1f}"),
             ("tile-year (extrapolated): files", f"{plan.files:,} (planner), shards {plan.tasks['write']:,}"),
             ("tile-year (extrapolated): bytes", (f"{nbytes * scale / 2**30:.1f} GiB compressed (the stand-in COGs repeat "
                                                  f"each pixel {REDUCE}x{REDUCE}: real data compress far less), "
                                                  f"{out.nbytes * scale / 2**30:.0f} GiB uncompressed"))]
    _print_rows(rows, args)
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


def _print_rows(rows: list[tuple[str, str]], args: argparse.Namespace) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\nmachine: {os.cpu_count()} cores; worker memory {args.worker_memory}; {args.workers} worker(s) x "
          f"{args.threads} threads")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
