"""Label cubes from a class band of a cube (a land-cover map already on the grid)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..cube import select_bands, validate_cube
from ._burn import label_cube
from ._classes import ClassLike, class_attrs, classes_from_attrs
from ._errors import LabelError
from ._table import Target, build_table, choose_nodata, label_dtype


def labels_from_band(
    cube: xr.DataArray,
    band: str,
    *,
    classes: Sequence[ClassLike] | Mapping[int, str] | None = None,
    mapping: Mapping[Any, Target] | None = None,
    nodata: int | None = None,
    time: Any = None,
) -> xr.DataArray:
    """A label cube from a class band of a cube (lazy: the band is read only when computed).

    Parameters
    ----------
    cube
        Any cube holding a band of whole-number class codes (float bands with NaN work too).
    band
        That band's name.
    classes
        The class table (:class:`eocube.models.ClassInfo`, values, or ``(value, name[, color])``);
        default: the ``class_values``/``class_names``/``class_colors`` attributes of ``cube``.
    mapping
        Band value -> class (name or value), to renumber or merge codes (``{3: "grass", 4: "grass"}``);
        None: the band's values are the class values.
    nodata
        Value of unlabelled pixels; default 0, or 255 if a class is 0. The band's nodata, NaN, and
        every value that no class (or mapping) takes become ``nodata``.
    time
        The date to take when the cube has several: an index or a date; None: the only one.

    Returns
    -------
    xarray.DataArray
        Cube ``(time, band, y, x)`` with one date and band ``"label"``, uint8 (uint16 if values need it),
        the classes in its attributes.

    Raises
    ------
    LabelError
        No classes known, several dates and no ``time``, a mapping to an unknown class.
    BandError
        ``band`` is not in the cube.
    """
    cube = validate_cube(cube)
    layer = select_bands(cube, band)
    if classes is None and mapping is None:
        if "class_values" not in cube.attrs:
            raise LabelError(f"no classes known for band {band!r}: pass classes=[ClassInfo(value, name, color), ...] "
                             "(or a list of class values), or mapping={band value: class}")
        classes = classes_from_attrs(cube)
    table, lookup = build_table(mapping, classes, [], None if nodata is None else int(nodata))
    nodata = choose_nodata(nodata, table)
    dtype = label_dtype(table, nodata)
    layer = _one_date(layer, time)
    keys = np.asarray(sorted(k for k in lookup if isinstance(k, int)), dtype="float64")
    targets = np.asarray([lookup[int(k)] for k in keys], dtype=dtype)
    source_nodata = cube.rio.nodata
    data = layer.data
    if hasattr(data, "map_blocks"):
        out = data.map_blocks(_lookup, keys, targets, nodata, source_nodata, dtype=dtype,
                             meta=np.empty((0,) * data.ndim, dtype=dtype))
    else:
        out = _lookup(np.asarray(data), keys, targets, nodata, source_nodata)
    attrs = {"long_name": "class label", **class_attrs(table), "labels_source": f"band {band!r} of {cube.name}",
             "labels_mapping": json.dumps({str(k): v for k, v in (mapping or {}).items()}, default=str)}
    return label_cube(out, layer, time=None, nodata=nodata, attrs=attrs)


def _one_date(layer: xr.DataArray, time: Any) -> xr.DataArray:
    n = layer.sizes["time"]
    if time is None:
        if n != 1:
            raise LabelError(f"the class band has {n} dates: pass time= (an index or a date) to choose one")
        return layer
    if isinstance(time, (int, np.integer)):
        if not -n <= time < n:
            raise LabelError(f"time={time} is out of range: the cube has {n} dates")
        return layer.isel(time=[int(time)])
    when = pd.Timestamp(time).to_datetime64()
    if when not in layer["time"].values:
        raise LabelError(f"time={time!r} is not a date of the cube ({n} dates, "
                         f"{pd.Timestamp(layer.time.values[0])} .. {pd.Timestamp(layer.time.values[-1])})")
    return layer.sel(time=[when])


def _lookup(block: np.ndarray, keys: np.ndarray, targets: np.ndarray, nodata: int,
            source_nodata: float | None) -> np.ndarray:
    """Class value of each pixel: exact matches of ``keys``, else ``nodata``."""
    values = block.astype("float64", copy=False)
    out = np.full(block.shape, nodata, dtype=targets.dtype)
    if not len(keys):
        return out
    pos = np.clip(np.searchsorted(keys, values), 0, len(keys) - 1)
    hit = keys[pos] == values
    if source_nodata is not None and not np.isnan(source_nodata):
        hit &= values != source_nodata
    out[hit] = targets[pos[hit]]
    return out
