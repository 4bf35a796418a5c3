"""Several sources of one model: matching cubes to the spec, nesting their grids, pairing their dates.

Grids *nest* when they share the CRS, their pixel sizes are integer multiples of the finest
one (the *base* grid, on which tiles are cut) and the base grid's top-left corner lies on a
pixel corner of every other grid. Each other source is then cropped (lazily, ``isel``) to
start at the base origin and to hold exactly ``ceil(n_base / ratio)`` pixels along each axis,
so that pixel ``k`` of a source with ratio ``r`` covers base pixels ``k*r .. k*r + r - 1``.

Per-date layouts pair every date of the reference source with one date of each other source
(:func:`pair_dates`): the same calendar day, the nearest date within a tolerance, or the
latest date on or before it within a tolerance. A reference date without a partner gets a
nodata output (the model is not run on it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import GridError
from ..grid import Grid
from ..names import PAIRINGS
from ._errors import OptionError, SourceError
from ._spec import ModelSpec

_FIX = (
    "open every source on nesting grids, e.g. open_stac(..., resolution=10) for the 10 m bands and "
    "open_stac(..., resolution=20) for the 20 m bands of one search, or put a cube on another's grid with "
    "cube.rio.reproject_match(ref) (ref: a cube on the grid you want)"
)


def _grid_of(cube: xr.DataArray, name: str) -> Grid:
    """The grid of ``cube`` (a clear error for rotated or south-up grids)."""
    grid = Grid.of(cube)
    if not grid.north_up:
        raise GridError(
            f"source {name!r} has a rotated or south-up grid (transform {tuple(grid.transform)[:6]}): the engine "
            f"needs north-up grids; {_FIX}"
        )
    return grid


@dataclass(frozen=True)
class Nesting:
    """How the sources' grids nest in the base (finest) grid."""

    base: int
    """Index of the source whose grid tiles are cut on (the finest)."""
    ratios: tuple[int, ...]
    """Base pixels per source pixel along each axis, per source (1 for the base)."""
    shape: tuple[int, int]
    """Rows and columns of the base grid."""


def _integer(value: float, what: str) -> int:
    k = round(value)
    if abs(value - k) > 1e-6 * max(1.0, abs(value)):
        raise GridError(f"{what} is {value:.6g}, not an integer: the grids do not nest; {_FIX}")
    return int(k)


