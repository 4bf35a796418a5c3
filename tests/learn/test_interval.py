"""Per-pixel intervals of learned gap fills: pinball loss, conformal calibration, export, fill_cube, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import eocube
from eocube.datasets import sentinel2_sample
from eocube.evaluate import interval_scores, split_bounds
from eocube.evaluate.protocol import EvaluateError
from eocube.learn import fill_cube
from eocube.learn.checkpoint import save_checkpoint
from eocube.learn.config import load_config
from eocube.learn.errors import CheckpointError, LearnError
from eocube.learn.export import GapFillIntervalModule, export_run
from eocube.learn.interval import (
    calibration,
    conformal_offset,
    conformity_scores,
    difficulty,
    interval_difficulty,
    normalised_scores,
    pinball_loss,
)
from eocube.learn.networks import GapFillNet, build_network, temporal_linear_fill
from eocube.learn.normalisation import Normaliser
from eocube.masks import clear_from_cloud_band

pytest.importorskip("eocube.models", reason="the model engine (eocube.models) is not in this build")

NET = {"hidden": 4, "depth": 1, "kernel_t": 3}


def test_the_pinball_loss_charges_tau_below_and_one_minus_tau_above():
    y = torch.zeros(2, 3)
    mask = torch.ones(2, 3, dtype=torch.bool)
    low = pinball_loss(torch.full((2, 3), -1.0), y, mask, 0.9)  # prediction 1 below the truth
    high = pinball_loss(torch.full((2, 3), 1.0), y, mask, 0.9)  # 1 above
    assert low.shape == () and low.item() == pytest.approx(0.9) and high.item() == pytest.approx(0.1)
    masked = torch.zeros(2, 3, dtype=torch.bool)
    masked[0, 0] = True
    pred = torch.full((2, 3), -1.0)
    pred[1] = 100.0  # unmasked entries do not count
    assert pinball_loss(pred, y, masked, 0.9).item() == pytest.approx(0.9)


def test_the_pinball_loss_is_minimised_at_the_quantile():
    y = torch.from_numpy(np.random.default_rng(0).normal(size=4000)).float()
    q = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([q], lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        pinball_loss(q.expand_as(y), y, torch.ones_like(y, dtype=torch.bool), 0.9).backward()
        opt.step()
    assert q.item() == pytest.approx(float(np.quantile(y.numpy(), 0.9)), abs=0.05)


@pytest.mark.parametrize("half_width", [0.3, 2.5])
def test_the_conformal_offset_gives_the_nominal_coverage_on_exchangeable_data(half_width):
    rng = np.random.default_rng(1)
    centre = rng.normal(size=22000)
    y = centre + rng.normal(scale=1.0 + 0.5 * np.abs(centre))  # heteroscedastic noise
    lo, hi = centre - half_width, centre + half_width  # too narrow (0.3) or too wide (2.5) before calibration
    cal, new = slice(0, 2000), slice(2000, None)
    q = conformal_offset(conformity_scores(lo[cal], hi[cal], y[cal]), 0.8)
    assert (q > 0) == (half_width == 0.3)  # widened, or narrowed
    inside = (lo[new] - q <= y[new]) & (y[new] <= hi[new] + q)
    assert inside.mean() == pytest.approx(0.8, abs=0.02)


def _heteroscedastic(n: int, seed: int = 3):
    """Truth around a fill whose error grows where the fill leaves linear interpolation, as in gap filling."""
    rng = np.random.default_rng(seed)
    fill = rng.normal(size=n)
    linear = fill + rng.choice([0.0, 2.0], size=n) * rng.normal(size=n)  # half the values: the network moved far
    noise_scale = 0.5 * (np.abs(fill - linear) + 0.25)  # proportional to the difficulty
    y = fill + rng.normal(size=n) * noise_scale
    lo, hi = fill - 0.25, fill + 0.25  # a head whose width does not see the difficulty
    return fill, linear, lo, hi, y


def test_the_normalised_calibration_covers_hard_and_easy_values_alike():
    fill, linear, lo, hi, y = _heteroscedastic(40000)
    t = [torch.from_numpy(a) for a in (fill, lo, hi, linear)]
    scale = difficulty(*t).numpy()
    np.testing.assert_allclose(scale, np.abs(fill - linear) + 0.25)
    cal, new = slice(0, 8000), slice(8000, None)
    c = calibration(lo[cal, None], hi[cal, None], y[cal, None], (0.1, 0.9), np.array([2.0]),
                    fill=fill[cal, None], scale=scale[cal, None])
    assert c["calibration"] == "normalised" and "offset" not in c and c["n"] == [8000]
    assert c["cqr_offset"] == [pytest.approx(calibration(lo[cal, None], hi[cal, None], y[cal, None], (0.1, 0.9),
                                                         np.array([2.0]))["offset"][0])]
    q = c["scale"][0]
    assert q == pytest.approx(conformal_offset(normalised_scores(fill[cal], scale[cal], y[cal]), 0.8))
    inside = np.abs(y[new] - fill[new]) <= q * scale[new]
    hard = np.abs(fill[new] - linear[new]) > 0.5
    assert inside.mean() == pytest.approx(0.8, abs=0.02)
    assert inside[hard].mean() == pytest.approx(0.8, abs=0.05) and inside[~hard].mean() == pytest.approx(0.8, abs=0.05)
    # the head's interval moved by one offset (CQR) reaches 80 % overall but not where the fill left the line
    cqr = calibration(lo[cal, None], hi[cal, None], y[cal, None], (0.1, 0.9), np.array([2.0]))
    off = cqr["offset"][0]
    assert cqr["calibration"] == "cqr" and cqr["offset_units"] == [pytest.approx(2 * off)]
    cqr_inside = (lo[new] - off <= y[new]) & (y[new] <= hi[new] + off)
    assert cqr_inside.mean() == pytest.approx(0.8, abs=0.02) and cqr_inside[hard].mean() < 0.7


def test_the_difficulty_of_a_network_output_uses_linear_interpolation_of_its_inputs():
    values, valid, days = _inputs(4)
    net = _perturbed(quantiles=(0.1, 0.9))
    with torch.no_grad():
        fill, lower, upper = net(values, valid, days, with_interval=True)
    linear, _ = temporal_linear_fill(torch.where(valid, values, torch.zeros_like(values)), valid, days)
    expected = (fill - linear).abs() + (upper - lower) / 2
    torch.testing.assert_close(interval_difficulty(values, valid, days, fill, lower, upper), expected)
    noisy = torch.where(valid, values, torch.full_like(values, 1e6))  # hidden values never enter the difficulty
    torch.testing.assert_close(interval_difficulty(noisy, valid, days, fill, lower, upper), expected)


def test_the_exported_normalised_interval_is_the_fill_plus_minus_scale_times_difficulty():
    values, valid, days = _inputs(5)
    norm = Normaliser(("NDVI",), (0.5,), (0.2,))
    x = values * 0.2 + 0.5
    net = _perturbed(quantiles=(0.1, 0.9))
    out = GapFillIntervalModule(net, norm, {"calibration": "normalised", "scale": [1.7]}).eval()(x, valid, days)
    with torch.no_grad():
        fill, lower, upper = net(values, valid, days, with_interval=True)
        half = 1.7 * interval_difficulty(values, valid, days, fill, lower, upper) * 0.2
    hidden = ~valid
    torch.testing.assert_close(out[:, :, 1:2][hidden], (fill * 0.2 + 0.5 - half)[hidden], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, :, 2:3][hidden], (fill * 0.2 + 0.5 + half)[hidden], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, :, 1:2][valid], x[valid])


def test_too_few_calibration_observations_are_refused():
    with pytest.raises(LearnError, match="cannot calibrate a 90% interval"):
        conformal_offset(np.array([0.1, 0.2, np.nan]), 0.9)


def test_quantiles_must_straddle_the_median():
    with pytest.raises(LearnError, match="lo < 0.5 < hi"):
        GapFillNet(quantiles=(0.6, 0.9))
    with pytest.raises(LearnError, match="network.quantiles"):
        load_config(overrides={"network": {"quantiles": [0.9, 0.1]}})


def _inputs(seed: int = 0, t: int = 7, size: int = 10):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(2, t, 1, size, size, generator=g)
    valid = torch.rand(2, t, 1, size, size, generator=g) > 0.4
    days = (torch.arange(t, dtype=torch.float64) * 12 + 19000)[None].repeat(2, 1)
    return values, valid, days


def _perturbed(**kw) -> GapFillNet:
    torch.manual_seed(0)
    net = GapFillNet(n_bands=1, **NET, **kw)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net.eval()


def test_the_interval_head_brackets_the_fill_and_leaves_it_unchanged():
    values, valid, days = _inputs()
    net = _perturbed(quantiles=(0.1, 0.9))
    fill, lower, upper = net(values, valid, days, with_interval=True)
    assert fill.shape == lower.shape == upper.shape == values.shape
    assert (lower <= fill).all() and (fill <= upper).all() and (upper > lower).all()
    torch.testing.assert_close(fill, net(values, valid, days))
    plain = GapFillNet(n_bands=1, **NET)
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("interval_head")})
    torch.testing.assert_close(plain.eval()(values, valid, days), fill)  # the same trunk gives the same fill
    with pytest.raises(LearnError, match="no interval head"):
        plain(values, valid, days, with_interval=True)


def test_a_network_config_without_quantiles_rebuilds_as_before():
    config = dict(GapFillNet(n_bands=1, **NET).config)
    assert "quantiles" not in config  # what earlier eocube versions stored
    net = build_network(config)
    assert net.quantiles is None and not hasattr(net, "interval_head")


@pytest.mark.parametrize("offset", [-5.0, 0.0, 0.7])
def test_calibrated_bounds_keep_lower_le_fill_le_upper_and_the_observed_value(offset):
    values, valid, days = _inputs(1)
    norm = Normaliser(("NDVI",), (0.5,), (0.2,))
    x = values * 0.2 + 0.5
    out = GapFillIntervalModule(_perturbed(quantiles=(0.1, 0.9)), norm, [offset]).eval()(x, valid, days)
    fill, lower, upper = out[:, :, 0:1], out[:, :, 1:2], out[:, :, 2:3]
    assert (lower <= fill + 1e-6).all() and (fill <= upper + 1e-6).all()
    torch.testing.assert_close(lower[valid], x[valid])
    torch.testing.assert_close(upper[valid], x[valid])
    if offset == -5.0:  # narrowed past the fill: a zero-width interval at the fill, never crossed
        torch.testing.assert_close(lower[~valid], fill[~valid])


def _calibrated_run(folder, quantiles=(0.1, 0.9)):
    """A checkpoint with an interval head and a CQR calibration from a synthetic validation set, exported."""
    config = load_config(overrides={"network": {**NET, "quantiles": list(quantiles) if quantiles else None}})
    net = _perturbed(quantiles=quantiles)
    norm = Normaliser(("NDVI",), (0.6,), (0.2,))
    meta = {"normaliser": norm.to_dict()}
    if quantiles:
        values, valid, days = _inputs(2)
        with torch.no_grad():
            _, lo, hi = net(values, valid, days, with_interval=True)
        hidden = ~valid
        meta["interval"] = calibration(lo[hidden].numpy()[:, None], hi[hidden].numpy()[:, None],
                                       values[hidden].numpy()[:, None].astype("float64"), quantiles, norm.std)
    save_checkpoint(folder / "best.pt", model=net, meta=meta, task="gapfill", config=config.to_dict(), epoch=1)
    export_run(folder)
    return folder


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    return _calibrated_run(tmp_path_factory.mktemp("calibrated"))


def test_fill_cube_with_uncertainty_adds_bounds_nan_where_observed(calibrated, sample):
    card = json.loads((calibrated / "model_interval.json").read_text())
    assert card["properties"]["eocube:interval"]["coverage"] == 0.8
    sub = sentinel2_sample().isel(y=slice(0, 30), x=slice(0, 30))
    clear = clear_from_cloud_band(sub, "CLM", data_band="IS_DATA")
    plain = fill_cube(sub, calibrated, clear, tile_size=16)
    filled = fill_cube(sub, calibrated, clear, uncertainty=True, tile_size=16)
    assert filled.chunks is not None  # still lazy
    assert list(filled.band.values) == ["NDVI", "NDVI_lower", "NDVI_upper"] and list(plain.band.values) == ["NDVI"]
    assert "80%" in filled.attrs["eocube_interval"]
    fill, lower, upper = (a.values[:, 0] for a in split_bounds(filled.compute()))
    np.testing.assert_allclose(fill, plain.values[:, 0], atol=1e-6)  # the fill is the same
    ok = clear.values
    assert np.isnan(lower[ok]).all() and np.isnan(upper[ok]).all()
    assert np.isfinite(lower[~ok]).all() and (lower[~ok] <= fill[~ok]).all() and (fill[~ok] <= upper[~ok]).all()


def test_an_old_model_without_an_interval_still_applies_and_refuses_bounds(tmp_path, sample):
    run = _calibrated_run(tmp_path, quantiles=None)
    assert not (run / "model_interval.pt2").exists()
    sub = sentinel2_sample().isel(y=slice(0, 20), x=slice(0, 20))
    clear = clear_from_cloud_band(sub, "CLM", data_band="IS_DATA")
    assert np.isfinite(fill_cube(sub, run, clear).values).all()
    with pytest.raises(CheckpointError, match="network.quantiles"):
        fill_cube(sub, run, clear, uncertainty=True)


@pytest.mark.slow
def test_the_cli_writes_the_bounds_to_the_store(calibrated, tmp_path, sample):
    out = tmp_path / "filled.zarr"
    proc = subprocess.run([sys.executable, "-m", "eocube", "gapfill", "--method", "model", "--model", str(calibrated),
                           "--uncertainty", "--out", str(out), "--workers", "1", "--threads", "1", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = eocube.open_zarr(out)
    assert list(store.band.values) == ["NDVI", "NDVI_lower", "NDVI_upper"]
    assert store.attrs["eocube_provenance"]["uncertainty"] is True
    clear = ((sample.sel(band="CLM") == 0) & (sample.sel(band="IS_DATA") == 1)).values
    lower = store.sel(band="NDVI_lower").values
    assert np.isnan(lower[clear]).all() and np.isfinite(lower[~clear]).any()


def test_uncertainty_needs_the_model_method(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "eocube", "gapfill", "--method", "linear", "--uncertainty", "--out",
                           str(tmp_path / "x.zarr")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--uncertainty needs --method model" in proc.stderr


def test_interval_scores_count_coverage_and_width(sample):
    truth = sample.sel(band=["NDVI"]).isel(y=slice(0, 4), x=slice(0, 4))
    held = truth.isel(band=0).notnull()
    lower, upper = truth - 0.1, truth + 0.1
    upper[0] = truth[0] - 0.05  # date 0 misses
    row = interval_scores(lower, upper, truth, held).set_index("band").loc["all"]
    n_miss = int(held[0].sum())
    assert row["n"] == int(held.sum()) and row["coverage"] == pytest.approx(1 - n_miss / row["n"])
    assert row["width"] == pytest.approx((0.2 * (row["n"] - n_miss) + 0.05 * n_miss) / row["n"])
    with pytest.raises(EvaluateError, match="uncertainty=True"):
        split_bounds(truth)


@pytest.mark.slow
def test_training_calibrates_on_the_validation_blocks_and_exports_the_interval(tmp_path):
    from eocube.learn.trainer import train

    from .conftest import TINY

    cfg = load_config(overrides={**TINY, "train": {**TINY["train"], "export": True}})
    result = train(cfg, out=tmp_path / "run")
    assert all(0 < h["val_coverage"] <= 1 for h in result.history)
    card = json.loads((tmp_path / "run" / "model_interval.json").read_text())
    cal = card["properties"]["eocube:interval"]
    assert cal["quantiles"] == [0.1, 0.9] and cal["n"][0] > 100 and "validation blocks" in cal["method"]
    assert cal["calibration"] == "normalised" and cal["scale"][0] > 0 and cal["median_width_units"][0] > 0
