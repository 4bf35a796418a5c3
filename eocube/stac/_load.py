"""``open_stac``: STAC items -> lazy cube (parse -> grid -> time groups -> dask graph -> cube)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds

from ..cube import DIMS, coords_from_transform, validate_cube
from ._errors import StacError
from ._grid import Grid, asset_bounds, choose_crs, choose_grid
from ._items import ParsedItem, band_dtype_nodata, parse_items
from ._reader import DEFAULT_GDAL_ENV, BandPlan, Block, ReadOptions, probe, read_block
from ._search import items_from_source, search_items

DEFAULT_CHUNKS = {"time": 1, "band": 1, "y": 1024, "x": 1024}
_TILE_KEYS = ("s2:mgrs_tile", "tile", "grid:code", "mgrs:grid_square")


def open_stac(
    source: Any = None,
    *,
    url: str | None = None,
    collections: str | Sequence[str] | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    datetime: str | None = None,
    query: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | str | None = None,  # noqa: A002  (STAC API's name)
    max_items: int | None = None,
    assets: str | Sequence[str] | None = None,
    crs: Any = None,
    resolution: float | tuple[float, float] | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    chunks: int | Mapping[str, int] | None = None,
    dtype: Any = None,
    nodata: float | int | None = None,
    resampling: str = "nearest",
    groupby: str | None = "solar_day",
    patch_url: Callable[[str], str] | None = None,
    gdal_env: Mapping[str, Any] | None = None,
    rescale: bool = False,
    on_missing: str = "raise",
    on_error: str = "raise",
    retries: int = 3,
) -> xr.DataArray:
    """Open STAC items as a lazy cube ``(time, band, y, x)``; no pixel is read until compute.

    Parameters
    ----------
    source
        Items given directly: a :class:`pystac.ItemCollection`, a list of items or item dicts, a
        JSON/GeoJSON path, or a static catalog. Leave None to search ``url``.
    url
        STAC API to search (with ``collections``, ``bbox`` in lon/lat, ``datetime``, ``query``
        such as ``{"eo:cloud_cover": {"lt": 20}}``, CQL2 ``filter`` and ``max_items``).
    assets
        Asset keys (``"B04"``) or eo band names/common names (``"red"``, ``"nir"``); they name the
        ``band`` coordinate. Default: every single-band data asset common to all items.
    crs
        Target CRS. Default: the items' CRS; items in several CRS raise :class:`MixedCRSError`
        (pass the CRS to reproject them instead).
    resolution
        Pixel size in target CRS units. Default: the finest native resolution of the assets.
    bounds
        (left, bottom, right, top) in the target CRS. Default: ``bbox`` (lon/lat) projected to
        the target CRS, else the union of the items' footprints.
    chunks
        Dask chunk sizes by dim (``{"time": 1, "band": 1, "y": 1024, "x": 1024}`` by default) or
        one int for y and x.
    dtype
        Output dtype. Default: the assets' own (``raster:bands`` data_type or the file header);
        ``float32`` when ``rescale``.
    nodata
        Output nodata. Default: the assets' own; NaN for float output from integer assets.
    resampling
        rasterio resampling name for pixels that are not aligned with the output grid.
    groupby
        ``"solar_day"`` (same-day tiles in one time step), ``"time"`` (equal timestamps) or None.
    patch_url
        Called on every href before reading (signing as on Planetary Computer, rewriting).
    gdal_env
        GDAL config options (HTTP, S3: ``AWS_S3_ENDPOINT``, ``AWS_HTTPS``, ...) on top of
        :data:`DEFAULT_GDAL_ENV`.
    rescale
        Apply ``raster:bands`` scale/offset (output float32, nodata NaN).
    on_missing
        ``"raise"`` or ``"nodata"`` for assets missing from some items.
    on_error
        ``"raise"`` or ``"nodata"`` (warn and fill) for assets that cannot be read.
    retries
        Attempts per asset for transient read errors.

    Returns
    -------
    xarray.DataArray
        A cube with ``spatial_ref``, nodata, and per-time coordinates ``item_ids``,
        ``cloud_cover``, ``platform``, ``tile`` where the items have them.
    """
    _check_choice("groupby", groupby, ("solar_day", "time", None))
    _check_choice("on_missing", on_missing, ("raise", "nodata"))
    _check_choice("on_error", on_error, ("raise", "nodata"))
    if resampling not in Resampling.__members__:
        raise StacError(f"resampling={resampling!r} is unknown: use one of {sorted(Resampling.__members__)}")
    env = {**DEFAULT_GDAL_ENV, **dict(gdal_env or {})}

    item_assets: Mapping[str, Any] = {}
    if url is not None:
        if source is not None:
            raise StacError("pass either items (source=) or a STAC API (url=), not both")
        raw_items, item_assets = search_items(
            url, collections=collections, bbox=bbox, datetime=datetime, query=query, filter=filter, max_items=max_items
        )
    elif source is not None:
        raw_items = items_from_source(source)
        if max_items is not None:
            raw_items = raw_items[:max_items]
    else:
        raise StacError("nothing to open: pass items (an ItemCollection, a list, a file) or url= of a STAC API")

    items, bands = parse_items(raw_items, assets, item_assets=item_assets, patch_url=patch_url, on_missing=on_missing)
    items = _complete_metadata(items, bands, env, retries, probe_dtype=dtype is None)
    target_crs = choose_crs(items, crs)
    if bounds is None and bbox is not None:
        bounds = transform_bounds(CRS.from_epsg(4326), target_crs, *bbox, densify_pts=21)
    grid = choose_grid(items, target_crs, resolution=resolution, bounds=bounds)
    groups = _group(items, groupby)
    plans = tuple(_band_plan(items, b, dtype, nodata, rescale) for b in bands)
    out_dtype = np.result_type(*[p.out_dtype for p in plans]).name
    plans = tuple(dataclasses.replace(p, out_dtype=out_dtype) for p in plans)
    opts = ReadOptions(env=tuple(sorted(env.items())), resampling=resampling, retries=retries, on_error=on_error)
    data = _graph(groups, bands, grid, plans, opts, out_dtype, _chunks(chunks))

    y, x = coords_from_transform(grid.transform, *grid.shape)
    cube = xr.DataArray(
        data,
        dims=DIMS,
        coords={
            "time": np.array([g[0] for g in groups], dtype="datetime64[ns]"),
            "band": np.array(bands, dtype=object),
            "y": y,
            "x": x,
            **_time_coords(groups),
        },
        name="stac",
    )
    cube = cube.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    out_nodata = plans[0].out_nodata if len({repr(p.out_nodata) for p in plans}) == 1 else None
    if out_nodata is not None:
        cube = cube.rio.write_nodata(out_nodata, encoded=False)
    return validate_cube(cube, name="open_stac result")


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise StacError(f"{name}={value!r} is not one of {allowed}")


def _complete_metadata(
    items: list[ParsedItem], bands: list[str], env: Mapping, retries: int, probe_dtype: bool
) -> list[ParsedItem]:
    """Read file headers (never pixels) where the items lack proj metadata or a band's dtype."""
    out = []
    for it in items:
        new = {}
        for b, info in it.bands.items():
            if info is not None and (info.crs is None or info.transform is None or info.shape is None):
                h = probe(info.href, env, retries)
                info = dataclasses.replace(info, crs=h["crs"], transform=h["transform"], shape=h["shape"],
                                           dtype=info.dtype or h["dtype"],
                                           nodata=info.nodata if info.nodata is not None else h["nodata"])
            new[b] = info
        out.append(dataclasses.replace(it, bands=new))
    for b in bands:
        infos = [it.bands[b] for it in out if it.bands.get(b) is not None]
        if probe_dtype and all(i.dtype is None for i in infos):
            h = probe(infos[0].href, env, retries)
            for it in out:
                i = it.bands.get(b)
                if i is not None:
                    it.bands[b] = dataclasses.replace(  # type: ignore[index]
                        i, dtype=h["dtype"], nodata=i.nodata if i.nodata is not None else h["nodata"])
    return out


