"""Quality band of a gap fill: days from each date to the nearest clear observation of the pixel."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..cube import check_time_axis
from ._common import check_engine
from ._grid import TimeGrid, days_since, target_times
from ._linear import neighbour_indices
from ._nodata import cube_nodata


def distance_to_clear(valid: np.ndarray, days: np.ndarray, engine: str = "numba") -> np.ndarray:
    """Days from each date to the nearest True of ``valid`` along axis 0.

    Parameters
    ----------
    valid
        Boolean array (time, ...).
    days
        Float days (time,), increasing.
    engine
        ``"numba"``: compiled date sweeps for (time, y, x) and (time, band, y, x) blocks with
        contiguous rows (others go to the NumPy kernel); ``"numpy"``: the NumPy kernel.

    Returns
    -------
    numpy.ndarray
        float32 like ``valid``: 0 on clear observations, NaN where a series has no clear observation.
    """
    check_engine(engine)
    block = valid[:, None] if valid.ndim == 3 else valid
    if (engine == "numba" and block.ndim == 4 and block.dtype == np.bool_ and block.size
            and block.strides[3] == 1):
        from ._fast_linear import distance_rows

        return distance_rows(block, days).reshape(valid.shape)
    shape = valid.shape
    t = shape[0]
    ok = valid.reshape(t, -1)
    previous, following = neighbour_indices(ok)
    d = np.asarray(days, dtype="float64")
    with np.errstate(invalid="ignore"):
        before = np.where(previous >= 0, d[:, None] - d[previous.clip(0, t - 1)], np.inf)
        after = np.where(following < t, d[following.clip(0, t - 1)] - d[:, None], np.inf)
    out = np.minimum(before, after)
    out[~np.isfinite(out)] = np.nan
    return out.astype("float32").reshape(shape)


def usable_mask(cube: xr.DataArray, clear: xr.DataArray | None = None) -> xr.DataArray:
    """Where an observation of ``cube`` is usable, lazily: ``clear``, and neither NaN nor the
    cube's nodata value (see :func:`eocube.fill.fill_gaps`), dims (time, band, y, x).

    Parameters
    ----------
    cube
        The cube (as given to ``fill_gaps``; integer digital numbers with ``rio.nodata`` 0 too).
    clear
        Boolean clear mask (time, y, x) or (time, band, y, x), or None (every observation clear).
    """
    from ..masks import align_mask
    from ._common import kernel_nodata

    present = cube.notnull() if np.issubdtype(cube.dtype, np.floating) else xr.ones_like(cube, dtype=bool)
    value = kernel_nodata(cube.dtype, cube_nodata(cube))
    if value is not None:
        present = present & (cube != value)
    if clear is not None:
        present = align_mask(clear, cube) & present
    present = present.transpose("time", "band", "y", "x")
    present.attrs = {}
    return present.drop_vars([c for c in present.coords if c not in present.dims and c != "spatial_ref"])


def days_to_clear(clear: xr.DataArray | None, *, time_grid: TimeGrid = None,
                  cube: xr.DataArray | None = None) -> xr.DataArray:
    """Per pixel (and band) and date, the days to the nearest clear observation, lazily.

    The quality companion of :func:`eocube.fill.fill_gaps`: 0 where the value was
    observed, the gap half-width (or more) where it was filled, NaN where the pixel has
    no clear observation at all (and the filled value is NaN too).

    Parameters
    ----------
    clear
        Boolean clear mask (time, y, x) or (time, band, y, x), e.g. from :mod:`eocube.masks`;
        None only with ``cube`` (its values alone say what is missing).
    time_grid
        The same ``time_grid`` as given to ``fill_gaps`` (None: the mask's dates).
    cube
        The cube that was filled: pass it so that its NaN values and nodata value (e.g. 0 in
        uint16 digital numbers) count as not clear, as ``fill_gaps`` counts them; the result
        is then per band (:func:`usable_mask`). None: the mask alone.

    Returns
    -------
    xarray.DataArray
        float32, the mask's dims (with ``cube``: time, band, y, x), named ``days_to_clear``.
    """
    if cube is not None:
        clear = usable_mask(cube, clear)
    if not isinstance(clear, xr.DataArray) or clear.dtype != bool or "time" not in clear.dims:
        raise TypeError("days_to_clear needs a boolean xarray.DataArray with a time dim (True = clear)")
    clear = clear.transpose("time", ...)
    check_time_axis(clear)
    times = pd.DatetimeIndex(clear["time"].values)
    target = target_times(times, time_grid)
    if target is not None:
        clear = clear.reindex(time=times.union(target), fill_value=False)
    days = days_since(pd.DatetimeIndex(clear["time"].values), times[0])
    data = clear.data if isinstance(clear.data, da.Array) else da.from_array(clear.values)
    data = data.rechunk({0: -1})
    out = da.map_blocks(distance_to_clear, data, days, dtype="float32", meta=np.empty((0,) * data.ndim, "float32"),
                        name="eocube-days-to-clear-" + da.core.tokenize(data, days))
    result = clear.copy(data=out)
    if target is not None:
        result = result.sel(time=target)
    result.name = "days_to_clear"
    result.attrs = {"long_name": "days to the nearest clear observation", "units": "days"}
    return result
