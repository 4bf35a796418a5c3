"""Resumable, chunk-wise writing of a cube to Zarr.

How a write goes:

1. The store's metadata and coordinates are written first, under the group
   attribute ``eocube_write = {"status": "creating", "fingerprint": ...}``;
   once they are read back equal to the cube's, the status becomes
   ``"in-progress"`` with a ``"created"`` time. A store killed before that is
   created again by the next run (no chunk of it counts yet).
2. Each dask chunk of the cube is computed and written to exactly one Zarr
   chunk by its own task; when the chunk is on disk the task writes a marker
   in the store's ledger (:mod:`eocube.io._ledger`).
3. When every chunk is written, the status becomes ``"complete"``, metadata is
   consolidated and the ledger removed.

Running the same write again (same computation, grid, chunks and provenance,
i.e. the same *fingerprint*, see :mod:`eocube.io._fingerprint`) after a crash
or a kill computes only the chunks without a marker; a different computation
is refused (:class:`~eocube.errors.ResumeMismatchError`), never skipped.
:func:`eocube.open_zarr` refuses a store whose status is not ``"complete"``,
so a half-written store never passes as a result.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time as _time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr

from .._redact import redact_obj
from .._version import __version__
from ..cube import check_time_axis, validate_cube
from ..errors import CorruptChunkError, ResumeMismatchError, StoreError
from . import _fingerprint, _ledger

log = logging.getLogger(__name__)

WRITE_ATTR = "eocube_write"
"""Group attribute holding the write status and fingerprint."""

DEFAULT_ZARR_FORMAT = 2
"""Zarr format written when none is asked for.

Format 2 is the default because GDAL up to 3.10 (the GDAL inside rasterio's
wheels and QGIS LTR) cannot read Zarr format 3 as written by zarr-python 3
(``Unsupported codec: bytes``). Pass ``zarr_format=3`` (CLI ``--zarr-format 3``)
for format 3; both round-trip exactly through :func:`eocube.open_zarr`.
"""

DEFAULT_CHUNKS = {"time": -1, "band": 1, "y": 512, "x": 512}
"""Chunks given to an in-memory cube before writing (full time axis per chunk)."""

Mode = Literal["resume", "overwrite", "fail"]


@dataclass(frozen=True)
class WriteReport:
    """What a call to :func:`to_zarr` did."""

    path: str
    """The store written."""
    variable: str
    """Name of the cube's array in the store."""
    chunks_total: int
    """Number of chunks of the cube."""
    chunks_written: int
    """Chunks computed and written by this call."""
    chunks_skipped: int
    """Chunks found already written (resumed write) and not recomputed."""
    seconds: float
    """Wall-clock time of the call."""
    note: str = ""
    """Anything the caller should know (e.g. an unfinished creation was started over)."""

    def __str__(self) -> str:
        note = f" ({self.note})" if self.note else ""
        if self.chunks_written == 0 and self.chunks_skipped == self.chunks_total:
            return (f"{self.path} [{self.variable}] is already complete ({self.chunks_total} chunks) "
                    f"and was made by the same computation: nothing to compute{note}")
        resumed = f", {self.chunks_skipped} already done (resumed)" if self.chunks_skipped else ""
        return (
            f"wrote {self.path} [{self.variable}]: {self.chunks_written} of {self.chunks_total} chunks "
            f"computed{resumed} in {self.seconds:.1f} s{note}"
        )


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
) -> WriteReport:
    """Write a cube to a Zarr store chunk by chunk, resumably.

    Parameters
    ----------
    cube
        The cube (lazy or in memory). In-memory cubes are chunked with
        :data:`DEFAULT_CHUNKS`; irregular dask chunks are made regular. Its
        times must be sorted and unique.
    store
        Path of the store (a local folder, created).
    variable
        Name of the array in the store; defaults to ``cube.name`` or ``"cube"``.
    zarr_format
        2 (default, readable by GDAL <= 3.10) or 3. Encodings the cube and its
        coordinates inherited from another store (compressors, serializers of
        either format) are not carried over.
    mode
        ``"resume"`` (default): create the store, or finish an unfinished write
        of the same computation, or do nothing if it is complete and made by
        the same computation. ``"overwrite"``: delete any existing store first.
        ``"fail"``: refuse an existing store.
    provenance
        What produced the cube (source, method, parameters). Stored (redacted)
        in the store's attributes and part of the fingerprint.
    compression_level
        Zstandard level (1 fast .. 19 small).
    progress
        Show a progress bar on the terminal.

    Returns
    -------
    WriteReport
        Chunks written and skipped.

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

    Notes
    -----
    The fingerprint (:mod:`eocube.io._fingerprint`) covers the dask graph's
    name (a deterministic token of the inputs, functions and parameters), or a
    hash of the values of an in-memory cube.
    """
    started = _time.perf_counter()
    plan = _plan(cube, store, variable, zarr_format, mode, provenance)
    path, variable, cube, total = plan.path, plan.variable, plan.cube, plan.total
    state, note = plan.state, ""
    if state is not None and mode == "overwrite":
        shutil.rmtree(path)
        state = None
    elif state is not None and state.get("status") == "complete":
        return WriteReport(str(path), variable, total, 0, total, _time.perf_counter() - started)
    if state is not None:
        problem = _creation_problem(path, variable, cube, state)
        if problem:
            note = f"its creation had not finished ({problem}); no chunk counts yet, so it was created again"
            log.warning("%s: %s", path, note)
            shutil.rmtree(path)
            state = None
    if state is None:
        _create_store(cube, path, variable, plan.zarr_format, plan.provenance, plan.record, compression_level)
    nblocks = tuple(len(c) for c in cube.chunks)  # type: ignore[union-attr]

    done = _ledger.done_chunks(path, variable)
    pending = [idx for idx in np.ndindex(*nblocks) if idx not in done]
    ledger = _ledger.ledger_path(path, variable)
    ledger.mkdir(parents=True, exist_ok=True)
    tasks = _write_tasks(cube.data, pending, str(path), variable, str(ledger))
    _run(tasks, pending, progress=progress, label=f"writing {path.name}")
    _finalise(path, plan.zarr_format)
    return WriteReport(str(path), variable, total, len(pending), total - len(pending),
                       _time.perf_counter() - started, note)


