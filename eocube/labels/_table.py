"""From source values (a polygon field, a raster band) to class values: mapping, merging, nodata, dtype."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..models import ClassInfo
from ._classes import ClassLike, _is_int, as_classes
from ._errors import LabelError

Target = int | str
"""A class given by its value or its name."""


def resolve_target(target: Any, classes: Sequence[ClassInfo], *, what: str) -> int:
    """The value of the class ``target`` names (by name first, then by value)."""
    for c in classes:
        if isinstance(target, str) and c.name == target:
            return c.value
    for c in classes:
        if _is_int(target) and c.value == int(target):
            return c.value
    raise LabelError(f"{what} {target!r} is not a class: classes are "
                     f"{[f'{c.value}={c.name}' for c in classes]}; add it to classes= or fix the name")


def build_table(mapping: Mapping[Any, Target] | None, classes: Sequence[ClassLike] | Mapping[int, str] | None,
                present: Sequence[Any], nodata: int | None) -> tuple[tuple[ClassInfo, ...], dict[Any, int]]:
    """The classes and the lookup ``source value -> class value``.

    Parameters
    ----------
    mapping
        Source value -> class (name or value); several source values may share a class.
        None: a source value is a class name or value itself.
    classes
        The class table; None: made from ``mapping``'s targets (names get values 1, 2, ... in order of
        first appearance, skipping ``nodata``) or, without a mapping, from ``present``.
    present
        The source values found (only used when neither is given, and to order auto classes).
    nodata
        The nodata value the classes must avoid (None: not fixed yet).

    Returns
    -------
    tuple
        ``(classes, lookup)``.
    """
    table = as_classes(classes) if classes is not None else None
    if mapping is not None:
        if table is None:
            table = _auto_classes(list(dict.fromkeys(mapping.values())), nodata)
        lookup = {_key(k): resolve_target(v, table, what=f"mapping[{k!r}] ->") for k, v in mapping.items()}
        return table, lookup
    if table is None:
        table = _auto_classes(sorted({_key(v) for v in present}, key=lambda v: (isinstance(v, str), v)), nodata)
    lookup = {}
    for c in table:
        lookup[c.value] = c.value
        lookup[c.name] = c.value
    return table, lookup


def _auto_classes(targets: list[Any], nodata: int | None) -> tuple[ClassInfo, ...]:
    """Classes for targets: integers keep their value, names get the free values 1, 2, ..."""
    taken = {int(t) for t in targets if _is_int(t)}
    if nodata is not None:
        taken.add(int(nodata))
    out, nxt = [], 1
    for t in targets:
        if _is_int(t):
            out.append(ClassInfo(int(t), str(int(t))))
            continue
        while nxt in taken:
            nxt += 1
        out.append(ClassInfo(nxt, str(t)))
        taken.add(nxt)
    return as_classes(out)


def _key(value: Any) -> Any:
    """A hashable, comparable form of a source value (NumPy scalars to Python, whole floats to int)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value


def lookup_values(values: np.ndarray, lookup: Mapping[Any, int]) -> np.ndarray:
    """Class value of each source value, -1 where it has none (missing values included)."""
    return np.asarray([lookup.get(_key(v), -1) if v is not None else -1 for v in values], dtype="int64")


def choose_nodata(nodata: int | None, classes: Sequence[ClassInfo]) -> int:
    """The nodata value: as given (checked against the classes), else 0, else 255 if a class is 0."""
    values = {c.value for c in classes}
    if nodata is None:
        nodata = 0 if 0 not in values else 255
        if nodata in values:
            raise LabelError("classes use both 0 and 255: pass nodata= with a value no class uses")
    if not _is_int(nodata):
        raise LabelError(f"nodata={nodata!r}: label nodata must be an integer no class uses (0 or 255 for uint8)")
    nodata = int(nodata)
    if nodata in values:
        name = next(c.name for c in classes if c.value == nodata)
        raise LabelError(f"nodata={nodata} is also the value of class {name!r}: pass another nodata "
                         "(e.g. 255) or renumber the classes")
    return nodata


def label_dtype(classes: Sequence[ClassInfo], nodata: int) -> np.dtype:
    """uint8 when every class value and nodata fit, else uint16, else int32."""
    values = [c.value for c in classes] + [nodata]
    lo, hi = min(values), max(values)
    for dtype in ("uint8", "uint16", "int32"):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    raise LabelError(f"class values {lo}..{hi} do not fit in int32: renumber the classes")
