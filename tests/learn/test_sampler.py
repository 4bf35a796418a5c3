"""Patch sampler, clear mask, real-cloud gaps and the Dataset, on the real Sentinel-2 sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from eocube.cube import select_bands
from eocube.datasets import sentinel2_sample
from eocube.learn.errors import LearnError
from eocube.learn.gaps import MaskBank, clear_mask
from eocube.learn.normalisation import Normaliser
from eocube.learn.sampler import GapDataset, PatchSampler


def _numpy_clear(cube):
    nd, clm, isd = (cube.sel(band=b).values for b in ("NDVI", "CLM", "IS_DATA"))
    return (clm == 0) & (isd == 1) & np.isfinite(nd)


def test_clear_mask_is_lazy_and_right(sample):
    lazy = clear_mask(sentinel2_sample())
    assert lazy.chunks is not None  # nothing computed yet
    np.testing.assert_array_equal(lazy.values, _numpy_clear(sample))


@pytest.mark.parametrize("in_memory", [False, True])
def test_windows_stay_inside_box_and_respect_threshold(sample, in_memory):
    cube = sentinel2_sample()  # lazy: the sampler reads windows only
    values = select_bands(cube, ["NDVI"])
    box = (slice(10, 90), slice(5, 60))
    s = PatchSampler(values, clear_mask(cube), box, patch_size=16, time_size=30, min_clear_fraction=0.5,
                     in_memory=in_memory)
    clear = _numpy_clear(sample)
    rng = np.random.default_rng(0)
    for _ in range(60 if in_memory else 15):
        w = s.draw(rng)
        assert 10 <= w.y.start and w.y.stop <= 90 and 5 <= w.x.start and w.x.stop <= 60
        assert 0 <= w.time.start and w.time.stop <= sample.sizes["time"]
        assert (w.y.stop - w.y.start, w.x.stop - w.x.start, w.time.stop - w.time.start) == (16, 16, 30)
        assert clear[w.time, w.y, w.x].mean() >= 0.5
        v, c = s.read(w)
        np.testing.assert_array_equal(v, sample.sel(band=["NDVI"]).values[w.time, :, w.y, w.x])
        np.testing.assert_array_equal(c, clear[w.time, w.y, w.x])


def test_threshold_too_high_says_what_to_do(sample):
    s = PatchSampler(select_bands(sample, ["NDVI"]), clear_mask(sample), (slice(0, 101), slice(0, 100)),
                     patch_size=16, min_clear_fraction=0.99, max_tries=20)
    with pytest.raises(LearnError, match="lower sampler.min_clear_fraction"):
        s.draw(np.random.default_rng(0))
    with pytest.raises(LearnError, match="patch_size"):
        PatchSampler(select_bands(sample, ["NDVI"]), clear_mask(sample), (slice(0, 10), slice(0, 100)), patch_size=16)


def test_mask_bank_uses_real_cloud_masks(sample):
    cloud = sample.sel(band="CLM").values
    bank = MaskBank.from_cloud_band(cloud, min_fraction=0.02)
    frac = (cloud > 0).mean(axis=(1, 2))
    assert len(bank.masks) == int((frac >= 0.02).sum())
    rng = np.random.default_rng(0)
    assert not bank.sample(30, 16, 16, rng, p_date=0.0).any()
    hide = bank.sample(200, 16, 16, rng, p_date=0.4)
    hidden_dates = hide.any(axis=(1, 2)).mean()
    assert 0.15 < hidden_dates < 0.45  # fully clear crops of partly cloudy masks hide nothing
    # every hidden pattern is a crop of a real mask under a flip / transpose
    small = MaskBank(bank.masks[:, :20, :20])
    pats = small.sample(10, 6, 6, np.random.default_rng(1), p_date=1.0)
    variants = [m2 for m in small.masks for m1 in (m, m.T) for m2 in (m1, m1[::-1], m1[:, ::-1], m1[::-1, ::-1])]
    for p in pats:
        assert any((v[y:y + 6, x:x + 6] == p).all() for v in variants for y in range(15) for x in range(15))
    with pytest.raises(LearnError, match="smaller patch_size"):
        small.sample(3, 30, 30, rng, 1.0)


def test_dataset_examples_hide_clear_observations_reproducibly(sample):
    values = select_bands(sample, ["NDVI"])
    clear = clear_mask(sample)
    s = PatchSampler(values, clear, (slice(0, 101), slice(0, 100)), patch_size=12)
    bank = MaskBank.from_cloud_band(sample.sel(band="CLM").values)
    norm = Normaliser.from_cube(values, clear)
    ds = GapDataset(s, bank, norm, length=6, p_date=0.35, seed=3)
    ex = ds[2]
    assert ex["values"].shape == (68, 1, 12, 12) and ex["days"].shape == (68,)
    assert ex["target_mask"].any()
    assert not (ex["valid"] & ex["target_mask"]).any()
    assert torch.isfinite(ex["values"]).all()
    assert torch.equal(ds[2]["target_mask"], ex["target_mask"])  # same index, same example
    ds.set_epoch(1)
    assert not torch.equal(ds[2]["target_mask"], ex["target_mask"])  # a new epoch draws anew
    # a DataLoader with a worker process delivers the same examples
    ds.set_epoch(0)
    batches = list(DataLoader(ds, batch_size=3, num_workers=1))
    assert len(batches) == 2
    assert torch.equal(batches[0]["target_mask"][2], ex["target_mask"])
