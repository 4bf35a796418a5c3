"""Grow clouds by N pixels (cloud edges and thin borders are often missed by cloud masks)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage

from ._errors import MaskError


def disk(radius: int) -> np.ndarray:
    """Boolean disk of the given radius in pixels, shape (2r+1, 2r+1)."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius


def _shrink_block(clear: np.ndarray, structure: np.ndarray) -> np.ndarray:
    cloud = ~clear
    grown = ndimage.binary_dilation(cloud, structure=structure, border_value=0)
    return ~grown


def dilate_clouds(clear: xr.DataArray, pixels: int) -> xr.DataArray:
    """Shrink a clear mask so that every cloudy pixel grows by ``pixels`` (a disk), lazily.

    Parameters
    ----------
    clear
        Boolean clear mask, dims ending in ``(y, x)`` (e.g. ``(time, y, x)``).
    pixels
        Radius of the dilation in pixels; 0 returns ``clear`` unchanged.

    Returns
    -------
    xarray.DataArray
        The clear mask with clouds dilated per date (pixels outside the image do not count
        as cloud). Dask-backed masks stay lazy (``map_overlap`` with a halo of ``pixels``).
    """
    if not isinstance(pixels, (int, np.integer)) or pixels < 0:
        raise MaskError(f"dilation must be a whole number of pixels >= 0, got {pixels!r}")
    if pixels == 0:
        return clear
    if tuple(clear.dims[-2:]) != ("y", "x") or clear.dtype != bool:
        raise MaskError(f"dilate_clouds needs a boolean mask with dims ending in (y, x), got {clear.dims} {clear.dtype}")
    plane = disk(int(pixels))
    structure = plane.reshape((1,) * (clear.ndim - 2) + plane.shape)
    if isinstance(clear.data, da.Array):
        depth = {clear.ndim - 2: int(pixels), clear.ndim - 1: int(pixels)}
        data = clear.data.map_overlap(_shrink_block, depth=depth, boundary="none", structure=structure,
                                      dtype=bool, meta=np.empty((0,) * clear.ndim, bool), name="eocube-dilate")
    else:
        data = _shrink_block(np.asarray(clear.values), structure)
    out = clear.copy(data=data)
    out.attrs = {**clear.attrs, "dilation_pixels": int(pixels)}
    return out
