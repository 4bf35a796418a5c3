"""Temporal gap filling of cubes, lazily and chunk-wise (full time axis per chunk)."""

from __future__ import annotations

from typing import Callable

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..cube import check_time_axis, select_bands, validate_cube
from ..errors import CubeError
from ._linear import linear_fill

Kernel = Callable[..., np.ndarray]

METHODS: dict[str, Kernel] = {"linear": linear_fill}
"""Gap-filling kernels by name: ``kernel(values, valid, days, **options) -> filled``."""


def fill_gaps(
    cube: xr.DataArray,
    clear: xr.DataArray | None = None,
    *,
    method: str = "linear",
    bands: str | list[str] | None = None,
    **options: object,
) -> xr.DataArray:
    """Fill cloudy or missing observations along ``time``, per pixel and band.

    Lazy: builds a dask graph, one task per chunk. The time axis is brought into
    a single chunk (rechunking if needed) because each pixel needs its whole series.

    Parameters
    ----------
    cube
        The cube to fill.
    clear
        Boolean mask, True where an observation is clear, dims ``(time, y, x)`` or
        ``(time, band, y, x)`` on the cube's coordinates. None: only NaN/nodata
        values are gaps.
    method
        A key of :data:`METHODS` (``"linear"``).
    bands
        Bands to fill (others are dropped); all by default.
    **options
        Passed to the kernel, e.g. ``extrapolate="nearest"`` (default) or ``"none"``
        for linear filling.

    Returns
    -------
    xarray.DataArray
        Filled cube (float), same coordinates, CRS and attributes; observed
        values unchanged; NaN where a pixel has no clear observation at all.
    """
    validate_cube(cube)
    check_time_axis(cube)
    if method not in METHODS:
        raise ValueError(f"unknown gap-filling method {method!r}; choose one of {sorted(METHODS)}")
    cube = select_bands(cube, bands)
    data = cube.chunk({"time": -1}).data if cube.chunks is not None else da.from_array(
        cube.values, chunks=(-1, 1, "auto", "auto")
    )
    valid = _valid_array(cube, clear, data.chunks)
    days = _days(cube)
    kernel = METHODS[method]
    out_dtype = np.result_type(cube.dtype, np.float32)
    filled = da.map_blocks(
        _fill_block, data, valid, dtype=out_dtype, kernel=kernel, days=days, options=dict(options),
        name=f"eocube-fill-{method}",
    )
    result = cube.copy(data=filled)
    result.attrs = dict(cube.attrs)
    result.attrs["eocube_fill"] = method
    result = result.rio.write_nodata(np.nan, encoded=False)
    return result


def _fill_block(values: np.ndarray, valid: np.ndarray, *, kernel: Kernel, days: np.ndarray, options: dict) -> np.ndarray:
    return kernel(values, valid, days, **options)


def _days(cube: xr.DataArray) -> np.ndarray:
    times = pd.DatetimeIndex(cube["time"].values)
    return ((times - times[0]) / pd.Timedelta(days=1)).to_numpy(dtype="float64")


def _valid_array(cube: xr.DataArray, clear: xr.DataArray | None, chunks: tuple) -> da.Array:
    """The clear mask as a dask array aligned with the cube's chunks (time, band, y, x)."""
    if clear is None:
        return da.ones((cube.sizes["time"], 1, cube.sizes["y"], cube.sizes["x"]), dtype=bool,
                       chunks=(chunks[0], 1, chunks[2], chunks[3]))
    if not isinstance(clear, xr.DataArray) or clear.dtype != bool:
        raise CubeError(
            "the clear mask must be a boolean xarray.DataArray (True = clear), e.g. "
            "eocube.masks.clear_from_cloud_band(cube, 'CLM')"
        )
    if set(clear.dims) == {"time", "y", "x"}:
        clear = clear.expand_dims(band=1).transpose("time", "band", "y", "x")
        band_chunks: tuple = (1,)
    elif set(clear.dims) == {"time", "band", "y", "x"}:
        clear = clear.transpose("time", "band", "y", "x").sel(band=cube["band"].values)
        band_chunks = chunks[1]
    else:
        raise CubeError(
            f"the clear mask has dims {clear.dims}; expected (time, y, x) or (time, band, y, x) "
            "on the same grid as the cube"
        )
    for dim in ("time", "y", "x"):
        if clear.sizes[dim] != cube.sizes[dim] or not np.array_equal(clear[dim].values, cube[dim].values):
            raise CubeError(
                f"the clear mask's {dim} coordinate does not match the cube's ({clear.sizes[dim]} vs "
                f"{cube.sizes[dim]} values): build the mask from the same cube, or align it with "
                "mask.reindex_like(cube)"
            )
    data = clear.data if isinstance(clear.data, da.Array) else da.from_array(clear.values)
    return data.rechunk((chunks[0], band_chunks, chunks[2], chunks[3]))
