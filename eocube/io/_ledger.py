"""The ledger of a resumable write: one small marker per finished write unit.

A write unit is what one task writes whole: a shard of a sharded Zarr format 3
array, else one chunk. Its marker is written *after* its data are durable
(local files are fsync'ed first; an object store's PUT has returned), so a
marker always means "this unit is stored". Resuming skips the units that have a
marker and recomputes the others. So the ledger costs at most one object per
shard, never one per inner chunk.

The ledger lives inside the store (``<store>/.eocube-progress/<variable>/<i.j.k.l>``),
which Zarr readers ignore, on local file systems and object stores alike, and
is removed once the write is complete.
"""

from __future__ import annotations

import os

from . import _stores
from ._stores import StoreLocation

LEDGER_DIR = ".eocube-progress"


def _prefix(variable: str) -> str:
    return f"{LEDGER_DIR}/{variable}/"


def chunk_key(index: tuple[int, ...]) -> str:
    """Name of a unit's marker (``"0.3.1.2"``)."""
    return ".".join(str(i) for i in index)


def _parse(name: str) -> tuple[int, ...] | None:
    if name.startswith("."):
        return None  # a marker being written (see put_bytes)
    try:
        return tuple(int(p) for p in name.split("."))
    except ValueError:
        return None


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
    loc = _stores.resolve(store)
    if loc.is_local:
        folder = loc.path / LEDGER_DIR / variable
        if not folder.is_dir():
            return set()
        names = [entry.name for entry in os.scandir(folder)]
    else:
        names = [key.rsplit("/", 1)[-1] for key in _stores.list_keys(loc, _prefix(variable))]
    return {idx for idx in map(_parse, names) if idx is not None}


def prepare(loc: StoreLocation, variable: str) -> None:
    """Make the ledger's folder (local stores; object stores need none)."""
    if loc.is_local:
        (loc.path / LEDGER_DIR / variable).mkdir(parents=True, exist_ok=True)


def mark_done(loc: StoreLocation, variable: str, index: tuple[int, ...]) -> None:
    """Record that the unit ``index`` is stored (call only once its data are durable).

    Parameters
    ----------
    loc
        The store.
    variable
        Name of the array.
    index
        Block index of the unit.
    """
    _stores.put_bytes(loc, _prefix(variable) + chunk_key(index), b"done\n")


def clear_ledger(store: str | os.PathLike[str] | StoreLocation) -> None:
    """Remove the whole ledger of a store (after a complete write)."""
    loc = _stores.resolve(store)
    _stores.delete_prefix(loc, LEDGER_DIR if loc.is_local else LEDGER_DIR + "/")
