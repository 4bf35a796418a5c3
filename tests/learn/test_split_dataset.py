"""The patch dataset: block split with buffer, lazy chunk reads, training-only statistics, class balance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eocube.learn.errors import LearnError
from eocube.learn.patches import (
    PatchDataset,
    PatchSources,
    WindowReader,
    band_statistics,
    class_balance_weights,
    label_histograms,
)
from eocube.learn.split import BlockSplit


def _grow(y0, x0, size, m):
    return (y0 - m, y0 + size + m, x0 - m, x0 + size + m)


def _intersects(a, b):
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


@pytest.mark.parametrize("seed", range(5))
def test_no_training_window_with_its_halo_comes_within_the_buffer_of_a_test_block(seed):
    halo, buffer, size = 5, 7, 16
    split = BlockSplit.make((300, 260), block_size=48, buffer=buffer, seed=seed)
    train = split.windows("train", size, halo=halo, stride=4)
    assert len(train) > 0
    for part in ("test", "val"):
        blocks = [(ys.start - buffer, ys.stop + buffer, xs.start - buffer, xs.stop + buffer) for ys, xs in split.blocks(part)]
        assert blocks
        for y0, x0 in train:
            assert not any(_intersects(_grow(y0, x0, size, halo), b) for b in blocks)
    # the same holds pixel by pixel: no test pixel within halo + buffer of any training window
    code = split.mask()
    seen = np.zeros(code.shape, bool)
    m = halo + buffer
    for y0, x0 in train:
        seen[max(0, y0 - m):y0 + size + m, max(0, x0 - m):x0 + size + m] = True
    assert not (seen & (code == 2)).any() and not (seen & (code == 1)).any()
    # and the test windows keep the same distance from the training blocks
    test = split.windows("test", size, halo=halo)
    tb = [(ys.start - buffer, ys.stop + buffer, xs.start - buffer, xs.stop + buffer) for ys, xs in split.blocks("train")]
    assert all(not any(_intersects(_grow(y, x, size, halo), b) for b in tb) for y, x in test)


def test_split_fractions_and_round_trip():
    split = BlockSplit.make((640, 640), block_size=64, fractions=(0.6, 0.2, 0.2), seed=3)
    counts = np.bincount(split.assignment.ravel(), minlength=3)
    assert counts.tolist() == [60, 20, 20]
    again = BlockSplit.from_dict(split.to_dict())
    assert np.array_equal(again.assignment, split.assignment) and again.shape == split.shape
    with pytest.raises(LearnError, match="block_size"):
        BlockSplit.make((64, 64), block_size=64)


def test_window_reader_computes_only_the_chunks_a_window_touches(synth):
    s10, *_ = synth.scene(128, chunks=32)
    arr = s10.isel(time=0).transpose("band", "y", "x")
    reader = WindowReader(arr, cache_chunks=4)
    full = arr.values
    w = reader.read(slice(30, 50), slice(60, 70))  # rows 30..49 -> chunks 0, 1; cols 60..69 -> chunks 1, 2
    np.testing.assert_array_equal(w, full[:, 30:50, 60:70])
    assert reader.reads == 4
    reader.read(slice(33, 40), slice(64, 66))  # inside cached chunks: nothing computed
    assert reader.reads == 4
    reader.read(slice(100, 110), slice(100, 110))
    assert reader.reads == 5 and len(reader._cache) == 4  # LRU bound
    import pickle

    assert len(pickle.loads(pickle.dumps(reader))._cache) == 0  # a worker starts with an empty cache


def test_nested_sources_are_read_in_their_own_pixels(synth):
    s10, s20, lab, _ = synth.scene(128)
    ps = PatchSources({"s10": s10, "s20": s20}, target=lab)
    assert ps.reference == "s10" and ps.multiple == 2 and ps.shape == (128, 128)
    xs, t = ps.read(32, 64, 16)
    np.testing.assert_array_equal(xs[0], s10.isel(time=0).values[:, 32:48, 64:80])
    np.testing.assert_array_equal(xs[1], s20.isel(time=0).values[:, 16:24, 32:40])
    np.testing.assert_array_equal(t, lab.isel(time=0).values[:, 32:48, 64:80])


def test_normalisation_uses_training_blocks_only(synth):
    s10, s20, lab, _ = synth.scene(192)
    split = BlockSplit.make((192, 192), block_size=64, buffer=4, seed=0)
    windows = split.windows("train", 16, halo=4, multiple=2)
    stats = band_statistics(PatchSources({"s10": s10, "s20": s20}), windows, 16, max_windows=10_000)
    # wreck every pixel outside the training blocks (test, val, and the buffers): nothing changes
    keep = split.mask() == 0
    wild10 = s10.copy(data=np.where(keep, s10.values, 1e6))
    keep20 = keep[::2, ::2] & keep[1::2, 1::2]
    wild20 = s20.copy(data=np.where(keep20, s20.values, -1e6))
    again = band_statistics(PatchSources({"s10": wild10, "s20": wild20}), windows, 16, max_windows=10_000)
    assert again == stats
    # while the statistics of the whole image differ
    whole = BlockSplit.make((192, 192), block_size=64, fractions=(1, 0, 0)).windows("train", 16, multiple=2)
    assert band_statistics(PatchSources({"s10": s10, "s20": s20}), whole, 16)["s10"] != stats["s10"]
    v = s10.isel(time=0).values
    count = np.zeros(v.shape[1:])
    for y, x in windows:  # every pixel of every training window (overlaps counted as often as read)
        count[y:y + 16, x:x + 16] += 1
    assert not (count > 0)[~keep].any()
    assert stats["s10"].mean[0] == pytest.approx(float((v[0] * count).sum() / count.sum()), rel=1e-5)


def test_class_balanced_sampling_draws_rare_classes_more_often(synth):
    s10, _, lab, _ = synth.scene(192)
    ps = PatchSources({"s10": s10}, target=lab)
    windows = BlockSplit.make((192, 192), block_size=64, fractions=(1, 0, 0)).windows("train", 16, stride=8)
    hist = label_histograms(ps, windows, 16, synth.CLASS_VALUES)
    weights, freq = class_balance_weights(hist)
    assert freq.sum() == pytest.approx(1.0) and weights.sum() == pytest.approx(1.0)
    plain = (hist / hist.sum()).sum(0)
    balanced = (weights[:, None] * hist / np.maximum(hist.sum(1, keepdims=True), 1)).sum(0)
    assert balanced.min() / balanced.max() > plain.min() / plain.max()
    norms = band_statistics(ps, windows, 16)
    ds = PatchDataset(ps, windows, 16, norms, target="labels", class_values=synth.CLASS_VALUES, length=8, weights=weights,
                      augment=True, seed=1)
    ex = ds[3]
    assert ex["x0"].shape == (4, 16, 16) and ex["target"].dtype == torch.int64
    assert set(ex["target"].unique().tolist()) <= {-1, 0, 1, 2}
    assert torch.equal(ds[3]["x0"], ex["x0"])  # (seed, epoch, index) decide the example
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["x0"], ex["x0"])


def test_input_and_target_nodata_are_not_read_as_values(synth):
    """An input's ``rio.nodata`` is NaN (filled with 0 after scaling, as apply_model does); a values target's is invalid."""
    from eocube.cube import make_cube

    s10, s20, _, fine20 = synth.scene(64, chunks=None)
    raw = np.clip(np.round(s10.values * 10000), 1, 60000).astype("uint16")
    raw[..., :8, :] = 0  # nodata rows
    ints = make_cube(raw, time=s10.time.values, band=list(s10.band.values), y=s10.y.values, x=s10.x.values,
                     crs=s10.rio.crs, nodata=0)
    tgt = make_cube(np.where(np.arange(64)[:, None] < 8, -9999.0, fine20)[None].astype("float32"),
                    time=s10.time.values, band=["B11", "B12"], y=s10.y.values, x=s10.x.values, crs=s10.rio.crs,
                    nodata=-9999.0)
    ps = PatchSources({"s10": ints, "s20": s20}, target=tgt)
    windows = np.array([[0, 0], [0, 32], [32, 0], [32, 32]])
    stats = band_statistics(ps, windows, 32)["s10"]
    valid = raw[0, :, 8:, :].reshape(4, -1).astype("float64")
    np.testing.assert_allclose(stats.mean, valid.mean(1), rtol=1e-6)
    ex = PatchDataset(ps, windows, 32, {"s10": stats, "s20": band_statistics(ps, windows, 32)["s20"]},
                      target="values", target_normaliser=band_statistics(ps, windows, 32)["s20"])[0]
    assert (ex["x0"][:, :8] == 0).all() and (ex["x0"][:, 8:] != 0).any()
    assert not ex["target_valid"][:, :8].any() and ex["target_valid"][:, 8:].all()
