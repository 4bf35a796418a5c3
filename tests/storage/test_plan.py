"""Chunk planning of load -> gap fill -> model -> sharded write."""

from __future__ import annotations

import math

import pytest

import eocube
from eocube.io import _layout
from eocube.plan import ChunkPlanError, plan_chunks


def test_a_tile_year_plan_fits_the_workers_and_keeps_files_few():
    plan = plan_chunks((73, 10, 10980, 10980), "uint16", worker_memory="8GB", threads_per_worker=2, halo=16)
    budget = 4 * 2**30 * 0.6
    assert max(plan.task_memory.values()) <= budget  # every stage fits a thread's share
    assert plan.fill["time"] == 73 and plan.load["time"] == 73 and plan.write["time"] == 73
    assert plan.tasks["load"] == plan.tasks["fill"]  # one load task per fill block and band: no rechunk between
    assert plan.fill["y"] % plan.model["y"] == 0 and plan.write["y"] % plan.model["y"] == 0  # nested blocks
    assert plan.files < 10_000
    assert plan.write["y"] % plan.zarr_chunks["y"] == 0 and plan.write["x"] % plan.zarr_chunks["x"] == 0
    text = plan.explain()
    assert "why:" in text and "shards" in text and "over 60% of a thread" in text
    assert plan.to_zarr_kwargs()["zarr_format"] == 3


def test_more_memory_gives_larger_blocks():
    small = plan_chunks((73, 10, 10980, 10980), worker_memory="4GB")
    large = plan_chunks((73, 10, 10980, 10980), worker_memory="32GB")
    assert large.side > small.side and large.tasks["model"] < small.tasks["model"]


def test_a_time_series_too_long_for_a_worker_names_the_largest_block_that_fits():
    with pytest.raises(ChunkPlanError, match=r"needs .* more than 60% of a worker thread's .*largest block that fits "
                                             r"is time=20000, y=(\d+), x=\1 \(pass min_side="):
        plan_chunks((20_000, 4, 2000, 2000), worker_memory="1GB")
    with pytest.raises(ChunkPlanError, match=r"not even one pixel's time series fits; the largest block that fits "
                                             r"is time=\d+, y=1, x=1: split the time axis"):
        plan_chunks((10**9, 1, 100, 100), worker_memory="1GB")


def test_the_plan_drives_a_sharded_write(tmp_path, make_cube):
    cube = make_cube(t=6, h=200, w=130)
    plan = plan_chunks(cube.shape, cube.dtype, worker_memory="64MB", shard_bytes="200kB")
    written = cube.chunk(plan.write)
    report = eocube.to_zarr(written, tmp_path / "p.zarr", progress=False, **plan.to_zarr_kwargs())
    units = math.ceil(200 / plan.write["y"]) * math.ceil(130 / plan.write["x"]) * 2
    assert report.chunks_total == units and report.zarr_format == 3


def test_to_zarr_groups_many_small_dask_chunks_into_shards(tmp_path, make_cube, monkeypatch):
    monkeypatch.setattr(_layout, "FEW_FILES", 10)
    cube = make_cube(t=4, h=64, w=64, chunks={"time": -1, "band": 1, "y": 8, "x": 8})  # 2 x 64 = 128 dask chunks
    report = eocube.to_zarr(cube, tmp_path / "g.zarr", zarr_format=3, progress=False)
    assert report.unit == "shards" and report.chunks_total <= 10  # several dask chunks per shard
    files = [p for p in (tmp_path / "g.zarr").rglob("*") if p.is_file()]
    assert len(files) <= report.chunks_total + 16
    back = eocube.open_zarr(tmp_path / "g.zarr")
    assert (back.values == cube.values).all()



def test_a_planned_pipeline_gathers_blocks_without_a_time_rechunk_or_a_shuffle(make_cube):
    """Load chunks from the plan go straight into the gap fill (no rechunk layer), and apply_model
    gathers the bands of each block as plain tasks even where dask would pick a p2p shuffle."""
    import dask
    import torch
    from distributed import Client, LocalCluster

    from eocube.fill import fill_gaps

    cube = make_cube(t=8, bands=("b1", "b2", "b3"), h=96, w=96)
    plan = plan_chunks(cube.shape, worker_memory="2MB", min_side=16)
    assert plan.load["time"] == 8 and plan.load["y"] < 96  # several blocks, all dates per load task
    loaded = cube.chunk(plan.load)
    clear = (loaded.isel(band=0, drop=True) > 100).chunk({"time": -1, "y": plan.load["y"], "x": plan.load["x"]})
    filled = fill_gaps(loaded, clear, method="linear")
    assert not [name for name in filled.data.__dask_graph__().layers if name.startswith("rechunk")]
    model = torch.nn.Conv2d(3, 1, 3, padding=1)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster), dask.config.set({"array.rechunk.threshold": 1e-9}):  # dask would now pick p2p
        assert dask.array.ones((8, 3, 96, 96), chunks=(8, 1, 32, 32)).rechunk((8, 3, 16, 16)).name.startswith(
            "rechunk-p2p")
        out = eocube.apply_model(filled, model, layout="band", chunks={"y": plan.model["y"], "x": plan.model["x"]})
        layers = list(out.data.__dask_graph__().layers)
    assert any(name.startswith(("rechunk-merge", "rechunk-split")) for name in layers)
    assert not [name for name in layers if "p2p" in name or "transfer" in name]
