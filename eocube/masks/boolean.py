"""Clear-sky masks from a band that already says "cloud" (1) or "clear" (0), or from any boolean mask."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..cube import select_bands, validate_cube
from ._errors import MaskError


def clear_from_cloud_band(
    cube: xr.DataArray,
    band: str = "CLM",
    *,
    data_band: str | None = None,
) -> xr.DataArray:
    """Clear mask from a boolean cloud band (non-zero = cloud), lazily.

    Parameters
    ----------
    cube
        A cube holding the cloud band (for example the s2cloudless ``CLM`` band).
    band
        Name of the cloud band; non-zero values are clouds, NaN counts as not clear.
    data_band
        Optional band that is non-zero where the sensor has data (e.g. ``IS_DATA``);
        pixels without data are not clear.

    Returns
    -------
    xarray.DataArray
        Boolean (time, y, x), True where the observation is clear.
    """
    validate_cube(cube)
    cloud = select_bands(cube, band).isel(band=0, drop=True)
    clear = (cloud == 0)  # NaN == 0 is False: unknown counts as cloudy
    if data_band is not None:
        clear = clear & has_data(cube, data_band)
    clear.name = "clear"
    clear.attrs = {"long_name": "clear observation", "source_band": band}
    return clear


def has_data(cube: xr.DataArray, band: str) -> xr.DataArray:
    """Boolean (time, y, x): True where ``band`` is non-zero and not NaN (e.g. ``IS_DATA``)."""
    flag = select_bands(cube, band).isel(band=0, drop=True)
    return (flag != 0) & flag.notnull()


def align_mask(mask: object, cube: xr.DataArray, *, name: str = "clear mask") -> xr.DataArray:
    """Check that a boolean mask fits a cube and return it as (time, [band,] y, x).

    Parameters
    ----------
    mask
        Boolean :class:`xarray.DataArray` with dims ``(time, y, x)`` or
        ``(time, band, y, x)`` (any order) on the cube's coordinates.
    cube
        The cube the mask belongs to.
    name
        How to call the mask in error messages.

    Returns
    -------
    xarray.DataArray
        The mask transposed to ``(time, y, x)`` or ``(time, band, y, x)``, with its
        bands selected in the cube's order.

    Raises
    ------
    MaskError
        If the mask is not boolean, has other dims, or other coordinates than the cube.
    """
    if not isinstance(mask, xr.DataArray) or mask.dtype != bool:
        raise MaskError(
            f"the {name} must be a boolean xarray.DataArray (True = clear), got "
            f"{type(mask).__name__}{'' if not isinstance(mask, xr.DataArray) else ' of dtype ' + str(mask.dtype)}: "
            "build one with eocube.masks (clear_from_cloud_band, clear_from_scl, ...) or compare, e.g. cloud == 0"
        )
    dims = set(mask.dims)
    if dims == {"time", "y", "x"}:
        mask = mask.transpose("time", "y", "x")
    elif dims == {"time", "band", "y", "x"}:
        missing = sorted(set(map(str, cube["band"].values)) - set(map(str, mask["band"].values)))
        if missing:
            raise MaskError(f"the {name} has no layer for band(s) {missing} of the cube: give one per band, "
                            "or a (time, y, x) mask shared by all bands")
        mask = mask.transpose("time", "band", "y", "x").sel(band=cube["band"].values)
    else:
        raise MaskError(
            f"the {name} has dims {tuple(mask.dims)}; expected (time, y, x) or (time, band, y, x) "
            "on the same grid as the cube"
        )
    for dim in ("time", "y", "x"):
        if mask.sizes[dim] != cube.sizes[dim] or not np.array_equal(mask[dim].values, cube[dim].values):
            raise MaskError(
                f"the {name}'s {dim} coordinate does not match the cube's ({_difference(mask[dim].values, cube[dim].values)}): "
                "build the mask from the same cube, or align it with mask.reindex_like(cube, fill_value=False)"
            )
    return mask


def _difference(ours: np.ndarray, theirs: np.ndarray) -> str:
    """How a mask's coordinate differs from the cube's, in a few words."""
    if len(ours) != len(theirs):
        return f"{len(ours)} vs {len(theirs)} values"
    if np.array_equal(ours[::-1], theirs):
        return f"the same {len(ours)} values in reverse order"
    first = int(np.argmax(ours != theirs))
    return f"same length {len(ours)}, first difference at index {first}: {ours[first]} vs {theirs[first]}"


def clear_from_mask(mask: xr.DataArray, cube: xr.DataArray, *, cloudy: bool = False) -> xr.DataArray:
    """Use any boolean mask as a clear mask for ``cube`` (checked against its grid).

    Parameters
    ----------
    mask
        Boolean DataArray (time, y, x) or (time, band, y, x).
    cube
        The cube it belongs to.
    cloudy
        True if the mask marks clouds (True = cloud) rather than clear observations.

    Returns
    -------
    xarray.DataArray
        Boolean clear mask, True = clear.
    """
    validate_cube(cube)
    clear = align_mask(mask, cube, name="mask")
    if cloudy:
        clear = ~clear
    clear.name = "clear"
    return clear
