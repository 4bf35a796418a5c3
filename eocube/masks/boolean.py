"""Clear-sky masks from a band that already says "cloud" (1) or "clear" (0)."""

from __future__ import annotations

import xarray as xr

from ..cube import select_bands, validate_cube


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
        has_data = select_bands(cube, data_band).isel(band=0, drop=True)
        clear = clear & (has_data != 0) & has_data.notnull()
    clear.name = "clear"
    clear.attrs = {"long_name": "clear observation", "source_band": band}
    return clear
