"""Whether an output is already complete, told without building the computation that makes it.

The fingerprint of a write (:mod:`eocube.io._fingerprint`) names the cube's dask graph, so
checking it means opening the inputs and building the graph: xarray's readers, rioxarray,
dask.array, for a model torch and the model itself. A command knows before all that what it
was asked to do: its options and the files and stores it reads. The *request key* is a hash
of those (:func:`request_key`): the command's name and options, eocube's version, and a stamp
of every input (:func:`path_stamp`, :func:`store_stamp`: one listing of its objects with their
sizes and mtimes or ETags, as :func:`eocube.io._chunkread.input_identity` names a store that
eocube did not write). :func:`eocube.to_zarr` records the key with the write when it completes
(``request=``), and a rerun of the same request into that store is answered by
:func:`already_complete` from the store's write record and one listing of its units (the same
check a rerun through :func:`eocube.to_zarr` makes), under the store's write lock.

Any difference (another option, an input edited in place, another eocube, a store written
before keys were recorded, a unit deleted or damaged since) only means "not known complete":
the caller then takes the full path, which checks the fingerprint, refuses another computation
and recomputes what is missing. Nothing here imports xarray's readers, dask.array,
``distributed``, numba or torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from .._version import __version__
from . import _lock, _manifest, _stores
from ._report import WriteReport

SCHEME = 1
"""Version of the request key's scheme: another scheme never matches a recorded key."""

WRITE_ATTR = "eocube_write"
"""Group attribute holding the write record (as :data:`eocube.io.zarr_writer.WRITE_ATTR`)."""


def path_stamp(path: str | os.PathLike[str], *, content: bool = False) -> list[Any]:
    """A stamp of a local file or folder: what changes when it is edited, replaced or moved.

    A file: its absolute path, size and modification time (ns), or with ``content`` its
    SHA-256 (a model file: what the full path checks is its content). A folder: its absolute
    path and the digest of every file under it with its size and modification time.

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    """
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        return [str(p), _manifest.listing_digest(_stores.list_objects(_stores.resolve(p), ""))]
    if content:
        with p.open("rb") as f:
            return [str(p), hashlib.file_digest(f, "sha256").hexdigest()]
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


