"""Resumable, chunk-wise writing of a cube to Zarr.

How a write goes:

1. The store's metadata and coordinates are written first, under the group
   attribute ``eocube_write = {"status": "creating", "fingerprint": ...}``;
   once they are read back equal to the cube's, the status becomes
   ``"in-progress"`` with a ``"created"`` time. A store killed before that is
   created again by the next run (no chunk of it counts yet).
2. Each write unit (a shard of a sharded format 3 array, else a chunk; see
   :mod:`eocube.io._layout`) is computed as one dask chunk and written whole
   by its own task; when its data are durable the task writes a marker in the
   store's ledger (:mod:`eocube.io._ledger`): one small object per shard,
   whose name holds the size and CRC32C of the object zarr stored (or that it
   stored none: an all-nodata unit).
3. When every chunk is written, one listing checks that every unit is stored as
   its marker says, the array's manifest (size, checksum and stamp of every
   unit, :mod:`eocube.io._manifest`) is written, the status becomes
   ``"complete"``, metadata is consolidated and the ledger removed.

Running the same write again (same computation, grid, chunks and provenance,
i.e. the same *fingerprint*, see :mod:`eocube.io._fingerprint`) after a crash
or a kill computes only the chunks without a marker, and those whose marker
does not match the store any more (the object deleted or changed since: one
listing, see :func:`eocube.io._manifest.resume_check`; the report's note says
how many); a different computation is refused
(:class:`~eocube.errors.ResumeMismatchError`), never skipped. A rerun into a
complete store checks it against its manifest the same way, and recomputes
the units deleted or changed since.
:func:`eocube.open_zarr` refuses a store whose status is not ``"complete"``,
so a half-written store never passes as a result.

Stores are local folders or object store URLs (``s3://``, ``gs://``, ``az://``;
see :mod:`eocube.io._stores`), the ledger included.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time as _time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr

from .._redact import redact_obj
from .._version import __version__
from ..cube import validate_cube
from ..errors import CorruptChunkError, ResumeMismatchError, StoreError, StoreOptionError
from . import _chunkread, _fingerprint, _layout, _ledger, _lock, _manifest, _options, _recording, _stores
from ._overlap import refuses_input_target
from ._report import WriteReport
from ._stores import StoreLocation

log = logging.getLogger(__name__)

WRITE_ATTR = "eocube_write"
"""Group attribute holding the write status and fingerprint."""

DEFAULT_ZARR_FORMAT = None
"""Zarr format written when none is asked for: chosen per store.

