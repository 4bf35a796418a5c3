"""``open_stac``: STAC items -> lazy cube (parse -> grid -> time groups -> dask graph -> cube).

Nothing it raises, warns, logs or stores in the cube's attributes shows a signed URL's query
values (:func:`eocube.stac._errors.redacting`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from typing import Any, Callable, Mapping, Sequence

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from rasterio.crs import CRS
from rasterio.enums import Resampling

from .._redact import unsigned
from ..cube import DIMS, validate_cube
from ..errors import GridError
from ..grid import Grid, reproject_bounds
from ._errors import (
    AssetReadError,
    NodataWarning,
    StacError,
    redact_obj,
    redacting,
)
from ._grid import choose_crs, choose_grid, footprints, union_footprint
from ._items import ParsedItem, band_dtype_nodata, complete_metadata, parse_items
from ._reader import DEFAULT_GDAL_ENV, BandPlan, Block, ReadOptions, probe, read_block
from ._search import items_from_source, search_items

DEFAULT_CHUNKS = {"time": 1, "band": 1, "y": 1024, "x": 1024}
MAX_TASKS = 2_000_000
"""Most read tasks ``open_stac`` builds a graph of (each holds about 1.5 kB on the client before anything
is read: two million take some 3 GB and a minute to build); a larger load is refused with what to change."""
_TILE_KEYS = ("s2:mgrs_tile", "tile", "grid:code", "mgrs:grid_square")


@redacting()
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
        ``band`` coordinate. A multi-band asset's key (``"visual"``) gives one band per file band
        (``visual_1``, ``visual_2``, ...; ask for ``"visual_2"`` alone, or by a band's eo name when
        no other asset has it). Default: every single-band data asset common to all items.
    crs
        Target CRS. Default: the items' CRS; items in several CRS raise :class:`MixedCRSError`
        (pass the CRS to reproject them instead).
    resolution
        Pixel size in target CRS units: one number, or an (x, y) pair. Default: the finest native
        (x, y) resolution of the assets (non-square native pixels stay non-square).
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
        Output nodata. Default: the metadata's (``raster:bands`` nodata, or the collection's
        ``item_assets``), never a file header's, so it does not depend on ``dtype=``; NaN for float
        output from integer assets. The files' own nodata still marks pixels to fill from other items.
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
    if bbox is not None:
        _check_lonlat_bbox(bbox)
    if max_items is not None and (isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1):
        raise StacError(f"max_items={max_items!r}: give a whole number >= 1 (or None for every item)")
    if assets is not None and not isinstance(assets, str) and len(assets) == 0:
        raise StacError("assets=[] names no band: list the asset keys or band names to load, or leave assets=None "
                        "for every single-band data asset common to all items")
    dtype = _check_dtype(dtype)
    chunk_sizes = _chunks(chunks)
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
    items = _complete_metadata(items, bands, env, retries, on_error=on_error, crs_given=crs is not None,
                               resolution_given=resolution is not None, dtype_given=dtype is not None)
    target_crs = choose_crs(items, crs)
    from_bbox = bounds is None and bbox is not None
    if from_bbox:
        bounds = reproject_bounds(bbox, CRS.from_epsg(4326), target_crs)
    try:
        grid = choose_grid(items, target_crs, resolution=resolution, bounds=bounds)
    except GridError:
        if from_bbox:
            _check_bbox_overlaps(items, bbox, bounds, target_crs)
        raise
    groups = _group(items, groupby)
    plans = tuple(_band_plan(items, b, dtype, nodata, rescale) for b in bands)
    out_dtype = np.result_type(*[p.out_dtype for p in plans]).name
    plans = tuple(dataclasses.replace(p, out_dtype=out_dtype) for p in plans)
    opts = ReadOptions(env=tuple(sorted(env.items())), resampling=resampling, retries=retries, on_error=on_error)
    _check_size(len(groups), len(bands), grid, chunk_sizes)
    data = _graph(groups, bands, grid, plans, opts, out_dtype, chunk_sizes)

    y, x = grid.coords
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
    out_nodata = _cube_nodata(bands, plans, nodata_given=nodata is not None)
    if out_nodata is not None:
        cube = cube.rio.write_nodata(out_nodata, encoded=False)
    return validate_cube(_redact_attrs(cube), name="open_stac result")


def _redact_attrs(cube: xr.DataArray) -> xr.DataArray:
    """The cube with every string in its attributes and its coordinates' attributes redacted."""
    cube.attrs = redact_obj(dict(cube.attrs))
    for name in cube.coords:
        cube[name].attrs = redact_obj(dict(cube[name].attrs))
    return cube


