"""The training data path: batched window reads, staged chunks, sampling and normalisation (issue 25 item 2).

Invariants only: a batch of windows read in one compute is exactly the windows read one by one
(lazy and in memory, edge chunks of uneven size, nodata), staged chunks make epochs compute
nothing, and the examples of a seed are the same draws as before (``rng.choice(p=weights)``).
"""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pytest
import torch

from eocube.cube import make_cube
from eocube.learn.config import load_config
from eocube.learn.patches import PatchDataset, PatchSources, band_statistics
from eocube.learn.windows import WindowReader


def _array(seed: int = 0) -> np.ndarray:
    """``(2, 70, 90)`` float32 with NaN holes (nodata) and infinities; chunks of 32 leave edge chunks of 6 and 26."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(2, 70, 90)).astype("float32")
    a[rng.random(a.shape) < 0.1] = np.nan
    a[0, 5, 7] = np.inf
    return a


def _boxes(n: int, seed: int = 1) -> list[tuple[slice, slice]]:
    rng = np.random.default_rng(seed)
    out = [(slice(60, 70), slice(80, 90)), (slice(0, 70), slice(0, 90)), (slice(31, 33), slice(63, 65))]  # edges
    for _ in range(n):
        h, w = rng.integers(1, 40, 2)
        y, x = rng.integers(0, 70 - h + 1), rng.integers(0, 90 - w + 1)
        out.append((slice(int(y), int(y + h)), slice(int(x), int(x + w))))
    return out


@pytest.mark.parametrize("cache", [1, 4, "auto"])
def test_batched_reads_are_the_windows_read_one_by_one(cache):
    a = _array()
    boxes = _boxes(60)
    one = WindowReader(da.from_array(a, chunks=(1, 32, 32)), cache_chunks=cache)
    many = WindowReader(da.from_array(a, chunks=(1, 32, 32)), cache_chunks=cache)
    mem = WindowReader(a, cache_chunks=cache)
    singles = [one.read(ys, xs) for ys, xs in boxes]
    batched = many.read_many(boxes)
    for (ys, xs), s, b, m in zip(boxes, singles, batched, mem.read_many(boxes)):
        np.testing.assert_array_equal(s, a[:, ys, xs])  # NaN and inf where they are
        np.testing.assert_array_equal(b, a[:, ys, xs])
        np.testing.assert_array_equal(m, a[:, ys, xs])
        assert b.dtype == a.dtype and b.shape == a[:, ys, xs].shape
    assert many.computes == 1  # one dask compute for the whole batch, whatever the cache holds
    assert many.reads == 9  # each of the 3 x 3 chunks once
    assert len(many._cache) <= many.cache_chunks


def test_a_window_is_computed_in_one_compute_and_not_twice():
    a = _array()
    reader = WindowReader(da.from_array(a, chunks=(1, 32, 32)), cache_chunks=16)
    np.testing.assert_array_equal(reader.read(slice(20, 40), slice(20, 70)), a[:, 20:40, 20:70])  # 2 x 3 chunks
    assert (reader.computes, reader.reads) == (1, 6)
    reader.read_many([(slice(25, 35), slice(30, 34)), (slice(0, 10), slice(0, 5))])
    assert (reader.computes, reader.reads) == (1, 6)  # inside cached chunks


def test_windows_outside_the_array_are_refused():
    from eocube.learn.errors import LearnError

    reader = WindowReader(da.from_array(_array(), chunks=(1, 32, 32)))
    with pytest.raises(LearnError, match="outside"):
        reader.read(slice(60, 75), slice(0, 10))  # would have been padded with garbage


def test_staged_chunks_are_kept_go_to_workers_and_are_read_only():
    a = _array()
    reader = WindowReader(da.from_array(a, chunks=(1, 32, 32)), cache_chunks=2)
    boxes = _boxes(30, seed=3)
    assert reader.stage(boxes) == 9 and reader.computes == 1
    got = reader.read_many(boxes) + [reader.read(ys, xs) for ys, xs in boxes]
    assert reader.computes == 1  # staged: nothing computed again, though the LRU keeps 2 chunks
    for (ys, xs), w in zip(boxes + boxes, got):
        np.testing.assert_array_equal(w, a[:, ys, xs])
    worker = pickle.loads(pickle.dumps(reader))
    assert worker.staged == 9 and len(worker._cache) == 0
    worker.read(slice(0, 70), slice(0, 90))
    assert worker.computes == 1
    view = reader.read(slice(2, 5), slice(2, 5))
    with pytest.raises(ValueError, match="read-only"):
        view[...] = 0  # a window may be a view of a chunk: nobody changes the chunk in place


def test_windows_touching_some_chunks_stage_those_chunks_only():
    a = _array()
    reader = WindowReader(da.from_array(a, chunks=(1, 32, 32)), cache_chunks=2)
    boxes = [b for b in _boxes(40, seed=4) if b[0].stop <= 64] + [(slice(31, 33), slice(63, 65))]
    assert reader.stage(boxes) == 6 and reader.computes == 1  # rows 64.. (the edge chunks) are not read
    got = reader.read_many(boxes)
    assert reader.computes == 1
    for (ys, xs), w in zip(boxes, got):
        np.testing.assert_array_equal(w, a[:, ys, xs])
    np.testing.assert_array_equal(reader.read(slice(60, 70), slice(0, 90)), a[:, 60:70])  # the rest on demand
    assert reader.computes == 2 and reader.staged == 6


def _scene(lazy: bool, seed: int = 0):
    """A 10 m source with uint16 nodata, a 20 m source and labels with nodata; chunks of uneven size."""
    rng = np.random.default_rng(seed)
    n = 96
    raw = rng.integers(1, 5000, size=(1, 3, n, n)).astype("uint16")
    raw[..., 40:44, :] = 0  # nodata rows
    s20 = rng.normal(size=(1, 2, n // 2, n // 2)).astype("float32")
    s20[..., 3:7, 10:20] = np.nan
    lab = rng.choice(np.array([0, 1, 3, 7], "uint8"), size=(1, 1, n, n))

    def cube(arr, bands, res, chunk, **kw):
        data = da.from_array(arr, chunks=(1, 1, chunk, chunk)) if lazy else arr
        y = 5800000.0 - res * (np.arange(arr.shape[-2]) + 0.5)
        x = 500000.0 + res * (np.arange(arr.shape[-1]) + 0.5)
        return make_cube(data, time=["2024-06-01"], band=bands, y=y, x=x, crs="EPSG:32633", **kw)

    return (cube(raw, ["B02", "B03", "B04"], 10, 40, nodata=0), cube(s20, ["B11", "B12"], 20, 20),
            cube(lab, ["label"], 10, 40, nodata=0))


def _dataset(lazy: bool, stage: bool, **kw):
    s10, s20, lab = _scene(lazy)
    ps = PatchSources({"s10": s10, "s20": s20}, target=lab, cache_chunks="auto" if stage else 2)
    windows = np.array([(y, x) for y in range(0, 80, 8) for x in range(0, 80, 8)])
    if stage:
        ps.stage(windows, 16)
    norms = band_statistics(ps, windows, 16)
    w = np.random.default_rng(5).random(len(windows))
    return PatchDataset(ps, windows, 16, norms, target="labels", class_values=[1, 3, 7], length=40,
                        weights=w / w.sum(), augment=True, seed=3, **kw), windows, w / w.sum()


def test_lazy_staged_and_in_memory_datasets_give_the_same_examples():
    mem, _, _ = _dataset(False, False)
    lazy, _, _ = _dataset(True, False)
    staged, _, _ = _dataset(True, True)
    for epoch in (0, 1):
        for ds in (mem, lazy, staged):
            ds.set_epoch(epoch)
        one_by_one = [mem[i] for i in range(len(mem))]
        for ds in (lazy, staged):
            batch = ds.__getitems__(list(range(len(ds))))
            for a, b in zip(one_by_one, batch):
                assert a.keys() == b.keys()
                for k in a:
                    assert torch.equal(a[k], b[k]), k
    assert staged.sources.sources[0].reader.computes == 1  # staged once, nothing computed by the epochs


def test_sampling_is_the_seeded_weighted_draw_of_before():
    ds, windows, p = _dataset(False, False)
    ds.set_epoch(2)
    for i in range(len(ds)):
        y0, x0, _ = ds.window(i)
        k = np.random.default_rng([3, 3, i]).choice(len(windows), p=p)  # what every earlier version drew
        assert (y0, x0) == tuple(windows[k])


def test_normalisation_is_the_normalisers_with_nodata_as_zero():
    ds, _, _ = _dataset(False, False)
    ds.augment = False
    nodata = 0
    for i in range(len(ds)):
        ex = ds[i]
        y0, x0 = ex["corner"].tolist()
        raw, _ = ds.sources.read(y0, x0, 16)
        for j, (s, x) in enumerate(zip(ds.sources.sources, raw)):
            ok = np.isfinite(x)
            want = ds.normalisers[s.name].normalise(np.where(ok, x, 0.0).astype("float32"), band_axis=0)
            np.testing.assert_array_equal(ex[f"x{j}"].numpy(), np.where(ok, want, 0.0).astype("float32"))
            nodata += int((~ok).sum())
    assert nodata > 0  # nodata (uint16 0 of s10, NaN of s20) was among the windows


def _example_as_before(ds, i):
    """Example ``i`` the way every earlier version made it: one window, ``rng.choice``, np.where, np.rot90."""
    rng = np.random.default_rng([ds.seed, ds.epoch + 1, i])
    y0, x0 = (int(v) for v in ds.windows[int(rng.choice(len(ds.windows), p=ds.weights))])
    raw, tgt = ds.sources.read(y0, x0, ds.size)
    xs = []
    for s, x in zip(ds.sources.sources, raw):
        norm = ds.normalisers[s.name].normalise(np.where(np.isfinite(x), x, 0.0).astype("float32"), band_axis=0)
        xs.append(np.where(np.isfinite(x), norm, 0.0).astype("float32"))
    lut = np.full(256, -1, "int64")
    lut[list(ds.class_values)] = np.arange(len(ds.class_values))
    lab = tgt[0]
    ok = (lab >= 0) & (lab < 256)
    out = {f"x{j}": x for j, x in enumerate(xs)}
    out["target"] = np.where(ok, lut[np.where(ok, lab, 0).astype("int64")], -1)
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = {key: np.rot90(v, k, axes=(-2, -1)) for key, v in out.items()}
    out = {key: v[..., ::-1] if flip else v for key, v in out.items()}
    out["corner"] = np.array([y0, x0])
    return out


def test_examples_are_those_of_before_for_the_same_seed():
    ds, _, _ = _dataset(True, True)
    for epoch in (0, 3):
        ds.set_epoch(epoch)
        got = ds.__getitems__(list(range(len(ds))))
        for i, ex in enumerate(got):
            want = _example_as_before(ds, i)
            assert ex.keys() == want.keys()
            for key, v in want.items():
                assert ex[key].dtype == torch.from_numpy(np.ascontiguousarray(v)).dtype, key
                np.testing.assert_array_equal(ex[key].numpy(), v, err_msg=key)


def test_dataset_refuses_bad_weights():
    from eocube.learn.errors import LearnError

    ds, windows, _ = _dataset(False, False)
    with pytest.raises(LearnError, match="weight"):
        PatchDataset(ds.sources, windows, 16, ds.normalisers, length=4, weights=np.full(len(windows), np.nan))


def test_stage_says_what_it_chose():
    s10, s20, lab = _scene(True)
    windows = np.array([(0, 0), (48, 48)])
    ps = PatchSources({"s10": s10, "s20": s20}, target=lab)
    assert ps.stage(windows, 16, budget=100).startswith("not staged (")
    assert all(s.reader.staged == 0 for s in ps.sources)
    msg = ps.stage(windows, 16)
    assert msg.startswith("staged ") and all(s.reader.staged > 0 for s in ps.sources) and ps.target.staged == 2
    few = PatchSources({"s10": s10}, cache_chunks=1)  # a chunk count given by the user bounds staging too
    assert "data.cache_chunks" in few.stage(windows, 16) and few.sources[0].reader.staged == 0
    mem = PatchSources({"s10": _scene(False)[0]})
    assert mem.stage(windows, 16).startswith("nothing to stage")


def test_config_takes_auto_or_a_chunk_count():
    assert load_config(task="segmentation").data["cache_chunks"] == "auto"
    assert load_config(task="segmentation", overrides={"data": {"cache_chunks": 4}}).data["cache_chunks"] == 4
    with pytest.raises(Exception, match="cache_chunks"):
        load_config(task="segmentation", overrides={"data": {"cache_chunks": "many"}})


def test_a_task_stages_its_windows_before_training_and_epochs_compute_nothing(synth, caplog):
    import logging

    from eocube.learn.tasks import make_task

    s10, s20, lab, _ = synth.scene(192)  # lazy, chunks of 32 px
    cfg = load_config(task="segmentation", overrides={
        "split": {"block_size": 64}, "sampler": {"patch_size": 16}, "network": {"hidden": 8, "depth": 2},
        "train": {"steps_per_epoch": 4, "batch_size": 4}})
    task = make_task(cfg)
    with caplog.at_level(logging.INFO, logger="eocube.learn.sources"):
        task.build({"s10": s10, "s20": s20}, lab, 1)
    assert task.staging.startswith("staged ") and task.staging in caplog.text  # said on the terminal
    readers = [s.reader for s in task.ps.sources] + [task.ps.target]
    before = [r.computes for r in readers]
    from torch.utils.data import DataLoader

    for epoch in (0, 1):
        task.train.set_epoch(epoch)
        for _ in DataLoader(task.train, batch_size=4):
            pass
    for _ in DataLoader(task.val, batch_size=4):
        pass
    assert [r.computes for r in readers] == before
