"""Per-pixel intervals of learned gap fills: the pinball loss and split-conformal calibration.

The gap-filling network's interval head (``network.quantiles: [lo, hi]``,
:class:`~eocube.learn.networks.GapFillNet`) predicts the ``lo`` and ``hi`` quantiles of a hidden
value, trained with the pinball loss (:func:`pinball_loss`). Quantile regression alone is not
calibrated on new data, so the interval is then calibrated by split-conformal prediction on
calibration observations that training never fitted (the hidden observations of the run's
*validation* blocks, never the test blocks).

Two calibrations:

``normalised`` (the default; locally weighted conformal prediction, Lei et al.
2018): each observation's difficulty is ``sigma = |fill - linear| + (upper - lower) / 2``
(:func:`difficulty`): half the head's raw interval plus how far the network moved away from
linear interpolation in time between the remaining observations (its own prior, see
:func:`~eocube.learn.networks.temporal_linear_fill`). The score is ``|y - fill| / sigma``
(:func:`normalised_scores`) and the interval ``fill +- Q sigma``, ``Q`` the score's conformal
quantile (:func:`conformal_offset`). Where the network departs from a straight line (a harvest,
a green-up, a long gap) the interval widens even if the head is confident: on the bundled
Sentinel-2 sample the head's own width missed a scene part whose errors were larger than the
validation blocks' (coverage 0.50 of a nominal 0.80), the normalised interval did not.

``cqr`` (conformalized quantile regression, Romano, Patterson and Candes 2019; checkpoints written
before ``normalised``): the score is how far the truth lies outside the head's interval
(:func:`conformity_scores`, negative inside); the interval is ``[lower - Q, upper + Q]``.

Both give at least the nominal ``coverage`` on data exchangeable with the calibration set
(``ceil((n + 1) * coverage) / n`` empirical quantile).
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


def difficulty(fill: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, linear: torch.Tensor) -> torch.Tensor:
    """The ``normalised`` calibration's per-value scale: ``|fill - linear| + (upper - lower) / 2``.

    Parameters
    ----------
    fill, lower, upper
        The network's fill and its head's raw quantiles (normalised units).
    linear
        Linear interpolation in time of the same inputs
        (:func:`~eocube.learn.networks.temporal_linear_fill`).

    Returns
    -------
    torch.Tensor
        Like ``fill``, at least ``1e-4`` (normalised units), so no interval collapses to a point.
    """
    return ((fill - linear).abs() + (upper - lower) / 2).clamp_min(MIN_SCALE)


MIN_SCALE = 1e-4
"""Smallest :func:`difficulty` (normalised units)."""


def interval_difficulty(values: torch.Tensor, valid: torch.Tensor, days: torch.Tensor, fill: torch.Tensor,
                        lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """:func:`difficulty` of a gap-filling network's output for its inputs.

    Parameters
    ----------
    values, valid, days
        The network's inputs: ``(B, T, C, H, W)`` normalised values, their validity, ``(B, T)`` days.
    fill, lower, upper
        Its output with ``with_interval=True``.

    Returns
    -------
    torch.Tensor
        ``(B, T, C, H, W)`` scale of the ``normalised`` calibration.
    """
    from .networks import temporal_linear_fill

    valid = valid.bool()
    linear, _ = temporal_linear_fill(torch.where(valid, values, torch.zeros_like(values)), valid, days)
    return difficulty(fill, lower, upper, linear)


def normalised_scores(fill: np.ndarray, scale: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Scores of the ``normalised`` calibration: ``|y - fill| / scale`` (the interval is ``fill +- Q scale``)."""
    return np.abs(np.asarray(truth, "float64") - fill) / np.asarray(scale, "float64")


def conformal_offset(scores: np.ndarray, coverage: float) -> float:
    """The split-conformal quantile of scores that gives ``coverage`` on exchangeable data.

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


CALIBRATIONS = ("normalised", "cqr")
"""The calibrations :func:`calibration` makes (module docstring)."""


def calibration(lower: np.ndarray, upper: np.ndarray, truth: np.ndarray, quantiles: tuple[float, float],
                std: np.ndarray, *, fill: np.ndarray | None = None, scale: np.ndarray | None = None) -> dict[str, Any]:
    """Per-band split-conformal calibration of an interval head, for the checkpoint's ``meta["interval"]``.

    Parameters
    ----------
    lower, upper, truth
        ``(n, C)`` normalised values of the calibration observations (NaN where a band was not
        hidden).
    quantiles
        The head's ``(lo, hi)``; the nominal coverage is ``hi - lo``.
    std
        ``(C,)`` band standard deviations of the normalisation (offsets and widths in band units).
    fill, scale
        ``(n, C)`` the fill and its :func:`difficulty` at the same observations: the ``normalised``
        calibration. Without them, ``cqr``.

    Returns
    -------
    dict
        ``quantiles``, ``coverage`` (nominal), ``calibration`` (``normalised`` or ``cqr``), with
        ``normalised`` ``scale`` (per band: the interval is ``fill +- scale * difficulty``) and, for
        comparison, ``cqr_offset`` (what ``cqr`` would have used, normalised units), with
        ``cqr`` ``offset`` (per band, normalised units) and ``offset_units`` (the bands' units);
        ``n`` (observations per band), ``raw_coverage`` (per band, of the head's uncalibrated
        interval), ``median_width_units`` (per band, of the calibrated interval on the calibration
        observations, the bands' units), ``method`` (in words).
    """
    lo, hi = quantiles
    nominal = round(hi - lo, 6)
    normalised = fill is not None and scale is not None
    std = np.asarray(std, "float64")
    factors, counts, raw, widths, cqr_offsets = [], [], [], [], []
    for k in range(truth.shape[1]):
        ok = np.isfinite(truth[:, k])
        outside = conformity_scores(lower[ok, k], upper[ok, k], truth[ok, k])
        raw.append(float((outside <= 0).mean()))
        counts.append(int(ok.sum()))
        offset = conformal_offset(outside, nominal)
        cqr_offsets.append(offset)
        if normalised:
            q = conformal_offset(normalised_scores(fill[ok, k], scale[ok, k], truth[ok, k]), nominal)
            width = 2 * q * scale[ok, k]
        else:
            q = offset
            width = np.maximum(upper[ok, k] - lower[ok, k] + 2 * q, 0.0)
        factors.append(q)
        widths.append(float(np.median(width) * std[k]))
    out: dict[str, Any] = {"quantiles": [lo, hi], "coverage": nominal, "n": counts, "raw_coverage": raw,
                           "median_width_units": widths}
    where = "on the hidden observations of the validation blocks"
    if normalised:
        out.update(calibration="normalised", scale=factors, cqr_offset=cqr_offsets,
                   method=f"split-conformal, normalised by |fill - linear| + half the head's width, {where}")
    else:
        out.update(calibration="cqr", offset=factors, offset_units=[float(o * sd) for o, sd in zip(factors, std)],
                   method=f"split-conformal CQR {where}")
    return out


__all__ = ["CALIBRATIONS", "MIN_SCALE", "calibration", "conformal_offset", "conformity_scores", "difficulty",
           "hidden_rows", "interval_difficulty", "normalised_scores", "pinball_loss"]
