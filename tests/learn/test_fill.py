"""Filling whole cubes with a checkpoint, and the held-out evaluation protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eocube.datasets import sentinel2_sample
from eocube.learn.checkpoint import load_checkpoint, save_checkpoint
from eocube.learn.config import load_config
from eocube.learn.fill import fill_cube, predict_window
from eocube.learn.holdout import evaluate_holdout, linear_reference, make_holdout_case
from eocube.learn.network import GapFillNet, NetworkConfig
from eocube.learn.normalisation import Normaliser


def _untrained_checkpoint(path, config):
    net = GapFillNet(NetworkConfig(n_bands=1, **config.network))
    return save_checkpoint(path, model=net, normaliser=Normaliser(("NDVI",), (0.6,), (0.2,)),
                           config=config.to_dict(), epoch=0)


def test_fill_cube_keeps_clear_values_and_fills_gaps(tmp_path, sample, tiny_config):
    path = _untrained_checkpoint(tmp_path / "m.pt", tiny_config)
    filled = fill_cube(sentinel2_sample(), path, tile=40, engine="loop")
    assert filled.dims == ("time", "band", "y", "x") and list(filled.band.values) == ["NDVI"]
    assert filled.rio.crs == sample.rio.crs
    np.testing.assert_array_equal(filled.x.values, sample.x.values)
    nd = sample.sel(band=["NDVI"]).values
    clear = (sample.sel(band="CLM").values == 0) & (sample.sel(band="IS_DATA").values == 1)
    out = filled.values
    np.testing.assert_array_equal(out[:, 0][clear], nd[:, 0][clear])
    assert np.isfinite(out).all()
    # an untrained network is linear interpolation: the whole pipeline must agree with np.interp
    days = (sample.time.values - np.datetime64("1970-01-01")) / np.timedelta64(1, "D")
    np.testing.assert_allclose(out, linear_reference(nd, clear, days), atol=1e-5)


def test_holdout_protocol_never_overlaps_training_and_compares_like_with_like(tmp_path, sample):
    cfg = load_config()
    boxes = {n: cfg.region(n).slices(101, 100) for n in ("train", "val", "test")}
    masks = {}
    for name, (ys, xs) in boxes.items():
        m = np.zeros((101, 100), bool)
        m[ys, xs] = True
        masks[name] = m
    assert not (masks["test"] & (masks["train"] | masks["val"])).any()
    assert not (masks["train"] & masks["val"]).any()

    case = make_holdout_case(sample, cfg, seed=0)
    assert case.target.sum() > 1000
    assert not (case.hide & ~case.clear & case.target[:, 0]).any()
    assert not (case.visible & case.hide).any()
    path = _untrained_checkpoint(tmp_path / "m.pt", load_config(overrides={"network": {"hidden": 4, "depth": 1}}))
    scores = evaluate_holdout(sample, load_checkpoint(path), seeds=(0,))
    assert scores["model"] == pytest.approx(scores["linear (numpy)"], rel=1e-5)
    if "fill.linear" in scores:  # the classical package, when present, agrees with the reference
        assert scores["fill.linear"] == pytest.approx(scores["linear (numpy)"], rel=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CPU-only machine)")
def test_gpu_prediction_matches_cpu(sample):
    net = GapFillNet(NetworkConfig(n_bands=1, hidden=8, depth=2, kernel_t=3)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    norm = Normaliser(("NDVI",), (0.6,), (0.2,))
    values = sample.sel(band=["NDVI"]).values[:, :, :32, :32]
    clear = sample.sel(band="CLM").values[:, :32, :32] == 0
    days = np.arange(68, dtype="float64") * 12 + 16600
    cpu = predict_window(net, norm, values, clear, days)
    gpu = predict_window(net.cuda(), norm, values, clear, days, device="cuda")
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)


def test_engine_and_loop_give_the_same_filled_cube(tmp_path, sample, tiny_config):
    pytest.importorskip("eocube.models", reason="the model engine (eocube.models) is not in this build")
    net = GapFillNet(NetworkConfig(n_bands=1, **tiny_config.network))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = save_checkpoint(tmp_path / "m.pt", model=net, normaliser=Normaliser(("NDVI",), (0.6,), (0.2,)),
                           config=tiny_config.to_dict(), epoch=1)
    lazy = fill_cube(sentinel2_sample(), path, tile=32, engine="apply_model")
    assert lazy.chunks is not None  # a dask graph, nothing computed yet
    loop = fill_cube(sample, path, engine="loop")
    # the engine passes days as float32 (about 3 minutes of resolution): 1e-4 NDVI at most
    np.testing.assert_allclose(lazy.values, loop.values, atol=1e-4)
    assert list(lazy.band.values) == ["NDVI"] and lazy.rio.crs == sample.rio.crs
