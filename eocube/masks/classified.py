"""Clear-sky masks from classification and quality bands: Sentinel-2 SCL, Landsat QA_PIXEL, probabilities."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import xarray as xr

from ..cube import select_bands, validate_cube
from ._errors import MaskError

SCL_CLASSES: dict[str, int] = {
    "no_data": 0,
    "saturated_defective": 1,
    "dark_area": 2,
    "cloud_shadow": 3,
    "vegetation": 4,
    "not_vegetated": 5,
    "water": 6,
    "unclassified": 7,
    "cloud_medium_probability": 8,
    "cloud_high_probability": 9,
    "thin_cirrus": 10,
    "snow": 11,
}
"""Sentinel-2 L2A scene classification (SCL) values by name (ESA Sen2Cor)."""

SCL_NOT_CLEAR: tuple[str, ...] = (
    "no_data",
    "saturated_defective",
    "cloud_shadow",
    "cloud_medium_probability",
    "cloud_high_probability",
    "thin_cirrus",
)
"""SCL classes that are not clear by default (snow is added with ``snow=True``)."""

QA_PIXEL_BITS: dict[str, int] = {
    "fill": 0,
    "dilated_cloud": 1,
    "cirrus": 2,
    "cloud": 3,
    "cloud_shadow": 4,
    "snow": 5,
    "clear": 6,
    "water": 7,
}
"""Landsat Collection 2 ``QA_PIXEL`` bit positions by flag name (USGS)."""

QA_PIXEL_NOT_CLEAR: tuple[str, ...] = ("fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow")
"""QA_PIXEL flags that make an observation not clear by default (snow is added with ``snow=True``)."""


def _band(cube: xr.DataArray, band: str) -> xr.DataArray:
    validate_cube(cube)
    return select_bands(cube, band).isel(band=0, drop=True)


def _finish(clear: xr.DataArray, source: str, **attrs: object) -> xr.DataArray:
    clear.name = "clear"
    clear.attrs = {"long_name": "clear observation", "source_band": source,
                   **{k: str(v) for k, v in attrs.items()}}
    return clear


def clear_from_scl(
    cube: xr.DataArray,
    band: str = "SCL",
    *,
    classes: Iterable[str | int] | None = None,
    snow: bool = False,
) -> xr.DataArray:
    """Clear mask from a Sentinel-2 L2A scene classification band, lazily.

    Parameters
    ----------
    cube
        A cube holding the SCL band.
    band
        Name of the SCL band.
    classes
        SCL classes that are NOT clear, by name (keys of :data:`SCL_CLASSES`) or value
        (0..11). Default :data:`SCL_NOT_CLEAR`: no data, saturated/defective, cloud
        shadow, cloud medium/high probability, thin cirrus.
    snow
        Also count snow/ice (class 11) as not clear.

    Returns
    -------
    xarray.DataArray
        Boolean (time, y, x), True where the observation is clear. NaN SCL values
        are not clear.

    Raises
    ------
    MaskError
        For an unknown class name or value.
    """
    values = _class_values(SCL_NOT_CLEAR if classes is None else classes)
    if snow:
        values.add(SCL_CLASSES["snow"])
    scl = _band(cube, band)
    clear = ~scl.isin(sorted(values)) & scl.notnull()
    return _finish(clear, band, not_clear_classes=sorted(values))


def _class_values(classes: Iterable[str | int]) -> set[int]:
    if isinstance(classes, (str, int)):
        classes = [classes]
    by_value = set(SCL_CLASSES.values())
    values: set[int] = set()
    for c in classes:
        if isinstance(c, str) and c in SCL_CLASSES:
            values.add(SCL_CLASSES[c])
        elif isinstance(c, (int, np.integer)) and int(c) in by_value:
            values.add(int(c))
        else:
            raise MaskError(
                f"unknown SCL class {c!r}: use a name of {list(SCL_CLASSES)} or a value 0..11"
            )
    return values


def clear_from_qa_pixel(
    cube: xr.DataArray,
    band: str = "QA_PIXEL",
    *,
    flags: Iterable[str] | None = None,
    snow: bool = False,
) -> xr.DataArray:
    """Clear mask from a Landsat Collection 2 ``QA_PIXEL`` band (bit flags), lazily.

    Parameters
    ----------
    cube
        A cube holding the QA_PIXEL band (integer or float holding integers).
    band
        Name of the QA band.
    flags
        Flags that make an observation not clear (keys of :data:`QA_PIXEL_BITS`).
        Default :data:`QA_PIXEL_NOT_CLEAR`: fill, dilated cloud, cirrus, cloud, cloud shadow.
    snow
        Also count snow (bit 5) as not clear.

    Returns
    -------
    xarray.DataArray
        Boolean (time, y, x), True where none of the flags is set (NaN = not clear).
    """
    names = list(QA_PIXEL_NOT_CLEAR if flags is None else ([flags] if isinstance(flags, str) else flags))
    if snow:
        names.append("snow")
    unknown = [n for n in names if n not in QA_PIXEL_BITS]
    if unknown:
        raise MaskError(f"unknown QA_PIXEL flag(s) {unknown}: use names of {list(QA_PIXEL_BITS)}")
    bitmask = 0
    for n in names:
        bitmask |= 1 << QA_PIXEL_BITS[n]
    qa = _band(cube, band)
    known = qa.notnull()
    as_int = qa.fillna(0).astype("uint32") if np.issubdtype(qa.dtype, np.floating) else qa.astype("uint32")
    clear = ((as_int & bitmask) == 0) & known
    return _finish(clear, band, not_clear_flags=sorted(set(names)))


def clear_from_probability(cube: xr.DataArray, band: str = "CLP", *, threshold: float = 0.4) -> xr.DataArray:
    """Clear mask from a cloud-probability band: clear where probability < ``threshold``.

    Parameters
    ----------
    cube
        A cube holding the probability band (e.g. s2cloudless ``CLP``, 0..1).
    band
        Name of the probability band.
    threshold
        Probability at or above which an observation is cloudy. Give it in the band's
        units (0..1 for CLP; 0..100 or 0..255 for scaled products).

    Returns
    -------
    xarray.DataArray
        Boolean (time, y, x); NaN probability counts as not clear.
    """
    prob = _band(cube, band)
    return _finish(prob < threshold, band, threshold=threshold)
