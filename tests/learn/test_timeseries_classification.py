"""Time-series classification pieces (notebook 05): the sample's land-cover label cube, the pixel split, TempCNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from eocube.datasets import sentinel2_sample, sentinel2_sample_landcover
from eocube.labels import class_counts, classes_from_attrs, labels_from_band
from eocube.learn.errors import LearnError
from eocube.learn.split import BlockSplit
from eocube.learn.temporal_classifier import (
    TempCNN,
    fit_temporal_classifier,
    pixel_series,
    predict_series,
    split_pixels,
    temporal_features,
)

# the same TestEOPatch LULC array the label tests use (tests/labels/data/PROVENANCE.md)
LULC_NPZ = Path(__file__).resolve().parents[1] / "labels" / "data" / "lulc_testeopatch.npz"
SHARED_LULC = Path(__file__).resolve().parents[3] / "shared" / "data" / "eolearn-testeopatch" / "mask_timeless" / "LULC.npy"


def test_landcover_label_cube_is_the_source_band_on_the_sample_grid():
    lc = sentinel2_sample_landcover()
    sample = sentinel2_sample()
    source = np.load(LULC_NPZ)["lulc"]
    if SHARED_LULC.exists():  # the original file, where the shared data lie beside the project
        assert (np.load(SHARED_LULC)[..., 0] == source).all()
    assert lc.dims == ("time", "band", "y", "x") and lc.shape == (1, 1, 101, 100) and lc.dtype == np.uint8
    assert list(lc.band.values) == ["label"] and lc.rio.nodata == 0 and lc.time.values[0] == sample.time.values[0]
    assert lc.rio.crs == sample.rio.crs and lc.rio.transform() == sample.rio.transform()
    assert (lc.x.values == sample.x.values).all() and (lc.y.values == sample.y.values).all()
    assert (lc.values[0, 0] == source).all()
    classes = classes_from_attrs(lc)
    assert [c.value for c in classes] == list(range(1, 11)) and classes[1].name == "forest"
    counts = class_counts(lc)
    assert {k: v for k, v in counts.items() if v} == {
        "cultivated land": 11, "forest": 7601, "grassland": 1777, "shrubland": 358, "artificial surface": 198,
        "unlabelled": 155}
    assert counts == {**{c.name: int((source == c.value).sum()) for c in classes}, "unlabelled": int((source == 0).sum())}
    # the sample itself keeps its bands and shape
    assert sample.shape == (68, 4, 101, 100) and list(sample.band.values) == ["NDVI", "CLP", "CLM", "IS_DATA"]


def test_landcover_merged_classes_as_in_the_notebook():
    lab = labels_from_band(sentinel2_sample_landcover(), "label",
                           classes=[(2, "forest"), (3, "grassland"), (4, "shrubland"), (8, "artificial surface")],
                           mapping={1: "grassland", 2: "forest", 3: "grassland", 4: "shrubland", 8: "artificial surface"})
    assert class_counts(lab) == {"forest": 7601, "grassland": 1777 + 11, "shrubland": 358, "artificial surface": 198,
                                 "unlabelled": 155}


@pytest.mark.parametrize("block, buffer, seed", [(20, 2, 0), (20, 0, 3), (16, 5, 1), (25, 3, 7)])
def test_pixel_split_has_no_leakage(block, buffer, seed):
    split = BlockSplit.make((101, 100), block_size=block, fractions=(0.6, 0.15, 0.25), buffer=buffer, seed=seed)
    code = split.mask()
    train, val, test = (split_pixels(split, p) for p in ("train", "val", "test"))
    assert train.any() and val.any() and test.any()
    assert not (train & val).any() and not (train & test).any() and not (val & test).any()
    # test and validation blocks are taken whole; training pixels only inside training blocks
    assert (test == (code == 2)).all() and (val == (code == 1)).all() and (code[train] == 0).all()
    # no training pixel within `buffer` pixels (Chebyshev distance, as the block split measures) of another part
    other = ndimage.binary_dilation(code != 0, structure=np.ones((2 * buffer + 1,) * 2, bool)) if buffer else code != 0
    assert not (train & other).any()
    # and every training-block pixel farther away is kept
    assert (train == ((code == 0) & ~other)).all()
    # with a halo (a classifier reading neighbours) the margin grows by the halo
    wide = split_pixels(split, "train", halo=2)
    assert not (wide & ndimage.binary_dilation(code != 0, structure=np.ones((2 * buffer + 5,) * 2, bool))).any()


def test_pixel_series_order_and_labels():
    sample = sentinel2_sample().isel(time=slice(0, 3), y=slice(0, 4), x=slice(0, 5))
    series, lab = pixel_series(sample, np.arange(20).reshape(4, 5), bands=["NDVI", "CLP"])
    assert series.shape == (20, 3, 2) and series.dtype == np.float32
    values = sample.values
    assert series[7, 2, 1] == values[2, 1, 1, 2] and lab[7] == 7  # pixel 7 = row 1, column 2
    with pytest.raises(LearnError, match="not on the cube's 4 x 5 grid"):
        pixel_series(sample, np.zeros((5, 4)))


def synthetic(n: int, steps: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of NDVI-like series: a green-up peaking early, late, or none (flat), plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    t = np.arange(steps)
    peak = np.where(y == 0, 6, 17)[:, None]
    x = 0.2 + 0.6 * np.exp(-0.5 * ((t[None] - peak) / 2.5) ** 2) * (y != 2)[:, None] + 0.3 * (y == 2)[:, None]
    x = x + rng.normal(0, 0.05, x.shape)
    return x[..., None].astype("float32") * 10 + 3, y  # shifted and scaled: the normalisation must cope


def test_tempcnn_learns_a_separable_case_and_is_reproducible():
    x, y = synthetic(300)
    xv, yv = synthetic(200, seed=1)
    threads = torch.get_num_threads()
    fit = fit_temporal_classifier(x, y, 3, val=(xv, yv), epochs=12, batch_size=32, seed=5, width=8, hidden=16)
    assert torch.get_num_threads() == threads  # the one-thread default is restored
    assert isinstance(fit.model, TempCNN) and len(fit.history) == 12 and 1 <= fit.best_epoch <= 12
    xt, yt = synthetic(300, seed=2)
    accuracy = (predict_series(fit.model, xt) == yt).mean()
    assert accuracy > 0.95, accuracy
    proba = predict_series(fit.model, xt[:5], proba=True)
    assert proba.shape == (5, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    # normalisation from the training series only, kept with the weights
    assert np.isclose(float(fit.model.mean[0]), x.mean(), rtol=1e-5)
    assert np.isclose(float(fit.model.std[0]), x.std(), rtol=1e-4)
    again = fit_temporal_classifier(x, y, 3, val=(xv, yv), epochs=12, batch_size=32, seed=5, width=8, hidden=16)
    for a, b in zip(fit.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)


def test_tempcnn_input_errors():
    x, y = synthetic(20)
    with pytest.raises(LearnError, match="fill the gaps first"):
        fit_temporal_classifier(np.where(np.arange(24)[None, :, None] == 3, np.nan, x), y, 3, epochs=1)
    with pytest.raises(LearnError, match="class indices 0 .. 1"):
        fit_temporal_classifier(x, y, 2, epochs=1)
    with pytest.raises(LearnError, match=r"need series \(N, T, C\)"):
        fit_temporal_classifier(x[..., 0], y, 3, epochs=1)


def test_temporal_features_recover_a_known_harmonic_series():
    """Trend, annual and semi-annual terms of a known series come back exactly; quantiles and spread as numpy's."""
    times = np.datetime64("2016-01-01") + np.arange(0, 3 * 365, 16).astype("timedelta64[D]")
    years = (times - times[0]).astype("float64") / 365.25
    truth = {"c0": 0.5, "trend": 0.03, "cos1": 0.2, "sin1": -0.1, "cos2": 0.05, "sin2": 0.02}
    a = np.stack([truth["c0"] + truth["trend"] * (years - years.mean())
                  + truth["cos1"] * np.cos(2 * np.pi * years) + truth["sin1"] * np.sin(2 * np.pi * years)
                  + truth["cos2"] * np.cos(4 * np.pi * years) + truth["sin2"] * np.sin(4 * np.pi * years),
                  (years > 1.3).astype("float64")], 1)  # band 0 harmonic, band 1 a step
    series = np.stack([a, 2 * a + 1])  # two pixels
    feats, names = temporal_features(series, times)
    assert feats.shape == (2, len(names)) and feats.dtype == np.float32 and len(names) == 2 * 15
    f = dict(zip(names, feats[0]))
    for k, v in truth.items():
        assert f[f"band0_{k}"] == pytest.approx(v, abs=1e-5), k
    assert f["band0_amp1"] == pytest.approx(np.hypot(0.2, -0.1), abs=1e-5)
    assert f["band0_rms_resid"] == pytest.approx(0, abs=1e-5) and f["band1_rms_resid"] > 0.01
    assert f["band1_q50"] == pytest.approx(np.quantile(a[:, 1], 0.5), abs=1e-6)
    assert f["band0_std"] == pytest.approx(a[:, 0].std(), abs=1e-6)
    assert dict(zip(names, feats[1]))["band0_cos1"] == pytest.approx(0.4, abs=1e-5)  # scaled series, scaled terms
    with pytest.raises(LearnError, match="fill the gaps first"):
        temporal_features(np.where(np.arange(len(times))[None, :, None] == 3, np.nan, series), times)
    with pytest.raises(LearnError, match="one date per step"):
        temporal_features(series, times[:-1])
    with pytest.raises(LearnError, match="use fewer harmonics"):
        temporal_features(series[:, :4], times[:4], harmonics=2)
