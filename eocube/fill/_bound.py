"""Bounds on the smoothers' output: filled values stay within a plausible range.

Whittaker, harmonic and Savitzky-Golay fills can overshoot across a long gap (a Whittaker fit
through three NDVI observations gave -2.1 to 3.6; harmonic fits of reflectance -0.85 to 1.47).
By default every filled value is clipped into its pixel's clear range widened by ``margin``
times its width on each side, and into a declared valid range where there is one; clear
observations kept in the output are never changed. The compiled kernels clip in their output
step (:func:`eocube.fill._fast_common.bounded_or`); :func:`clip` is the NumPy reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._errors import FillError

BOUNDS = ("observed", "valid_range", None)
"""Accepted values of the smoothers' ``bound`` option."""


@dataclass(frozen=True)
class Bound:
    """A resolved bound: what the kernels clip their filled values into.

    Attributes
    ----------
    margin
        Widening of each pixel's clear range, as a fraction of its width on each side;
        negative: no per-pixel bound (only ``lo``/``hi``).
    lo, hi
        The declared valid range (``-inf``/``inf`` where none).
    """

    margin: float
    lo: float
    hi: float


def resolve_bound(bound: str | None, margin: float, valid_range: Sequence[float] | None) -> Bound | None:
    """The :class:`Bound` the options ask for, or None (no bound).

    Parameters
    ----------
    bound
        ``"observed"``: each pixel's clear range widened by ``margin``, and ``valid_range``
        where given; ``"valid_range"``: ``valid_range`` only (required then); None: no bound.
    margin
        Fraction (>= 0) of each pixel's clear range added below and above it.
    valid_range
        ``(lo, hi)``, or None.

    Raises
    ------
    ValueError
        An unknown ``bound``, a negative or non-finite ``margin``, a bad ``valid_range``.
    """
    if bound not in BOUNDS:
        raise FillError(f"bound must be 'observed', 'valid_range' or None, got {bound!r}")
    if not (np.isfinite(margin) and margin >= 0):
        raise FillError(f"margin must be a finite fraction >= 0 of the observed range, got {margin!r}")
    if valid_range is not None:
        try:
            lo, hi = (float(v) for v in valid_range)
        except (TypeError, ValueError):
            raise FillError(f"valid_range must be (lo, hi), got {valid_range!r}") from None
        if not lo <= hi:  # also NaN
            raise FillError(f"valid_range must have lo <= hi, got {valid_range!r}")
    else:
        lo, hi = -np.inf, np.inf
    if bound is None:
        return None
    if bound == "valid_range":
        if valid_range is None:
            raise FillError("bound='valid_range' needs valid_range=(lo, hi) (fill_gaps reads it from the cube's "
                             "valid_range or valid_min/valid_max attributes)")
        return Bound(-1.0, lo, hi)
    return Bound(float(margin), lo, hi)


def pixel_bounds(flat: np.ndarray, ok: np.ndarray, bound: Bound) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel (column of the (time, n) ``flat``), the lower and upper bound (float64, (n,))."""
    n = flat.shape[1]
    if bound.margin < 0:
        return np.full(n, bound.lo), np.full(n, bound.hi)
    values = flat.astype(np.float64)
    with np.errstate(invalid="ignore"):
        low = np.where(ok, values, np.inf).min(axis=0, initial=np.inf)
        high = np.where(ok, values, -np.inf).max(axis=0, initial=-np.inf)
        width = bound.margin * (high - low)
        return np.maximum(low - width, bound.lo), np.minimum(high + width, bound.hi)


def clip(model: np.ndarray, flat: np.ndarray, ok: np.ndarray, kept: np.ndarray, bound: Bound
         ) -> tuple[np.ndarray, np.ndarray]:
    """Clip the (time, n) ``model`` into each pixel's bounds except where ``kept``, the NumPy reference.

    Returns
    -------
    clipped, acted
        The clipped model (``kept`` entries as they were: the caller puts the observations
        there) and a bool array, True where the clip changed a value (NaN stays NaN).
    """
    low, high = pixel_bounds(flat, ok, bound)
    with np.errstate(invalid="ignore"):
        clipped = np.where(model < low, low, model)
        clipped = np.where(clipped > high, high, clipped)
        acted = ~kept & (clipped != model) & ~np.isnan(model)
    return np.where(kept, model, clipped), acted


def bound_fallback(out: np.ndarray, flat: np.ndarray, ok: np.ndarray, keep_observed: bool, bound: Bound | None,
                   shape: tuple[int, ...], return_bounded: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The compiled 2-D fallbacks' last step: clip ``out`` (time, n) into the bounds, reshape to ``shape``.

    Returns the result, or ``(result, acted)`` with ``return_bounded``.
    """
    acted = np.zeros(out.shape, bool)
    if bound is not None:
        ok = ok & np.isfinite(flat)
        out, acted = clip(out, flat, ok, ok if keep_observed else np.zeros_like(ok), bound)
        out = out.astype(flat.dtype, copy=False)
    return (out.reshape(shape), acted.reshape(shape)) if return_bounded else out.reshape(shape)


def no_bound_acted(result: np.ndarray | list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """An all-False ``acted`` result shaped as ``result`` (an array, or a list of band blocks)."""
    if isinstance(result, list):
        return [np.zeros(block.shape, bool) for block in result]
    return np.zeros(result.shape, bool)


def band_acted(result: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray | list[np.ndarray], tuple[np.ndarray, ...]]:
    """An all-False ``acted`` result shaped as ``result`` (:func:`no_bound_acted`) and its one-band
    (time, 1, y, x) views, band for band, as the compiled kernels fill them (like ``band_outputs``)."""
    acted = no_bound_acted(result)
    blocks = acted if isinstance(acted, list) else [acted]
    return acted, tuple(block[:, b:b + 1] for block in blocks for b in range(block.shape[1]))
