"""Nearest, previous and next observation filling: the pure-array kernels.

Blocks as dask hands them over (4-D float or integer, see :func:`eocube.fill._fast_common.rows_contiguous`)
go to the compiled sweeps of the linear kernel (:func:`eocube.fill._fast_linear.linear_rows`);
anything else, and ``engine="numpy"``, to the NumPy reference below (same results).
"""

from __future__ import annotations

import numpy as np

from ._common import check_engine, finish, prepare
from ._errors import FillError
from ._linear import neighbour_indices


def _pick(values: np.ndarray, valid: np.ndarray, days: np.ndarray, rule: str, extrapolate: str,
          engine: str, nodata: float | int | None) -> np.ndarray:
    if extrapolate not in ("nearest", "none"):
        raise FillError(f"extrapolate must be 'nearest' or 'none', got {extrapolate!r}")
    check_engine(engine)
    if engine == "numba":
        from ._fast_common import rows_contiguous

        if rows_contiguous(values, valid):
            from ._fast_linear import linear_rows

            return linear_rows(values, valid, days, extrapolate == "nearest", rule=rule, nodata=nodata)
    shape = values.shape
    flat, ok, dtype = prepare(values, valid, nodata)
    t = flat.shape[0]
    previous, following = neighbour_indices(ok)
    has_prev, has_next = previous >= 0, following < t
    d = np.asarray(days, dtype="float64")
    if rule == "previous":
        use_prev = has_prev
    elif rule == "next":
        use_prev = ~has_next
    else:  # nearest; ties go to the previous observation
        gap_before = d[:, None] - d[previous.clip(0, t - 1)]
        gap_after = d[following.clip(0, t - 1)] - d[:, None]
        use_prev = has_prev & (~has_next | (gap_before <= gap_after))
    index = np.where(use_prev, previous, following).clip(0, t - 1)
    out = np.take_along_axis(flat, index, axis=0)
    out[~(has_prev | has_next)] = np.nan
    if extrapolate == "none":
        out[~(has_prev & has_next)] = np.nan
    return finish(out, flat, ok, shape, dtype, keep_observed=True)


def nearest_fill(values: np.ndarray, valid: np.ndarray, days: np.ndarray, extrapolate: str = "nearest",
                 engine: str = "numba", nodata: float | int | None = None) -> np.ndarray:
    """Fill each gap with the clear observation nearest in time (ties: the earlier one).

    Parameters
    ----------
    values, valid, days
        As for :func:`eocube.fill._linear.linear_fill`.
    extrapolate
        ``"nearest"`` (default) or ``"none"`` (NaN before the first and after the last clear observation).
    engine
        ``"numba"``: the compiled sweeps (default); ``"numpy"``: the NumPy reference (same result).
    nodata
        The cube's nodata value, missing like NaN (None: none).

    Returns
    -------
    numpy.ndarray
        Filled values, NaN where a series has no clear observation.
    """
    return _pick(values, valid, days, "nearest", extrapolate, engine, nodata)


def previous_fill(values: np.ndarray, valid: np.ndarray, days: np.ndarray, extrapolate: str = "nearest",
                  engine: str = "numba", nodata: float | int | None = None) -> np.ndarray:
    """Fill each gap with the last clear observation before it (forward fill).

    Before the first clear observation: the first one (``extrapolate="nearest"``). With
    ``extrapolate="none"`` every date outside the span of the clear observations is NaN, before
    the first and after the last (as for the other methods). ``engine`` and ``nodata`` as for
    :func:`nearest_fill`.
    """
    return _pick(values, valid, days, "previous", extrapolate, engine, nodata)


def next_fill(values: np.ndarray, valid: np.ndarray, days: np.ndarray, extrapolate: str = "nearest",
              engine: str = "numba", nodata: float | int | None = None) -> np.ndarray:
    """Fill each gap with the first clear observation after it (backward fill).

    After the last clear observation: the last one (``extrapolate="nearest"``). With
    ``extrapolate="none"`` every date outside the span of the clear observations is NaN, before
    the first and after the last (as for the other methods). ``engine`` and ``nodata`` as for
    :func:`nearest_fill`.
    """
    return _pick(values, valid, days, "next", extrapolate, engine, nodata)
