"""The arguments of :func:`eocube.to_zarr` and :func:`eocube.open_zarr`, checked before anything is written or read.

Each refusal is one :class:`~eocube.errors.StoreOptionError` naming the argument
and the values it takes: before these checks, ``variable="a/b"`` was blamed on
the disk, ``memory_budget="4 parsecs"`` and ``compression_level=99`` were
accepted (format 2 ignored the budget, zstd clamped the level), an attribute
Zarr cannot store gave xarray's ``TypeError`` naming no attribute, a cube of
billions of chunks ran into a ``MemoryError`` while its graph was built, and
``open_zarr(chunks={"y": 0})`` raised a ``ZeroDivisionError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..cube import DIMS
from ..errors import StoreOptionError

MAX_UNITS = 2_000_000
"""Most dask chunks (and write units) a cube written by :func:`eocube.to_zarr` may have: its graph holds
one task per chunk and the writer one delayed object per unit (about 1.5 kB each on the client: two
million take some 3 GB before anything is written, as for ``open_stac``'s read tasks)."""

ZSTD_LEVELS = (-131072, 22)
"""Zstandard's compression levels (``numcodecs.Zstd.min_level()`` .. ``max_level()``): 1 fast .. 22 smallest;
0 is zstd's default level (3), negative levels its faster modes."""


def check_variable(variable: str, coords: Any = (), *, from_name: bool = False) -> None:
    """A name Zarr stores as one array beside the cube's coordinates.

    Raises
    ------
    StoreOptionError
        Not a string, empty, with a ``/`` or ``\\`` (a nested path), starting with ``.`` (Zarr's own
        metadata keys), or the name of one of the cube's coordinates. ``from_name``: the name
        is the cube's (no ``variable=`` was given), which the message says.
    """
    why = None
    if not isinstance(variable, str) or not variable:
        why = "give a non-empty string"
    elif "/" in variable or "\\" in variable:
        why = "a '/' or '\\' would make it a nested array path in the store; give a name without them"
    elif variable.startswith("."):
        why = "names starting with '.' are Zarr's metadata keys; give another name"
    elif variable in {str(c) for c in coords}:
        why = f"it is the name of one of the cube's coordinates {sorted(str(c) for c in coords)}; give another name"
    if why:
        what = f"the cube's name {variable!r} (the default variable=)" if from_name else f"variable={variable!r}"
        raise StoreOptionError(f"{what}: {why}" + (", or pass variable=" if from_name else ""))


def check_compression_level(level: Any) -> None:
    """A Zstandard level: a whole number from -131072 to 22 (1 fast .. 22 smallest, 0 zstd's default).

    Raises
    ------
    StoreOptionError
        Anything else (zstd clamps a level out of range without a word).
    """
    lo, hi = ZSTD_LEVELS
    whole = isinstance(level, (int, np.integer)) and not isinstance(level, (bool, np.bool_))
    if not whole or not lo <= level <= hi:
        raise StoreOptionError(f"compression_level={level!r}: give a Zstandard level, a whole number up to {hi} "
                               f"(1 fast .. {hi} smallest; 0 is zstd's default, negative levels down to {lo} its "
                               "faster modes); eocube's default is 3")


def parse_memory_budget(value: Any) -> int | None:
    """Bytes from ``memory_budget`` (``4e9``, ``"4GB"``, ``"512MiB"``; None stays None).

    Raises
    ------
    StoreOptionError
        A text that is not a size, or a size below 1 byte.
    """
    if value is None:
        return None
    hint = "give bytes (e.g. 4e9) or a size such as '4GB' or '512MiB'"
    if isinstance(value, (bool, np.bool_)):
        raise StoreOptionError(f"memory_budget={value!r}: {hint}")
    if isinstance(value, str):
        from dask.utils import parse_bytes

        try:
            size = float(parse_bytes(value))
        except (ValueError, TypeError):
            raise StoreOptionError(f"memory_budget={value!r} is not a size: {hint}") from None
    elif isinstance(value, (int, float, np.integer, np.floating)):
        size = float(value)
    else:
        raise StoreOptionError(f"memory_budget={value!r}: {hint}")
    if not math.isfinite(size) or size < 1:
        raise StoreOptionError(f"memory_budget={value!r}: a task's memory must be a finite size of 1 byte or "
                               f"more; {hint}")
    return int(size)


def _storable(value: Any) -> bool:
    """Whether Zarr's JSON metadata holds ``value`` (numbers, NaN included, strings, lists, dicts of them)."""
    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
        raise TypeError(type(obj).__name__)

    try:
        json.dumps(value, default=default)
    except (TypeError, ValueError):
        return False
    return True


def check_attrs(attrs: Mapping[Any, Any], where: str = "cube.attrs") -> None:
    """Every attribute is one Zarr can store (the store's metadata is JSON).

    Raises
    ------
    StoreOptionError
        Names the first attribute that cannot be stored, its type and the remedy.
    """
    for key, value in attrs.items():
        if not isinstance(key, str):
            raise StoreOptionError(f"{where} has the key {key!r} ({type(key).__name__}): Zarr attribute names are "
                                   f"strings; rename it (e.g. {where}[{str(key)!r}] = {where}.pop({key!r}))")
        if not _storable(value):
            raise StoreOptionError(
                f"{where}[{key!r}] holds a {type(value).__name__} ({str(value)[:60]}), which Zarr cannot store (its "
                "attributes are JSON: numbers, strings, lists and dicts of them): convert it (e.g. to a string, "
                f"str(value) or value.isoformat()) or drop it ({where}.pop({key!r}))")


def check_size(shape: tuple[int, ...], dtype: Any, chunks: tuple[tuple[int, ...], ...] | None,
               units: int | None = None) -> None:
    """Refuse a cube whose write graph would have more than :data:`MAX_UNITS` chunks or write units.

    Parameters
    ----------
    shape, dtype
        The cube's shape and dtype (for the message).
    chunks
        Its dask chunks (None: in memory).
    units
        Write units of the chosen layout, when known.

    Raises
    ------
    StoreOptionError
        Naming the size, the chunk count and what to change.
    """
    count = math.prod(len(c) for c in chunks) if chunks else 0
    most = max(count, units or 0)
    if most <= MAX_UNITS:
        return
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    size = _human(nbytes)
    what = f"{count:,} dask chunks" if count >= (units or 0) else f"{units:,} write units"
    raise StoreOptionError(
        f"the cube is {' x '.join(f'{n:,}' for n in shape)} {DIMS} ({size} of {np.dtype(dtype).name}) in {what}, more "
        f"than {MAX_UNITS:,} (a graph of that size takes gigabytes before anything is written): write it in larger "
        "chunks (cube.chunk({'y': 4096, 'x': 4096}) or chunks=/shards=), or split it into several stores")


def _human(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if nbytes < 1024 or unit == "EiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} EiB"  # pragma: no cover


def check_read_chunks(chunks: Any) -> None:
    """``open_zarr(chunks=...)``: a dict of cube dims to whole numbers >= 1, -1, None or ``"auto"``.

    Raises
    ------
    StoreOptionError
        Names the dim or the size.
    """
    if chunks is None:
        return
    if not isinstance(chunks, Mapping):
        raise StoreOptionError(f"chunks={chunks!r}: give a dict such as {{'time': -1, 'y': 512, 'x': 512}}")
    for dim, size in chunks.items():
        if dim not in DIMS:
            raise StoreOptionError(f"chunks names the dim {dim!r}, which a cube does not have: use {DIMS}")
        if size is None or size == "auto":  # dask's own meanings: no chunking, its choice
            continue
        whole = isinstance(size, (int, np.integer)) and not isinstance(size, (bool, np.bool_))
        if not whole or not (size >= 1 or size == -1):
            raise StoreOptionError(f"chunks[{dim!r}]={size!r}: a chunk size is a whole number >= 1, or -1 for the "
                                   "whole axis")