def _check_lonlat_bbox(bbox: Sequence[float]) -> None:
    """Refuse a ``bbox=`` that is not (min lon, min lat, max lon, max lat) in degrees."""
    try:
        west, south, east, north = (float(v) for v in bbox)
    except (TypeError, ValueError) as exc:
        raise StacError(f"bbox={bbox!r} is not four numbers: give (min lon, min lat, max lon, max lat)") from exc
    if not all(map(math.isfinite, (west, south, east, north))) or max(abs(west), abs(east)) > 180 \
            or max(abs(south), abs(north)) > 90:
        raise StacError(
            f"bbox={tuple(bbox)!r} is not lon/lat: bbox= takes degrees (min lon, min lat, max lon, max lat), "
            "longitudes within [-180, 180] and latitudes within [-90, 90]; coordinates in the target CRS "
            "(metres of a UTM zone, ...) go in bounds="
        )
    if west >= east or south >= north:
        raise StacError(
            f"bbox={tuple(bbox)!r} is empty or inverted: give (min lon, min lat, max lon, max lat) with "
            "min < max (a bbox across the antimeridian: split it, or give bounds= in a projected CRS)"
        )


def _check_bbox_overlaps(items: list[ParsedItem], bbox: Sequence[float], bounds: Sequence[float], crs: CRS) -> None:
    """Raise a :class:`GridError` in lon/lat when ``bbox`` misses the items (projected numbers only as an aside)."""
    infos = [i for it in items for i in it.bands.values() if i is not None]
    covered = union_footprint(infos, crs)
    if bounds[0] < covered[2] and bounds[2] > covered[0] and bounds[1] < covered[3] and bounds[3] > covered[1]:
        return
    lonlat = union_footprint(infos, CRS.from_epsg(4326))

    def show(box: Sequence[float], digits: int) -> str:
        return "(" + ", ".join(f"{round(float(v), digits)}" for v in box) + ")"

    raise GridError(
        f"the bbox {tuple(float(v) for v in bbox)} (lon/lat: min lon, min lat, max lon, max lat) does not overlap "
        f"the items, which cover lon/lat {show(lonlat, 4)}. Check the bbox's order and signs (west, south, east, "
        "north; latitudes south of the equator and longitudes west of Greenwich are negative) or search for "
        f"items that cover it. (In the target CRS {crs.to_string()}: bbox {show(bounds, 1)}, items {show(covered, 1)}.)"
    ) from None


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise StacError(f"{name}={value!r} is not one of {allowed}")


def _complete_metadata(
    items: list[ParsedItem], bands: list[str], env: Mapping, retries: int, *, on_error: str = "raise",
    crs_given: bool, resolution_given: bool, dtype_given: bool,
) -> list[ParsedItem]:
    """Read file headers (never pixels), in parallel, only where the metadata cannot give the grid
    or a band's dtype (see :func:`eocube.stac._items.complete_metadata`).

    With ``on_error="nodata"`` an asset whose header cannot be read is dropped from its item
    (warned by :func:`probe`): its pixels are nodata, as for an asset that fails while reading.
    A band none of whose assets can be read is an :class:`AssetReadError` (nothing tells its
    grid or dtype).
    """
    out = complete_metadata(items, bands, lambda href: probe(href, env, retries, on_error=on_error),
                            crs_given=crs_given, resolution_given=resolution_given, dtype_given=dtype_given)
    for b in bands:
        _unreadable_band(items, out, b)
    return out


def _unreadable_band(before: list[ParsedItem], after: list[ParsedItem], band: str) -> None:
    """Raise when ``band`` had assets but none of their headers could be read (``on_error="nodata"``)."""
    had = sum(it.bands.get(band) is not None for it in before)
    if had and not any(it.bands.get(band) is not None for it in after):
        raise AssetReadError(
            f"none of the {had} assets of band {band!r} could be read while opening (the warnings name them), "
            "so nothing tells its grid or data type: check the hrefs, signing (patch_url=) and credentials "
            "(gdal_env=), or leave the band out of assets=[...]"
        )