@dataclass(frozen=True)
class _Plan:
    """What a write would do, decided from metadata only (no side effects)."""

    path: Path
    variable: str
    zarr_format: int
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
) -> _Plan:
    validate_cube(cube)
    check_time_axis(cube)
    path = Path(store)
    variable = variable or (str(cube.name) if cube.name is not None else "cube")
    zarr_format = zarr_format or DEFAULT_ZARR_FORMAT
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    if mode not in ("resume", "overwrite", "fail"):
        raise ValueError(f"mode must be 'resume', 'overwrite' or 'fail', got {mode!r}")
    computation = _fingerprint.computation_token(cube)
    written = _regular_chunks(cube)
    provenance = redact_obj(dict(provenance or {}))
    parts = _fingerprint.fingerprint_parts(written, computation, variable, zarr_format, provenance)
    total = int(np.prod([len(c) for c in written.chunks]))  # type: ignore[union-attr]
    record = {
        "fingerprint": _fingerprint.fingerprint(parts),
        "fingerprint_version": _fingerprint.VERSION,
        "fingerprint_parts": parts,
        "chunks_total": total,
    }
    if not path.exists():
        state = None
    elif mode == "overwrite":
        if not any((path / marker).exists() for marker in (".zgroup", ".zarray", "zarr.json")):
            raise StoreError(
                f"{path} exists and is not a Zarr store, so eocube will not delete it to overwrite it: "
                "choose another path"
            )
        state = {"status": "to-overwrite"}
    else:
        state = _existing_state(path)
    if state is not None and mode == "fail":
        raise StoreError(f"{path} already exists: choose another path or pass mode='overwrite'")
    if state is not None and mode == "resume" and state.get("fingerprint") != record["fingerprint"]:
        raise ResumeMismatchError(_mismatch_message(path, cube, state, parts))
    return _Plan(path, variable, zarr_format, written, provenance, record, total, state)