def store_stamp(store: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> list[Any] | None:
    """A stamp of a Zarr store's content: its location and one listing of all its objects.

    Returns
    -------
    list or None
        None where the store cannot be listed (plain HTTP) or holds nothing: no stamp, so no
        request key; the caller takes the full path.
    """
    loc = _stores.resolve(store, storage_options)
    if not _stores.can_list(loc):
        return None
    where = str(loc.path.resolve()) if loc.is_local else loc.display
    objects = _stores.list_objects(loc, "")
    return [where, _manifest.listing_digest(objects)] if objects else None


@functools.cache
def code_stamp() -> str:
    """SHA-256 of eocube's own code and configuration files (``*.py``, ``*.yaml``), as installed.

    Part of every request key, so that an edited checkout (an editable install whose version
    did not change) never finds an output complete that older code made. About 2 MB read once.
    """
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml", ".yml") and p.is_file()
                       and "__pycache__" not in p.parts):
        h.update(f"{path.relative_to(root).as_posix()}\n".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def request_key(command: str, options: dict[str, Any], inputs: dict[str, Any]) -> str:
    """The key of one request: a SHA-256 of the command, its options, the stamps of its inputs and of eocube's code.

    Parameters
    ----------
    command
        The command (``"eocube gapfill"``).
    options
        Every option that decides the output (JSON-able; more options only make the key stricter).
    inputs
        Input name -> its stamp (:func:`path_stamp`, :func:`store_stamp`).

    Returns
    -------
    str
        Hex digest.
    """
    text = json.dumps({"scheme": SCHEME, "eocube": __version__, "code": code_stamp(), "command": command,
                       "options": options, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def already_complete(store: str | os.PathLike[str], key: str, *,
                     storage_options: dict[str, Any] | None = None) -> WriteReport | None:
    """The report of a rerun that finds ``store`` complete and made by the request ``key``; None otherwise.

    Under the store's write lock (as a rerun through :func:`eocube.to_zarr`): the write record
    says ``complete`` and holds ``key``, and one listing finds every unit stored as its manifest
    says.

    Parameters
    ----------
    store
        The output store (a local path or a URL).
    key
        :func:`request_key` of this run.
    storage_options
        Options of the object store.

    Returns
    -------
    WriteReport or None
        None: not known complete (no store, unfinished, written by another request or before
        keys were recorded, a unit missing or changed): take the full path.

    Raises
    ------
    StoreLockedError
        Another process writes the store (as the full path would say).
    """
    started = time.perf_counter()
    loc = _stores.resolve(store, storage_options, write=True)
    if not _stores.exists(loc):
        return None
    with _lock.write_lock(loc):
        try:
            found = _check(loc, key)
        except Exception:  # noqa: BLE001 - anything unreadable: the full path says what is wrong
            return None
    if found is None:
        return None
    variable, total, zarr_format, unit = found
    return WriteReport(loc.display, variable, total, 0, total, time.perf_counter() - started, "", zarr_format, unit)


def _check(loc: _stores.StoreLocation, key: str) -> tuple[str, int, int, str] | None:
    """(variable, units, Zarr format, unit word) of a complete store made by ``key`` and intact; else None."""
    meta = _metadata(loc)
    if meta is None:
        return None
    zarr_format, attrs, array_meta = meta
    record = attrs.get(WRITE_ATTR)
    if not isinstance(record, dict) or record.get("status") != "complete":
        return None
    request, layout = record.get("request"), record.get("layout")
    if not isinstance(request, dict) or key not in (request.get("keys") or []) or not isinstance(layout, dict):
        return None
    variable = str(request["variable"])
    array = array_meta(variable)
    encode = chunk_key_encoder(array) if array is not None else None
    if array is None or encode is None:
        return None
    shape = [int(n) for n in array["shape"]]
    nblocks = tuple(-(-n // int(u)) if n else 0 for n, u in zip(shape, layout["unit"]))
    total = math.prod(nblocks)
    if len(nblocks) != len(shape) or total != record.get("chunks_total"):
        return None
    with _stores.reworded(loc, "checking"):
        check = _manifest.resume_check(loc, variable, encode, nblocks, record)
    if check.bad or len(check.good) != total:
        return None
    return variable, total, zarr_format, "shards" if layout.get("shards") else "chunks"


def _json(loc: _stores.StoreLocation, key: str) -> dict[str, Any] | None:
    data = _stores.get_bytes(loc, key)
    value = json.loads(data) if data is not None else None
    return value if isinstance(value, dict) else None


def _metadata(loc: _stores.StoreLocation) -> tuple[int, dict[str, Any], Any] | None:
    """The store's Zarr format, group attributes, and a reader of an array's metadata (None: not a Zarr group).

    The metadata documents are read as the Zarr specifications lay them out (format 2:
    ``.zattrs`` and ``<array>/.zarray``; format 3: ``zarr.json``), without zarr-python, whose
    import costs about as much as the rest of such a rerun.
    """
    group = _json(loc, "zarr.json")
    if group is not None and group.get("zarr_format") == 3 and group.get("node_type") == "group":
        attrs = group.get("attributes") or {}

        def array3(variable: str) -> dict[str, Any] | None:
            meta = _json(loc, f"{variable}/zarr.json")
            return meta if meta and meta.get("zarr_format") == 3 and meta.get("node_type") == "array" else None

        return 3, attrs, array3
    if _stores.get_bytes(loc, ".zgroup") is None:
        return None

    def array2(variable: str) -> dict[str, Any] | None:
        meta = _json(loc, f"{variable}/.zarray")
        return meta if meta and meta.get("zarr_format") == 2 else None

    return 2, _json(loc, ".zattrs") or {}, array2


def chunk_key_encoder(meta: dict[str, Any]) -> Any:
    """The function from a chunk's grid index to its key under the array's folder, from the array's metadata.

    As the Zarr specifications define it: format 2, the indices joined by the array's
    ``dimension_separator`` (``.`` by default; ``0`` for a 0-d array); format 3, the ``default``
    encoding (``c`` then the indices, each after the separator, ``/`` by default) or the ``v2``
    encoding (as format 2, separator ``.`` by default). None for any other encoding (the caller
    then takes the full path).

    Parameters
    ----------
    meta
        The array's metadata document (``.zarray`` or ``zarr.json``).
    """
    if meta.get("zarr_format") == 2:
        name, sep = "v2", meta.get("dimension_separator") or "."
    else:
        encoding = meta.get("chunk_key_encoding") or {}
        name = encoding.get("name") if isinstance(encoding, dict) else encoding
        config = (encoding.get("configuration") or {}) if isinstance(encoding, dict) else {}
        sep = config.get("separator") or ("/" if name == "default" else ".")
    if sep not in ("/", ".") or name not in ("default", "v2"):
        return None
    if name == "default":
        return lambda index: sep.join(["c", *map(str, index)])
    return lambda index: sep.join(map(str, index)) if index else "0"