def _cube_nodata(bands: Sequence[str], plans: Sequence[BandPlan], nodata_given: bool) -> float | int | None:
    """The cube's one nodata value (None if the bands disagree), with a :class:`NodataWarning` when unsure.

    Without a known nodata, the files' "no data" values (often 0 in Sentinel-2 and Landsat digital
    numbers) are read as observations, and gap filling, composites and models take them as data,
    whatever the output dtype (a float cube's NaN only marks pixels no item covered). So a nodata
    value the metadata do not give, or bands that disagree, is said on the terminal, never defaulted
    silently.
    """
    unknown = [b for b, p in zip(bands, plans) if p.raw_nodata is None]
    values = {repr(p.out_nodata): p.out_nodata for p in plans}
    problem = None
    if unknown and not nodata_given:
        problem = (f"the items' metadata give no nodata for {unknown} (no raster:bands nodata, nor in the "
                   "collection's item_assets) and nodata= was not given: the files' no-data values (often 0) "
                   "will be read as observations")
    if len(values) > 1:
        per_band = ", ".join(f"{b}: {p.out_nodata!r}" for b, p in zip(bands, plans))
        problem = (f"{problem}; also, " if problem else "") + (
            f"the bands have different nodata values ({per_band}) and a cube holds one, so it has none")
    if problem:
        warnings.warn(
            f"{problem}. Gap filling, composites and models will take such values as data. Pass nodata= "
            "(e.g. nodata=0 for Sentinel-2 or Landsat digital numbers)",
            NodataWarning,
            stacklevel=3,
        )
    return plans[0].out_nodata if len(values) == 1 else None


def _band_plan(items: list[ParsedItem], band: str, dtype: Any, nodata: Any, rescale: bool) -> BandPlan:
    raw_dtype, raw_nodata, scale, offset = band_dtype_nodata(items, band)
    raw_dtype = np.dtype(raw_dtype if raw_dtype is not None else dtype).name  # unknown: read as the asked dtype
    if raw_nodata is not None:
        raw_nodata = np.array(raw_nodata).astype(raw_dtype).item()
    out_dtype = np.dtype(dtype).name if dtype is not None else ("float32" if rescale else raw_dtype)
    is_float = np.issubdtype(np.dtype(out_dtype), np.floating)
    if nodata is not None:
        out_nodata = _nodata_as(nodata, out_dtype, band)
    elif is_float and (rescale or out_dtype != raw_dtype):
        out_nodata = float("nan")
    else:
        out_nodata = raw_nodata
    return BandPlan(raw_dtype, raw_nodata, out_dtype, out_nodata, scale if rescale else None, offset)


def _nodata_as(nodata: Any, dtype: str, band: str) -> Any:
    """``nodata=`` in the output dtype, refused where the dtype cannot hold it exactly (NaN, -1 or 0.5 in
    uint16, 1e6 in uint8 would silently become another value, which then marks real pixels)."""
    with np.errstate(invalid="ignore", over="ignore"):
        try:
            value = np.array(nodata).astype(dtype)
        except (TypeError, ValueError, OverflowError):
            value = None
    same = value is not None and (value == np.array(nodata) or (np.isnan(np.float64(nodata)) and np.isnan(value)))
    if not same:
        raise StacError(
            f"nodata={nodata!r} cannot be held by band {band!r}'s dtype {dtype}: pass a nodata value the dtype holds "
            f"(e.g. 0 for unsigned digital numbers) or a dtype that holds it (dtype='float32' for NaN)"
        )
    return value.item()


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
    """The chunk size of each dim (-1: the whole axis), checked."""
    if chunks is None:
        return dict(DEFAULT_CHUNKS)
    if isinstance(chunks, int) and not isinstance(chunks, bool):
        chunks = {"y": chunks, "x": chunks}
    if not isinstance(chunks, Mapping):
        raise StacError(f"chunks={chunks!r}: give one int for y and x, or a dict such as {DEFAULT_CHUNKS}")
    unknown = set(chunks) - set(DIMS)
    if unknown:
        raise StacError(f"chunks has unknown dims {sorted(unknown)}: use {DIMS}")
    out = {**DEFAULT_CHUNKS}
    for dim, size in chunks.items():
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not (size >= 1 or size == -1):
            raise StacError(f"chunks[{dim!r}]={size!r}: a chunk size is a whole number >= 1, or -1 for the whole axis")
        out[dim] = int(size)
    return out