def nest_grids(
    cubes: Sequence[xr.DataArray], names: Sequence[str], reference: int | None
) -> tuple[Nesting, list[xr.DataArray]]:
    """Check that the grids nest and crop the coarser sources onto the base grid's footprint.

    Parameters
    ----------
    cubes, names
        The sources, in the spec's order, and their names (for messages).
    reference
        Index of the reference source (it is the base when it is among the finest); None: the finest.

    Returns
    -------
    Nesting, list of xarray.DataArray
        The nesting and the sources (the coarser ones cropped lazily to the base footprint).

    Raises
    ------
    GridError
        Other CRS, a pixel size that is not an integer multiple of the finest, non-square ratios,
        a corner of the base grid that is not on a pixel corner of a coarser grid, or a source that
        does not cover the base grid.
    """
    grids = [_grid_of(c, n) for c, n in zip(cubes, names, strict=True)]
    first = 0 if reference is None else reference
    ref = grids[first]
    for g, n in zip(grids, names):
        if g.crs != ref.crs:
            raise GridError(
                f"source {n!r} is in {g.crs} but {names[first]!r} in {ref.crs}: every source must "
                f"share the CRS; reproject it with cube.rio.reproject_match(ref) or open it with open_stac(..., "
                f"crs=...); {_FIX}"
            )
    finest = min(g.pixel_size[0] for g in grids)
    candidates = [i for i, g in enumerate(grids) if abs(g.pixel_size[0] - finest) <= 1e-9 * finest]
    base = reference if reference in candidates else candidates[0]
    b = grids[base]
    (bx, by), (bny, bnx) = b.pixel_size, b.shape
    ratios: list[int] = []
    out: list[xr.DataArray] = []
    for g, n, cube in zip(grids, names, cubes):
        (gx, gy), (gny, gnx) = g.pixel_size, g.shape
        rx = _integer(gx / bx, f"the pixel width of source {n!r} ({gx:g}) / the finest ({bx:g})")
        ry = _integer(gy / by, f"the pixel height of source {n!r} ({gy:g}) / the finest ({by:g})")
        if rx != ry or rx < 1:
            raise GridError(
                f"source {n!r} has pixels of {gx:g} x {gy:g} against {bx:g} x {by:g} for the finest "
                f"source {names[base]!r}: the ratios ({rx} and {ry}) must be equal; {_FIX}"
            )
        row, col = g.offset_to(b)
        ox = _integer(col, f"the column of the finest grid's left edge in source {n!r}")
        oy = _integer(row, f"the row of the finest grid's top edge in source {n!r}")
        need_y, need_x = -(-bny // rx), -(-bnx // rx)
        if ox < 0 or oy < 0 or gny - oy < need_y or gnx - ox < need_x:
            raise GridError(
                f"source {n!r} does not cover the grid of the finest source {names[base]!r}: it needs {need_y} x "
                f"{need_x} pixels of {gx:g} from the finest grid's top-left corner, it has {gny - oy} x "
                f"{gnx - ox} (offset {oy} rows, {ox} columns); clip the sources to one extent; {_FIX}"
            )
        if (oy, ox, need_y, need_x) != (0, 0, gny, gnx):
            cube = cube.isel(y=slice(oy, oy + need_y), x=slice(ox, ox + need_x))
        ratios.append(rx)
        out.append(cube)
    return Nesting(base=base, ratios=tuple(ratios), shape=(bny, bnx)), out


def match_sources(sources: Any, spec: ModelSpec) -> list[xr.DataArray]:
    """The cubes in the spec's source order, from one cube, a sequence or a name -> cube mapping.

    Raises
    ------
    SourceError
        A source the model needs is missing, one is not the model's, or the count differs.
    """
    names = [s.name for s in spec.sources]
    if isinstance(sources, xr.DataArray):
        sources = [sources]
    if isinstance(sources, Mapping):
        missing = [n for n in names if n not in sources]
        extra = [str(k) for k in sources if k not in names]
        if missing or extra:
            raise SourceError(
                f"the model takes the sources {names}; "
                + (f"missing from the call: {missing}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"not the model's: {extra}" if extra else "")
                + f": pass {{{', '.join(repr(n) + ': cube' for n in names)}}}"
            )
        return [sources[n] for n in names]
    if isinstance(sources, (list, tuple)):
        if len(sources) != len(names):
            raise SourceError(
                f"the model takes {len(names)} source(s) {names} but {len(sources)} cube(s) were passed: "
                f"pass them in this order, or as {{{', '.join(repr(n) + ': cube' for n in names)}}}"
            )
        return list(sources)
    raise SourceError(
        f"sources must be a cube (xarray.DataArray), a list of cubes or a dict name -> cube, got {type(sources).__name__}"
    )


def pair_dates(
    reference: pd.DatetimeIndex, other: pd.DatetimeIndex, how: str, tolerance: str | pd.Timedelta | None
) -> np.ndarray:
    """For each reference date, the index of its partner among ``other`` (-1: none).

    Parameters
    ----------
    reference, other
        Sorted dates of the reference source and of another source.
    how
        ``"same"``: a date on the same calendar day (the closest one if several);
        ``"nearest"``: the closest date, at most ``tolerance`` away; ``"previous"``: the latest
        date on or before the reference date, at most ``tolerance`` before it.
    tolerance
        Largest gap (a pandas Timedelta or its string, ``"3D"``); None: no limit.

    Returns
    -------
    numpy.ndarray
        int64, one entry per reference date.
    """
    if how not in PAIRINGS:
        raise SourceError(f"pairing must be 'same', 'nearest' or 'previous', got {how!r}")
    if len(other) == 0:
        return np.full(len(reference), -1, np.int64)
    ref = reference.values.astype("datetime64[ns]").astype(np.int64)
    oth = other.values.astype("datetime64[ns]").astype(np.int64)
    after = np.searchsorted(oth, ref, side="right")  # first index strictly after
    prev = after - 1  # latest on or before (-1: none)
    nxt = np.searchsorted(oth, ref, side="left")  # first on or after
    gap_prev = np.where(prev >= 0, ref - oth[np.clip(prev, 0, None)], np.iinfo(np.int64).max)
    gap_next = np.where(nxt < len(oth), oth[np.clip(nxt, None, len(oth) - 1)] - ref, np.iinfo(np.int64).max)
    if how == "previous":
        idx, gap = prev, gap_prev
    else:
        use_next = gap_next < gap_prev
        idx, gap = np.where(use_next, nxt, prev), np.where(use_next, gap_next, gap_prev)
    if how == "same":
        day = reference.normalize().values.astype("datetime64[ns]")
        partner = other.normalize().values.astype("datetime64[ns]")[np.clip(idx, 0, len(oth) - 1)]
        ok = (idx >= 0) & (partner == day)
    else:
        limit = np.iinfo(np.int64).max if tolerance is None else pd.Timedelta(tolerance).value
        ok = (idx >= 0) & (gap <= limit)
    return np.where(ok, idx, -1).astype(np.int64)


def lcm(*values: int) -> int:
    """Least common multiple of positive integers."""
    out = 1
    for v in values:
        out = out * int(v) // math.gcd(out, int(v))
    return out


def as_fraction(value: Any) -> Fraction:
    """A scale as an exact fraction (``4``, ``0.25``, ``"1/4"``, ``Fraction(1, 4)``).

    Raises
    ------
    OptionError
        Not a ratio (``"abc"``, NaN, infinity, None).
    """
    try:
        if isinstance(value, float):
            return Fraction(value).limit_denominator(1024)
        return Fraction(value)
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        raise OptionError(f"scale={value!r} is not a ratio: give output pixels per reference pixel, e.g. 4, '1/4' "
                          "or Fraction(1, 4)") from None
