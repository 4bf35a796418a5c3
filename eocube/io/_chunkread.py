"""Lazy reading of a Zarr array whose failures name the damaged chunk.

:func:`eocube.open_zarr` builds the cube's dask array on :class:`CheckedZarrArray`:
one task per store chunk reads its region, and when a chunk cannot be decoded
(garbage bytes, a truncated file) the error names the store, the variable and the
chunk key and says the input is damaged, instead of a long traceback that names
only the output chunk being computed. The happy path is a plain Zarr read.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize

from ..errors import CorruptChunkError, StoreError
from . import _manifest, _stores
from ._stores import StoreLocation

log = logging.getLogger(__name__)

_INPUTS: dict[str, str] = {}
"""Token -> store (for messages) of the input arrays opened in this process (see :func:`input_stores`)."""


class CheckedZarrArray:
    """Array-like view of one Zarr array for :func:`dask.array.from_array`.

    Parameters
    ----------
    store
        The Zarr store (a local path or a :class:`~eocube.io._stores.StoreLocation`).
    variable
        Name of the array in the store.
    shape, dtype
        The array's shape and dtype (from its metadata).
    token
        Identity of the store's content (see :func:`input_token`); it is the
        object's dask token, so graphs built on it have reproducible names.

    Notes
    -----
    The Zarr array is opened on first read in each process and is not pickled
    (workers reopen it from the location, credentials from their own
    environment or the storage options).
    """

    def __init__(self, store: str | StoreLocation, variable: str, shape: tuple[int, ...], dtype: np.dtype, token: str) -> None:
        self.loc = _stores.resolve(store)
        self.store = self.loc.display
        self.variable = variable
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.token = token
        self._array: zarr.Array | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_array"] = None
        return state

    def __dask_tokenize__(self) -> tuple[str, str]:
        return ("eocube-zarr-input", self.token)

    def _open(self) -> zarr.Array:
        if self._array is None:
            self._array = zarr.open_array(self.loc.zarr_store(read_only=True), path=self.variable, mode="r")
        return self._array

    @_stores.raises_redacted  # no signed-URL token in the error or its chained causes (issue 21)
    def __getitem__(self, key: Any) -> np.ndarray:
        array = self._open()
        try:
            return np.asarray(array[key])
        except Exception as exc:
            located = locate_damage(array, self.loc, self.variable, key, exc)
            if located is None:
                raise
            raise located from exc


def chunk_regions(array: zarr.Array, key: Any) -> list[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """The stored chunks (shards where sharded) that the selection ``key`` touches.

    Parameters
    ----------
    array
        The Zarr array.
    key
        A basic selection: a tuple of slices and integers.

    Returns
    -------
    list of (tuple of int, tuple of slice)
        Chunk grid index and region of each chunk.
    """
    grid = array.shards or array.chunks
    key = key if isinstance(key, tuple) else (key,)
    key = key + (slice(None),) * (array.ndim - len(key))
    spans = []
    for k, size, step in zip(key, array.shape, grid):
        if isinstance(k, (int, np.integer)):
            first = last = int(k) % size // step if size else 0
        elif isinstance(k, slice):
            start, stop, _ = k.indices(size)
            if stop <= start:
                return []
            first, last = start // step, (stop - 1) // step
        else:  # fancy selections: every chunk of the axis
            first, last = 0, max(0, (size - 1) // step)
        spans.append(range(first, last + 1))
    regions = []
    for idx in itertools.product(*spans):
        region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(idx, grid, array.shape))
        regions.append((idx, region))
    return regions


def locate_damage(array: zarr.Array, store: str | StoreLocation, variable: str, key: Any,
                  exc: BaseException) -> StoreError | None:
    """Find the chunk behind a failed read and describe it (None if no single chunk fails).

    Parameters
    ----------
    array
        The Zarr array the read failed on.
    store, variable
        Where the array is (for the message).
    key
        The selection that failed.
    exc
        The error of the failed read.

    Returns
    -------
    StoreError or None
        :class:`~eocube.errors.CorruptChunkError` for a chunk that cannot be
        decoded, a :class:`~eocube.errors.StoreError` for one that cannot be read
        (permissions, file system), None when reading chunk by chunk succeeds.
    """
    loc = _stores.resolve(store)
    for idx, region in chunk_regions(array, key):
        try:
            array[region]
        except Exception as inner:  # noqa: BLE001 - this chunk is the culprit
            chunk = array.metadata.encode_chunk_key(idx)
            file = Path(loc.url) / variable / chunk if loc.is_local else f"{loc.display}/{variable}/{chunk}"
            where = f"input store {loc.display}, variable {variable}, chunk key {chunk}"
            text = _stores.scrub(str(inner), loc)
            if isinstance(inner, OSError) or type(inner).__module__.startswith("obstore"):  # I/O, not decoding
                return StoreError(
                    f"{where} cannot be read ({type(inner).__name__}: {text}): check that {file} is readable"
                )
            return CorruptChunkError(
                f"{where} cannot be decoded ({type(inner).__name__}: {text}): the {'file' if loc.is_local else 'object'} "
                f"{file} is damaged; re-create or re-download the store"
            )
    return None


def input_token(store: str | os.PathLike[str] | StoreLocation, variable: str, array: zarr.Array,
                group_attrs: dict[str, Any]) -> str:
    """A token of a store array's content, the same in every process.

    See :func:`input_identity`.

    Parameters
    ----------
    store
        Path of the store.
    variable
        Name of the array.
    array
        The opened Zarr array.
    group_attrs
        The store's group attributes.

    Returns
    -------
    str
        Hex token.
    """
    return input_identity(store, variable, array, group_attrs)[0]


def input_identity(store: str | os.PathLike[str] | StoreLocation, variable: str, array: zarr.Array,
                   group_attrs: dict[str, Any]) -> tuple[str, _manifest.Content]:
    """A token of a store array's content, the same in every process, and what it was derived from.

    The token covers the store's absolute path, the array's metadata, the
    store's eocube write record and the array's *content*, from one listing of
    its objects (:func:`eocube.io._manifest.content`; no chunk is read):

    * a complete eocube store whose objects are exactly those its writer
      recorded (size, and mtime or ETag, per object) is identified by its
      write record, which holds the SHA-256 of its manifest (the size and
      CRC32C of every unit written);
    * any other array (a store not written by eocube, or one edited in place
      since it was written) by the size and mtime (local) or ETag (object
      stores) of every one of its objects, so that any chunk rewritten,
      added or removed gives another token.

    Over plain HTTP, where nothing can be listed, the metadata's
    Last-Modified / ETag stand for the content.

    Parameters
    ----------
    store, variable, array, group_attrs
        As for :func:`input_token`.

    Returns
    -------
    (str, Content)
    """
    loc = _stores.resolve(store)
    record = group_attrs.get("eocube_write")
    complete = isinstance(record, dict) and record.get("status") == "complete"
    content = _manifest.content(loc, variable, record)
    if loc.is_local:
        where = str(Path(loc.url).resolve())
        if not complete:
            files = [Path(where) / key for key in _metadata_keys(variable)]
            stamps = [(p.name, p.stat().st_mtime_ns) for p in files if p.exists()]
            record = {"record": record, "metadata_mtimes": stamps}
    else:
        where = loc.display
        if not complete:
            stamps = []
            for key in _metadata_keys(variable):
                try:
                    stamps.append((key, _stores.head(loc, key)))
                except Exception:  # noqa: BLE001 - e.g. HTTP servers without HEAD: the metadata alone
                    continue
            record = {"record": record, "metadata_stamps": stamps}
    meta = json.dumps(array.metadata.to_dict(), sort_keys=True, default=str)
    token = tokenize(where, variable, meta, json.dumps(record, sort_keys=True, default=str), content.token)
    if len(_INPUTS) > 10_000:
        _INPUTS.clear()
    _INPUTS[token] = f"{loc.display} [{variable}]"
    return token, content


def input_stores(data: da.Array) -> dict[str, str]:
    """The input arrays a dask array reads through :func:`checked_dask_array` (opened in this process).

    Parameters
    ----------
    data
        A dask array.

    Returns
    -------
    dict
        ``"store [variable]"`` -> content token, for every ``eocube-read-*`` layer of its graph.
    """
    found: dict[str, str] = {}
    graph = data.__dask_graph__()
    names = graph.layers.keys() if hasattr(graph, "layers") else {k[0] if isinstance(k, tuple) else k for k in graph}
    for name in names:
        if isinstance(name, str) and name.startswith("eocube-read-"):
            token = name.rsplit("-", 1)[-1]
            if token in _INPUTS:
                found[_INPUTS[token]] = token
    return dict(sorted(found.items()))


def _metadata_keys(variable: str) -> tuple[str, ...]:
    """The keys of an array's and its group's metadata, in either Zarr format."""
    return (f"{variable}/.zarray", f"{variable}/zarr.json", ".zattrs", "zarr.json")


def checked_dask_array(store: str | os.PathLike[str] | StoreLocation, variable: str, group_attrs: dict[str, Any],
                       *, allow_missing: bool = False) -> da.Array:
    """The dask array of a store's array, one task per stored chunk, reads checked.

    Parameters
    ----------
    store
        The store (a local path or a :class:`~eocube.io._stores.StoreLocation`).
    variable
        Name of the array.
    group_attrs
        The store's group attributes (for the content token).
    allow_missing
        Open it even when objects its writer stored are missing (they read as nodata).

    Returns
    -------
    dask.array.Array
        Lazy; chunked like the store (by shard where sharded).

    Raises
    ------
    CorruptChunkError
        A complete eocube store lacks objects its writer stored (deleted since),
        unless ``allow_missing``: a hole never reads as nodata unnoticed.
    """
    loc = _stores.resolve(store)
    array = zarr.open_array(loc.zarr_store(read_only=True), path=variable, mode="r")
    token, content = input_identity(loc, variable, array, group_attrs)
    if content.missing:
        what = _manifest.describe_missing(content.missing, content.stored)
        message = (f"{loc.display} is damaged: {what} of {variable!r} that its writer stored are missing; "
                   "run the command that wrote it again (it recomputes only those), or pass allow_incomplete=True "
                   "to read them as nodata")
        if not allow_missing:
            raise CorruptChunkError(message)
        log.warning("%s", message)
    source = CheckedZarrArray(loc, variable, array.shape, array.dtype, token)
    source._array = array
    chunks = array.shards or array.chunks
    return da.from_array(
        source, chunks=chunks, name=f"eocube-read-{variable}-{token}", lock=False, asarray=False,
        fancy=False, meta=np.empty((0,) * array.ndim, dtype=array.dtype),
    )