Format 3 with shards when the store is on an object store or the cube is
large (over 4 GiB uncompressed or over 10,000 chunks), unless
``gdal_compatible=True``; otherwise format 2, because GDAL up to 3.10 (the
GDAL inside rasterio's wheels and QGIS LTR) cannot read Zarr format 3 as
written by zarr-python 3 (``Unsupported codec: bytes``). Pass
``zarr_format=2`` or ``3`` to choose; both round-trip exactly through
:func:`eocube.open_zarr` (see :func:`eocube.io._layout.choose_format`).
"""

DEFAULT_CHUNKS = {"time": -1, "band": 1, "y": 512, "x": 512}
"""Chunks given to an in-memory cube before writing (full time axis per chunk)."""

Mode = Literal["resume", "overwrite", "fail"]


@refuses_input_target  # a store the cube reads is never the target (checked before the lock is taken)
@_lock.one_writer  # holds the store's write lock from before the store is looked at to the end
def to_zarr(
    cube: xr.DataArray,
    store: str | os.PathLike[str],
    *,
    variable: str | None = None,
    zarr_format: int | None = None,
    mode: Mode = "resume",
    provenance: dict[str, Any] | None = None,
    compression_level: int = 3,
    progress: bool = True,
    gdal_compatible: bool | None = None,
    chunks: dict[str, int] | None = None,
    shards: dict[str, int] | None = None,
    memory_budget: int | str | None = None,
    storage_options: dict[str, Any] | None = None,
    request: str | None = None,
) -> WriteReport:
    """Write a cube to a Zarr store chunk by chunk, resumably.

    Parameters
    ----------
    cube
        The cube (lazy or in memory). In-memory cubes are chunked with
        :data:`DEFAULT_CHUNKS`; irregular dask chunks are made regular. Its
        times must be sorted and unique.
    store
        A local path (a folder, created) or an object store URL (``s3://``,
        ``gs://``, ``az://``). A URL is never taken for a local path.
    variable
        Name of the array in the store; defaults to ``cube.name`` or ``"cube"``.
    zarr_format
        2 or 3; by default 3 (sharded) for object stores and large cubes
        (over 4 GiB or 10,000 chunks), else 2, which GDAL <= 3.10 reads
        (:data:`DEFAULT_ZARR_FORMAT`). Resuming keeps the store's format.
        Encodings the cube and its coordinates inherited from another store
        (compressors, serializers of either format) are not carried over.
    mode
        ``"resume"`` (default): create the store, or finish an unfinished write
        of the same computation, or do nothing if it is complete and made by
        the same computation. ``"overwrite"``: delete any existing store first.
        ``"fail"``: refuse an existing store.
    provenance
        What produced the cube (source, method, parameters). Stored (redacted)
        in the store's attributes and part of the fingerprint.
    compression_level
        Zstandard level, a whole number: 1 (fast) to 22 (smallest); 0 is zstd's
        default, negative levels (down to -131072) its faster modes.
    progress
        Show a progress bar on the terminal.
    gdal_compatible
        True: write format 2 (GDAL up to 3.10 reads no format 3).
    chunks
        Stored chunk shape (dims -> size, -1 = whole axis). Format 2: the
        cube is rechunked to it. Format 3: the inner chunks of each shard
        (default: the shard's time and band extent, y and x split to at most
        8 MiB).
    shards
        Format 3: the shard shape, i.e. what one task computes and writes
        whole (default: the cube's dask chunk, grown along y and x when the
        store would have more than 1,000 shards, up to a quarter of
        ``memory_budget``). Must be a multiple of ``chunks``.
    memory_budget
        Memory one task may use (bytes or ``"4GB"``); default: the workers'
        memory limit per thread, else this machine's memory per core.
    storage_options
        Options of the object store (endpoint, region, credentials); by
        default credentials come from the environment (``AWS_*``, ...) and the
        AWS config files. Never stored, logged or shown in messages.
    request
        A key of what the caller was asked to do, from which the cube was built (its options and
        the stamps of what it reads, :func:`eocube.io.complete.request_key`): recorded with the
        write when it completes, so that a rerun of the same request finds the store complete
        without building the cube again (:func:`eocube.io.complete.already_complete`).

    Returns
    -------
    WriteReport
        Units (shards or chunks) written and skipped.

    Raises
    ------
    CubeError
        The cube breaks the cube convention (e.g. unsorted or repeated times).
    StoreError
        The path exists and is not an eocube store (use ``mode="overwrite"``).
    ResumeMismatchError
        The store was made by a different computation (other input data,
        method, parameters, model weights, grid, chunks or provenance), or its
        computation cannot be identified reproducibly.
    StoreOptionError
        An argument it cannot take (a ``variable`` with ``/``, ``memory_budget``
        that is not a size, ``compression_level`` above 22, an attribute
        Zarr cannot store, a cube of more than 2,000,000 chunks), named.
    TargetIsInputError
        The store is, contains or lies inside a store the cube reads (it would
        destroy its own input), whatever the mode.
    StoreLockedError
        Another process writes the store: one writer at a time (its lock,
        ``<store>.eocube-lock``, names the holder; see :mod:`eocube.io._lock`).

    Notes
    -----
    The fingerprint (:mod:`eocube.io._fingerprint`) covers the dask graph's
    name (a deterministic token of the inputs, functions and parameters), or a
    hash of the values of an in-memory cube.
    """
    started = _time.perf_counter()
    plan = _plan(cube, store, variable, zarr_format, mode, provenance, gdal_compatible=gdal_compatible,
                 chunks=chunks, shards=shards, memory_budget=memory_budget, storage_options=storage_options,
                 compression_level=compression_level)
    loc, variable, cube, total = plan.loc, plan.variable, plan.cube, plan.total
    state, note = plan.state, ""
    unit = "shards" if plan.layout.shards else "chunks"

    def report(written: int) -> WriteReport:
        return WriteReport(loc.display, variable, total, written, total - written, _time.perf_counter() - started,
                           note, plan.zarr_format, unit)

    if state is not None and mode == "overwrite":
        _stores.delete_prefix(loc)
        state = None
    elif state is not None and state.get("status") == "complete":
        if not _units_check(loc, variable, cube, state).bad:  # every unit stored as written
            return report(0)
        state = _reopen(loc, state, plan.zarr_format)  # damaged: recompute what is missing or differs
    if state is not None:
        problem = _creation_problem(loc, variable, cube, state)
        if problem:
            note = f"its creation had not finished ({problem}); no chunk counts yet, so it was created again"
            log.warning("%s: %s", loc.display, note)
            _stores.delete_prefix(loc)
            state = None
    if state is None:
        _create_store(cube, loc, variable, plan, compression_level)
    nblocks = _nblocks(cube)

    check = _units_check(loc, variable, cube, state) if state is not None else _manifest.Check()
    pending = [idx for idx in np.ndindex(*nblocks) if idx not in check.good]
    if check.bad:  # a resume checks what it skips: marked units missing or damaged are recomputed
        note = check.summary(unit)
        log.warning("%s: %s", loc.display, note)
        _manifest.clear_bad(loc, variable, check)
    _ledger.prepare(loc, variable)
    tasks = _write_tasks(cube.data, pending, loc, variable, plan.record["fingerprint"])
    _run(tasks, pending, progress=progress, label=f"writing {loc.name}", loc=loc)
    _lock.ensure_held(loc)  # a write whose lock was taken from it never marks the store complete
    _finalise(loc, plan.zarr_format, variable, nblocks, request=request)
    return report(len(pending))


@dataclass(frozen=True)
class _Plan:
    """What a write would do, decided from metadata only (no side effects)."""

    loc: StoreLocation
    variable: str
    zarr_format: int
    layout: _layout.Layout
    cube: xr.DataArray
    provenance: dict[str, Any]
    record: dict[str, Any]
    """The write record of a new store (fingerprint, its parts, chunk count)."""
    total: int
    state: dict[str, Any] | None


def _plan(
    cube: xr.DataArray,
    store: str | os.PathLike[str],
    variable: str | None,
    zarr_format: int | None,
    mode: str,
    provenance: dict[str, Any] | None,
    *,
    gdal_compatible: bool | None = None,
    chunks: dict[str, int] | None = None,
    shards: dict[str, int] | None = None,
    memory_budget: int | str | None = None,
    storage_options: dict[str, Any] | None = None,
    compression_level: int = 3,
) -> _Plan:
    validate_cube(cube)  # the time axis included (sorted, unique, no NaT)
    loc = _stores.resolve(store, storage_options, write=True)
    given, variable = variable, variable if variable is not None else (str(cube.name) if cube.name is not None else "cube")
    if mode not in ("resume", "overwrite", "fail"):
        raise StoreOptionError(f"mode={mode!r}: give 'resume', 'overwrite' or 'fail'")
    # every argument checked before the store is looked at (issue 21 item 9)
    _options.check_variable(variable, cube.coords, from_name=given is None and cube.name is not None)
    _options.check_compression_level(compression_level)
    budget_bytes = _options.parse_memory_budget(memory_budget)
    _options.check_attrs(redact_obj(dict(cube.attrs)))
    for name in cube.coords:
        _options.check_attrs(redact_obj(dict(cube[name].attrs)), where=f"cube[{str(name)!r}].attrs")
    _options.check_size(cube.shape, cube.dtype, cube.chunks)  # before any rechunk builds the graph
    with _stores.reworded(loc, "checking"):
        state = _current_state(loc, mode)
    previous = state.get("layout") if isinstance(state, dict) and mode == "resume" else None
    computation = _fingerprint.computation_token(cube)
    regular = _regular_chunks(cube)
    itemsize = np.dtype(cube.dtype).itemsize
    if zarr_format is None and isinstance(previous, dict) and previous.get("zarr_format") in (2, 3) \
            and not gdal_compatible:
        zarr_format, why = int(previous["zarr_format"]), "the format of the store being resumed"
    else:
        zarr_format, why = _layout.choose_format(
            zarr_format, gdal_compatible, remote=not loc.is_local, nbytes=_layout.nbytes(cube.shape, cube.dtype),
            units=int(np.prod([len(c) for c in regular.chunks])))  # type: ignore[union-attr]
    # an empty axis (no dates, no bands) is one chunk of 0 in dask; Zarr takes chunks >= 1 and stores no chunk
    dask_chunks = tuple(max(1, c[0]) for c in regular.chunks)  # type: ignore[union-attr]
    if chunks is None and shards is None and isinstance(previous, dict) and previous.get("zarr_format") == zarr_format:
        layout = _layout.Layout(tuple(previous["unit"]), tuple(previous["chunks"]),
                                tuple(previous["shards"]) if previous.get("shards") else None, previous["reason"])
    else:
        budget = budget_bytes if zarr_format == 3 else None
        layout = _layout.choose_layout(cube.shape, itemsize, dask_chunks, zarr_format, chunks=chunks, shards=shards,
                                       budget=budget)
    _options.check_size(cube.shape, cube.dtype, None, math.prod(
        -(-n // u) if n else 0 for n, u in zip(cube.shape, layout.unit)))
    written = regular if layout.unit == dask_chunks else regular.chunk(dict(zip(regular.dims, layout.unit)))
    if provenance is not None and not isinstance(provenance, dict):
        raise StoreOptionError(f"provenance={provenance!r}: give a dict of what produced the cube (source, method, "
                               "parameters), e.g. {'method': 'whittaker'}")
    provenance = redact_obj(dict(provenance or {}))
    storage = None if layout.chunks == layout.unit else {"chunks": list(layout.chunks),
                                                         "shards": list(layout.shards or [])}
    parts = _fingerprint.fingerprint_parts(written, computation, variable, zarr_format, provenance, storage=storage)
    total = int(np.prod(_nblocks(written)))
    record = {
        "fingerprint": _fingerprint.fingerprint(parts),
        "fingerprint_version": _fingerprint.VERSION,
        "fingerprint_parts": parts,
        "chunks_total": total,
        "layout": {"zarr_format": zarr_format, "format_reason": why, "unit": list(layout.unit),
                   "chunks": list(layout.chunks), "shards": list(layout.shards) if layout.shards else None,
                   "reason": layout.reason},
        # the input stores the cube reads and their content tokens: to name an input edited in place
        "inputs": _chunkread.input_stores(cube.data) if isinstance(cube.data, da.Array) else {},
    }
    if state is not None and mode == "fail":
        raise StoreError(f"{loc.display} already exists: choose another path or pass mode='overwrite'")
    if state is not None and mode == "resume" and state.get("fingerprint") != record["fingerprint"]:
        raise ResumeMismatchError(_mismatch_message(loc, cube, state, parts))
    return _Plan(loc, variable, zarr_format, layout, written, provenance, record, total, state)


def _current_state(loc: StoreLocation, mode: str) -> dict[str, Any] | None:
    """The write record of what is at the location (None: nothing there)."""
    if not _stores.exists(loc):
        return None
    if mode == "overwrite":
        if not _stores.has_zarr_metadata(loc):
            raise StoreError(
                f"{loc.display} exists and is not a Zarr store, so eocube will not delete it to overwrite it: "
                "choose another path"
            )
        return {"status": "to-overwrite"}
    return _existing_state(loc)


_PART_WORDS = {
    "layout": "array name, Zarr format, shape, dtype, chunks or nodata",
    "coords": "times, bands, grid or CRS",
    "computation": "the computed values: input data, method, parameters or model weights",
    "attrs": "attributes",
    "provenance": "provenance parameters",
}


def _mismatch_message(loc: StoreLocation, cube: xr.DataArray, state: dict[str, Any], parts: dict[str, str]) -> str:
    """Why an existing store cannot be resumed by this write, and what to do."""
    path = loc.display
    todo = "write to a new path or pass mode='overwrite' (CLI: --overwrite)"
    unstable = _fingerprint.nondeterminism(cube)
    if unstable:
        return (
            f"{path} cannot be resumed safely: dask cannot name this cube's computation reproducibly "
            f"({unstable}), so eocube cannot tell whether the store holds the same computation: {todo}"
        )
    differ = _fingerprint.differing(state, parts)
    if differ:
        words = [_PART_WORDS.get(d, d) for d in differ]
        changed = _changed_inputs(state, cube) if "computation" in differ else ""
        if changed:
            words[differ.index("computation")] = changed
        what = "; ".join(words)
        return (f"{path} holds a store written by a different computation (it differs in: {what}), "
                f"so it cannot be resumed or reused: {todo}")
    return (
        f"{path} holds a store written by a different computation (other source, parameters, grid or chunks, "
        f"or an older eocube), so it cannot be resumed or reused: {todo}"
    )


def _changed_inputs(state: dict[str, Any], cube: xr.DataArray) -> str:
    """Which input stores of the cube have another content than when the store was written ("" if none known)."""
    before = state.get("inputs")
    if not isinstance(before, dict) or not isinstance(cube.data, da.Array):
        return ""
    now = _chunkread.input_stores(cube.data)
    changed = sorted(name for name, token in now.items() if name in before and before[name] != token)
    if not changed:
        return ""
    return (f"the input data: the content of {', '.join(changed)} changed since it was written "
            "(chunks rewritten, added or removed)")


@refuses_input_target  # a store the cube reads is never the target
@_lock.refuses_locked  # a store another process writes is refused before any work
def check_target(
    cube: xr.DataArray,
    store: str | os.PathLike[str],
    *,
    variable: str | None = None,
    zarr_format: int | None = None,
    mode: Mode = "resume",
    provenance: dict[str, Any] | None = None,
    gdal_compatible: bool | None = None,
    chunks: dict[str, int] | None = None,
    shards: dict[str, int] | None = None,
    memory_budget: int | str | None = None,
    storage_options: dict[str, Any] | None = None,
    compression_level: int = 3,
) -> None:
    """Raise now the errors :func:`to_zarr` would raise, without writing or computing anything.

    Call it before starting a cluster or a long computation; takes the same
    arguments as :func:`to_zarr`.
    """
    _plan(cube, store, variable, zarr_format, mode, provenance, gdal_compatible=gdal_compatible, chunks=chunks,
          shards=shards, memory_budget=memory_budget, storage_options=storage_options,
          compression_level=compression_level)


def _nblocks(cube: xr.DataArray) -> tuple[int, ...]:
    """Write units along each axis, as Zarr counts them: none along an empty axis (a cube without dates or bands)."""
    return tuple(len(c) if n else 0 for c, n in zip(cube.chunks, cube.shape))  # type: ignore[union-attr]


def _regular_chunks(cube: xr.DataArray) -> xr.DataArray:
    """Dask-backed cube whose chunks map one-to-one onto Zarr chunks."""
    if cube.chunks is None:
        sizes = {d: (cube.sizes[d] if c == -1 else min(c, cube.sizes[d])) for d, c in DEFAULT_CHUNKS.items()}
        return cube.chunk(sizes)
    regular = {}
    for dim, chunks in zip(cube.dims, cube.chunks):
        # Zarr needs equal chunks, the last one possibly smaller.
        if len(chunks) > 1 and (len(set(chunks[:-1])) > 1 or chunks[-1] > chunks[0]):
            regular[dim] = max(chunks)
    return cube.chunk(regular) if regular else cube


def _existing_state(loc: StoreLocation) -> dict[str, Any] | None:
    """The write attribute of the existing store at ``loc``."""
    try:
        group = zarr.open_group(loc.zarr_store(read_only=True), mode="r")
        state = dict(group.attrs).get(WRITE_ATTR)
    except Exception as exc:  # noqa: BLE001 - any unreadable thing at the path
        raise StoreError(
            f"{loc.display} exists and is not a readable Zarr store ({type(exc).__name__}: {_stores.scrub(str(exc), loc)}): "
            "choose another path or pass mode='overwrite' (CLI: --overwrite)"
        ) from None
    if not isinstance(state, dict):
        raise StoreError(
            f"{loc.display} is a Zarr store not written by eocube, so it cannot be resumed: "
            "choose another path or pass mode='overwrite' (CLI: --overwrite)"
        )
    return state


def _encoding(cube: xr.DataArray, zarr_format: int, level: int, layout: _layout.Layout) -> dict[str, Any]:
    enc: dict[str, Any] = {"chunks": tuple(layout.chunks)}
    if layout.shards:
        enc["shards"] = tuple(layout.shards)
    if zarr_format == 2:
        import numcodecs

        enc["compressors"] = [numcodecs.Zstd(level=level)]
    else:
        enc["compressors"] = [zarr.codecs.ZstdCodec(level=level)]
    nodata = cube.rio.nodata
    if nodata is not None:
        enc["_FillValue"] = nodata
    return enc


def _store_dataset(cube: xr.DataArray, variable: str) -> xr.Dataset:
    """The cube as the dataset to write: coordinates in memory, no inherited encodings.

    Encodings that came with a cube read from a store (compressors, filters,
    serializers, chunks of either Zarr format, time units) are dropped for the
    data and every coordinate, so any cube writes to either format; xarray picks
    time units that encode the times exactly. Band names are variable-length
    strings (fixed-length Unicode has no Zarr format 3 data type).
    """
    arr = cube.copy()
    arr.attrs = redact_obj({k: v for k, v in arr.attrs.items() if k not in ("_FillValue", "missing_value")})
    arr.attrs["grid_mapping"] = "spatial_ref"  # CF link to the CRS, read by rioxarray and GDAL
    arr = arr.assign_coords(band=np.asarray([str(b) for b in cube["band"].values], dtype=object))
    others = {k: arr[k].variable.load() for k in arr.coords if k not in arr.dims}
    ds = arr.assign_coords(others).to_dataset(name=variable)
    for var in ds.variables.values():
        var.encoding = {}
    return ds


def _create_store(cube: xr.DataArray, loc: StoreLocation, variable: str, plan: _Plan, level: int) -> None:
    """Create the store atomically: metadata and coordinates, verified, then the "created" record.

    The write record says ``"creating"`` until the coordinates are on disk and
    read back equal; only then does it become ``"in-progress"`` with a
    ``"created"`` time. A store killed before that is created again by the next
    run (:func:`_creation_problem`), as no chunk of it counts yet.
    """
    zarr_format, provenance, record = plan.zarr_format, plan.provenance, plan.record
    ds = _store_dataset(cube, variable)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    ds.attrs = {
        "eocube_version": __version__,
        "eocube_provenance": json.dumps(provenance, sort_keys=True, default=str),
        "eocube_created": now,
        WRITE_ATTR: {**record, "status": "creating", "started": now},
    }
    # compute=False: metadata and coordinates are written now, the cube's
    # chunks later by the tasks of to_zarr (the returned delayed is dropped).
    with _stores.reworded(loc, "creating"):  # object store errors: one line, without credentials
        ds.to_zarr(
            loc.zarr_store(),
            mode="w",
            compute=False,
            zarr_format=zarr_format,
            consolidated=False,
            encoding={variable: _encoding(cube, zarr_format, level, plan.layout)},
        )
    problem = _coords_problem(loc, variable, cube)
    if problem:
        raise StoreError(f"creating {loc.display} failed: {problem}; check the disk (space, permissions) and run again")
    group = zarr.open_group(loc.zarr_store(), mode="r+")
    group.attrs[WRITE_ATTR] = {**record, "status": "in-progress", "started": now,
                               "created": datetime.now(UTC).isoformat(timespec="seconds")}


def _creation_problem(loc: StoreLocation, variable: str, cube: xr.DataArray, state: dict[str, Any]) -> str | None:
    """Why an existing unfinished store was not fully created (None if it was)."""
    if state.get("status") != "in-progress" or "created" not in state:
        return f"status {state.get('status')!r}, no 'created' record"
    return _coords_problem(loc, variable, cube)


def _coords_problem(loc: StoreLocation, variable: str, cube: xr.DataArray) -> str | None:
    """What is missing or different in a store's array and coordinates (None if all is there)."""
    try:
        ds = xr.open_zarr(loc.zarr_store(read_only=True), chunks=None, consolidated=False, decode_coords="all",
                          mask_and_scale=False)
    except Exception as exc:  # noqa: BLE001 - an unreadable store is the answer
        return f"the store cannot be opened ({type(exc).__name__}: {_stores.scrub(str(exc), loc)})"
    if variable not in ds.data_vars:
        return f"array {variable!r} is missing"
    stored = ds[variable]
    if stored.shape != cube.shape or stored.dtype != cube.dtype:
        return f"array {variable!r} is {stored.shape} {stored.dtype}, expected {cube.shape} {cube.dtype}"
    missing = [str(k) for k in cube.coords if k not in stored.coords]
    if missing:
        return f"coordinates {missing} are missing"
    try:
        for dim in ("time", "y", "x"):
            if not np.array_equal(stored[dim].values, cube[dim].values):
                return f"coordinate {dim!r} differs"
        if [str(b) for b in stored["band"].values] != [str(b) for b in cube["band"].values]:
            return "band names differ"
    except Exception as exc:  # noqa: BLE001 - a damaged coordinate
        return f"a coordinate cannot be read ({type(exc).__name__}: {exc})"
    return None


def _write_tasks(
    data: da.Array, pending: list[tuple[int, ...]], loc: StoreLocation, variable: str, fingerprint: str
) -> list[Any]:
    """One delayed task per pending write unit (shard or chunk): compute it, write it whole, mark it done."""
    if not pending:
        return []
    blocks = data.to_delayed(optimize_graph=True)
    starts = [np.cumsum((0,) + c) for c in data.chunks]
    write = dask.delayed(_write_block, pure=False)
    tasks = []
    for idx in pending:
        region = tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, idx))
        key_name = f"eocube-write-{variable}-{_ledger.chunk_key(idx)}-{os.urandom(4).hex()}"
        tasks.append(write(blocks[idx], loc, variable, region, idx, fingerprint, dask_key_name=key_name))
    return tasks


