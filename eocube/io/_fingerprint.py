"""The fingerprint of a write: what decides that an existing store may be resumed.

A store is resumed (or, complete, reused) only by the same computation. The
fingerprint is a hash of named parts, stored with the write's record so that a
refusal can say which part differs:

* ``layout``: variable, Zarr format, shape, dtype, chunks (and inner chunks
  and shards of a sharded array), nodata;
* ``coords``: times, band names, y, x and CRS;
* ``computation``: what computes the values. For a dask-backed cube it is the
  dask array's name, which dask derives deterministically from the whole graph
  (input stores, functions, method, parameters, model weights: eocube's
  ``apply_model`` names its blocks by the model's content hash). An input
  store is named by its content (:func:`eocube.io._chunkread.input_identity`:
  its manifest, or the sizes and mtimes/ETags of all its objects), so a chunk
  of an input edited in place changes the fingerprint. For a cube in memory it
  is a hash of the values;
* ``attrs``: the cube's attributes (redacted);
* ``provenance``: the caller's description of the job (redacted).

When dask cannot tokenize part of a graph deterministically it names it with a
random token, so the fingerprint of the same command differs between runs: the
store is then refused with the reason rather than resumed (see
:func:`nondeterminism`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from .._redact import redact_obj
from .._version import __version__

VERSION = 2
"""Version of the fingerprint scheme; stores with another version are not resumed."""


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def computation_token(cube: xr.DataArray) -> str:
    """A token of what computes the cube's values.

    Parameters
    ----------
    cube
        The cube as passed to :func:`eocube.to_zarr` (before any rechunking).

    Returns
    -------
    str
        ``"dask:<array name>"`` for a dask-backed cube, ``"data:<sha256>"`` of
        the values (with dtype and shape) for any other.
    """
    data = cube.data
    if isinstance(data, da.Array):
        return f"dask:{data.name}"
    values = np.ascontiguousarray(np.asarray(data))
    h = hashlib.sha256(f"{values.dtype.str}{values.shape}".encode())
    h.update(values.view(np.uint8).reshape(-1) if values.dtype != object else repr(values.tolist()).encode())
    return f"data:{h.hexdigest()}"


def _nodata(cube: xr.DataArray) -> Any:
    nodata = cube.rio.nodata
    if nodata is None:
        return None
    value = nodata.item() if hasattr(nodata, "item") else nodata
    return "nan" if isinstance(value, float) and np.isnan(value) else value


def fingerprint_parts(
    cube: xr.DataArray, computation: str, variable: str, zarr_format: int, provenance: dict[str, Any],
    *, storage: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The hashed parts of a write's fingerprint.

    Parameters
    ----------
    cube
        The cube as written (regular dask chunks).
    computation
        :func:`computation_token` of the cube as passed in.
    variable
        Name of the array in the store.
    zarr_format
        2 or 3.
    provenance
        Redacted provenance.
    storage
        Inner chunks and shards of a format 3 array whose chunks differ from
        its write units (None otherwise, so format 2 fingerprints are unchanged).

    Returns
    -------
    dict
        Part name -> sha256 hex digest.
    """
    layout = {
        "variable": variable,
        "zarr_format": zarr_format,
        "shape": list(cube.shape),
        "dtype": str(cube.dtype),
        "chunks": [list(c) for c in cube.chunks],  # type: ignore[union-attr]
        "nodata": _nodata(cube),
    }
    if storage is not None:
        layout["storage"] = storage
    h = hashlib.sha256()
    for dim in ("time", "y", "x"):
        h.update(np.ascontiguousarray(cube[dim].values).tobytes())
    coords = {
        "values": h.hexdigest(),
        "bands": [str(b) for b in cube["band"].values],
        "crs": cube.rio.crs.to_wkt() if cube.rio.crs is not None else None,
    }
    return {
        "layout": _digest(layout),
        "coords": _digest(coords),
        "computation": _digest({"token": computation, "eocube_version": __version__}),
        "attrs": _digest(redact_obj(dict(cube.attrs))),
        "provenance": _digest(provenance),
    }


def fingerprint(parts: dict[str, str]) -> str:
    """The fingerprint: one hash of the parts and the scheme's version."""
    return _digest({"version": VERSION, "parts": parts})


def differing(recorded: dict[str, Any], parts: dict[str, str]) -> list[str]:
    """Names of the parts that differ from those recorded in a store's write record."""
    old = recorded.get("fingerprint_parts")
    if recorded.get("fingerprint_version") != VERSION or not isinstance(old, dict):
        return []
    return [name for name, value in parts.items() if old.get(name) != value]


def nondeterminism(cube: xr.DataArray) -> str | None:
    """Why the cube's dask name may differ between runs of the same command (None if it should not).

    Dask names a graph by tokenizing its functions and arguments; an object it
    cannot tokenize deterministically gets a random token. This tokenizes the
    cube's graph with ``tokenize.ensure-deterministic`` on and reports the
    failure. It is only called to explain a fingerprint mismatch.

    Parameters
    ----------
    cube
        The cube as passed in.

    Returns
    -------
    str or None
        The tokenizer's message, or None.
    """
    data = cube.data
    if not isinstance(data, da.Array):
        return None
    try:
        with dask.config.set({"tokenize.ensure-deterministic": True}):
            tokenize(dict(data.__dask_graph__()))
    except Exception as exc:  # noqa: BLE001 - any tokenizer failure is the answer
        return f"{type(exc).__name__}: {exc}"
    return None
