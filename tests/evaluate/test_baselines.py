"""The baselines of eocube.baselines on small synthetic arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from eocube.baselines import (
    BaselineError,
    area_mean,
    balanced_sample,
    bicubic,
    classify_pixels,
    context_features,
    context_forest,
    guided_highpass,
    pixel_forest,
)


def test_context_features_equal_a_direct_numpy_computation():
    """Means and standard deviations over mirrored windows, band by band, as NumPy computes them directly."""
    rng = np.random.default_rng(1)
    x = rng.normal(1000, 300, size=(2, 23, 31))
    feats, names = context_features(x, (3, 7), names=["B04", "B08"])
    assert feats.shape == (2 * (1 + 2 * 2), 23, 31) and feats.dtype == np.float32
    assert names[:2] == ["B04", "B08"] and names[2:6] == ["B04_mean3", "B08_mean3", "B04_std3", "B08_std3"]
    np.testing.assert_allclose(feats[:2], x, rtol=1e-6)
    for i, w in enumerate((3, 7)):
        r = w // 2
        win = sliding_window_view(np.pad(x, ((0, 0), (r, r), (r, r)), mode="symmetric"), (w, w), axis=(1, 2))
        mean, std = win.mean(axis=(-2, -1)), win.std(axis=(-2, -1))
        base = 2 + 4 * i
        np.testing.assert_allclose(feats[base:base + 2], mean, rtol=1e-5)
        np.testing.assert_allclose(feats[base + 2:base + 4], std, rtol=1e-4, atol=1e-2)


def test_context_features_refuse_even_windows_and_wrong_shapes():
    with pytest.raises(BaselineError, match="odd"):
        context_features(np.zeros((1, 8, 8)), (4,))
    with pytest.raises(BaselineError, match="band, y, x"):
        context_features(np.zeros((8, 8)), (3,))


def test_guided_baseline_recovers_a_band_that_is_linear_in_the_guides():
    """A band that is an exact linear function of the guide bands is recovered exactly at the fine scale."""
    rng = np.random.default_rng(0)
    guide = rng.normal(size=(4, 48, 64))
    coef = np.array([[0.5, -1.0, 2.0, 0.3], [1.0, 1.0, 0.0, 0.0]])
    offset = np.array([3.0, -2.0])
    fine = np.einsum("ck,kyx->cyx", coef, guide) + offset[:, None, None]
    low = area_mean(fine)                       # the band seen at half the resolution
    out = guided_highpass(low, guide, eps=1e-10)
    assert out.shape == fine.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, fine, atol=1e-4)
    # bicubic, which ignores the guides, is far from it
    assert np.abs(bicubic(low) - fine).mean() > 0.5
    # the default ridge only shrinks the fit a little
    assert np.abs(guided_highpass(low, guide) - fine).max() < 0.01


def test_guided_baseline_uses_the_given_low_resolution_guide_and_checks_shapes():
    rng = np.random.default_rng(2)
    guide = rng.normal(size=(2, 16, 16))
    guide_low = guide[:, ::2, ::2]                # a degradation other than the block mean
    low = 2 * guide_low[:1] - guide_low[1:]
    out = guided_highpass(low, guide, guide_low=guide_low, eps=1e-10)
    np.testing.assert_allclose(out, 2 * guide[:1] - guide[1:], atol=1e-4)
    with pytest.raises(BaselineError, match="times the factor"):
        guided_highpass(low, guide[:, :15])
    with pytest.raises(BaselineError, match="odd"):
        guided_highpass(low, guide, window=4)


def test_bicubic_keeps_a_constant_and_doubles_the_grid():
    out = bicubic(np.full((3, 5, 7), 42.0))
    assert out.shape == (3, 10, 14)
    np.testing.assert_allclose(out, 42.0, rtol=1e-6)


def test_balanced_sample_takes_at_most_per_class_of_each_class_in_the_training_area():
    lab = np.array([[1, 1, 1, 2], [2, 1, 3, 3]])
    train = np.array([[True, True, True, True], [True, False, False, True]])
    idx = balanced_sample(lab, train, [1, 2, 3], per_class=2, seed=0)
    picked = lab.ravel()[idx]
    assert train.ravel()[idx].all()
    assert (picked == 1).sum() == 2 and (picked == 2).sum() == 2 and (picked == 3).sum() == 1
    with pytest.raises(BaselineError, match="class 4 has no labelled pixel"):
        balanced_sample(lab, train, [1, 4], per_class=2)


def _texture_scene():
    """Two classes with the same pixel values (0 or 2, half each) and different textures: a 1-px
    checkerboard (class 1, left) and 8-px squares (class 2, right)."""
    h, w = 64, 128
    yy, xx = np.mgrid[:h, :w]
    fine = (yy + xx) % 2
    coarse = (yy // 8 + xx // 8) % 2
    value = np.where(xx < w // 2, fine, coarse) * 2.0
    lab = np.where(xx < w // 2, 1, 2).astype("uint8")
    train = (yy < 32) & (np.abs(xx - w // 2) > 8)
    test = (yy >= 40) & (np.abs(xx - w // 2) > 8)
    return value[None], lab, train, test


def test_context_forest_sees_texture_that_the_per_pixel_forest_cannot():
    pytest.importorskip("sklearn")
    bands, lab, train, test = _texture_scene()
    opts = {"classes": [1, 2], "where": test, "per_class": 500, "n_estimators": 20}
    ctx = context_forest(bands, lab, train, windows=(3,), **opts)
    pix = pixel_forest(bands, lab, train, **opts)
    assert (ctx[~test] == 0).all() and (pix[~test] == 0).all()           # fill outside `where`
    assert (ctx[test] == lab[test]).mean() > 0.97
    assert (pix[test] == lab[test]).mean() < 0.7                         # the values alone cannot tell
    boost = context_forest(bands, lab, train, windows=(3,), model="boosting", **opts)
    assert (boost[test] == lab[test]).mean() > 0.97


def test_classify_pixels_refuses_an_unknown_model_and_mismatched_shapes():
    bands, lab, train, _ = _texture_scene()
    with pytest.raises(BaselineError, match="model must be one of"):
        classify_pixels(bands, lab, train, classes=[1, 2], model="svm")
    with pytest.raises(BaselineError, match="share"):
        classify_pixels(bands[:, :10], lab, train, classes=[1, 2])
