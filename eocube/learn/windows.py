"""Windows of (lazy) arrays for the patch dataset, read chunk by chunk or from a staged copy.

* :class:`WindowReader` reads ``(..., y, x)`` windows of one array. A dask array is read by its
  chunks: the chunks that a window (or a batch of windows, :meth:`WindowReader.read_many`) touches
  and that are not in memory are computed together in **one** dask compute, then kept in a small LRU
  cache (per process: a DataLoader worker gets an empty cache of its own).
* :meth:`WindowReader.stage` keeps chunks in memory for good (one compute for all of them): the
  training and validation windows' chunks are staged before training when they fit in memory
  (:func:`stage_budget`), so an epoch computes nothing; staged chunks travel with the reader to
  DataLoader workers.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import xarray as xr

from .errors import LearnError

STAGE_MEMORY_FRACTION = 0.25
"""Share of the available memory that staged chunks may take (all readers of a dataset together)."""

AUTO_CACHE_MIN = 16
"""Fewest chunks an ``"auto"`` LRU cache keeps."""

AUTO_CACHE_SHARE = 8
"""An ``"auto"`` LRU cache (per reader and process) takes at most 1/8 of the staging budget (1/32 of the memory)."""

Box = tuple[slice, slice]


def stage_readers(plan: Sequence[tuple[WindowReader, Sequence[Box]]], *, scheduler: str = "threads") -> int:
    """:meth:`WindowReader.stage` of several readers in **one** dask compute; returns the chunks computed.

    Parameters
    ----------
    plan
        ``(reader, windows)`` pairs.
    scheduler
        Dask scheduler of the compute.
    """
    import dask

    requests = []
    for reader, boxes in plan:
        if reader._whole is not None:
            continue
        missing = [k for k in reader.keys(boxes) if k not in reader._pinned]
        if missing and len(missing) == reader.n_chunks > 1:  # the whole array: no slicing, windows are its views
            requests.append((reader, missing, [reader.data], None))
            continue
        cached = {k: reader._cache.pop(k) for k in missing if k in reader._cache}
        reader._pinned.update(cached)
        todo = [k for k in missing if k not in cached]
        if todo:
            requests.append((reader, todo, *reader._request(todo)))
    if not requests:
        return 0
    got = dask.compute(*[p for _, _, parts, _ in requests for p in parts], scheduler=scheduler)
    start = 0
    for reader, todo, parts, unpack in requests:
        if unpack is None:
            reader._whole = _frozen(got[start])
            reader._cache.clear()
        else:
            reader._pinned.update(unpack(got[start:start + len(parts)]))
        start += len(parts)
        reader.reads += len(todo)
        reader.computes += 1
    return sum(len(todo) for _, todo, _, _ in requests)


def _frozen(a: Any) -> np.ndarray:
    """``a`` as a read-only NumPy array (windows may be views of it: nobody may change it in place)."""
    a = np.asarray(a)
    a.flags.writeable = False
    return a


def stage_budget() -> int:
    """Bytes that staged chunks may take: :data:`STAGE_MEMORY_FRACTION` of the memory available now."""
    import psutil

    return int(psutil.virtual_memory().available * STAGE_MEMORY_FRACTION)


class WindowReader:
    """``(..., y, x)`` windows of an array: staged chunks, a small LRU cache of chunks, batched computes.

    Parameters
    ----------
    array
        A DataArray (or array) whose last two dims are ``y, x``; dask-backed arrays are read
        chunk by chunk, in-memory ones sliced directly.
    cache_chunks
        Chunks kept in the LRU cache per process, or ``"auto"``: as many as 1/:data:`AUTO_CACHE_SHARE`
        of :func:`stage_budget` holds (at least :data:`AUTO_CACHE_MIN`, at most the chunk count).
    """

    def __init__(self, array: xr.DataArray | np.ndarray, cache_chunks: int | str = "auto") -> None:
        data = array.data if isinstance(array, xr.DataArray) else array
        self.data = data
        self.shape = tuple(data.shape)
        chunks = getattr(data, "chunks", None)
        self.lazy = chunks is not None and not isinstance(data, np.ndarray)
        self._pinned: dict[tuple[int, int], np.ndarray] = {}
        self._whole: np.ndarray | None = None
        """The whole array, when staging needed every chunk (windows are then its views)."""
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        if self.lazy:
            self._bounds = [np.concatenate([[0], np.cumsum(c)]) for c in data.chunks[-2:]]
        self.auto = cache_chunks == "auto"
        """Whether the LRU size came from the memory (``"auto"``); staging is then bounded by bytes only."""
        if self.auto:
            per = stage_budget() // (AUTO_CACHE_SHARE * max(self.chunk_bytes(), 1)) if self.lazy else 0
            self.cache_chunks = int(min(max(AUTO_CACHE_MIN, per), max(self.n_chunks, AUTO_CACHE_MIN)))
        else:
            self.cache_chunks = int(cache_chunks)
        self.reads = 0
        """Chunks computed by this process (a test counts them)."""
        self.computes = 0
        """Dask computes run by this process (one per read, batch or stage that misses a chunk)."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # each worker process starts with an empty cache (staged chunks go along)
        return state

    @property
    def n_chunks(self) -> int:
        """Chunks of the ``(y, x)`` grid (1 for an in-memory array)."""
        return (len(self._bounds[0]) - 1) * (len(self._bounds[1]) - 1) if self.lazy else 1

    @property
    def staged(self) -> int:
        """Chunks staged in memory for good."""
        return self.n_chunks if self._whole is not None else len(self._pinned)

    def chunk_bytes(self) -> int:
        """Bytes of the largest chunk (of all leading dims) once in memory."""
        if not self.lazy:
            return int(np.prod(self.shape)) * np.dtype(self.data.dtype).itemsize
        lead = int(np.prod(self.shape[:-2], dtype="int64"))
        return lead * int(np.diff(self._bounds[0]).max()) * int(np.diff(self._bounds[1]).max()) * \
            np.dtype(self.data.dtype).itemsize

    def keys(self, boxes: Iterable[Box]) -> list[tuple[int, int]]:
        """The ``(iy, ix)`` chunks that the windows touch, in first-touched order (empty when not lazy)."""
        if not self.lazy:
            return []
        by, bx = self._bounds
        out: dict[tuple[int, int], None] = {}
        for ys, xs in boxes:
            iy0, iy1 = np.searchsorted(by, ys.start, "right") - 1, np.searchsorted(by, ys.stop, "left")
            ix0, ix1 = np.searchsorted(bx, xs.start, "right") - 1, np.searchsorted(bx, xs.stop, "left")
            for iy in range(max(iy0, 0), iy1):
                for ix in range(max(ix0, 0), ix1):
                    out[(int(iy), int(ix))] = None
        return list(out)

    def _request(self, keys: Sequence[tuple[int, int]]) -> tuple[list[Any], Callable[[Sequence[Any]], dict]]:
        """Dask arrays that hold the chunks ``keys``, and how to turn their values into ``{key: chunk}``.

        All the chunks of the array: the array itself (no slicing tasks), cut into read-only views.
        Chunks are read-only: windows of one chunk are views of it.
        """
        by, bx = self._bounds
        lead = (slice(None),) * (len(self.shape) - 2)

        def box(iy: int, ix: int) -> tuple[slice, ...]:
            return lead + (slice(by[iy], by[iy + 1]), slice(bx[ix], bx[ix + 1]))

        if len(keys) == self.n_chunks > 1:
            return [self.data], lambda got: {k: _frozen(got[0])[box(*k)] for k in keys}
        return [self.data[box(*k)] for k in keys], lambda got: {k: _frozen(b) for k, b in zip(keys, got)}

    def _compute(self, keys: Sequence[tuple[int, int]], scheduler: str) -> dict[tuple[int, int], np.ndarray]:
        """The chunks ``keys`` as NumPy arrays, computed in one dask compute."""
        import dask

        parts, unpack = self._request(keys)
        out = unpack(dask.compute(*parts, scheduler=scheduler))
        self.reads += len(keys)
        self.computes += 1
        return out

    def stage(self, boxes: Iterable[Box], *, scheduler: str = "threads") -> int:
        """Keep the chunks the windows touch in memory for good (one compute); returns the chunks staged."""
        stage_readers([(self, list(boxes))], scheduler=scheduler)
        return self.staged

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        """The window ``[..., ys, xs]`` as a NumPy array (only its chunks are computed).

        A window inside one chunk is a read-only view of the chunk (copy it to change it).
        """
        return self.read_many([(ys, xs)])[0]

    def read_many(self, boxes: Sequence[Box]) -> list[np.ndarray]:
        """The windows ``[..., ys, xs]``; the chunks they touch that are not in memory are computed in one go."""
        if not self.lazy:
            return [np.asarray(self.data[..., ys, xs]) for ys, xs in boxes]
        for ys, xs in boxes:
            if not 0 <= ys.start < ys.stop <= self.shape[-2] or not 0 <= xs.start < xs.stop <= self.shape[-1]:
                raise LearnError(f"window y={ys}, x={xs} is outside the {self.shape[-2:]} px array")
        if self._whole is not None:
            return [self._whole[..., ys, xs] for ys, xs in boxes]
        keys = self.keys(boxes)
        missing = [k for k in keys if k not in self._pinned and k not in self._cache]
        fresh = self._compute(missing, "synchronous") if missing else {}
        for k in keys:
            if k in self._cache:
                self._cache.move_to_end(k)
        out = [self._assemble(ys, xs, fresh) for ys, xs in boxes]
        for k, block in fresh.items():
            self._cache[k] = block
        while len(self._cache) > self.cache_chunks:
            self._cache.popitem(last=False)
        return out

    def _assemble(self, ys: slice, xs: slice, fresh: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
        by, bx = self._bounds
        keys = self.keys([(ys, xs)])
        if len(keys) == 1:  # inside one chunk: a (read-only) view of it
            iy, ix = keys[0]
            block = self._block(keys[0], fresh)
            return block[..., ys.start - by[iy]:ys.stop - by[iy], xs.start - bx[ix]:xs.stop - bx[ix]]
        out = None
        for iy, ix in keys:
            block = self._block((iy, ix), fresh)
            y0, y1 = max(ys.start, by[iy]), min(ys.stop, by[iy + 1])
            x0, x1 = max(xs.start, bx[ix]), min(xs.stop, bx[ix + 1])
            if out is None:
                out = np.empty(self.shape[:-2] + (ys.stop - ys.start, xs.stop - xs.start), dtype=block.dtype)
            out[..., y0 - ys.start:y1 - ys.start, x0 - xs.start:x1 - xs.start] = \
                block[..., y0 - by[iy]:y1 - by[iy], x0 - bx[ix]:x1 - bx[ix]]
        return out

    def _block(self, key: tuple[int, int], fresh: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
        block = self._pinned.get(key)
        if block is None:
            block = fresh.get(key)
        if block is None:
            block = self._cache[key]
        return block


__all__ = ["AUTO_CACHE_MIN", "AUTO_CACHE_SHARE", "STAGE_MEMORY_FRACTION", "WindowReader", "stage_budget",
           "stage_readers"]
