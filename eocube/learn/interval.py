"""Per-pixel intervals of learned gap fills: the pinball loss and split-conformal calibration.

The gap-filling network's interval head (``network.quantiles: [lo, hi]``,
:class:`~eocube.learn.networks.GapFillNet`) predicts the ``lo`` and ``hi`` quantiles of a hidden
value, trained with the pinball loss (:func:`pinball_loss`). Quantile regression alone is not
calibrated on new data, so the interval is then calibrated by conformalized quantile regression
(CQR, Romano, Patterson and Candes 2019): on calibration observations that training never fitted
(the hidden observations of the run's *validation* blocks, never the test blocks), the
conformity score of each is how far its truth lies outside the predicted interval
(:func:`conformity_scores`, negative inside); the interval is widened (or narrowed) by the
score's ``ceil((n + 1) * coverage) / n`` empirical quantile (:func:`conformal_offset`), which
gives at least the nominal ``coverage`` on exchangeable data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .errors import LearnError


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean pinball (quantile) loss of a ``tau`` quantile prediction over the masked entries.

    ``max(tau * (y - q), (tau - 1) * (y - q))``: under-prediction costs ``tau`` per unit,
    over-prediction ``1 - tau``; its minimiser is the ``tau`` quantile of ``y``.

    Parameters
    ----------
    pred, target
        Predicted quantile and truth, same shape.
    mask
        Entries to score (bool or 0/1), same shape.
    tau
        Quantile level in (0, 1).

    Returns
    -------
    torch.Tensor
        Scalar mean over the masked entries (0 when none).
    """
    m = mask.to(pred.dtype)
    diff = target - pred
    loss = torch.maximum(tau * diff, (tau - 1.0) * diff)
    return (loss * m).sum() / m.sum().clamp_min(1.0)


def conformity_scores(lower: np.ndarray, upper: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """CQR conformity scores ``max(lower - y, y - upper)``: > 0 outside the interval, <= 0 inside."""
    return np.maximum(np.asarray(lower, "float64") - truth, np.asarray(truth, "float64") - upper)


def conformal_offset(scores: np.ndarray, coverage: float) -> float:
    """The split-conformal widening that gives ``coverage`` on exchangeable data.

    Parameters
    ----------
    scores
        Conformity scores of the calibration observations (:func:`conformity_scores`); NaN ignored.
    coverage
        Nominal coverage in (0, 1), e.g. 0.8.

    Returns
    -------
    float
        ``Q``: the ``ceil((n + 1) * coverage)``-th smallest score; the interval
        ``[lower - Q, upper + Q]`` covers a new exchangeable observation with probability at least
        ``coverage`` (and less than ``coverage + 1 / (n + 1)`` without ties).

    Raises
    ------
    LearnError
        No finite score, or too few for the coverage (``n < 1 / (1 - coverage) - 1``).
    """
    s = np.sort(np.asarray(scores, "float64").ravel())
    s = s[np.isfinite(s)]
    n = len(s)
    if not 0 < coverage < 1:
        raise LearnError(f"coverage must be in (0, 1), got {coverage!r}")
    k = math.ceil((n + 1) * coverage)
    if n == 0 or k > n:
        raise LearnError(f"{n} calibration observation(s) cannot calibrate a {coverage:.0%} interval (needs at least "
                         f"{math.ceil(coverage / (1 - coverage))}): hide more validation observations "
                         "(train.val_windows, gaps.p_date)")
    return float(s[k - 1])


def hidden_rows(mask: torch.Tensor, *arrays: torch.Tensor) -> tuple[np.ndarray, ...]:
    """``(n, C)`` float64 rows of ``(B, T, C, H, W)`` arrays at the (pixel, date)s where a band is hidden; NaN elsewhere."""
    m = mask.bool()
    keep = m.any(2)  # (B, T, H, W)
    out = []
    for a in arrays:
        a = torch.where(m, a.float(), torch.full_like(a, float("nan"), dtype=torch.float32))
        out.append(a.permute(0, 1, 3, 4, 2)[keep].double().cpu().numpy())
    return tuple(out)


def calibration(lower: np.ndarray, upper: np.ndarray, truth: np.ndarray, quantiles: tuple[float, float],
                std: np.ndarray) -> dict[str, Any]:
    """Per-band CQR calibration of an interval head, for the checkpoint's ``meta["interval"]``.

    Parameters
    ----------
    lower, upper, truth
        ``(n, C)`` normalised values of the calibration observations (NaN where a band was not
        hidden).
    quantiles
        The head's ``(lo, hi)``; the nominal coverage is ``hi - lo``.
    std
        ``(C,)`` band standard deviations of the normalisation (the offsets in band units).

    Returns
    -------
    dict
        ``quantiles``, ``coverage`` (nominal), ``offset`` (per band, normalised units),
        ``offset_units`` (per band, the bands' units), ``n`` (observations per band),
        ``raw_coverage`` (per band, of the uncalibrated interval), ``method``.
    """
    lo, hi = quantiles
    nominal = round(hi - lo, 6)
    offsets, counts, raw = [], [], []
    for k in range(truth.shape[1]):
        ok = np.isfinite(truth[:, k])
        s = conformity_scores(lower[ok, k], upper[ok, k], truth[ok, k])
        offsets.append(conformal_offset(s, nominal))
        counts.append(int(ok.sum()))
        raw.append(float((s <= 0).mean()))
    return {"quantiles": [lo, hi], "coverage": nominal, "offset": offsets,
            "offset_units": [float(o * sd) for o, sd in zip(offsets, np.asarray(std, "float64"))],
            "n": counts, "raw_coverage": raw,
            "method": "split-conformal CQR on the hidden observations of the validation blocks"}


__all__ = ["calibration", "conformal_offset", "conformity_scores", "hidden_rows", "pinball_loss"]
