"""Whittaker smoother (Eilers 2003) for gappy, unevenly spaced series: the pure-array kernel.

Each series minimises ``sum w (y - z)^2 + lambda * sum (D2 z)^2`` where ``w`` is 1 on
clear observations and 0 on gaps and ``D2`` takes second divided differences on the
real acquisition days (in units of the median step, so ``lambda`` means the same as
for evenly spaced data). The normal equations ``(W + lambda D2'D2) z = W y`` are
pentadiagonal; the off-diagonals are the same for every pixel, only the diagonal
changes with the mask, so one banded LDL' factorisation runs for all pixels at
once, looping over time (short) with vector operations over pixels (long).
"""

from __future__ import annotations

import numpy as np

from ._bound import band_acted, bound_fallback, no_bound_acted, resolve_bound
from ._common import as_block, check_engine, finish, is_positive, prepare, prepare_2d
from ._errors import FillError
from ._linear import linear_fill, neighbour_indices


def penalty_bands(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bands of ``D2'D2`` for second divided differences on ``days`` (scaled by the median step).

    Returns
    -------
    diag, off1, off2
        Main diagonal (T,), first (T-1,) and second (T-2,) super-diagonals.
    """
    x = np.asarray(days, dtype="float64")
    t = x.size
    step = np.median(np.diff(x)) if t > 1 else 1.0
    x = x / (step if step > 0 else 1.0)
    d2 = np.zeros((max(t - 2, 0), t))
    for i in range(t - 2):
        h1, h2 = x[i + 1] - x[i], x[i + 2] - x[i + 1]
        d2[i, i:i + 3] = [2 / (h1 * (h1 + h2)), -2 / (h1 * h2), 2 / (h2 * (h1 + h2))]
    p = d2.T @ d2
    return np.diag(p).copy(), np.diag(p, 1).copy(), np.diag(p, 2).copy()


def _banded_solve(a0: np.ndarray, a1: np.ndarray, a2: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve symmetric pentadiagonal systems, one per column: a0 (T, n) diagonal, a1/a2 constant bands."""
    t = a0.shape[0]
    dd = np.empty_like(a0)          # D of LDL'
    l1 = np.zeros_like(a0)          # L[i, i-1]
    l2 = np.zeros_like(a0)          # L[i, i-2]
    for i in range(t):
        s = a0[i].copy()
        if i >= 1:
            s -= l1[i] ** 2 * dd[i - 1]
        if i >= 2:
            s -= l2[i] ** 2 * dd[i - 2]
        dd[i] = s
        if i + 1 < t:
            b = a1[i] - (l1[i] * l2[i + 1] * dd[i - 1] if i >= 1 else 0.0)
            l1[i + 1] = b / s
        if i + 2 < t:
            l2[i + 2] = a2[i] / s
    z = rhs.copy()
    for i in range(1, t):
        z[i] -= l1[i] * z[i - 1]
        if i >= 2:
            z[i] -= l2[i] * z[i - 2]
    z /= dd
    for i in range(t - 2, -1, -1):
        z[i] -= l1[i + 1] * z[i + 1]
        if i + 2 < t:
            z[i] -= l2[i + 2] * z[i + 2]
    return z


def whittaker_fill(
    values: np.ndarray,
    valid: np.ndarray,
    days: np.ndarray,
    lmbda: float = 10.0,
    extrapolate: str = "nearest",
    keep_observed: bool = True,
    engine: str = "numba",
    nodata: float | int | None = None,
    bound: str | None = "observed",
    margin: float = 0.1,
    valid_range: tuple[float, float] | None = None,
    return_bounded: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Fill gaps with the Whittaker smoother, weights 1 on clear observations and 0 on gaps.

    Parameters
    ----------
    values, valid, days
        As for :func:`eocube.fill._linear.linear_fill`.
    lmbda
        Smoothing strength (larger: smoother); scale-free with respect to the revisit interval.
    extrapolate
        ``"nearest"``: before the first / after the last clear observation hold the
        smoothed value there; ``"linear"``: the smoother's own linear extrapolation;
        ``"none"``: NaN there.
    keep_observed
        True: clear observations are returned unchanged (gap filling); False: the
        smoothed series everywhere.
    engine
        ``"numba"`` (compiled, default) or ``"numpy"`` (reference).
    nodata
        The cube's nodata value (e.g. 0 for digital numbers), missing like NaN; None: none.
    bound
        ``"observed"`` (default): every filled value is clipped into its pixel's clear range
        widened by ``margin`` times its width on each side, and into ``valid_range`` where
        given; ``"valid_range"``: into ``valid_range`` only; None: not bounded. Clear
        observations kept in the output are never changed.
    margin
        See ``bound`` (0.1: 10 % of the pixel's observed range below and above it).
    valid_range
        ``(lo, hi)``: the values a band can physically take (e.g. ``(-1, 1)`` for NDVI).
    return_bounded
        Also return a bool array shaped as the result, True where the bound changed a value.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        Filled values (and the ``return_bounded`` mask). Series with fewer than 2 clear
        observations (the smoother is undetermined) are filled by holding their only value;
        with none, NaN.
    """
    if not is_positive(lmbda):
        raise FillError(f"lmbda must be a finite number > 0, got {lmbda!r}")
    check_engine(engine)
    modes = {"nearest": 0, "linear": 1, "none": 2}
    if extrapolate not in modes:
        raise FillError(f"extrapolate must be 'nearest', 'linear' or 'none', got {extrapolate!r}")
    limits = resolve_bound(bound, margin, valid_range)
    t = len(days)
    if t >= 3 and engine == "numba":
        from ._fast_common import band_outputs, band_views
        from ._fast_whittaker import whittaker_rows

        bands = band_views(values, valid)
        if bands is not None:
            p0, p1, p2 = penalty_bands(days)
            result, outs = band_outputs(values, bands)
            acted_result, acted = band_acted(result) if return_bounded else (None, None)
            whittaker_rows(bands, valid, p0, p1, p2, float(lmbda), modes[extrapolate], bool(keep_observed), outs,
                           nodata, limits, acted if limits is not None else None)
            return (result, acted_result) if return_bounded else result
    values = as_block(values)
    shape = values.shape
    if t < 3:  # linear filling stays within the clear observations: nothing to bound
        out = linear_fill(values, valid, days, extrapolate="none" if extrapolate == "none" else "nearest",
                          nodata=nodata)
        return (out, no_bound_acted(out)) if return_bounded else out
    p0, p1, p2 = penalty_bands(days)
    if engine == "numba":
        from ._fast_whittaker import whittaker_2d

        flat2, ok2, _ = prepare_2d(values, valid, nodata)
        out = whittaker_2d(flat2, ok2, np.asarray(days, dtype="float64"), p0, p1, p2, float(lmbda),
                           modes[extrapolate], bool(keep_observed))
        return bound_fallback(out, flat2, ok2, bool(keep_observed), limits, shape, return_bounded)
    flat, ok, dtype = prepare(values, valid, nodata)
    w = ok.astype("float64")
    a0 = w + lmbda * p0[:, None]
    a0 += 1e-9 * lmbda  # keeps series with < 2 observations solvable; they are replaced below
    z = _banded_solve(a0, lmbda * p1, lmbda * p2, np.where(ok, flat, 0.0).astype("float64"))
    count = ok.sum(axis=0)
    if extrapolate in ("nearest", "none"):
        previous, following = neighbour_indices(ok)
        outside = (previous < 0) | (following >= t)
        if extrapolate == "nearest":
            held = np.take_along_axis(z, np.where(previous < 0, following, previous).clip(0, t - 1), axis=0)
            z = np.where(outside, held, z)
        else:
            z[outside] = np.nan
    elif extrapolate != "linear":
        raise FillError(f"extrapolate must be 'nearest', 'linear' or 'none', got {extrapolate!r}")
    few = count < 2
    if few.any():
        z[:, few] = linear_fill(flat[:, few], ok[:, few], days, extrapolate="nearest" if extrapolate != "none" else "none")
    z[:, count == 0] = np.nan
    return finish(z, flat, ok, shape, dtype, keep_observed, limits, return_bounded)
