"""How a cube is laid out in its store: the Zarr format, chunks and shards.

One task writes one *write unit* whole: a shard of a sharded format 3 array,
else one chunk. The unit is the cube's dask chunk (regularised), grown along
y and x when the store would otherwise have more than :data:`FEW_FILES` units
(shards hold many chunks, so file counts stay low), and never beyond the
shard size allowed by the memory budget. Inside a shard, the stored (inner)
chunks keep the unit's time and band extent and split y and x into the
largest even pieces of at most :data:`CHUNK_BYTES` (what a reader fetches).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cube import DIMS
from ..errors import StoreOptionError

FEW_FILES = 1000
"""Up to this many write units, each dask chunk is its own unit (shard or chunk)."""

CHUNK_BYTES = 8 * 2**20
"""Largest uncompressed inner chunk chosen by default (what one read fetches)."""

SHARD_BYTES = 512 * 2**20
"""Largest uncompressed shard chosen by default (also capped by a quarter of the memory budget)."""

LARGE_BYTES = 4 * 2**30
"""Cubes larger than this (uncompressed) are written to format 3 by default."""


def parse_bytes(value: float | str | None) -> int | None:
    """Bytes from ``4e9``, ``"4GB"``, ``"512MiB"`` (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        from dask.utils import parse_bytes as _parse

        return int(_parse(value))
    return int(value)


def memory_budget() -> int:
    """Memory one task may use: the workers' limit per thread, else this machine's memory per core."""
    try:
        from distributed import default_client

        info = default_client().scheduler_info(n_workers=-1)["workers"]
        per_thread = [w["memory_limit"] / max(1, w["nthreads"]) for w in info.values() if w.get("memory_limit")]
        if per_thread:
            return int(min(per_thread))
    except (ImportError, ValueError, KeyError, OSError):
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(total // max(1, os.cpu_count() or 1))


def choose_format(zarr_format: int | None, gdal_compatible: bool | None, *, remote: bool, nbytes: int,
                  units: int) -> tuple[int, str]:
    """The Zarr format to write, and why.

    Parameters
    ----------
    zarr_format
        Asked for (2 or 3), or None.
    gdal_compatible
        True: format 2 (GDAL <= 3.10 reads no format 3). False: no GDAL constraint.
    remote
        The store is on an object store.
    nbytes
        Uncompressed size of the cube.
    units
        Number of dask chunks (format 2 files) of the cube.

    Returns
    -------
    (int, str)
    """
    if zarr_format is not None:
        if zarr_format not in (2, 3):
            raise StoreOptionError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
        if gdal_compatible and zarr_format == 3:
            raise StoreOptionError("gdal_compatible=True needs zarr_format=2 (GDAL up to 3.10 reads no Zarr format 3)")
        return zarr_format, "asked for"
    if gdal_compatible:
        return 2, "GDAL compatibility asked for"
    if remote:
        return 3, "the store is on an object store (sharded format 3 keeps the objects few)"
    if nbytes > LARGE_BYTES or units > FEW_FILES * 10:
        return 3, (f"the cube is large ({nbytes / 2**30:.1f} GiB, {units} chunks): sharded format 3 keeps the "
                   "files few (pass gdal_compatible=True or zarr_format=2 for GDAL <= 3.10)")
    return 2, "small local output: format 2, readable by every GDAL (pass zarr_format=3 for format 3)"


@dataclass(frozen=True)
class Layout:
    """Chunks and shards of a written array, and the write unit of one task."""

    unit: tuple[int, ...]
    """Shape of what one task computes and writes whole (the dask chunk at write time)."""
    chunks: tuple[int, ...]
    """Stored (inner) chunk shape."""
    shards: tuple[int, ...] | None
    """Shard shape (equal to ``unit``), None when each unit is a single chunk."""
    reason: str
    """Why these shapes."""

    def describe(self, shape: tuple[int, ...], itemsize: int) -> dict[str, Any]:
        units = math.prod(math.ceil(s / u) for s, u in zip(shape, self.unit))
        return {"chunks": list(self.chunks), "shards": list(self.shards) if self.shards else None,
                "units": units, "unit_bytes": math.prod(self.unit) * itemsize, "reason": self.reason}


def _dims_shape(spec: dict[str, int] | tuple[int, ...] | list[int], shape: tuple[int, ...], what: str,
                clip: bool = True) -> tuple[int, ...]:
    if isinstance(spec, dict):
        unknown = set(spec) - set(DIMS)
        if unknown:
            raise StoreOptionError(f"{what} has unknown dims {sorted(unknown)}; use {DIMS}")
        values = [spec.get(d, s) for d, s in zip(DIMS, shape)]
    else:
        values = list(spec)
        if len(values) != len(shape):
            raise StoreOptionError(f"{what} needs {len(shape)} sizes {DIMS}, got {values}")
    bad = [v for v in values if v is not None and (isinstance(v, (bool, np.bool_))
                                                   or not isinstance(v, (int, np.integer)))]
    if bad:
        raise StoreOptionError(f"{what} sizes must be whole numbers >= 1 (or -1 for the whole axis), got {values}")
    out = tuple(s if (v is None or v == -1) else (min(int(v), s) if clip else int(v)) for v, s in zip(values, shape))
    if any(v < 1 for v in out):
        raise StoreOptionError(f"{what} sizes must be positive (or -1 for the whole axis), got {values}")
    return out


def _divisor_at_most(n: int, limit: int) -> int:
    """Largest divisor of ``n`` that is at most ``limit`` (at least 1)."""
    best = 1
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            for c in (d, n // d):
                if c <= limit and c > best:
                    best = c
    return best


def inner_chunks(unit: tuple[int, ...], itemsize: int, chunk_bytes: int = CHUNK_BYTES) -> tuple[int, ...]:
    """Inner chunks of a shard: its time and band extent, y and x split evenly to at most ``chunk_bytes``."""
    t, b, y, x = unit
    plane = max(1, chunk_bytes // max(1, t * b * itemsize))
    side = max(1, math.isqrt(plane))
    cy = _divisor_at_most(y, max(1, side))
    cx = _divisor_at_most(x, max(1, plane // cy))
    return (t, b, cy, cx)


def choose_layout(
    shape: tuple[int, ...],
    itemsize: int,
    dask_chunks: tuple[int, ...],
    zarr_format: int,
    *,
    chunks: dict[str, int] | tuple[int, ...] | None = None,
    shards: dict[str, int] | tuple[int, ...] | None = None,
    budget: int | None = None,
) -> Layout:
    """The write unit, inner chunks and shards of a cube.

    Parameters
    ----------
    shape
        Cube shape ``(time, band, y, x)``.
    itemsize
        Bytes per value.
    dask_chunks
        The cube's regular dask chunk shape.
    zarr_format
        2 (chunks = dask chunks, no shards) or 3.
    chunks, shards
        Overrides (dims -> size, -1 for the whole axis). ``shards`` must be a
        multiple of ``chunks``.
    budget
        Memory one task may use (bytes); shards are at most a quarter of it.

    Returns
    -------
    Layout
    """
    if zarr_format == 2:
        if shards is not None:
            raise StoreOptionError("shards need Zarr format 3 (zarr_format=3); format 2 stores one file per chunk")
        unit = _dims_shape(chunks, shape, "chunks") if chunks is not None else tuple(dask_chunks)
        return Layout(unit, unit, None, "format 2: one chunk per dask chunk" if chunks is None else "chunks asked for")
    budget = budget or memory_budget()
    cap = max(1, min(SHARD_BYTES, budget // 4))
    if shards is not None:
        # not clipped to the array: a window smaller than the planned shard keeps the planned chunks
        unit, why = _dims_shape(shards, shape, "shards", clip=False), "shards asked for"
    else:
        unit, why = tuple(dask_chunks), "one shard per dask chunk"
        count = math.prod(math.ceil(s / u) for s, u in zip(shape, unit))
        if count > FEW_FILES:
            t, b, y, x = unit
            k = 1
            while (count > FEW_FILES and (k + 1) ** 2 * t * b * y * x * itemsize <= cap
                   and (y * k < shape[2] or x * k < shape[3])):
                k += 1
                count = math.prod(math.ceil(s / u) for s, u in zip(shape, (t, b, y * k, x * k)))
            if k > 1:
                unit = (t, b, min(y * k, shape[2]), min(x * k, shape[3]))
                why = (f"{k}x{k} dask chunks per shard: {count} shards instead of "
                       f"{math.prod(math.ceil(s / u) for s, u in zip(shape, dask_chunks))} chunk files, "
                       f"shards of {math.prod(unit) * itemsize / 2**20:.0f} MiB (at most {cap / 2**20:.0f} MiB, "
                       "a quarter of a task's memory)")
    if chunks is not None:
        inner = _dims_shape(chunks, unit, "chunks")
        bad = [d for d, u, c in zip(DIMS, unit, inner) if u % c]
        if bad:
            raise StoreOptionError(f"shards {dict(zip(DIMS, unit))} are not a multiple of chunks {dict(zip(DIMS, inner))} "
                             f"along {bad}: pick chunks that divide the shards")
        why += "; chunks asked for"
    elif unit != tuple(dask_chunks) and shards is None:  # grouped dask chunks: each stays a chunk (or is split)
        grouped = tuple(_divisor_at_most(u, c) for u, c in zip(unit, dask_chunks))
        inner = grouped if math.prod(grouped) * itemsize <= CHUNK_BYTES else inner_chunks(grouped, itemsize)
    else:
        inner = inner_chunks(unit, itemsize)
        if inner != unit:
            why += f"; inner chunks of at most {CHUNK_BYTES / 2**20:.0f} MiB"
    return Layout(unit, inner, None if inner == unit else unit, why)


def nbytes(shape: tuple[int, ...], dtype: Any) -> int:
    """Uncompressed size of an array."""
    return int(math.prod(shape) * np.dtype(dtype).itemsize)