_PART_WORDS = {
    "layout": "array name, Zarr format, shape, dtype, chunks or nodata",
    "coords": "times, bands, grid or CRS",
    "computation": "the computed values: input data, method, parameters or model weights",
    "attrs": "attributes",
    "provenance": "provenance parameters",
}


def _mismatch_message(path: Path, cube: xr.DataArray, state: dict[str, Any], parts: dict[str, str]) -> str:
    """Why an existing store cannot be resumed by this write, and what to do."""
    todo = "write to a new path or pass mode='overwrite' (CLI: --overwrite)"
    unstable = _fingerprint.nondeterminism(cube)
    if unstable:
        return (
            f"{path} cannot be resumed safely: dask cannot name this cube's computation reproducibly "
            f"({unstable}), so eocube cannot tell whether the store holds the same computation: {todo}"
        )
    differ = _fingerprint.differing(state, parts)
    if differ:
        what = "; ".join(_PART_WORDS.get(d, d) for d in differ)
        return f"{path} holds a store written by a different computation (it differs in: {what}), so it cannot be resumed or reused: {todo}"
    return (
        f"{path} holds a store written by a different computation (other source, parameters, grid or chunks, "
        f"or an older eocube), so it cannot be resumed or reused: {todo}"
    )


def check_target(
    cube: xr.DataArray,
    store: str | os.PathLike[str],
    *,
    variable: str | None = None,
    zarr_format: int | None = None,
    mode: Mode = "resume",
    provenance: dict[str, Any] | None = None,
) -> None:
    """Raise now the errors :func:`to_zarr` would raise, without writing or computing anything.

    Call it before starting a cluster or a long computation; takes the same
    arguments as :func:`to_zarr`.
    """
    _plan(cube, store, variable, zarr_format, mode, provenance)


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


def _existing_state(path: Path) -> dict[str, Any] | None:
    """The write attribute of an existing store, None if nothing is at ``path``."""
    if not path.exists():
        return None
    try:
        group = zarr.open_group(str(path), mode="r")
        state = dict(group.attrs).get(WRITE_ATTR)
    except Exception as exc:  # noqa: BLE001 - any unreadable thing at the path
        raise StoreError(
            f"{path} exists and is not a readable Zarr store ({type(exc).__name__}: {exc}): "
            "choose another path or pass mode='overwrite' (CLI: --overwrite)"
        ) from exc
    if not isinstance(state, dict):
        raise StoreError(
            f"{path} is a Zarr store not written by eocube, so it cannot be resumed: "
            "choose another path or pass mode='overwrite' (CLI: --overwrite)"
        )
    return state


def _encoding(cube: xr.DataArray, zarr_format: int, level: int) -> dict[str, Any]:
    chunks = tuple(c[0] for c in cube.chunks)  # type: ignore[union-attr]
    enc: dict[str, Any] = {"chunks": chunks}
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