def _band_plan(items: list[ParsedItem], band: str, dtype: Any, nodata: Any, rescale: bool) -> BandPlan:
    raw_dtype, raw_nodata, scale, offset = band_dtype_nodata(items, band)
    raw_dtype = np.dtype(raw_dtype if raw_dtype is not None else dtype).name  # unknown: read as the asked dtype
    if raw_nodata is not None:
        raw_nodata = np.array(raw_nodata).astype(raw_dtype).item()
    out_dtype = np.dtype(dtype).name if dtype is not None else ("float32" if rescale else raw_dtype)
    is_float = np.issubdtype(np.dtype(out_dtype), np.floating)
    if nodata is not None:
        out_nodata = np.array(nodata).astype(out_dtype).item()
    elif is_float and (rescale or out_dtype != raw_dtype):
        out_nodata = float("nan")
    else:
        out_nodata = raw_nodata
    return BandPlan(raw_dtype, raw_nodata, out_dtype, out_nodata, scale if rescale else None, offset)


def _group(items: list[ParsedItem], groupby: str | None) -> list[tuple[np.datetime64, list[ParsedItem]]]:
    if groupby is None:
        times = [it.time for it in items]
        if len(set(times)) != len(times):
            raise StacError("several items share a timestamp: pass groupby='time' or 'solar_day' to mosaic them")
        return [(np.datetime64(it.time, "ns"), [it]) for it in items]
    keys: dict[Any, list[ParsedItem]] = {}
    for it in items:
        key = (it.time + pd.Timedelta(hours=it.lon / 15)).date() if groupby == "solar_day" else it.time
        keys.setdefault(key, []).append(it)
    return [(np.datetime64(min(i.time for i in grp), "ns"), grp) for grp in keys.values()]


