"""Harmonic regression (a Fourier series in time, optional linear trend) per pixel: the pure-array kernel.

Each series is fitted by least squares on its clear observations only. The design
matrix is shared by every pixel; the per-pixel normal equations are built with two
matrix products over the time axis and solved with a vectorised Cholesky.
"""

from __future__ import annotations

import numpy as np

from ._bound import band_acted, bound_fallback, clip, resolve_bound
from ._common import as_block, batched_spd_solve, check_engine, finish, is_count, is_positive, prepare, prepare_2d
from ._errors import FillError
from ._linear import linear_fill


def design_matrix(days: np.ndarray, harmonics: int, period: float, trend: bool) -> np.ndarray:
    """Columns ``1, [t], cos(2 pi k t / period), sin(2 pi k t / period)`` for k = 1..harmonics, shape (T, p)."""
    d = np.asarray(days, dtype="float64")
    cols = [np.ones_like(d)]
    if trend:
        span = d[-1] - d[0] if d.size > 1 and d[-1] > d[0] else 1.0
        cols.append((d - d[0]) / span - 0.5)
    for k in range(1, harmonics + 1):
        angle = 2 * np.pi * k * d / period
        cols += [np.cos(angle), np.sin(angle)]
    return np.stack(cols, axis=1)


def harmonic_fill(
    values: np.ndarray,
    valid: np.ndarray,
    days: np.ndarray,
    harmonics: int = 2,
    period: float = 365.25,
    trend: bool = True,
    min_obs: int | None = None,
    keep_observed: bool = True,
    engine: str = "numba",
    nodata: float | int | None = None,
    bound: str | None = "observed",
    margin: float = 0.1,
    valid_range: tuple[float, float] | None = None,
    return_bounded: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Fill gaps with a per-pixel harmonic regression fitted to the clear observations.

    Parameters
    ----------
    values, valid, days
        As for :func:`eocube.fill._linear.linear_fill` (``days`` counted from the first date).
    harmonics
        Number of harmonics (sine/cosine pairs); 0 fits only the mean (and trend).
    period
        Period of the first harmonic in days (a year by default).
    trend
        Also fit a linear trend over the series.
    min_obs
        Series with fewer clear observations than this are filled linearly instead
        (a regression on too few points oscillates wildly). Default: twice the
        number of coefficients.
    keep_observed
        True: clear observations unchanged; False: the fitted curve everywhere.
    engine
        ``"numba"`` (compiled, default) or ``"numpy"`` (reference).
    nodata, bound, margin, valid_range, return_bounded
        As for :func:`eocube.fill._whittaker.whittaker_fill`: the nodata value (missing like
        NaN), and the bound on the filled values (default: each pixel's clear range widened by
        10 % of its width on each side), also applied to the linear fallback.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        Filled values (and the ``return_bounded`` mask); NaN where a series has no clear observation.
    """
    if not is_count(harmonics) or not is_positive(period) or (min_obs is not None and not is_count(min_obs)):
        raise FillError(f"harmonics must be an integer >= 0, period a finite number of days > 0 and min_obs None "
                         f"or an integer >= 0, got {harmonics!r}, {period!r}, {min_obs!r}")
    check_engine(engine)
    limits = resolve_bound(bound, margin, valid_range)
    x = design_matrix(days, harmonics, period, trend)           # (T, p)
    p = x.shape[1]
    min_count = 2 * p if min_obs is None else int(min_obs)
    if engine == "numba":
        from ._fast_common import band_outputs, band_views
        from ._fast_harmonic import harmonic_2d, harmonic_rows

        bands = band_views(values, valid)
        if bands is not None:
            result, outs = band_outputs(values, bands)
            acted_result, acted = band_acted(result) if return_bounded else (None, None)
            bad4 = harmonic_rows(bands, valid, x, min_count, bool(keep_observed), outs, nodata, limits,
                                 acted if limits is not None else None)
            for b, (view, out_b) in enumerate(zip(bands, outs)):
                if bad4[b].any():  # too few clear observations or a singular fit: linear filling
                    ok_b = np.broadcast_to(valid[:, b if valid.shape[1] > 1 else 0], view[:, 0].shape)
                    sub = np.ascontiguousarray(view[:, 0][:, bad4[b]])
                    sub_ok = np.ascontiguousarray(ok_b[:, bad4[b]])
                    filled = linear_fill(sub, sub_ok, days, nodata=nodata)
                    sub_acted = np.zeros(filled.shape, bool)
                    if limits is not None:
                        flat_s, ok_s, _ = prepare(sub, sub_ok, nodata)
                        filled, sub_acted = clip(filled, flat_s, ok_s, ok_s if keep_observed else np.zeros_like(ok_s),
                                                 limits)
                    out_b[:, 0][:, bad4[b]] = filled
                    if acted is not None:
                        acted[b][:, 0][:, bad4[b]] = sub_acted
            return (result, acted_result) if return_bounded else result
    values = as_block(values)
    shape = values.shape
    if engine == "numba":
        flat2, ok2, _ = prepare_2d(values, valid, nodata)
        out, bad = harmonic_2d(flat2, ok2, np.ascontiguousarray(x), min_count, bool(keep_observed))
        if bad.any():
            out[:, bad] = linear_fill(flat2[:, bad], ok2[:, bad], days)
        return bound_fallback(out, flat2, ok2, bool(keep_observed), limits, shape, return_bounded)
    flat, ok, dtype = prepare(values, valid, nodata)
    w = ok.astype("float64")
    outer = np.einsum("ti,tj->ijt", x, x).reshape(p * p, -1)     # (p*p, T)
    gram = (outer @ w).reshape(p, p, -1)                         # (p, p, n)
    gram += 1e-9 * np.eye(p)[:, :, None]
    rhs = x.T @ np.where(ok, flat, 0.0).astype("float64")       # (p, n)
    coef = batched_spd_solve(gram, rhs)
    model = x @ coef                                             # (T, n)
    few = ok.sum(axis=0) < min_count
    bad = few | ~np.isfinite(model).all(axis=0)
    if bad.any():
        model[:, bad] = linear_fill(flat[:, bad], ok[:, bad], days)
    return finish(model, flat, ok, shape, dtype, keep_observed, limits, return_bounded)