_ARRAYS: dict[tuple[str, str, str], zarr.Array] = {}
_ARRAYS_LOCK = threading.Lock()


def _target(loc: StoreLocation, variable: str, fingerprint: str) -> zarr.Array:
    """The store's array, opened once per process and write (metadata read once)."""
    key = (loc.url, variable, fingerprint)
    with _ARRAYS_LOCK:
        if key not in _ARRAYS:
            if len(_ARRAYS) > 64:
                _ARRAYS.clear()
            # through a RecordingStore: the size and checksum of each unit stored go to its marker
            _ARRAYS[key] = zarr.open_array(_recording.recording_store(loc), path=variable, mode="r+")
        return _ARRAYS[key]


def _make_durable(loc: StoreLocation, target: zarr.Array, variable: str, index: tuple[int, ...]) -> None:
    """fsync the file of a written unit (local stores; an object store's PUT is durable when it returns)."""
    if not loc.is_local:
        return
    path = loc.path / variable / target.metadata.encode_chunk_key(index)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return  # all nodata: zarr stores no file for an empty chunk
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _recorded(target: zarr.Array, index: tuple[int, ...]) -> _ledger.Unit | None:
    """Size and checksum of the object zarr just stored for unit ``index`` (0 bytes: none, all nodata)."""
    store = target.store
    if not isinstance(store, _recording.RecordingStore):
        return None
    return store.take(f"{target.store_path.path}/{target.metadata.encode_chunk_key(index)}".lstrip("/"))