def _chunks(chunks: int | Mapping[str, int] | None) -> dict[str, int]:
    if chunks is None:
        return dict(DEFAULT_CHUNKS)
    if isinstance(chunks, int):
        return {**DEFAULT_CHUNKS, "y": chunks, "x": chunks}
    unknown = set(chunks) - set(DIMS)
    if unknown:
        raise StacError(f"chunks has unknown dims {sorted(unknown)}: use {DIMS}")
    return {**DEFAULT_CHUNKS, **{k: int(v) for k, v in chunks.items()}}


def _splits(n: int, size: int) -> list[tuple[int, int]]:
    size = n if size <= 0 else size
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _graph(groups, bands, grid: Grid, plans, opts: ReadOptions, out_dtype: str, chunks: dict[str, int]) -> da.Array:
    # footprint of every asset in the output CRS, computed once
    feet: dict[int, tuple[float, float, float, float]] = {}
    for _, grp in groups:
        for it in grp:
            for info in it.bands.values():
                if info is not None and id(info) not in feet:
                    b = asset_bounds(info)
                    feet[id(info)] = b if info.crs == grid.crs else transform_bounds(info.crs, grid.crs, *b, densify_pts=21)
    tsp, bsp = _splits(len(groups), chunks["time"]), _splits(len(bands), chunks["band"])
    ysp, xsp = _splits(grid.shape[0], chunks["y"]), _splits(grid.shape[1], chunks["x"])
    name = "open_stac-" + tokenize(
        [(str(g[0]), [(it.id, sorted((k, v.href) for k, v in it.bands.items() if v)) for it in g[1]]) for g in groups],
        bands, grid.crs.to_string(), tuple(grid.transform), grid.shape, plans, opts, chunks,
    )
    dsk: dict = {}
    for it_, (t0, t1) in enumerate(tsp):
        for ib, (b0, b1) in enumerate(bsp):
            for iy, (y0, y1) in enumerate(ysp):
                for ix, (x0, x1) in enumerate(xsp):
                    sub = grid.window(y0, y1, x0, x1)
                    l, bo, r, to = sub.bounds
                    srcs = tuple(
                        tuple(
                            tuple(
                                it.bands[band] for it in groups[t][1]
                                if it.bands.get(band) is not None
                                and (f := feet[id(it.bands[band])])[0] < r and f[2] > l and f[1] < to and f[3] > bo
                            )
                            for band in bands[b0:b1]
                        )
                        for t in range(t0, t1)
                    )
                    block = Block(sub, srcs, plans[b0:b1], opts, out_dtype)
                    dsk[(name, it_, ib, iy, ix)] = (read_block, block)
    chunk_sizes = tuple(tuple(b - a for a, b in sp) for sp in (tsp, bsp, ysp, xsp))
    hlg = HighLevelGraph.from_collections(name, dsk, dependencies=())
    return da.Array(hlg, name, chunks=chunk_sizes, dtype=out_dtype)


def _time_coords(groups) -> dict[str, tuple[str, np.ndarray]]:
    def join(values: list[Any]) -> str:
        uniq = list(dict.fromkeys(str(v) for v in values if v is not None))
        return ",".join(uniq)

    coords: dict[str, tuple[str, np.ndarray]] = {
        "item_ids": ("time", np.array([join([i.id for i in g]) for _, g in groups], dtype=str)),
    }
    clouds = [[i.properties.get("eo:cloud_cover") for i in g] for _, g in groups]
    if any(v is not None for c in clouds for v in c):
        coords["cloud_cover"] = (
            "time", np.array([np.mean([v for v in c if v is not None]) if any(v is not None for v in c) else np.nan for c in clouds]))
    platforms = [join([i.properties.get("platform") for i in g]) for _, g in groups]
    if any(platforms):
        coords["platform"] = ("time", np.array(platforms, dtype=str))
    tiles = [join([_tile(i.properties) for i in g]) for _, g in groups]
    if any(tiles):
        coords["tile"] = ("time", np.array(tiles, dtype=str))
    return coords


def _tile(props: Mapping[str, Any]) -> str | None:
    for key in _TILE_KEYS:
        if props.get(key):
            return str(props[key])
    if props.get("sentinel:utm_zone"):
        return f"{props['sentinel:utm_zone']}{props.get('sentinel:latitude_band', '')}{props.get('sentinel:grid_square', '')}"
    if props.get("landsat:wrs_path"):
        return f"{props['landsat:wrs_path']}{props.get('landsat:wrs_row', '')}"
    return None
