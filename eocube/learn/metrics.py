"""Scores of segmentation and super-resolution, small NumPy/torch functions tested against references.

Classification (from a confusion matrix, rows = truth, columns = prediction, as scikit-learn):
overall accuracy, per-class F1 and IoU, macro-F1 and mIoU over the classes present in the truth
or the prediction. Regression/super-resolution on ``(N, C, H, W)``: RMSE, PSNR per band (data range
given, or the band's range in the truth), SSIM per band (Gaussian window 11, sigma 1.5, K1 0.01,
K2 0.03, averaged over the pixels whose window lies inside the image, as scikit-image's
``gaussian_weights=True``; torchmetrics averages over the reflect-padded border too), SAM (mean spectral angle in degrees).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F


def confusion_matrix(truth: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor, n_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts of (truth, prediction) pairs; truth < 0 (unlabelled) is ignored."""
    t = torch.as_tensor(truth).reshape(-1).long()
    p = torch.as_tensor(pred).reshape(-1).long()
    ok = (t >= 0) & (t < n_classes) & (p >= 0) & (p < n_classes)
    cm = torch.bincount(t[ok] * n_classes + p[ok], minlength=n_classes * n_classes)
    return cm.reshape(n_classes, n_classes).cpu().numpy().astype("int64")


def classification_scores(cm: np.ndarray, names: Sequence[str] | None = None) -> dict[str, object]:
    """Overall accuracy, macro-F1, mIoU, per-class F1 and IoU from a confusion matrix.

    Classes absent from both truth and prediction are left out of the macro averages (as
    scikit-learn's ``labels=`` of the present classes).

    Returns
    -------
    dict
        ``oa``, ``macro_f1``, ``miou`` (floats), ``f1`` and ``iou`` (per-class lists, NaN for
        absent classes), ``support`` (pixels per true class).
    """
    cm = np.asarray(cm, dtype="float64")
    tp = np.diag(cm)
    truth, pred = cm.sum(1), cm.sum(0)
    present = (truth + pred) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(present, 2 * tp / (truth + pred), np.nan)
        iou = np.where(present, tp / (truth + pred - tp), np.nan)
    total = cm.sum()
    out: dict[str, object] = {
        "oa": float(tp.sum() / total) if total else float("nan"),
        "macro_f1": float(np.nanmean(f1)) if present.any() else float("nan"),
        "miou": float(np.nanmean(iou)) if present.any() else float("nan"),
        "f1": [float(v) for v in f1],
        "iou": [float(v) for v in iou],
        "support": [int(v) for v in truth],
    }
    if names is not None:
        out["classes"] = list(names)
    return out


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error over finite pairs."""
    d = np.asarray(pred, "float64") - np.asarray(truth, "float64")
    return float(np.sqrt(np.nanmean(d**2)))


def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float | Sequence[float] | None = None) -> float:
    """Mean over bands of ``10 log10(range^2 / MSE)`` for ``(N, C, H, W)`` arrays.

    ``data_range`` per band (or one for all); None: each band's max - min in ``truth``.
    """
    p, t = np.asarray(pred, "float64"), np.asarray(truth, "float64")
    rng = _ranges(t, data_range)
    mse = np.nanmean((p - t) ** 2, axis=(0, 2, 3))
    return float(np.mean(10 * np.log10(rng**2 / np.maximum(mse, 1e-30))))


def _ranges(t: np.ndarray, data_range: float | Sequence[float] | None) -> np.ndarray:
    if data_range is None:
        return np.nanmax(t, axis=(0, 2, 3)) - np.nanmin(t, axis=(0, 2, 3))
    return np.broadcast_to(np.asarray(data_range, "float64"), (t.shape[1],)).copy()


def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(pred: np.ndarray, truth: np.ndarray, data_range: float | Sequence[float] | None = None) -> float:
    """Mean structural similarity over bands of ``(N, C, H, W)`` arrays (Gaussian window 11, sigma 1.5).

    Means are taken over the pixels whose whole window lies inside the image (no padding) and holds
    no NaN (nodata) in either array; a band without such a pixel scores NaN (left out of the mean).
    """
    pa, ta = np.asarray(pred, "float64"), np.asarray(truth, "float64")
    finite = torch.as_tensor((np.isfinite(pa) & np.isfinite(ta)).astype("float64"))
    p, t = torch.as_tensor(np.nan_to_num(pa)), torch.as_tensor(np.nan_to_num(ta))
    rng = _ranges(ta, data_range)
    w = _gauss()
    scores = []
    for c in range(p.shape[1]):
        x, y = p[:, c:c + 1], t[:, c:c + 1]
        inside = F.conv2d(1.0 - finite[:, c:c + 1], torch.ones_like(w)) == 0  # windows without nodata
        c1, c2 = (0.01 * rng[c]) ** 2, (0.03 * rng[c]) ** 2
        mx, my = F.conv2d(x, w), F.conv2d(y, w)
        sxx = F.conv2d(x * x, w) - mx**2
        syy = F.conv2d(y * y, w) - my**2
        sxy = F.conv2d(x * y, w) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
        scores.append(float(s[inside].mean()) if inside.any() else float("nan"))
    return float(np.nanmean(scores)) if not np.isnan(scores).all() else float("nan")


def sam(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean spectral angle in degrees between predicted and true spectra of ``(N, C, H, W)`` arrays."""
    p, t = np.asarray(pred, "float64"), np.asarray(truth, "float64")
    dot = (p * t).sum(1)
    norm = np.sqrt((p * p).sum(1) * (t * t).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        ang = np.degrees(np.arccos(np.clip(dot / norm, -1.0, 1.0)))
    return float(np.nanmean(ang))


def regression_scores(pred: np.ndarray, truth: np.ndarray, data_range: float | Sequence[float] | None = None) -> dict[str, float]:
    """RMSE, PSNR, SSIM and SAM of ``(N, C, H, W)`` predictions (e.g. super-resolved bands)."""
    return {"rmse": rmse(pred, truth), "psnr": psnr(pred, truth, data_range), "ssim": ssim(pred, truth, data_range),
            "sam": sam(pred, truth)}


__all__ = ["classification_scores", "confusion_matrix", "psnr", "regression_scores", "rmse", "sam", "ssim"]
