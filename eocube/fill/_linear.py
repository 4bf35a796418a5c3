"""Linear temporal interpolation of gaps: the pure-array kernel (NumPy, no xarray)."""

from __future__ import annotations

import numpy as np

from ._common import check_engine, is_nodata, prepare_2d
from ._errors import FillError


def neighbour_indices(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every (t, pixel), the index of the previous and next valid observation.

    Parameters
    ----------
    valid
        Boolean array (time, n).

    Returns
    -------
    previous, following
        Integer arrays (time, n): the last valid index <= t (-1 where none) and
        the first valid index >= t (``time`` where none).
    """
    t = valid.shape[0]
    itype = np.int16 if t < np.iinfo(np.int16).max else np.int32
    steps = np.arange(t, dtype=itype)[:, None]
    previous = np.where(valid, steps, itype(-1))
    np.maximum.accumulate(previous, axis=0, out=previous)
    following = np.where(valid, steps, itype(t))
    following = np.minimum.accumulate(following[::-1], axis=0)[::-1]
    return previous, following


def linear_fill(values: np.ndarray, valid: np.ndarray, days: np.ndarray, extrapolate: str = "nearest",
                engine: str = "numba", nodata: float | int | None = None) -> np.ndarray:
    """Fill invalid observations by linear interpolation in time.

    Parameters
    ----------
    values
        Array (time, ...) of observations.
    valid
        Boolean array broadcastable to ``values``: True where an observation is
        usable. Non-finite values and values equal to ``nodata`` are never used.
    days
        Float array (time,): acquisition times in days (any origin), increasing.
    extrapolate
        ``"nearest"``: before the first / after the last clear observation, hold
        that observation. ``"none"``: leave NaN there.
    engine
        ``"numba"``: the compiled one-pass loop (default); ``"numpy"``: the vectorised
        NumPy reference (same result).
    nodata
        The cube's nodata value (e.g. 0 for digital numbers), missing like NaN; None: none.

    Returns
    -------
    numpy.ndarray
        Float array shaped like ``values``: observed values where valid,
        interpolated elsewhere, NaN where a pixel has no valid observation at all.
    """
    if extrapolate not in ("nearest", "none"):
        raise FillError(f"extrapolate must be 'nearest' or 'none', got {extrapolate!r}")
    check_engine(engine)
    if engine == "numba":
        from ._fast_common import rows_contiguous
        from ._fast_linear import linear_2d, linear_rows

        if rows_contiguous(values, valid):
            return linear_rows(values, valid, days, extrapolate == "nearest", nodata=nodata)
        flat2, ok2, _ = prepare_2d(values, valid, nodata)
        return linear_2d(flat2, ok2, np.asarray(days, dtype="float64"), extrapolate == "nearest").reshape(values.shape)
    shape = values.shape
    t = shape[0]
    out_dtype = np.result_type(values.dtype, np.float32)
    flat = values.reshape(t, -1).astype(out_dtype, copy=False)
    ok = np.broadcast_to(valid, shape).reshape(t, -1) & np.isfinite(flat) & ~is_nodata(values.reshape(t, -1), nodata)
    previous, following = neighbour_indices(ok)
    has_prev = previous >= 0
    has_next = following < t
    prev_i = np.where(has_prev, previous, following).clip(0, t - 1)
    next_i = np.where(has_next, following, previous).clip(0, t - 1)
    before = np.take_along_axis(flat, prev_i, axis=0)
    after = np.take_along_axis(flat, next_i, axis=0)
    d = np.asarray(days, dtype="float64")
    span = d[next_i] - d[prev_i]
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(span > 0, (d[:, None] - d[prev_i]) / span, 0.0).astype(out_dtype)
    filled = before + weight * (after - before)
    filled[~(has_prev | has_next)] = np.nan  # no clear observation at all
    if extrapolate == "none":
        filled[~(has_prev & has_next)] = np.nan
    filled = np.where(ok, flat, filled)
    return filled.reshape(shape)
