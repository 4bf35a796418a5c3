"""The pixel grid, one value for every package: CRS, affine transform and shape.

A :class:`Grid` is what odc-geo calls a ``GeoBox``, reduced to the north-up grids eocube uses:
the loader builds one from the items' metadata (:meth:`Grid.from_bbox`), a cube tells its own
(:meth:`Grid.of`), the model engine nests and scales them, the label burner rasterises on its
windows and the quicklooks draw on its extent. Every transform, resolution, pixel-centre
coordinate and extent is computed here, once.

Conventions (rasterio's and rioxarray's): ``transform`` maps (column, row) of a pixel's upper-left
corner to CRS coordinates; ``shape`` is (rows, columns); coordinates of a cube are pixel centres.

Part of the core, on its lowest floor: it imports nothing of eocube (rasterio only where bounds are
reprojected). Its methods raise ``ValueError``/``TypeError`` for arguments no grid can take (a
programming error); the rules a user meets, with their messages, are the callers' (the cube
convention in :mod:`eocube.cube`, the loader's and the engine's :class:`~eocube.errors.GridError`).

Why not odc-geo's ``GeoBox`` itself: odc-geo is no dependency of eocube (only of the ``bench``
extra, through odc-stac). Its import costs 0.3-0.45 s on top of ``import eocube`` (pyproj, shapely,
dask), about 20 ms once rasterio is loaded (2026-12-06, 2-core VM under load), while this module
costs about 40 ms (affine); and its ``from_bbox`` snaps with a tolerance of 1 % of a pixel where the
loader's grids use 1e-6, so a grid (and the coordinates of the stores written from it, which a
rerun must find bit for bit to resume) could change. This module keeps eocube's arithmetic as it
was; ``tests/core/test_grid.py`` checks it against ``GeoBox`` and rasterio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from affine import Affine

Bounds = tuple[float, float, float, float]
"""(left, bottom, right, top) in CRS units."""

SNAP_TOLERANCE = 1e-6
"""Fraction of a pixel by which a bbox edge may pass a pixel edge and still count as on it (float noise)."""


@dataclass(frozen=True)
class Grid:
    """A pixel grid: CRS, upper-left-corner affine transform and (rows, cols).

    Parameters
    ----------
    crs
        Coordinate reference system (a :class:`rasterio.crs.CRS`, or None where unknown).
    transform
        Affine transform of the pixels' upper-left corners (GDAL order).
    shape
        (rows, cols).
    """

    crs: Any
    """Coordinate reference system (a :class:`rasterio.crs.CRS`), or None."""
    transform: Affine
    """Upper-left-corner affine transform."""
    shape: tuple[int, int]
    """(rows, cols)."""

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def of(cls, cube: Any) -> Grid:
        """The grid of a cube (any DataArray with ``y``/``x`` dims and rioxarray georeferencing)."""
        return cls(cube.rio.crs, cube.rio.transform(), (int(cube.sizes["y"]), int(cube.sizes["x"])))

    @classmethod
    def from_coords(cls, y: np.ndarray, x: np.ndarray, crs: Any = None) -> Grid:
        """The grid whose pixel centres are ``y`` and ``x`` (1-D, regular, at least two each).

        Raises
        ------
        ValueError
            Fewer than two coordinates along y or x (no pixel size to read).
        """
        if len(x) < 2 or len(y) < 2:
            raise ValueError(f"a grid of {len(y)} x {len(x)} pixel centres gives no pixel size: give two or more each")
        dx = float(x[1] - x[0])
        dy = float(y[1] - y[0])
        return cls(crs, Affine(dx, 0.0, float(x[0]) - dx / 2, 0.0, dy, float(y[0]) - dy / 2), (len(y), len(x)))

    @classmethod
    def from_bbox(
        cls,
        bbox: Bounds,
        crs: Any = None,
        *,
        shape: tuple[int, int] | None = None,
        resolution: tuple[float, float] | None = None,
        anchor: tuple[float, float] = (0.0, 0.0),
    ) -> Grid:
        """The north-up grid over ``bbox``: ``shape`` pixels exactly, or pixels of ``resolution`` snapped outwards.

        Parameters
        ----------
        bbox
            (left, bottom, right, top) in CRS units.
        crs
            The CRS of ``bbox`` and of the grid.
        shape
            (rows, cols): the pixels span ``bbox`` exactly.
        resolution
            (x, y) pixel size, both positive: the grid holds every pixel of the lattice through
            ``anchor`` that meets ``bbox`` (at least one pixel along each axis); an edge within
            :data:`SNAP_TOLERANCE` of a pixel edge counts as on it.
        anchor
            A pixel corner of the lattice (x, y); (0, 0) as odc-geo's ``GeoBox.from_bbox``.
        """
        left, bottom, right, top = (float(v) for v in bbox)
        if (shape is None) == (resolution is None):
            raise TypeError("Grid.from_bbox takes either shape= or resolution=")
        if shape is not None:
            h, w = shape
            return cls(crs, Affine((right - left) / w, 0.0, left, 0.0, -(top - bottom) / h, top), (int(h), int(w)))
        rx, ry = resolution  # type: ignore[misc]
        ax, ay = anchor
        col0 = math.floor((left - ax) / rx + SNAP_TOLERANCE)
        col1 = math.ceil((right - ax) / rx - SNAP_TOLERANCE)
        row0 = math.floor((ay - top) / ry + SNAP_TOLERANCE)  # rows counted downwards from the anchor
        row1 = math.ceil((ay - bottom) / ry - SNAP_TOLERANCE)
        transform = Affine(rx, 0.0, ax + col0 * rx, 0.0, -ry, ay - row0 * ry)
        return cls(crs, transform, (max(row1 - row0, 1), max(col1 - col0, 1)))

    # -- what the grid is ----------------------------------------------------------------------

    @property
    def height(self) -> int:
        """Rows."""
        return self.shape[0]

    @property
    def width(self) -> int:
        """Columns."""
        return self.shape[1]

    @property
    def resolution(self) -> tuple[float, float]:
        """(x, y) pixel size with its sign: y is negative on a north-up grid (GDAL's, rioxarray's)."""
        return (self.transform.a, self.transform.e)

    @property
    def pixel_size(self) -> tuple[float, float]:
        """(x, y) pixel size, both positive."""
        return pixel_size(self.transform)

    @property
    def axis_aligned(self) -> bool:
        """Whether the grid is neither rotated nor sheared (north-up or south-up)."""
        return self.transform.b == 0 and self.transform.d == 0

    @property
    def north_up(self) -> bool:
        """Whether columns go east and rows go south, without rotation."""
        t = self.transform
        return self.axis_aligned and t.a > 0 and t.e < 0

    @property
    def bounds(self) -> Bounds:
        """(left, bottom, right, top) of the pixels' outer edges, in CRS units."""
        t, (h, w) = self.transform, self.shape
        xs = (t.c, t.c + t.a * w)
        ys = (t.f, t.f + t.e * h)
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) of the first and last pixel edges, as matplotlib's ``imshow`` takes
        them (kept in the grid's direction: a south-up grid has bottom above top)."""
        t, (h, w) = self.transform, self.shape
        return (t.c, t.c + t.a * w, t.f + t.e * h, t.f)

    @property
    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre ``(y, x)`` coordinates (lengths rows and cols).

        Raises
        ------
        ValueError
            A rotated or sheared grid (no 1-D coordinates).
        """
        t, (h, w) = self.transform, self.shape
        if not self.axis_aligned:
            raise ValueError(f"a rotated or sheared grid {tuple(t)[:6]} has no 1-D pixel-centre coordinates")
        x = t.c + t.a * (np.arange(w) + 0.5)
        y = t.f + t.e * (np.arange(h) + 0.5)
        return y, x

    # -- other grids from this one -------------------------------------------------------------

    def window(self, row0: int, row1: int, col0: int, col1: int) -> Grid:
        """The sub-grid of rows ``row0:row1`` and columns ``col0:col1`` (they may reach outside the grid)."""
        return Grid(self.crs, self.transform @ Affine.translation(col0, row0), (row1 - row0, col1 - col0))

    def __getitem__(self, index: tuple[slice, slice]) -> Grid:
        """``grid[r0:r1, c0:c1]``: :meth:`window` with slices clipped to the grid, as numpy's (step 1 only)."""
        if not (isinstance(index, tuple) and len(index) == 2 and all(isinstance(s, slice) for s in index)):
            raise TypeError(f"index a Grid with two slices, grid[rows, cols], not {index!r}")
        (r0, r1, rs), (c0, c1, cs) = (s.indices(n) for s, n in zip(index, self.shape))
        if rs != 1 or cs != 1:
            raise ValueError(f"grid[{index!r}]: a grid window takes every pixel (step 1); "
                             "use Grid.scaled for coarser pixels")
        return self.window(r0, max(r1, r0), c0, max(c1, c0))

    def scaled(self, factor: int | float | Fraction, shape: tuple[int, int] | None = None) -> Grid:
        """The grid over the same upper-left corner with ``factor`` times as many pixels per unit length.

        Parameters
        ----------
        factor
            Output pixels per pixel of this grid along each axis (4: pixels a quarter the size; 1/2: twice).
        shape
            (rows, cols) of the result; default: enough pixels to cover this grid (rounded up).
        """
        f = float(factor)
        if not (f > 0 and math.isfinite(f)):
            raise ValueError(f"scale factor {factor!r} is not a finite positive number: give e.g. 2, 0.5 or 1/4")
        if shape is None:
            exact = Fraction(factor) if isinstance(factor, (int, Fraction)) else Fraction(f)
            shape = (math.ceil(self.shape[0] * exact), math.ceil(self.shape[1] * exact))
        return Grid(self.crs, self.transform @ Affine.scale(1 / f, 1 / f), (int(shape[0]), int(shape[1])))

    def offset_to(self, other: Grid) -> tuple[float, float]:
        """(row, col) of ``other``'s upper-left corner in this grid's pixels (integers where the corner is
        on one of this grid's pixel corners); both grids axis-aligned."""
        t, o = self.transform, other.transform
        return ((o.f - t.f) / t.e, (o.c - t.c) / t.a)

    def aligned_window(self, other: Grid) -> tuple[int, int] | None:
        """(row, col) at which ``other`` lies pixel for pixel in this grid, or None where it needs resampling.

        Same CRS, same pixel size (to 1e-9 relative) and a corner on one of this grid's pixel corners
        (to 1e-6 pixel).
        """
        t, g = self.transform, other.transform
        if (self.crs != other.crs or not self.axis_aligned or not math.isclose(t.a, g.a, rel_tol=1e-9)
                or not math.isclose(t.e, g.e, rel_tol=1e-9)):
            return None
        row, col = self.offset_to(other)
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            return None
        return round(row), round(col)

    def bounds_in(self, crs: Any, densify_pts: int = 21) -> Bounds:
        """(left, bottom, right, top) of the grid in ``crs``: the box around its outline reprojected
        (``densify_pts`` points per edge, as :func:`rasterio.warp.transform_bounds`)."""
        return reproject_bounds(self.bounds, self.crs, crs, densify_pts=densify_pts)

    def __str__(self) -> str:
        crs = "no CRS" if self.crs is None else (self.crs.to_string() if hasattr(self.crs, "to_string") else str(self.crs))
        rx, ry = self.pixel_size
        return f"Grid {self.height} x {self.width} px of {rx:g} x {ry:g} in {crs}, bounds {self.bounds}"


def pixel_size(transform: Affine) -> tuple[float, float]:
    """(x, y) pixel size of an axis-aligned ``transform``, both positive."""
    return (abs(float(transform.a)), abs(float(transform.e)))


def reproject_bounds(bounds: Bounds, src_crs: Any, dst_crs: Any, densify_pts: int = 21) -> Bounds:
    """``bounds`` (left, bottom, right, top) in ``src_crs`` as a box in ``dst_crs`` (the same box where the
    CRS are equal; else :func:`rasterio.warp.transform_bounds` with ``densify_pts`` points per edge)."""
    if src_crs == dst_crs:
        left, bottom, right, top = (float(v) for v in bounds)
        return (left, bottom, right, top)
    from rasterio.warp import transform_bounds

    return transform_bounds(src_crs, dst_crs, *bounds, densify_pts=densify_pts)
