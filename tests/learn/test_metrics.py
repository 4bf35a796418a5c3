"""Metrics against references: scikit-learn (classification), NumPy formulas and torchmetrics (SSIM)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eocube.learn.metrics import classification_scores, confusion_matrix, psnr, rmse, sam, ssim
from eocube.learn.tasks import soft_dice_loss


def _labels(seed=0, n=5000, k=5):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, k, n)
    p = np.where(rng.random(n) < 0.6, t, rng.integers(0, k, n))
    t[rng.random(n) < 0.1] = -1  # unlabelled: ignored
    return t, p


def test_classification_scores_match_numpy_definitions():
    t, p = _labels()
    cm = confusion_matrix(t, p, 5)
    ok = t >= 0
    assert cm.sum() == ok.sum()
    sc = classification_scores(cm)
    assert sc["oa"] == pytest.approx(float((t[ok] == p[ok]).mean()))
    for c in range(5):
        tp = np.sum((t == c) & (p == c))
        fp = np.sum((t != c) & ok & (p == c))
        fn = np.sum((t == c) & (p != c))
        assert sc["f1"][c] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert sc["iou"][c] == pytest.approx(tp / (tp + fp + fn))
    assert sc["macro_f1"] == pytest.approx(np.mean(sc["f1"]))


def test_classification_scores_match_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    t, p = _labels(1)
    p[p == 4] = 3  # a class never predicted
    ok = t >= 0
    sc = classification_scores(confusion_matrix(t, p, 5))
    assert np.array_equal(confusion_matrix(t, p, 5), sk.confusion_matrix(t[ok], p[ok], labels=range(5)))
    assert sc["oa"] == pytest.approx(sk.accuracy_score(t[ok], p[ok]))
    assert sc["macro_f1"] == pytest.approx(sk.f1_score(t[ok], p[ok], average="macro", labels=range(5)))
    assert sc["miou"] == pytest.approx(sk.jaccard_score(t[ok], p[ok], average="macro", labels=range(5)))
    np.testing.assert_allclose(sc["f1"], sk.f1_score(t[ok], p[ok], average=None, labels=range(5)))


def test_regression_scores_match_numpy_and_torchmetrics():
    rng = np.random.default_rng(0)
    truth = rng.random((2, 3, 40, 40))
    pred = truth + 0.05 * rng.normal(size=truth.shape)
    assert rmse(pred, truth) == pytest.approx(np.sqrt(np.mean((pred - truth) ** 2)))
    per_band = [10 * np.log10(2.0**2 / np.mean((pred[:, c] - truth[:, c]) ** 2)) for c in range(3)]
    assert psnr(pred, truth, data_range=2.0) == pytest.approx(np.mean(per_band))
    cos = (pred * truth).sum(1) / np.linalg.norm(pred, axis=1) / np.linalg.norm(truth, axis=1)
    assert sam(pred, truth) == pytest.approx(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean())
    assert sam(truth * 3.0, truth) == pytest.approx(0.0, abs=1e-5)  # scale-invariant
    assert ssim(truth, truth, 1.0) == pytest.approx(1.0)
    assert ssim(pred, truth, 1.0) < 1.0
    tm = pytest.importorskip("torchmetrics.functional.image")
    for c in range(3):
        _, full = tm.structural_similarity_index_measure(
            torch.as_tensor(pred[:, c:c + 1]), torch.as_tensor(truth[:, c:c + 1]), data_range=1.0, return_full_image=True)
        ref = full[..., 5:-5, 5:-5].mean()  # the pixels whose window lies inside the image (as scikit-image)
        assert ssim(pred[:, c:c + 1], truth[:, c:c + 1], 1.0) == pytest.approx(float(ref), abs=1e-6)


def test_soft_dice_is_zero_for_a_perfect_prediction_and_ignores_unlabelled():
    y = torch.tensor([[[0, 1], [2, -1]]])
    logits = torch.nn.functional.one_hot(y.clamp_min(0), 3).permute(0, 3, 1, 2).float() * 50
    assert float(soft_dice_loss(logits, y)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_dice_loss(-logits, y)) > 0.5


def test_ssim_leaves_out_windows_that_touch_nodata():
    rng = np.random.default_rng(2)
    truth = rng.random((1, 2, 40, 40))
    pred = truth + 0.1 * rng.normal(size=truth.shape)
    holed_t, holed_p = truth.copy(), pred.copy()
    holed_t[..., 30:] = np.nan  # nodata in the truth: the validation pixels a target leaves out
    holed_p[..., 30:] = np.nan
    # the windows over the holes do not count (nodata filled with 0 would match perfectly and inflate the score)
    assert ssim(holed_p, holed_t, 1.0) == pytest.approx(ssim(pred[..., :30], truth[..., :30], 1.0), abs=1e-12)
    assert np.isnan(ssim(holed_p[..., 25:], holed_t[..., 25:], 1.0))  # no window without nodata
