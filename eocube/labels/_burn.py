"""Burning polygons onto a cube's grid, lazily, one rasterisation per chunk.

Each chunk rasterises only the polygons whose envelope meets its bounds (a shapely ``STRtree``),
in the global drawing order, with :func:`rasterio.features.rasterize`; chunks therefore equal
the rasterisation of the whole grid at once.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from ..cube import make_cube, validate_cube
from ..grid import Grid
from ..models import ClassInfo
from ._classes import ClassLike, class_attrs
from ._errors import FieldError, LabelError
from ._table import (
    Target,
    build_table,
    choose_nodata,
    label_dtype,
    lookup_values,
    resolve_target,
)
from ._vector import Polygons, as_polygons

Priority = Literal["smaller", "file"] | Sequence[Target]
POLYGONAL = {3, 6, 7}  # shapely type ids: Polygon, MultiPolygon, GeometryCollection
DEFAULT_CHUNK = 1024


def burn_polygons(
    polygons: Any,
    like: xr.DataArray,
    *,
    field: str,
    mapping: Mapping[Any, Target] | None = None,
    classes: Sequence[ClassLike] | Mapping[int, str] | None = None,
    priority: Priority = "smaller",
    all_touched: bool = False,
    nodata: int | None = None,
    unmapped: Literal["error", "drop"] = "error",
    layer: str | int | None = None,
    time: Any = None,
    chunks: int | tuple[int, int] | None = None,
) -> xr.DataArray:
    """Burn class polygons onto the grid of a cube: a lazy label cube.

    Parameters
    ----------
    polygons
        A vector file (GeoPackage, GeoJSON, Shapefile, FlatGeobuf, GeoParquet), an
        :class:`eocube.labels.Polygons`, or a GeoDataFrame. Reprojected to ``like``'s CRS.
    like
        The cube whose grid (CRS, transform, size) the labels take.
    field
        The attribute holding each polygon's class (e.g. OSM's ``"fclass"``).
    mapping
        Field value -> class (its name or value), e.g. ``{"grass": "meadow", "meadow": "meadow"}``;
        several values may map to one class (merging). None: field values are class names or values.
    classes
        The class table: :class:`eocube.models.ClassInfo` (value, name, colour ``RRGGBB``), values, or
        ``(value, name[, color])`` tuples. None: made from the mapping's targets or the field's values
        (names get 1, 2, ... in order, integers keep their value).
    priority
        Which polygon wins where polygons overlap: ``"smaller"`` (default: smaller polygons on top,
        so an enclosed lake or village shows through the forest around it), ``"file"`` (later features
        on top), or a sequence of classes (names or values), highest priority first; classes left out
        rank below the listed ones, and within a rank smaller polygons are on top.
    all_touched
        False (default): the centre rule, a pixel takes a polygon's class when its centre is inside.
        True: every pixel the polygon touches.
    nodata
        Value of unlabelled pixels (``labels.rio.nodata``); default 0, or 255 if a class is 0.
    unmapped
        Polygons whose field value has no class: ``"error"`` (default, lists them) or ``"drop"``.
    layer
        Layer of a multi-layer file.
    time
        The label cube's single date; default ``like``'s first date.
    chunks
        Chunk size along y and x; default ``like``'s chunks if it is dask-backed, else 1024.

    Returns
    -------
    xarray.DataArray
        Lazy cube ``(time, band, y, x)`` with one date and one band ``"label"``, uint8 (uint16 if class
        values need it), ``like``'s coordinates and CRS, nodata where no polygon lies, and the classes
        in ``class_values``, ``class_names``, ``class_colors`` (see :func:`classes_from_attrs`).

    Raises
    ------
    FieldError
        ``field`` is not in the file (the message lists the fields), or values have no class.
    VectorReadError
        The file cannot be read.
    LabelError
        Bad classes, mapping, priority or nodata, or no polygon to burn (an empty file, or features
        without geometry).
    """
    like = validate_cube(like, name="like")
    polys = as_polygons(polygons, layer=layer)
    if len(polys) == 0:
        raise LabelError(f"{polys.source} holds no features: labels are burned from polygons, so give a file "
                         "(or layer=) with at least one polygon")
    if field not in polys.fields:
        raise FieldError(f"{polys.source} has no field {field!r}; its fields: {sorted(polys.fields)}: "
                         "pass field= with one of them")
    raw = polys.fields[field]
    keep = ~(shapely.is_missing(polys.geometry) | shapely.is_empty(polys.geometry))
    if not keep.any():
        raise LabelError(f"{polys.source} holds {len(polys)} feature(s) but none has a geometry: labels are burned "
                         "from polygons, so give features with polygon geometries")
    table, lookup = build_table(mapping, classes, [v for v in raw[keep] if pd.notna(v)],
                                None if nodata is None else int(nodata))
    nodata = choose_nodata(nodata, table)
    dtype = label_dtype(table, nodata)
    values = lookup_values(raw, lookup)
    missing = keep & (values < 0)
    if missing.any() and unmapped == "error":
        counts = pd.Series([str(v) for v in raw[missing]]).value_counts()
        raise FieldError(f"{int(missing.sum())} polygons of {polys.source} have {field} values with no class: "
                         f"{ {k: int(v) for k, v in counts.head(20).items()} }: map them with mapping= or pass unmapped='drop'")
    if unmapped not in ("error", "drop"):
        raise LabelError(f"unmapped={unmapped!r}: use 'error' or 'drop'")
    keep &= values >= 0
    geoms = polys.geometry[keep]
    types = set(shapely.get_type_id(geoms).tolist()) - POLYGONAL
    if types:
        names = sorted({g.geom_type for g in geoms if shapely.get_type_id(g) in types})
        raise LabelError(f"{polys.source} holds {names} geometries: labels are burned from polygons only; "
                         "buffer lines or points into polygons first")
    geoms = checked_geometries(geoms, polys.source, np.flatnonzero(keep))
    subset = Polygons(geoms, {}, polys.crs, polys.source).to_crs(like.rio.crs)
    _warn_if_outside(subset, like)
    order = draw_order(subset.geometry, values[keep], priority, table)
    burner = Burner(subset.geometry[order], values[keep][order].astype(dtype), all_touched)
    data = burn_lazy(burner, like, nodata=nodata, dtype=dtype, chunks=chunks)
    attrs = {"long_name": "class label", **class_attrs(table), "labels_source": polys.source,
             "labels_field": field, "labels_mapping": json.dumps({str(k): v for k, v in (mapping or {}).items()}, default=str),
             "labels_priority": priority if isinstance(priority, str) else json.dumps(list(priority), default=str),
             "labels_rule": "all_touched" if all_touched else "centre"}
    return label_cube(data, like, time=time, nodata=nodata, attrs=attrs)


def checked_geometries(geoms: np.ndarray, source: str, features: np.ndarray) -> np.ndarray:
    """The polygons as they can be burned: refuse non-finite coordinates and collections with other parts,
    repair invalid polygons (with a warning that counts them).

    An invalid polygon (a self-intersecting "bow tie", a ring that touches itself) has no well-defined
    inside: the rasteriser burns part of it and its area (which orders the drawing) is wrong. It is
    replaced by :func:`shapely.make_valid`'s polygonal parts (a bow tie becomes its two triangles).

    Parameters
    ----------
    geoms
        The (Multi)Polygons and GeometryCollections to burn.
    source
        Where they came from, for messages.
    features
        The feature number (in the file) of each geometry, for messages.

    Returns
    -------
    numpy.ndarray
        The geometries, invalid ones repaired.
    """
    finite = finite_coordinates(geoms)
    if not finite.all():
        raise LabelError(f"{int((~finite).sum())} polygons of {source} (features {features[~finite][:5].tolist()}) "
                         "have NaN or infinite coordinates: fix or drop them")
    for i in np.flatnonzero(shapely.get_type_id(geoms) == 7):
        other = sorted({p.geom_type for p in shapely.get_parts(geoms[i]) if shapely.get_type_id(p) not in (3, 6)})
        if other:
            raise LabelError(f"feature {int(features[i])} of {source} is a GeometryCollection with {other} parts: "
                             "labels are burned from polygons only; keep its polygons, or buffer the other parts")
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        first = int(np.flatnonzero(invalid)[0])
        reason = shapely.is_valid_reason(geoms[first])
        geoms = geoms.copy()
        geoms[invalid] = [_polygonal(shapely.make_valid(g)) for g in geoms[invalid]]
        warnings.warn(
            f"{int(invalid.sum())} polygons of {source} are invalid (e.g. feature {int(features[first])}: "
            f"{reason}); they were repaired "
            "with shapely.make_valid (a self-intersecting ring becomes the polygons it encloses) before burning",
            UserWarning, stacklevel=3,
        )
    return geoms


def finite_coordinates(geoms: np.ndarray) -> np.ndarray:
    """Per geometry, whether every coordinate is finite (one vectorised pass over all vertices)."""
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    bad = np.bincount(index[~np.isfinite(coords).all(axis=1)], minlength=len(geoms))
    return bad == 0


def _polygonal(geom: Any) -> Any:
    """The polygonal parts of a geometry (what :func:`shapely.make_valid` gives may add lines or points)."""
    if shapely.get_type_id(geom) in (3, 6):
        return geom
    parts: list[Any] = []
    for part in shapely.get_parts(geom):
        part = _polygonal(part)
        parts.extend(shapely.get_parts(part).tolist() if shapely.get_type_id(part) == 6 else
                     [part] if shapely.get_type_id(part) == 3 and not part.is_empty else [])
    return shapely.multipolygons(parts) if parts else shapely.Polygon()


def _warn_if_outside(polys: Polygons, like: xr.DataArray) -> None:
    """Warn when no polygon meets the grid of ``like`` (every label would be nodata)."""
    left, bottom, right, top = Grid.of(like).bounds
    grid = shapely.box(left, bottom, right, top)
    if len(polys) and not shapely.intersects(polys.geometry, grid).any():
        span = np.round(shapely.total_bounds(polys.geometry), 3).tolist()
        warnings.warn(
            f"none of the {len(polys)} polygons of {polys.source} meets the grid of like: they span {span}, the grid "
            f"{[round(v, 3) for v in (left, bottom, right, top)]} (in {like.rio.crs.to_string()}), so every label is "
            "nodata. Is the polygons' CRS right (latitude and longitude swapped?), and the cube the right one?",
            UserWarning, stacklevel=3,
        )


def draw_order(geoms: np.ndarray, values: np.ndarray, priority: Priority,
               classes: Sequence[ClassInfo]) -> np.ndarray:
    """Indices in drawing order: the polygon drawn last wins."""
    area = shapely.area(geoms)
    if isinstance(priority, str):
        if priority == "file":
            return np.arange(len(geoms))
        if priority == "smaller":
            return np.argsort(-area, kind="stable")
        raise LabelError(f"priority={priority!r}: use 'smaller', 'file', or a list of classes, highest first")
    ranks = {resolve_target(t, classes, what="priority class"): i for i, t in enumerate(priority)}
    rank = np.asarray([ranks.get(int(v), len(ranks)) for v in values])
    return np.lexsort((-area, -rank))  # last key first: low priority (high rank) first, then larger first


class Burner:
    """Polygons in drawing order with their class values, rasterised on any window of a grid."""

    def __init__(self, geoms: np.ndarray, values: np.ndarray, all_touched: bool) -> None:
        self.geoms, self.values, self.all_touched = geoms, values, all_touched
        self._tree: shapely.STRtree | None = None
        wkb = shapely.to_wkb(geoms, hex=False) if len(geoms) else []
        h = hashlib.sha256(values.tobytes() + str(values.dtype).encode() + bytes([all_touched]))
        for w in wkb:
            h.update(w)
        self.token = h.hexdigest()

    def __dask_tokenize__(self) -> str:
        return self.token

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tree": None}

    @property
    def tree(self) -> shapely.STRtree:
        if self._tree is None:
            self._tree = shapely.STRtree(self.geoms)
        return self._tree

    def burn(self, grid: Grid, nodata: int, dtype: np.dtype) -> np.ndarray:
        """The labels of the pixels of ``grid`` (a window of the label grid)."""
        from rasterio.features import rasterize

        out = np.full(grid.shape, nodata, dtype=dtype)
        if not len(self.geoms):
            return out
        hits = np.sort(self.tree.query(shapely.box(*grid.bounds)))
        if not len(hits):
            return out
        return rasterize(zip(self.geoms[hits], self.values[hits].tolist()), out_shape=grid.shape, out=out,
                         transform=grid.transform, all_touched=self.all_touched, dtype=dtype)


def _burn_block(burner: Burner, grid: Grid, nodata: int, out_dtype: str,
                block_info: dict[Any, Any] | None = None) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[None]["array-location"][2:]
    return burner.burn(grid.window(r0, r1, c0, c1), nodata, np.dtype(out_dtype))[None, None]


def burn_lazy(burner: Burner, like: xr.DataArray, *, nodata: int, dtype: np.dtype,
              chunks: int | tuple[int, int] | None) -> da.Array:
    """A dask array ``(1, 1, y, x)`` on ``like``'s grid, one rasterisation per chunk."""
    ny, nx = like.sizes["y"], like.sizes["x"]
    if chunks is not None:
        sizes = (chunks,) if isinstance(chunks, int) else tuple(chunks)
        if len(sizes) not in (1, 2) or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 1
                                               for c in sizes):
            raise LabelError(f"chunks={chunks!r}: give a chunk size >= 1 along y and x (one int or a (y, x) pair)")
    if chunks is None:
        if like.chunks is not None:
            ychunks, xchunks = like.chunks[2], like.chunks[3]
        else:
            ychunks, xchunks = da.core.normalize_chunks((DEFAULT_CHUNK, DEFAULT_CHUNK), (ny, nx))
    else:
        size = (chunks, chunks) if isinstance(chunks, int) else tuple(chunks)
        ychunks, xchunks = da.core.normalize_chunks(size, (ny, nx))
    grid = Grid.of(like)
    transform = tuple(grid.transform)[:6]
    token = dask.base.tokenize(burner.token, transform, nodata, str(dtype), ychunks, xchunks)
    return da.map_blocks(_burn_block, burner=dask.delayed(burner, pure=True, name=f"label-polygons-{burner.token}"),
                         grid=grid, nodata=nodata, out_dtype=str(np.dtype(dtype)),
                         dtype=np.dtype(dtype), name=f"burn-polygons-{token}",
                         chunks=((1,), (1,), tuple(ychunks), tuple(xchunks)),
                         meta=np.empty((0, 0, 0, 0), dtype=dtype))


def label_cube(data: Any, like: xr.DataArray, *, time: Any, nodata: int, attrs: dict[str, Any]) -> xr.DataArray:
    """Wrap ``(1, 1, y, x)`` labels as a cube on ``like``'s grid: one date, band ``"label"``."""
    if time is None and like.sizes["time"] == 0:
        raise LabelError("like has no dates, so the label cube has none to take: pass time= (e.g. time='2021-06-01')")
    when = like["time"].values[0] if time is None else pd.Timestamp(time).to_datetime64()
    return make_cube(data, time=[when], band=["label"], y=like["y"].values, x=like["x"].values,
                     crs=like.rio.crs, nodata=nodata, name="labels", attrs=attrs, transform=Grid.of(like).transform)
