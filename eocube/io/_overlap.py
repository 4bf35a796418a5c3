"""A write never lands on what it reads: the target store against the cube's input stores.

``to_zarr(cube, "s.zarr", mode="overwrite")`` of a cube read from ``s.zarr`` deletes
the input before a single chunk of it is read, then writes whatever the deleted
input now reads as; an output written inside an input store (``s.zarr/out.zarr``)
changes the input's listing, so its content identity, and is deleted with it. The
input stores are found in the cube's dask graph, without computing anything: the
arrays :func:`eocube.open_zarr` reads (:class:`~eocube.io._chunkread.CheckedZarrArray`
of its ``eocube-read-*`` layers) and, for local stores, the Zarr arrays
:func:`xarray.open_zarr` reads. A target that is, contains or lies inside one of
them is refused, whatever the write mode, before the store is looked at or locked.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..errors import TargetIsInputError
from . import _stores
from ._stores import StoreLocation

F = TypeVar("F", bound=Callable[..., Any])
Relation = Literal["same", "inside", "contains"]


def _parts(loc: StoreLocation) -> tuple[str, tuple[str, ...]]:
    """The location as a scheme and its path components (local paths resolved: symlinks, ``..``)."""
    if loc.is_local:
        return "file", Path(loc.url).expanduser().resolve().parts
    scheme = "s3" if loc.scheme == "s3a" else loc.scheme
    rest = loc.url.split("://", 1)[1].split("?", 1)[0]
    return scheme, tuple(p for p in rest.split("/") if p)


def relation(target: StoreLocation, other: StoreLocation) -> Relation | None:
    """How ``target`` lies relative to ``other``.

    Returns
    -------
    str or None
        ``"same"``, ``"inside"`` (target is below other), ``"contains"`` (other is
        below target), or None when they do not overlap.
    """
    (s1, a), (s2, b) = _parts(target), _parts(other)
    if s1 != s2:
        return None
    if a == b:
        return "same"
    if len(a) > len(b) and a[:len(b)] == b:
        return "inside"
    if len(b) > len(a) and b[:len(a)] == a:
        return "contains"
    return None


def _unwrap(value: Any) -> Any:
    """The object a graph layer holds (dask wraps literal values in ``DataNode`` in recent versions)."""
    return getattr(value, "value", value) if type(value).__name__ == "DataNode" else value


def _foreign_zarr(obj: Any) -> tuple[StoreLocation, str] | None:
    """The local store and array path of a Zarr array that :func:`xarray.open_zarr` reads (None: not one)."""
    for _ in range(8):  # ImplicitToExplicitIndexingAdapter -> CopyOnWriteArray -> LazilyIndexedArray -> wrapper
        if type(obj).__name__ == "ZarrArrayWrapper":
            array = getattr(obj, "_array", None)
            root = getattr(getattr(array, "store", None), "root", None)
            if root is None:
                return None
            return _stores.resolve(os.fspath(root)), str(getattr(array, "path", ""))
        obj = getattr(obj, "array", None)
        if obj is None:
            return None
    return None


def input_locations(data: Any) -> Iterator[tuple[StoreLocation, str]]:
    """The stores (and array names) a dask array reads, from its graph; nothing is computed.

    Parameters
    ----------
    data
        A dask array (anything else reads no store).

    Yields
    ------
    (StoreLocation, str)
    """
    from ._chunkread import CheckedZarrArray

    graph_of = getattr(data, "__dask_graph__", None)
    if graph_of is None:
        return
    layers = getattr(graph_of(), "layers", None) or {}
    for name, layer in layers.items():
        if not (isinstance(name, str) and name.startswith("original-")):
            continue  # dask.array.from_array keeps its source object in an "original-<name>" layer
        for value in layer.values():
            obj = _unwrap(value)
            if isinstance(obj, CheckedZarrArray):
                yield obj.loc, obj.variable
            else:
                found = _foreign_zarr(obj)
                if found is not None:
                    yield found


def check_not_input(cube: Any, target: StoreLocation) -> None:
    """Refuse a target store that is, contains or lies inside a store the cube reads.

    Raises
    ------
    TargetIsInputError
        One line naming both stores and what to do.
    """
    for loc, variable in input_locations(getattr(cube, "data", None)):
        how = relation(target, loc)
        if how is None:
            continue
        source = f"the store the cube reads ({loc.display} [{variable}])"
        if how == "same":
            what = f"{target.display} is {source}: writing it would delete or overwrite the input before it is read"
        elif how == "inside":
            what = (f"{target.display} lies inside {source}: the output would be written into the input store "
                    "(and deleted with it)")
        else:
            what = f"{target.display} contains {source}: writing it would delete or overwrite the input"
        raise TargetIsInputError(f"{what}; write to a path outside the input store (whatever the mode)")


def refuses_input_target(func: F) -> F:
    """Decorate a writer or check ``func(cube, store, ..., storage_options=...)``: first :func:`check_not_input`."""

    @functools.wraps(func)
    def checked(cube: Any, store: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            target = _stores.resolve(store, kwargs.get("storage_options"), write=True)
        except Exception:  # noqa: BLE001 - the wrapped function gives its own message
            target = None
        if target is not None:
            check_not_input(cube, target)
        return func(cube, store, *args, **kwargs)

    return checked  # type: ignore[return-value]
