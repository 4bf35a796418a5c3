"""Lazy opening of a cube from a Zarr store.

The cube's values are read by one task per stored chunk through
:mod:`eocube.io._chunkread`, so a damaged chunk is reported by store, variable
and chunk key (:class:`~eocube.errors.CorruptChunkError`).
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import numpy as np
import xarray as xr

from ..cube import DIMS, validate_cube
from ..errors import IncompleteStoreError, StoreError, StoreNotFoundError
from . import _ledger, _stores
from ._chunkread import checked_dask_array
from ._options import check_read_chunks
from ._stores import StoreLocation
from .zarr_writer import WRITE_ATTR


def open_zarr(
    store: str | os.PathLike[str],
    *,
    variable: str | None = None,
    chunks: dict[str, int] | None = None,
    allow_incomplete: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> xr.DataArray:
    """Open a cube stored in Zarr, lazily (nothing is read but metadata).

    Parameters
    ----------
    store
        A local path or a URL (``s3://``, ``gs://``, ``az://``, ``https://``)
        of the store (format 2 or 3). A URL is never taken for a local path.
    variable
        Name of the cube's array; by default the only array with dims
        ``(time, band, y, x)``.
    chunks
        Dask chunks (dims of the cube -> a whole number >= 1, -1 for the whole
        axis, None or ``"auto"``); by default the store's own chunks.
    allow_incomplete
        Open a store whose write has not finished, or a complete store some of
        whose written chunks were deleted since (those read as nodata). Off by
        default, so a half-written or damaged result never passes as one.
    storage_options
        Options of the object store (endpoint, region, credentials, ``anon``);
        by default credentials come from the environment (``AWS_*``, ...) and
        the AWS config files. Never shown in messages or attributes.

    Returns
    -------
    xarray.DataArray
        A dask-backed cube with CRS, transform, nodata, band names, times and
        attributes as written. The store's provenance is in ``cube.attrs``.
        Its dask name is a token of the store's path, metadata, write record
        and content (one listing of the array's objects: sizes, and mtimes or
        ETags, checked against the manifest of an eocube store; no chunk is
        read), the same in every process, so writes computed from it can be
        resumed, and a store edited in place gives another name.

    Raises
    ------
    StoreOptionError
        ``chunks`` names a dim a cube lacks or a size below 1 (other than -1).
    StoreNotFoundError
        Nothing at ``store``.
    IncompleteStoreError
        The write of the store has not finished.
    StoreError
        The path is not a Zarr store, or the store holds no cube.
    CorruptChunkError
        Chunks that the store's writer stored are missing (deleted since the
        write). Later, when the data are computed: a chunk of the store cannot
        be decoded (the error names the store, the variable and the chunk key).
    """
    loc = _stores.resolve(store, storage_options)
    path = loc.display
    check_read_chunks(chunks)  # before anything is read: {"y": 0} was a ZeroDivisionError from dask
    _check_exists(loc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "consolidated metadata not found" fallback
        try:
            ds = xr.open_zarr(
                loc.zarr_store(read_only=True),
                chunks=None,  # lazy backend arrays; the cube's dask array is built below
                decode_coords="all",
                mask_and_scale=False,
                consolidated=None,
            )
        except Exception as exc:  # noqa: BLE001 - turn any reader failure into one clear message
            raise StoreError(
                f"{path} is not a readable Zarr store ({type(exc).__name__}: {_stores.scrub(str(exc), loc)}): "
                "is it the right path, and was it written completely?"
            ) from (exc if loc.is_local else None)
    state = ds.attrs.get(WRITE_ATTR)
    if isinstance(state, dict) and state.get("status") != "complete" and not allow_incomplete:
        name = variable or next(iter(ds.data_vars), "cube")
        try:
            done: int | str = len(_ledger.done_chunks(loc, name))
        except Exception:  # noqa: BLE001 - a store that cannot be listed (HTTP)
            done = "?"
        unit = "shards" if (state.get("layout") or {}).get("shards") else "chunks"
        raise IncompleteStoreError(
            f"{path} is an unfinished write ({done} of {state.get('chunks_total', '?')} {unit} written): "
            "run the same command again to resume it, or pass allow_incomplete=True to look at it anyway"
        )
    name = variable or _cube_variable(ds, path)
    if name not in ds.data_vars:
        raise StoreError(f"{path} has no variable {name!r}; its variables are {list(ds.data_vars)}")
    cube = ds[name]
    if tuple(cube.dims) != DIMS:
        raise StoreError(f"{path}:{name} has dims {cube.dims}, not a cube {DIMS}; open it with xarray.open_zarr instead")
    cube = _lazy_cube(cube, loc, name, dict(ds.attrs), allow_missing=allow_incomplete)
    cube = _decode_packing(cube)  # CF scale_factor/add_offset of a plain store (issue 21)
    if chunks is not None:
        cube = cube.chunk(chunks)
    cube = cube.assign_coords(band=np.asarray([str(b) for b in cube["band"].values], dtype=object))
    cube.attrs.update(_provenance_attrs(ds.attrs))
    return validate_cube(cube, name=f"{path}:{name}")


def _check_exists(loc: StoreLocation) -> None:
    """Raise StoreNotFoundError when nothing is at the location."""
    if loc.is_local:
        if not loc.path.exists():
            raise StoreNotFoundError(
                f"no Zarr store at {loc.display}: check the path (it must be a folder such as out.zarr)")
        return
    try:
        found = _stores.has_zarr_metadata(loc)
    except Exception as exc:  # noqa: BLE001 - unreachable endpoint, refused credentials
        raise StoreError(f"{loc.display} cannot be read ({type(exc).__name__}: {_stores.scrub(str(exc), loc)}): "
                         "check the URL, the endpoint and the credentials") from None
    if not found:
        raise StoreNotFoundError(f"no Zarr store at {loc.display}: check the URL (it must name the store's root, "
                                 "such as s3://bucket/out.zarr)")


def _lazy_cube(cube: xr.DataArray, loc: StoreLocation, name: str, group_attrs: dict[str, Any], *,
               allow_missing: bool = False) -> xr.DataArray:
    """The cube with its data as a checked dask array (see :mod:`eocube.io._chunkread`).

    Reads of a damaged chunk then name the store, variable and chunk key. Where
    xarray decodes the stored values (their dtype changes), xarray's own lazy
    array is chunked instead.
    """
    coords = {k: cube[k].variable.load() for k in cube.coords if k not in cube.dims}
    cube = cube.assign_coords(coords)
    data = checked_dask_array(loc, name, group_attrs, allow_missing=allow_missing)
    if data.dtype != cube.dtype:
        return cube.chunk(dict(zip(cube.dims, data.chunksize)))
    return cube.copy(data=data)


_PACKING = ("scale_factor", "add_offset")
"""CF attributes of packed values: stored integers stand for ``stored * scale_factor + add_offset``."""


def _decode_packing(cube: xr.DataArray) -> xr.DataArray:
    """The cube's CF packing decoded, lazily, on the checked dask array (xarray's own CF decoding).

    A store written by plain xarray with ``encoding={"scale_factor": ..., "add_offset": ...,
    "dtype": "int16"}`` holds integers; the store is opened with ``mask_and_scale=False`` (an
    integer cube keeps its nodata value), so without this the packed integers came out as if they
    were the values. Decoded: ``stored * scale_factor + add_offset`` as floats (the type of the
    attributes, float64 for JSON numbers, as xarray does), the ``_FillValue`` / ``missing_value``
    pixels NaN, which becomes the cube's nodata; the packing leaves the attributes and the encoding
    (a result written from the cube is written unpacked). Cubes without these attributes (eocube's
    own stores) are returned as they are.
    """
    if not any(key in cube.attrs for key in _PACKING):
        return cube
    name = str(cube.name or "cube")
    decoded = xr.decode_cf(cube.to_dataset(name=name), mask_and_scale=True, decode_times=False, decode_coords=False,
                           decode_timedelta=False)[name]
    unpacked = (*_PACKING, "_FillValue", "missing_value", "dtype")
    decoded.encoding = {k: v for k, v in decoded.encoding.items() if k not in unpacked}
    decoded.attrs = {k: v for k, v in decoded.attrs.items() if k not in unpacked}
    return decoded.rio.write_nodata(np.nan, encoded=False)


def _cube_variable(ds: xr.Dataset, path: str) -> str:
    candidates = [v for v in ds.data_vars if tuple(ds[v].dims) == DIMS]
    if len(candidates) == 1:
        return str(candidates[0])
    if not candidates:
        found = {str(v): tuple(ds[v].dims) for v in ds.data_vars}
        raise StoreError(
            f"{path} holds no cube (no array with dims {DIMS}); it has {found or 'no arrays'}. "
            "Write cubes with eocube.to_zarr, or open this store with xarray.open_zarr"
        )
    raise StoreError(f"{path} holds several cubes {candidates}: pick one with variable=...")


def _provenance_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in attrs.items() if k.startswith("eocube_") and k != WRITE_ATTR}
    if "eocube_provenance" in out:
        try:
            out["eocube_provenance"] = json.loads(out["eocube_provenance"])
        except (TypeError, ValueError):
            pass
    return out