def _units_check(loc: StoreLocation, variable: str, cube: xr.DataArray, state: dict[str, Any]) -> _manifest.Check:
    """The units of an existing store that are stored as their markers (or its manifest) say: one listing."""
    array = zarr.open_array(loc.zarr_store(read_only=True), path=variable, mode="r")
    nblocks = _nblocks(cube)
    with _stores.reworded(loc, "checking"):
        return _manifest.resume_check(loc, variable, array.metadata.encode_chunk_key, nblocks, state)


def _reopen(loc: StoreLocation, state: dict[str, Any], zarr_format: int) -> dict[str, Any]:
    """Mark a complete store unfinished again (its manifest kept), so that damaged units can be recomputed."""
    state = {k: v for k, v in state.items() if k != "completed"}
    state.update(status="in-progress", repairing=datetime.now(UTC).isoformat(timespec="seconds"))
    group = zarr.open_group(loc.zarr_store(), mode="r+")
    group.attrs[WRITE_ATTR] = state
    zarr.consolidate_metadata(loc.zarr_store(), zarr_format=zarr_format)  # readers see "in-progress" too
    return state


def _write_block(
    block: np.ndarray, loc: StoreLocation, variable: str, region: tuple[slice, ...], index: tuple[int, ...],
    fingerprint: str,
) -> int:
    """Write one unit (shard or chunk) whole, make it durable, then record it in the ledger (runs on a worker)."""
    delay = dask.config.get("eocube.testing.chunk-delay", 0)
    if delay:
        _time.sleep(float(delay))  # lets tests kill a write mid-way
    values = np.asarray(block)
    with _stores.reworded(loc, "writing to"):  # object store errors: one line, without credentials
        target = _target(loc, variable, fingerprint)
        target[region] = values
        _make_durable(loc, target, variable, index)
        _ledger.mark_done(loc, variable, index, _recorded(target, index))
    return int(values.nbytes)