def _check_dtype(dtype: Any) -> Any:
    """``dtype=`` as a NumPy dtype (None stays None), refusing what a raster cannot be read into."""
    if dtype is None:
        return None
    try:
        out = np.dtype(dtype)
    except TypeError as exc:
        raise StacError(f"dtype={dtype!r} is not a NumPy dtype ({exc}): pass e.g. 'uint16' or 'float32'") from None
    if out.kind not in "buifc":
        raise StacError(f"dtype={dtype!r} ({out}) holds no numbers: pass a numeric dtype such as 'uint16' or 'float32'")
    return out


def _check_size(times: int, bands: int, grid: Grid, chunks: dict[str, int]) -> None:
    """Refuse a load whose graph would have more than :data:`MAX_TASKS` read tasks (before building it)."""
    def count(n: int, size: int) -> int:
        return 1 if size <= 0 or n == 0 else -(-n // size)

    h, w = grid.shape
    tasks = (count(times, chunks["time"]) * count(bands, chunks["band"]) * count(h, chunks["y"])
             * count(w, chunks["x"]))
    if tasks > MAX_TASKS:
        raise GridError(
            f"the output grid is {h:,} x {w:,} px ({times} dates x {bands} bands), which makes {tasks:,} read tasks, "
            f"more than {MAX_TASKS:,} (a graph of that size takes gigabytes before a pixel is read): give a smaller "
            "bounds=/bbox= or a coarser resolution=, fewer dates or bands, or larger chunks= (e.g. "
            "{'time': 10, 'y': 2048, 'x': 2048}); or split the job into several loads"
        )


def _splits(n: int, size: int) -> list[tuple[int, int]]:
    size = n if size <= 0 else size
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _graph(groups, bands, grid: Grid, plans, opts: ReadOptions, out_dtype: str, chunks: dict[str, int]) -> da.Array:
    # footprint of every asset in the output CRS, computed once per distinct grid
    infos = [info for _, grp in groups for it in grp for info in it.bands.values() if info is not None]
    feet = dict(zip(map(id, infos), footprints(infos, grid.crs)))
    tsp, bsp = _splits(len(groups), chunks["time"]), _splits(len(bands), chunks["band"])
    ysp, xsp = _splits(grid.shape[0], chunks["y"]), _splits(grid.shape[1], chunks["x"])
    # hrefs without their signatures and GDAL options without credentials: tokens and keys change
    # between runs, the data do not, so the same load keeps the same name (and a store written from
    # it stays resumable)
    name = "open_stac-" + tokenize(
        [(str(g[0]), [(it.id, sorted((k, unsigned(v.href)) for k, v in it.bands.items() if v)) for it in g[1]])
         for g in groups],
        bands, grid.crs.to_string(), tuple(grid.transform), grid.shape, plans, _without_credentials(opts), chunks,
    )
    dsk: dict = {}
    for it_, (t0, t1) in enumerate(tsp):
        for ib, (b0, b1) in enumerate(bsp):
            for iy, (y0, y1) in enumerate(ysp):
                for ix, (x0, x1) in enumerate(xsp):
                    sub = grid.window(y0, y1, x0, x1)
                    le, bo, r, to = sub.bounds
                    srcs = tuple(
                        tuple(
                            tuple(
                                it.bands[band] for it in groups[t][1]
                                if it.bands.get(band) is not None
                                and (f := feet[id(it.bands[band])])[0] < r and f[2] > le and f[1] < to and f[3] > bo
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


_CREDENTIAL_OPTION = re.compile(r"SECRET|TOKEN|PASSWORD|ACCESS_KEY|CREDENTIAL|SAS|SIGNATURE|API_?KEY", re.IGNORECASE)


def _without_credentials(opts: ReadOptions) -> ReadOptions:
    """The read options without the GDAL options that hold credentials (they name no data)."""
    return dataclasses.replace(opts, env=tuple((k, v) for k, v in opts.env if not _CREDENTIAL_OPTION.search(k)))


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
            "time",
            np.array([np.mean([v for v in c if v is not None]) if any(v is not None for v in c) else np.nan for c in clouds]))
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
