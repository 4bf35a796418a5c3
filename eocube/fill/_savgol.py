"""Savitzky-Golay filtering of gappy, unevenly spaced series: the pure-array kernel.

A Savitzky-Golay filter is a local polynomial least-squares fit in a moving window.
With gaps and irregular dates the window holds a different set of points for every
pixel and date, so the fit is written as such: for each date, a polynomial of degree
``order`` in (t' - t) is fitted to the clear observations within ``window / 2`` days
and its value at t is the result. The moment sums over the window are matrix
products over time; the small systems are solved vectorised over pixels. On
evenly spaced complete data this is exactly ``scipy.signal.savgol_filter`` (away
from the edges).
"""

from __future__ import annotations

import numpy as np

from ._bound import resolve_bound
from ._common import batched_spd_solve, check_engine, finish, is_count, is_positive, prepare
from ._errors import FillError
from ._linear import linear_fill


def savgol_fill(
    values: np.ndarray,
    valid: np.ndarray,
    days: np.ndarray,
    window: float = 60.0,
    order: int = 2,
    keep_observed: bool = True,
    engine: str = "numba",
    nodata: float | int | None = None,
    bound: str | None = "observed",
    margin: float = 0.1,
    valid_range: tuple[float, float] | None = None,
    return_bounded: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Fill gaps with a local polynomial (Savitzky-Golay) fit on the clear observations.

    Parameters
    ----------
    values, valid, days
        As for :func:`eocube.fill._linear.linear_fill`.
    window
        Window length in days (points within ``window / 2`` of a date are used).
    order
        Polynomial degree (0 = moving mean, 2 = the classic choice).
    keep_observed
        True: clear observations unchanged; False: the smoothed series everywhere.
    engine
        ``"numba"``: the compiled kernel, window by window, for 4-D float or integer blocks with contiguous
        rows (default; other blocks go to the NumPy kernel); ``"numpy"``: the NumPy kernel
        (dense products over all dates; the reference, same results).
    nodata, bound, margin, valid_range, return_bounded
        As for :func:`eocube.fill._whittaker.whittaker_fill`: the nodata value (missing like
        NaN), and the bound on the filled values (default: each pixel's clear range widened by
        10 % of its width on each side), also applied to the linear fallback.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        Filled values (and the ``return_bounded`` mask). Where a window holds fewer than ``order + 2`` clear
        observations (a long gap) the value comes from linear filling instead; NaN
        where a series has no clear observation.
    """
    if not is_positive(window) or not is_count(order):
        raise FillError(f"window must be a finite number of days > 0 and order an integer >= 0, got {window!r}, {order!r}")
    check_engine(engine)
    limits = resolve_bound(bound, margin, valid_range)
    if engine == "numba":
        from ._fast_common import rows_contiguous

        if rows_contiguous(values, valid):
            from ._fast_linear import linear_rows
            from ._fast_savgol import savgol_rows

            linear = linear_rows(values, valid, days, True, nodata=nodata)
            acted = np.zeros(values.shape, bool) if return_bounded else None
            out = savgol_rows(values, valid, days, float(window), int(order), keep_observed, linear, nodata, limits,
                              acted if limits is not None else None)
            return (out, acted) if return_bounded else out
    shape = values.shape
    flat, ok, dtype = prepare(values, valid, nodata)
    d = np.asarray(days, dtype="float64")
    half = window / 2.0
    delta = (d[None, :] - d[:, None]) / half                     # (T target, T source), in [-1, 1] inside
    inside = np.abs(delta) <= 1.0
    w = ok.astype("float64")
    y = np.where(ok, flat, 0.0).astype("float64")
    p = order + 1
    moments = [(np.where(inside, delta ** k, 0.0)) @ w for k in range(2 * p - 1)]   # each (T, n)
    rhs = np.stack([(np.where(inside, delta ** k, 0.0)) @ y for k in range(p)])       # (p, T, n)
    t, n = flat.shape
    flat_moments = [m.reshape(-1) for m in moments]
    gram = [[flat_moments[i + j] for j in range(p)] for i in range(p)]   # Hankel: no copies
    coef = batched_spd_solve(gram, rhs.reshape(p, -1))
    model = coef[0].reshape(t, n)
    short = (moments[0] < p + 1) | ~np.isfinite(model)
    if short.any():
        model = np.where(short, linear_fill(flat, ok, days), model)
    return finish(model, flat, ok, shape, dtype, keep_observed, limits, return_bounded)
