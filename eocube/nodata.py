"""The cube's nodata rules, shared by every package: which value marks a missing observation
(:func:`cube_nodata`, as the engine, the masks, the gap filling and the models read it), and NaN
as the only nodata of a float result (:func:`with_nan_nodata`).

Part of the core (it imports neither :mod:`eocube.fill` nor :mod:`eocube.masks`, which both use it).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

NODATA_KEYS = ("_FillValue", "missing_value", "fill_value", "nodata", "nodatavals")
"""Attributes and encodings in which rioxarray (and netCDF/GDAL conventions) look for a nodata value."""


def cube_nodata(cube: xr.DataArray) -> float | int | None:
    """The value that marks a missing observation in ``cube`` besides NaN, or None.

    ``cube.rio.encoded_nodata`` where set (an integer cube read without decoding still holds it),
    else ``cube.rio.nodata``; None where neither is set or it is NaN. Digital numbers straight
    from a STAC asset typically mark nodata with 0; float products sometimes with -9999.
    """
    value = cube.rio.encoded_nodata
    if value is None:
        value = cube.rio.nodata
    if value is None:
        return None
    value = value.item() if isinstance(value, np.generic) else value
    try:
        if np.isnan(value):
            return None
    except TypeError:
        return None
    return value


def with_nan_nodata(result: xr.DataArray) -> xr.DataArray:
    """``result`` (float) with NaN as its only nodata value: the input's nodata attributes and
    encodings (e.g. ``_FillValue=0`` of a uint16 cube) dropped, so no former nodata value can
    make a filled 0 look missing, or the NaN gaps look valid."""
    result.attrs = {k: v for k, v in result.attrs.items() if k not in NODATA_KEYS}
    result.encoding = {k: v for k, v in result.encoding.items() if k not in NODATA_KEYS}
    return result.rio.write_nodata(np.nan, encoded=False)
