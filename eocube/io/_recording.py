"""The zarr store eocube's writer writes through: it records what it stores (see :mod:`eocube.io._manifest`).

A module of its own so that :mod:`eocube.io._manifest` (what a rerun reads to say that an
output is complete, :mod:`eocube.io.complete`) does not import zarr.
"""

from __future__ import annotations

from typing import Any

from zarr.storage import WrapperStore

from ._ledger import Unit
from ._manifest import checksum
from ._stores import StoreLocation


class RecordingStore(WrapperStore):  # type: ignore[type-arg]
    """A zarr store that records the size and checksum of every object it stores, and the keys it deletes.

    Zarr writes a whole write unit (a shard, or a chunk) with one ``set`` and
    deletes its key instead when the unit is all fill value; the writer reads
    what was recorded with :meth:`take` right after the unit is written.
    """

    def __init__(self, store: Any, written: dict[str, Unit] | None = None) -> None:
        super().__init__(store)
        self.written: dict[str, Unit] = {} if written is None else written

    def _with_store(self, store: Any) -> RecordingStore:
        return type(self)(store, self.written)

    async def set(self, key: str, value: Any) -> None:
        data = value.as_numpy_array()
        unit = Unit(int(data.nbytes), checksum(data))
        await self._store.set(key, value)
        self.written[key] = unit

    async def delete(self, key: str) -> None:
        await self._store.delete(key)
        self.written[key] = Unit(0)

    def take(self, key: str) -> Unit | None:
        """What was stored under ``key`` since the last call (None: nothing recorded)."""
        return self.written.pop(key, None)


def recording_store(loc: StoreLocation) -> RecordingStore:
    """A :class:`RecordingStore` on the location's zarr store."""
    if loc.is_local:
        from zarr.storage import LocalStore

        return RecordingStore(LocalStore(loc.url))
    return RecordingStore(loc.zarr_store())