def _run(tasks: list[Any], pending: list[tuple[int, ...]], *, progress: bool, label: str,
         loc: StoreLocation | None = None) -> None:
    """Execute the write tasks on the active scheduler with a progress bar."""
    if not tasks:
        return
    from tqdm.auto import tqdm

    try:
        from distributed import as_completed, default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    if client is None:
        from tqdm.dask import TqdmCallback

        if progress:
            with TqdmCallback(desc=label, unit="task"):
                dask.compute(*tasks)
        else:
            dask.compute(*tasks)
        return
    futures = client.compute(tasks)
    where = {f.key: idx for f, idx in zip(futures, pending)}
    bar = tqdm(total=len(futures), desc=label, unit="chunk", disable=not progress)
    try:
        for future in as_completed(futures):
            if future.status == "error":
                raise _located(future.exception(), where[future.key], loc)
            bar.update(1)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        bar.close()


def _located(exc: BaseException, index: tuple[int, ...], loc: StoreLocation | None = None) -> BaseException:
    """The worker's exception, its message extended with the chunk it failed on.

    A damaged input chunk (:class:`~eocube.errors.CorruptChunkError`) already
    names the input store and chunk; it is returned as it is.
    """
    if isinstance(exc, CorruptChunkError):
        return exc
    text = _stores.scrub(str(exc), loc) if loc is not None else str(exc)
    message = f"{text} (while computing chunk {index} (time, band, y, x block index) of the cube)"
    try:
        located = type(exc)(message)
    except Exception:  # noqa: BLE001 - exception types with other constructors
        located = RuntimeError(f"{type(exc).__name__}: {message}")
    located.__cause__ = exc
    return located