def _create_store(
    cube: xr.DataArray,
    path: Path,
    variable: str,
    zarr_format: int,
    provenance: dict[str, Any],
    record: dict[str, Any],
    level: int,
) -> None:
    """Create the store atomically: metadata and coordinates, verified, then the "created" record.

    The write record says ``"creating"`` until the coordinates are on disk and
    read back equal; only then does it become ``"in-progress"`` with a
    ``"created"`` time. A store killed before that is created again by the next
    run (:func:`_creation_problem`), as no chunk of it counts yet.
    """
    ds = _store_dataset(cube, variable)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ds.attrs = {
        "eocube_version": __version__,
        "eocube_provenance": json.dumps(provenance, sort_keys=True, default=str),
        "eocube_created": now,
        WRITE_ATTR: {**record, "status": "creating", "started": now},
    }
    # compute=False: metadata and coordinates are written now, the cube's
    # chunks later by the tasks of to_zarr (the returned delayed is dropped).
    ds.to_zarr(
        str(path),
        mode="w",
        compute=False,
        zarr_format=zarr_format,
        consolidated=False,
        encoding={variable: _encoding(cube, zarr_format, level)},
    )
    problem = _coords_problem(path, variable, cube)
    if problem:
        raise StoreError(f"creating {path} failed: {problem}; check the disk (space, permissions) and run again")
    group = zarr.open_group(str(path), mode="r+")
    group.attrs[WRITE_ATTR] = {**record, "status": "in-progress", "started": now,
                               "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _creation_problem(path: Path, variable: str, cube: xr.DataArray, state: dict[str, Any]) -> str | None:
    """Why an existing unfinished store was not fully created (None if it was)."""
    if state.get("status") != "in-progress" or "created" not in state:
        return f"status {state.get('status')!r}, no 'created' record"
    return _coords_problem(path, variable, cube)


def _coords_problem(path: Path, variable: str, cube: xr.DataArray) -> str | None:
    """What is missing or different in a store's array and coordinates (None if all is there)."""
    try:
        ds = xr.open_zarr(str(path), chunks=None, consolidated=False, decode_coords="all", mask_and_scale=False)
    except Exception as exc:  # noqa: BLE001 - an unreadable store is the answer
        return f"the store cannot be opened ({type(exc).__name__}: {exc})"
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
    data: da.Array, pending: list[tuple[int, ...]], store: str, variable: str, ledger: str
) -> list[Any]:
    """One delayed task per pending chunk: compute it, write it, mark it done."""
    if not pending:
        return []
    blocks = data.to_delayed(optimize_graph=True)
    starts = [np.cumsum((0,) + c) for c in data.chunks]
    write = dask.delayed(_write_block, pure=False)
    tasks = []
    for idx in pending:
        region = tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, idx))
        tasks.append(write(blocks[idx], store, variable, region, idx, ledger, dask_key_name=f"eocube-write-{variable}-{_ledger.chunk_key(idx)}-{os.urandom(4).hex()}"))
    return tasks


def _write_block(
    block: np.ndarray, store: str, variable: str, region: tuple[slice, ...], index: tuple[int, ...], ledger: str
) -> int:
    """Write one chunk to the store and record it in the ledger (runs on a worker)."""
    delay = dask.config.get("eocube.testing.chunk-delay", 0)
    if delay:
        _time.sleep(float(delay))  # lets tests kill a write mid-way
    target = zarr.open_array(store, path=variable, mode="r+")
    target[region] = np.asarray(block)
    _ledger.mark_done(ledger, index)
    return int(np.asarray(block).nbytes)


def _run(tasks: list[Any], pending: list[tuple[int, ...]], *, progress: bool, label: str) -> None:
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
                raise _located(future.exception(), where[future.key])
            bar.update(1)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        bar.close()


def _located(exc: BaseException, index: tuple[int, ...]) -> BaseException:
    """The worker's exception, its message extended with the chunk it failed on.

    A damaged input chunk (:class:`~eocube.errors.CorruptChunkError`) already
    names the input store and chunk; it is returned as it is.
    """
    if isinstance(exc, CorruptChunkError):
        return exc
    message = f"{exc} (while computing chunk {index} (time, band, y, x block index) of the cube)"
    try:
        located = type(exc)(message)
    except Exception:  # noqa: BLE001 - exception types with other constructors
        located = RuntimeError(f"{type(exc).__name__}: {message}")
    located.__cause__ = exc
    return located


def _finalise(path: Path, zarr_format: int) -> None:
    """Mark the store complete, consolidate its metadata and drop the ledger."""
    group = zarr.open_group(str(path), mode="r+")
    state = dict(group.attrs[WRITE_ATTR])
    state["status"] = "complete"
    state["completed"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    group.attrs[WRITE_ATTR] = state
    _ledger.clear_ledger(path)
    zarr.consolidate_metadata(str(path), zarr_format=zarr_format)
