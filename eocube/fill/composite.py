"""Regular composites: one statistic of the clear observations per period (e.g. monthly median)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..cube import select_bands, validate_cube
from ..masks import align_mask
from ._common import is_nodata
from ._errors import FillError
from ._nodata import cube_nodata, with_nan_nodata
from .temporal import _time_contiguous, _valid_array

STATISTICS = {"median": np.nanmedian, "mean": np.nanmean, "max": np.nanmax, "min": np.nanmin}
"""Composite statistics by name (computed over the clear observations of each period)."""


def _composite_block(values: np.ndarray, valid: np.ndarray, *, groups: list[np.ndarray], stat: str,
                     engine: str = "numba", nodata: float | int | None = None) -> np.ndarray:
    """One statistic of the clear values per group of dates, for one block (time first).

    Values that are NaN or equal to ``nodata`` are missing, whatever ``valid`` says.

    ``engine="numba"``: the compiled kernel (:mod:`eocube.fill._fast_composite`) for 4-D float or integer blocks
    with contiguous rows and periods of consecutive dates (medians: up to ``MAX_RANK_PERIOD``
    dates); anything else, and ``engine="numpy"``, the NumPy reference below (same results).
    """
    if engine == "numba":
        from ._fast_common import rows_contiguous
        from ._fast_composite import MAX_RANK_PERIOD, composite_rows

        starts = np.array([idx[0] if idx.size else 0 for idx in groups], dtype=np.int64)
        stops = np.array([idx[-1] + 1 if idx.size else 0 for idx in groups], dtype=np.int64)
        consecutive = all(np.array_equal(idx, np.arange(a, b)) for idx, a, b in zip(groups, starts, stops))
        longest = int((stops - starts).max(initial=0))
        if consecutive and rows_contiguous(values, valid) and (stat != "median" or longest <= MAX_RANK_PERIOD):
            return composite_rows(values, valid, starts, stops, stat, nodata)
    usable = valid & np.isfinite(values) & ~is_nodata(values, nodata)
    masked = np.where(usable, values, np.nan).astype(np.result_type(values.dtype, np.float32))
    out = np.full((len(groups),) + values.shape[1:], np.nan, dtype=masked.dtype)
    for k, idx in enumerate(groups):
        if idx.size:
            part = masked[idx]
            empty = ~np.isfinite(part).any(axis=0)
            part[:, empty] = 0.0  # no all-NaN slice: NumPy would warn (warning filters are not thread-safe)
            value = STATISTICS[stat](part, axis=0)
            value[empty] = np.nan
            out[k] = value
    return out


def composite(
    cube: xr.DataArray,
    clear: xr.DataArray | None = None,
    *,
    freq: str = "MS",
    stat: str = "median",
    bands: str | list[str] | None = None,
) -> xr.DataArray:
    """Regular composites of the clear observations (median per month by default), lazily.

    Parameters
    ----------
    cube
        The cube (time strictly increasing).
    clear
        Boolean clear mask (time, y, x) or (time, band, y, x); None: all values count. NaN and the
        cube's nodata value (``cube.rio.nodata``, or ``cube.rio.encoded_nodata``, e.g. 0 for
        digital numbers) are never used, whatever the mask says.
    freq
        Period as a pandas frequency: ``"MS"`` (calendar months), ``"10D"``, ``"QS"``, ...
    stat
        A key of :data:`STATISTICS`.
    bands
        Bands to composite; all by default.

    Returns
    -------
    xarray.DataArray
        Cube with one date per period (the period start, every period between the first
        and last date, empty ones included) holding the statistic (float); NaN where a pixel has
        no clear observation in the period, and NaN is its nodata value.
    """
    validate_cube(cube)  # the time axis included
    if stat not in STATISTICS:
        raise FillError(f"unknown composite statistic {stat!r}; choose one of {sorted(STATISTICS)}")
    cube = select_bands(cube, bands)
    if clear is not None:
        clear = align_mask(clear, cube)
    times = pd.DatetimeIndex(cube["time"].values)
    try:
        labels = pd.Series(np.arange(len(times)), index=times).resample(freq)
    except ValueError as exc:
        raise FillError(f"freq {freq!r} is not a pandas frequency ({exc}): use e.g. 'MS', '10D', 'QS'") from None
    starts = pd.DatetimeIndex(list(labels.groups.keys()))
    groups = [np.asarray(v, dtype=int) for v in labels.apply(list)]
    data = _time_contiguous(cube, rechunk=True)
    valid = _valid_array(cube, clear, data.chunks)
    nodata = cube_nodata(cube)
    out = da.map_blocks(
        _composite_block, data, valid, groups=groups, stat=stat, nodata=nodata,
        chunks=((len(starts),),) + data.chunks[1:], dtype=np.result_type(cube.dtype, np.float32),
        meta=np.empty((0,) * 4, np.result_type(cube.dtype, np.float32)),
        name="eocube-composite-" + da.core.tokenize(data, valid, freq, stat, nodata),
    )
    result = xr.DataArray(out, dims=cube.dims, coords={**{k: v for k, v in cube.coords.items() if "time" not in v.dims},
                                                        "time": starts.values}, attrs=dict(cube.attrs), name=cube.name)
    result.attrs["eocube_composite"] = f"{stat} per {freq}"
    return with_nan_nodata(result)
