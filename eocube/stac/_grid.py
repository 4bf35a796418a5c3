"""The output grid: CRS, resolution and extent, snapped to the items' own pixel grid.

When the target CRS and resolution are the items' own, the output pixels are
exactly the items' pixels (same anchor), so no resampling happens and the
cube's transform equals ``proj:transform`` of the items.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

from rasterio.crs import CRS

from ..errors import GridError
from ..grid import Grid, pixel_size, reproject_bounds
from ._errors import MixedCRSError
from ._items import AssetInfo, ParsedItem

_LONLAT = CRS.from_epsg(4326)


def asset_bounds(info: AssetInfo) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of an asset in its own CRS, from its transform and shape."""
    assert info.transform is not None and info.shape is not None
    return Grid(info.crs, info.transform, info.shape).bounds


def footprint(info: AssetInfo, crs: CRS) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of an asset in ``crs``, from metadata only.

    From the asset's grid (crs, transform, shape) when the item gives it, else from the
    item's lon/lat footprint (its ``bbox`` or geometry).

    Raises
    ------
    GridError
        When the item gives neither (no grid, no bbox, no geometry).
    """
    if info.has_grid:
        return reproject_bounds(asset_bounds(info), info.crs, crs)
    if info.lonlat_bbox is not None:
        return reproject_bounds(info.lonlat_bbox, _LONLAT, crs)
    raise GridError(
        f"asset {info.href!r} has no footprint: its item has no proj:transform/proj:shape, no bbox and no "
        "geometry. Add them to the item, or pass bounds= in the target CRS"
    )


def footprints(infos: Sequence[AssetInfo], crs: CRS) -> list[tuple[float, float, float, float]]:
    """:func:`footprint` of each asset, each distinct grid (or lon/lat footprint) transformed once:
    the assets of a tile share one grid over all its dates."""
    boxes: dict[Any, tuple[float, float, float, float]] = {}
    out = []
    for info in infos:
        key = (info.crs, info.transform, info.shape) if info.has_grid else info.lonlat_bbox
        if key not in boxes:
            boxes[key] = footprint(info, crs)
        out.append(boxes[key])
    return out


def union_footprint(infos: Sequence[AssetInfo], crs: CRS) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) in ``crs`` covering every asset's :func:`footprint`."""
    boxes = footprints(infos, crs)
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


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
        raise GridError("the items carry no projection metadata (proj:epsg/proj:code) and no crs= was given: "
                        "pass crs='EPSG:xxxx'")
    if len(counts) > 1:
        common = counts.most_common(1)[0][0]
        listing = ", ".join(f"{c} ({n} assets)" for c, n in counts.most_common())
        raise MixedCRSError(
            f"the items are in {len(counts)} CRS: {listing}. Pass crs={common!r} (the most common) or another "
            "target CRS to reproject them all, or filter the items to one CRS/tile"
        )
    return CRS.from_user_input(next(iter(counts)))


def _native_res(infos: Sequence[AssetInfo], crs: CRS) -> list[tuple[float, float]]:
    """(x, y) pixel sizes of the assets natively in ``crs`` (x and y apart: pixels need not be square)."""
    return [pixel_size(i.transform) for i in infos if i.crs == crs and i.transform is not None]


def _resolution(infos: Sequence[AssetInfo], crs: CRS, resolution: float | tuple[float, float] | None) -> tuple[float, float]:
    """(x, y) pixel size: the one given (a number or a pair), else the finest native one (smallest pixel area)."""
    if resolution is None:
        native = _native_res(infos, crs)
        if not native:
            raise GridError(
                f"no asset is natively in {crs.to_string()}, so there is no native resolution to copy: "
                "pass resolution=<pixel size in target CRS units> (a number, or an (x, y) pair)"
            )
        return min(native, key=lambda r: r[0] * r[1])
    if isinstance(resolution, (tuple, list)):
        if len(resolution) != 2:
            raise GridError(f"resolution={resolution!r}: give one pixel size or an (x, y) pair")
        rx, ry = (abs(float(v)) for v in resolution)
    else:
        rx = ry = abs(float(resolution))
    if not (rx > 0 and ry > 0 and math.isfinite(rx) and math.isfinite(ry)):
        raise GridError(f"resolution={resolution!r} is not a finite positive pixel size: pass e.g. 10 or (30, 30)")
    return rx, ry


def _anchor(infos: Sequence[AssetInfo], crs: CRS, rx: float, ry: float) -> tuple[float, float]:
    """A corner of the items' own pixel grid in ``crs`` (an asset at this resolution first), else (0, 0)."""
    same_crs = [i for i in infos if i.crs == crs and i.transform is not None]
    same_res = [i for i in same_crs if all(map(math.isclose, pixel_size(i.transform), (rx, ry)))]
    if same_res or same_crs:
        t = (same_res or same_crs)[0].transform
        return t.c, t.f
    return 0.0, 0.0


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
        Parsed items (each asset with crs, transform and shape, or with its item's lon/lat footprint).
    crs
        Target CRS.
    resolution
        Pixel size in CRS units (one number or an (x, y) pair); default: the finest native (x, y)
        resolution, so non-square native pixels stay as they are.
    bounds
        (left, bottom, right, top) in the target CRS; default: the union of the items' footprints.
    """
    infos = [i for it in items for i in it.bands.values() if i is not None]
    rx, ry = _resolution(infos, crs, resolution)
    ax, ay = _anchor(infos, crs, rx, ry)
    union = union_footprint(infos, crs)
    if not all(map(math.isfinite, union)):
        raise GridError(
            f"the items' footprint in {crs.to_string()} is not finite {tuple(union)}: the target CRS cannot hold "
            "them (an area outside its domain?); pass another crs= or bounds="
        )
    if bounds is not None:
        try:
            left, bottom, right, top = map(float, bounds)
        except (TypeError, ValueError):
            raise GridError(f"bounds={bounds!r} is not four numbers: give (left, bottom, right, top) in the target CRS") from None
        if not all(map(math.isfinite, (left, bottom, right, top))):
            raise GridError(f"bounds={tuple(bounds)!r} holds NaN or inf: "
                            "give finite (left, bottom, right, top) in the target CRS")
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
    return Grid.from_bbox(target, crs, resolution=(rx, ry), anchor=(ax, ay))
