"""The ``gaps`` target of the patch dataset: real cloud masks hide clear observations, in the block split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from eocube.datasets import sentinel2_sample
from eocube.learn.config import load_config
from eocube.learn.errors import LearnError
from eocube.learn.gaps import MaskBank
from eocube.learn.tasks import make_task

from .conftest import TINY


def _numpy_clear(cube):
    nd, clm, isd = (cube.sel(band=b).values for b in ("NDVI", "CLM", "IS_DATA"))
    return (clm == 0) & (isd == 1) & np.isfinite(nd)


def _task(source, **sections):
    over = {k: {**TINY.get(k, {}), **v} for k, v in sections.items()}
    task = make_task(load_config(overrides={**TINY, **over}))
    task.build(source, None, 1)
    return task


def test_gap_examples_come_from_the_training_blocks_with_their_clear_mask(sample):
    task = _task(sentinel2_sample(), sampler={"min_clear_fraction": 0.5, "halo": "inside"})  # lazy: only windows read
    clear = _numpy_clear(sample)
    code = task.split.mask()
    size, halo = task.size, task.window_halo  # sampler.halo: inside keeps the halo in the block; the buffer is 0
    for ds, part in ((task.train, 0), (task.val, 1)):
        for i in range(min(len(ds), 6)):
            ex = ds[i]
            y0, x0 = (int(v) for v in ex["corner"])
            ys, xs = slice(y0, y0 + size), slice(x0, x0 + size)
            assert (code[max(0, y0 - halo):y0 + size + halo, max(0, x0 - halo):x0 + size + halo] == part).all()
            assert clear[:, ys, xs].mean() >= 0.5  # sampler.min_clear_fraction
            ok = clear[:, None, ys, xs]
            np.testing.assert_array_equal((ex["valid"] | ex["target_mask"]).numpy(), ok)  # clear = visible + hidden
            assert not (ex["valid"] & ex["target_mask"]).any()
            norm = (sample.sel(band=["NDVI"]).values[:, :, ys, xs] - task.normaliser.mean[0]) / task.normaliser.std[0]
            np.testing.assert_allclose(ex["values"].numpy()[ok], norm[ok], rtol=1e-5, atol=1e-6)
            assert ex["values"].shape == (68, 1, size, size) and ex["days"].shape == (68,)
    assert task.train[2]["target_mask"].any()
    assert torch.equal(task.train[2]["target_mask"], task.train[2]["target_mask"])  # same index, same example
    first = task.train[2]["target_mask"]
    task.train.set_epoch(1)
    assert not torch.equal(task.train[2]["target_mask"], first)  # a new epoch draws anew
    batch = next(iter(DataLoader(task.val, batch_size=2)))
    assert batch["values"].shape[:3] == (2, 68, 1) and batch["days"].dtype == torch.float64


def test_cloud_masks_come_from_the_training_blocks_only(sample):
    task = _task(sample)
    bank = task.train.gaps.bank
    cloud = sample.sel(band="CLM").values > 0
    blocks = task.split.blocks("train")
    h, w = bank.masks.shape[1:]
    allowed = {cloud[t, ys.start:ys.start + h, xs.start:xs.start + w].tobytes() for ys, xs in blocks for t in range(68)}
    assert all(m.tobytes() in allowed for m in bank.masks)
    test = [cloud[t, ys.start:ys.start + h, xs.start:xs.start + w].tobytes() for ys, xs in task.split.blocks("test")
            for t in range(68)]
    assert not any(m.tobytes() in set(test) - allowed for m in bank.masks)


def test_a_threshold_too_high_says_what_to_do(sample):
    with pytest.raises(LearnError, match="lower sampler.min_clear_fraction"):
        _task(sample, sampler={"min_clear_fraction": 0.999})


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
