"""The output grid: CRS, resolution and extent, snapped to the items' own pixel grid.

When the target CRS and resolution are the items' own, the output pixels are
exactly the items' pixels (same anchor), so no resampling happens and the
cube's transform equals ``proj:transform`` of the items.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from ._errors import GridError, MixedCRSError
from ._items import AssetInfo, ParsedItem

_EPS = 1e-6


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid (the odc-geo GeoBox idea, reduced to what the loader needs)."""

    crs: CRS
    """Coordinate reference system."""
    transform: Affine
    """Upper-left-corner affine transform."""
    shape: tuple[int, int]
    """(rows, cols)."""

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        h, w = self.shape
        left, top = self.transform.c, self.transform.f
        return (left, top + self.transform.e * h, left + self.transform.a * w, top)

    def window(self, row0: int, row1: int, col0: int, col1: int) -> "Grid":
        """The sub-grid of rows ``row0:row1`` and columns ``col0:col1``."""
        return Grid(self.crs, self.transform @ Affine.translation(col0, row0), (row1 - row0, col1 - col0))


def asset_bounds(info: AssetInfo) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of an asset in its own CRS, from its transform and shape."""
    assert info.transform is not None and info.shape is not None
    t, (h, w) = info.transform, info.shape
    xs = (t.c, t.c + t.a * w)
    ys = (t.f, t.f + t.e * h)
    return (min(xs), min(ys), max(xs), max(ys))


def choose_crs(items: Sequence[ParsedItem], crs: Any) -> CRS:
    """The target CRS: the one given, or the items' single CRS.

    Raises
    ------
    MixedCRSError
        When the items are in several CRS and none was given (no silent mixing).
    """
    if crs is not None:
        try:
            return CRS.from_user_input(crs)
        except Exception as exc:
            raise GridError(f"crs={crs!r} is not a CRS rasterio understands ({exc}): pass e.g. 'EPSG:32633'") from exc
    counts = Counter(
        info.crs.to_string() for it in items for info in it.bands.values() if info is not None and info.crs is not None
    )
    if not counts:
        raise GridError("the items carry no projection metadata (proj:epsg/proj:code) and no crs= was given: pass crs='EPSG:xxxx'")
    if len(counts) > 1:
        common = counts.most_common(1)[0][0]
        listing = ", ".join(f"{c} ({n} assets)" for c, n in counts.most_common())
        raise MixedCRSError(
            f"the items are in {len(counts)} CRS: {listing}. Pass crs={common!r} (the most common) or another "
            "target CRS to reproject them all, or filter the items to one CRS/tile"
        )
    return CRS.from_user_input(next(iter(counts)))


def _native_res(infos: Sequence[AssetInfo], crs: CRS) -> list[float]:
    return [abs(i.transform.a) for i in infos if i.crs == crs and i.transform is not None]


def choose_grid(
    items: Sequence[ParsedItem],
    crs: CRS,
    *,
    resolution: float | tuple[float, float] | None = None,
    bounds: tuple[float, float, float, float] | None = None,
) -> Grid:
    """The output grid covering the items (or ``bounds``), anchored on the items' pixel grid.

    Parameters
    ----------
    items
        Parsed items (every asset must have crs, transform and shape).
    crs
        Target CRS.
    resolution
        Pixel size in CRS units (one number or (x, y)); default: the finest native resolution.
    bounds
        (left, bottom, right, top) in the target CRS; default: the union of the items' footprints.
    """
    infos = [i for it in items for i in it.bands.values() if i is not None]
    if resolution is None:
        native = _native_res(infos, crs)
        if not native:
            raise GridError(
                f"no asset is natively in {crs.to_string()}, so there is no native resolution to copy: "
                "pass resolution=<pixel size in target CRS units>"
            )
        resolution = min(native)
    rx, ry = (float(resolution), float(resolution)) if not isinstance(resolution, (tuple, list)) else map(float, resolution)
    ry = abs(ry)
    # anchor: the pixel grid of an asset already in the target CRS at this resolution
    # (an asset at that resolution first, else any asset's origin in the target CRS)
    ax = ay = 0.0
    same_crs = [i for i in infos if i.crs == crs and i.transform is not None]
    same_res = [i for i in same_crs if math.isclose(abs(i.transform.a), rx) and math.isclose(abs(i.transform.e), ry)]
    if same_res or same_crs:
        t = (same_res or same_crs)[0].transform
        ax, ay = t.c % rx, t.f % ry
    footprints = []
    for info in infos:
        b = asset_bounds(info)
        footprints.append(b if info.crs == crs else transform_bounds(info.crs, crs, *b, densify_pts=21))
    union = (
        min(b[0] for b in footprints),
        min(b[1] for b in footprints),
        max(b[2] for b in footprints),
        max(b[3] for b in footprints),
    )
    if bounds is not None:
        left, bottom, right, top = map(float, bounds)
        if left >= right or bottom >= top:
            raise GridError(f"bounds {bounds} are empty: give (left, bottom, right, top) with left < right, bottom < top")
        if left >= union[2] or right <= union[0] or bottom >= union[3] or top <= union[1]:
            raise GridError(
                f"the bbox {tuple(round(v, 3) for v in bounds)} (in {crs.to_string()}) does not overlap the items, "
                f"which cover {tuple(round(v, 3) for v in union)}: check the bbox's CRS (lon/lat goes in bbox=, "
                "target-CRS coordinates in bounds=) or search for items that cover it"
            )
        target = (left, bottom, right, top)
    else:
        target = union
    col0 = math.floor((target[0] - ax) / rx + _EPS)
    col1 = math.ceil((target[2] - ax) / rx - _EPS)
    row0 = math.floor((ay - target[3]) / ry + _EPS)  # rows counted downwards from the anchor
    row1 = math.ceil((ay - target[1]) / ry - _EPS)
    transform = Affine(rx, 0.0, ax + col0 * rx, 0.0, -ry, ay - row0 * ry)
    return Grid(crs, transform, (max(row1 - row0, 1), max(col1 - col0, 1)))


def overlaps(info: AssetInfo, grid: Grid) -> bool:
    """Whether an asset's footprint intersects a grid (in the grid's CRS)."""
    b = asset_bounds(info)
    if info.crs != grid.crs:
        b = transform_bounds(info.crs, grid.crs, *b, densify_pts=21)
    g = grid.bounds
    return b[0] < g[2] and b[2] > g[0] and b[1] < g[3] and b[3] > g[1]
