"""The ledger of a resumable write: one small marker per finished write unit.

A write unit is what one task writes whole: a shard of a sharded Zarr format 3
array, else one chunk. Its marker is written *after* its data are durable
(local files are fsync'ed first; an object store's PUT has returned), so a
marker always means "this unit was stored". So the ledger costs at most one
object per shard, never one per inner chunk.

A marker's name holds what was stored (:class:`Unit`): ``0.1.2.3_<bytes>_<checksum>``,
or ``0.1.2.3_empty`` for a unit zarr stored no object for (all nodata:
``write_empty_chunks`` is off). So one listing of the ledger tells a resume what
every unit should look like, without reading a marker: it checks each against
a listing of the array's objects (:mod:`eocube.io._manifest`) and recomputes
those that are missing or differ. A bare ``0.1.2.3`` (an older eocube's marker)
says only that the unit was stored.

The ledger lives inside the store (``<store>/.eocube-progress/<variable>/<i.j.k.l>``),
which Zarr readers ignore, on local file systems and object stores alike, and
is removed once the write is complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from . import _stores
from ._stores import StoreLocation

LEDGER_DIR = ".eocube-progress"


@dataclass(frozen=True)
class Unit:
    """What a write unit's task stored."""

    size: int | None
    """Bytes of its object; 0: no object (all nodata); None: unknown (a marker of an older eocube)."""
    checksum: str | None = None
    """``"crc32c-<hex>"`` of the object's bytes (None when unknown or empty)."""

    @property
    def empty(self) -> bool:
        """Nothing was stored (zarr writes no object for an all-nodata unit)."""
        return self.size == 0


@dataclass(frozen=True)
class Marker:
    """A marker found in the ledger."""

    name: str
    """Its key under the ledger folder (to remove it)."""
    unit: Unit
    """What it says was stored."""
    marked_ns: int
    """When it was written (file mtime or Last-Modified, ns): the unit's object is not newer."""


def _prefix(variable: str) -> str:
    return f"{LEDGER_DIR}/{variable}/"


def chunk_key(index: tuple[int, ...]) -> str:
    """Name of a unit's marker (``"0.3.1.2"``)."""
    return ".".join(str(i) for i in index)


def marker_name(index: tuple[int, ...], unit: Unit | None) -> str:
    """Name of a unit's marker: its index, and the size and checksum of what was stored."""
    if unit is None or unit.size is None:
        return chunk_key(index)
    if unit.empty:
        return f"{chunk_key(index)}_empty"
    return f"{chunk_key(index)}_{unit.size}_{unit.checksum or 'none'}"


def _parse(name: str) -> tuple[tuple[int, ...], Unit] | None:
    if name.startswith("."):
        return None  # a marker being written (see put_bytes)
    head, _, rest = name.partition("_")
    try:
        index = tuple(int(p) for p in head.split("."))
    except ValueError:
        return None
    if not rest:
        return index, Unit(None)
    if rest == "empty":
        return index, Unit(0)
    size, _, checksum = rest.partition("_")
    try:
        return index, Unit(int(size), None if checksum in ("", "none") else checksum)
    except ValueError:
        return None


def read_markers(store: str | os.PathLike[str] | StoreLocation, variable: str) -> dict[tuple[int, ...], list[Marker]]:
    """Every marker of the ledger, by unit index, from one listing.

    Parameters
    ----------
    store
        The store (a path, or its :class:`~eocube.io._stores.StoreLocation`).
    variable
        Name of the array in the store.

    Returns
    -------
    dict
        Block index -> its markers (normally one).
    """
    loc = _stores.resolve(store)
    found: dict[tuple[int, ...], list[Marker]] = {}
    prefix = _prefix(variable)
    for key, info in _stores.list_objects(loc, prefix).items():
        name = key[len(prefix):] if key.startswith(prefix) else key.rsplit("/", 1)[-1]
        parsed = _parse(name)
        if parsed is not None:
            found.setdefault(parsed[0], []).append(Marker(name, parsed[1], info.mtime_ns))
    return found


def done_chunks(store: str | os.PathLike[str] | StoreLocation, variable: str) -> set[tuple[int, ...]]:
    """Indices of the write units already stored.

    Parameters
    ----------
    store
        The store (a path, or its :class:`~eocube.io._stores.StoreLocation`).
    variable
        Name of the array in the store.

    Returns
    -------
    set of tuple of int
        Block indices (shard indices where sharded) with a marker.
    """
    return set(read_markers(store, variable))


def prepare(loc: StoreLocation, variable: str) -> None:
    """Make the ledger's folder (local stores; object stores need none)."""
    if loc.is_local:
        (loc.path / LEDGER_DIR / variable).mkdir(parents=True, exist_ok=True)


def mark_done(loc: StoreLocation, variable: str, index: tuple[int, ...], unit: Unit | None = None) -> None:
    """Record that the unit ``index`` is stored (call only once its data are durable).

    Parameters
    ----------
    loc
        The store.
    variable
        Name of the array.
    index
        Block index of the unit.
    unit
        What was stored (size and checksum); None: unknown.
    """
    body = {"size": unit.size, "checksum": unit.checksum} if unit is not None else {}
    _stores.put_bytes(loc, _prefix(variable) + marker_name(index, unit), json.dumps(body).encode() + b"\n")


def remove_markers(loc: StoreLocation, variable: str, names: list[str]) -> None:
    """Delete the markers ``names`` (markers of units found missing or damaged, before they are recomputed)."""
    if not names:
        return
    keys = [_prefix(variable) + name for name in names]
    if loc.is_local:
        for key in keys:
            (loc.path / key).unlink(missing_ok=True)
        return
    import obstore

    for i in range(0, len(keys), 1000):
        obstore.delete(loc.object_store(), keys[i:i + 1000])


def clear_ledger(store: str | os.PathLike[str] | StoreLocation) -> None:
    """Remove the whole ledger of a store (after a complete write)."""
    loc = _stores.resolve(store)
    _stores.delete_prefix(loc, LEDGER_DIR if loc.is_local else LEDGER_DIR + "/")