def _finalise(loc: StoreLocation, zarr_format: int, variable: str | None = None,
              nblocks: tuple[int, ...] | None = None, *, request: str | None = None) -> None:
    """Check every unit is stored, write the manifest, mark the store complete, consolidate, drop the ledger."""
    group = zarr.open_group(loc.zarr_store(), mode="r+")
    state = dict(group.attrs[WRITE_ATTR])
    if variable is not None and nblocks is not None:
        array = zarr.open_array(loc.zarr_store(read_only=True), path=variable, mode="r")
        with _stores.reworded(loc, "completing"):
            state["manifest"] = _manifest.finish(loc, variable, array.metadata.encode_chunk_key, nblocks, state)
        state.pop("repairing", None)
    if request is not None and variable is not None:  # every request key recorded made this fingerprint
        prior = state.get("request")
        keys = [k for k in prior.get("keys", []) if isinstance(k, str)] if isinstance(prior, dict) else []
        state["request"] = {"keys": sorted({*keys, request}), "variable": variable}
    state["status"] = "complete"
    state["completed"] = datetime.now(UTC).isoformat(timespec="seconds")
    group.attrs[WRITE_ATTR] = state
    _ledger.clear_ledger(loc)
    zarr.consolidate_metadata(loc.zarr_store(), zarr_format=zarr_format)
