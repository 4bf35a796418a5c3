"""From STAC item dicts to a small data model: which file holds which band, on which grid.

Only metadata is used (proj, eo and raster extensions, the collection's
``item_assets``); no file is opened here. Where the metadata cannot give the grid
or the dtype, :func:`complete_metadata` calls a header reader it is handed, for
the assets that need it only, in parallel.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

from ..grid import Grid
from ._errors import AssetError, EmptySearchError, redact

RASTER_TYPES = ("image/tiff", "image/vnd.stac.geotiff", "image/jp2", "application/x-hdf")
HEADER_WORKERS = 8
"""Most file headers read at once when the metadata lacks the grid or the dtype."""
_BAND_SUFFIX = re.compile(r"^(?P<key>.+)_(?P<index>[1-9][0-9]*)$")


@dataclass(frozen=True)
class AssetInfo:
    """One band of one item: where it is and on which grid (from the item's metadata)."""

    href: str
    """Location of the file (after ``patch_url``)."""
    crs: CRS | None
    """CRS from ``proj:epsg``/``proj:code``/``proj:wkt2`` (None when the item does not say)."""
    transform: Affine | None
    """``proj:transform`` of the asset (None when the item does not say)."""
    shape: tuple[int, int] | None
    """``proj:shape`` (rows, cols)."""
    dtype: str | None
    """``raster:bands[i].data_type`` of the band read (i = ``band - 1``)."""
    nodata: float | int | None
    """``raster:bands[i].nodata`` (never taken from the file's header)."""
    scale: float = 1.0
    """``raster:bands[i].scale``."""
    offset: float = 0.0
    """``raster:bands[i].offset``."""
    band: int = 1
    """Band of the file to read (1-based; >1 only for multi-band assets such as ``visual``)."""
    lonlat_bbox: tuple[float, float, float, float] | None = None
    """The item's footprint in lon/lat (its ``bbox`` or geometry): the asset's footprint when
    the item has no grid for it (no ``proj:transform``, or ``proj:bbox`` with ``proj:shape``)."""

    def __repr__(self) -> str:
        # the href redacted: distributed's workers log a failed task's arguments (Block -> AssetInfo;
        # in full up to distributed 2024.11, which setup.cfg allows), and people print items
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        shown["href"] = redact(self.href)
        return f"AssetInfo({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def has_grid(self) -> bool:
        """Whether crs, transform and shape are all known."""
        return self.crs is not None and self.transform is not None and self.shape is not None


@dataclass(frozen=True)
class ParsedItem:
    """An item reduced to what the loader needs."""

    id: str
    """Item id."""
    time: pd.Timestamp
    """Acquisition time (UTC, timezone-naive)."""
    lon: float
    """Longitude of the footprint's centre (for solar-day grouping)."""
    properties: Mapping[str, Any] = field(repr=False)
    """The item's properties, as published."""
    bands: Mapping[str, AssetInfo | None] = field(repr=False)
    """Output band name -> asset (None where the item lacks it)."""


def _crs_of(meta: Mapping[str, Any]) -> CRS | None:
    if meta.get("proj:epsg") is not None:
        return CRS.from_epsg(int(meta["proj:epsg"]))
    if meta.get("proj:code"):
        return CRS.from_user_input(meta["proj:code"])
    if meta.get("proj:wkt2"):
        return CRS.from_wkt(meta["proj:wkt2"])
    return None


def _raster_band(meta: Mapping[str, Any], index: int = 0) -> Mapping[str, Any]:
    """``raster:bands[index]`` (or STAC 1.1 ``bands[index]``) of an asset; {} when absent."""
    bands = meta.get("raster:bands") or meta.get("bands") or []
    return bands[index] if index < len(bands) and isinstance(bands[index], Mapping) else {}


def _eo_bands(meta: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """An asset's spectral bands: ``eo:bands``, else STAC 1.1 ``bands`` (``eo:common_name``)."""
    eo = meta.get("eo:bands")
    if eo:
        return [b if isinstance(b, Mapping) else {} for b in eo]
    return [
        {"name": b.get("name"), "common_name": b.get("eo:common_name", b.get("common_name"))}
        for b in meta.get("bands") or []
        if isinstance(b, Mapping)
    ]


def _band_count(meta: Mapping[str, Any]) -> int:
    """How many bands the asset's metadata lists (1 when it lists none)."""
    return max(len(meta.get("eo:bands") or []), len(meta.get("raster:bands") or []), len(meta.get("bands") or []), 1)


def _resolve_eo_indices(meta: Mapping[str, Any], item_bands: Sequence[Any]) -> Mapping[str, Any]:
    """Before STAC 1.0, an asset's ``eo:bands`` were indices into the item's ``eo:bands``: resolve them."""
    eo = meta.get("eo:bands")
    if not eo or all(isinstance(b, Mapping) for b in eo):
        return meta
    resolved = [
        item_bands[b] if isinstance(b, int) and 0 <= b < len(item_bands) and isinstance(item_bands[b], Mapping) else b
        for b in eo
    ]
    return {**meta, "eo:bands": [b if isinstance(b, Mapping) else {} for b in resolved]}


def item_assets_of(item: Mapping[str, Any],
                   item_assets: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Mapping[str, Any]]:
    """An item's assets over its collection's ``item_assets``, with ``eo:bands`` indices resolved.

    Parameters
    ----------
    item
        A STAC item dict.
    item_assets
        ``{collection id: item_assets}``; the item's own asset fields win.

    Returns
    -------
    dict
        Asset key -> asset metadata.
    """
    collection = item.get("collection") or (item.get("properties") or {}).get("collection", "")
    templates = dict((item_assets or {}).get(collection, {}))
    item_bands = (item.get("properties") or {}).get("eo:bands") or []
    return {k: _resolve_eo_indices({**templates.get(k, {}), **v}, item_bands) for k, v in (item.get("assets") or {}).items()}


def _lonlat_bbox(item: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """The item's footprint in lon/lat: its ``bbox``, else its geometry's bounds; None without either."""
    bbox = item.get("bbox")
    if bbox and len(bbox) in (4, 6):
        half = len(bbox) // 2
        return (float(bbox[0]), float(bbox[1]), float(bbox[half]), float(bbox[half + 1]))
    coords = np.asarray(_flatten_coords((item.get("geometry") or {}).get("coordinates", [])), dtype=float)
    if not coords.size:
        return None
    return (float(coords[:, 0].min()), float(coords[:, 1].min()), float(coords[:, 0].max()), float(coords[:, 1].max()))


def _transform_of(meta: Mapping[str, Any], props: Mapping[str, Any], shape: tuple[int, int] | None) -> Affine | None:
    """``proj:transform``, else the north-up transform of ``proj:bbox`` over ``proj:shape``; None without them."""
    tr = meta.get("proj:transform", props.get("proj:transform"))
    if tr:
        return Affine(*tr[:6])
    bbox = meta.get("proj:bbox", props.get("proj:bbox"))
    if not bbox or len(bbox) not in (4, 6) or shape is None:
        return None
    half = len(bbox) // 2
    return Grid.from_bbox((bbox[0], bbox[1], bbox[half], bbox[half + 1]), shape=shape).transform


def _item_time(item: Mapping[str, Any]) -> pd.Timestamp:
    props = item.get("properties", {})
    value = props.get("datetime") or props.get("start_datetime")
    if value is None:
        raise AssetError(f"item {item.get('id')!r} has neither datetime nor start_datetime: it cannot be placed in time")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise AssetError(f"item {item.get('id')!r} has datetime {value!r}, which is not a date ({str(exc).splitlines()[0]}): "
                         "fix the item (RFC 3339, e.g. 2020-06-01T10:20:00Z) or leave it out") from None
    if ts is pd.NaT:
        raise AssetError(f"item {item.get('id')!r} has datetime {value!r}, which is not a date: fix the item or leave it out")
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts


def _item_lon(item: Mapping[str, Any]) -> float:
    bbox = item.get("bbox")
    if bbox and len(bbox) >= 4:
        half = len(bbox) // 2
        return (float(bbox[0]) + float(bbox[half])) / 2
    coords = np.asarray(_flatten_coords((item.get("geometry") or {}).get("coordinates", [])), dtype=float)
    return float(coords[:, 0].mean()) if coords.size else 0.0


def _flatten_coords(obj: Any) -> list[list[float]]:
    if isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], (int, float)):
        return [list(obj[:2])]
    out: list[list[float]] = []
    for sub in obj or []:
        out.extend(_flatten_coords(sub))
    return out


def is_data_asset(key: str, meta: Mapping[str, Any]) -> bool:
    """Whether an asset is a single-band raster worth loading by default."""
    mtype = str(meta.get("type", ""))
    roles = meta.get("roles") or ["data"]
    raster = any(mtype.startswith(t) for t in RASTER_TYPES) or key.lower().endswith((".tif", ".tiff"))
    return raster and "data" in roles and _band_count(meta) <= 1


def _named(band: Mapping[str, Any], name: str) -> bool:
    return name in (band.get("common_name"), band.get("name"))


def resolve_band(name: str, assets: Mapping[str, Mapping[str, Any]]) -> tuple[str, int] | None:
    """Where a band asked by name is: ``(asset key, 0-based band index in the file)``.

    A name is, in this order: an asset key; ``<key>_<i>``, band i (from 1) of a multi-band
    asset; the eo ``name``/``common_name`` of a single-band asset; the eo ``name``/``common_name``
    of one band of a multi-band asset (``"red"`` in a 3-band ``visual`` asset).

    Returns None when nothing matches; raises :class:`AssetError` when several assets or bands match.
    """
    if name in assets:
        return name, 0
    suffix = _BAND_SUFFIX.match(name)
    if suffix and suffix["key"] in assets:
        count, index = _band_count(assets[suffix["key"]]), int(suffix["index"])
        if 1 < count and index <= count:
            return suffix["key"], index - 1
    single = [key for key, meta in assets.items() if len(_eo_bands(meta)) == 1 and _named(_eo_bands(meta)[0], name)]
    if len(single) > 1:
        raise AssetError(
            f"band {name!r} matches several assets {single} by eo:bands name/common_name: ask for one asset key instead"
        )
    if single:
        return single[0], 0
    multi = [
        (key, i)
        for key, meta in assets.items()
        if len(_eo_bands(meta)) > 1
        for i, band in enumerate(_eo_bands(meta))
        if _named(band, name)
    ]
    if len(multi) > 1:
        listed = [f"{key}_{i + 1}" for key, i in multi]
        raise AssetError(f"band {name!r} matches several bands of multi-band assets {listed}: ask for one of those names")
    return multi[0] if multi else None


def default_bands(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Asset keys present as single-band data rasters in every item (first item's order)."""
    first = item_assets_of(items[0])
    keys = [k for k, m in first.items() if is_data_asset(k, m)]
    return [k for k in keys if all(k in it.get("assets", {}) for it in items)]


def _expand_multiband(names: Sequence[str], assets_per_item: Sequence[Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """Asset keys of multi-band assets become one name per band: ``visual`` -> ``visual_1 .. visual_3``."""
    out: list[str] = []
    for name in names:
        meta = next((assets[name] for assets in assets_per_item if name in assets), None)
        count = _band_count(meta) if meta is not None else 1
        out.extend([name] if count == 1 else [f"{name}_{i}" for i in range(1, count + 1)])
    return out


def _check_unique(names: Sequence[str]) -> None:
    dupes = [n for n, c in Counter(names).items() if c > 1]
    if dupes:
        raise AssetError(
            f"bands {dupes} are asked for more than once: list each band once (a multi-band asset such as "
            "'visual' stands for all its bands, visual_1, visual_2, ...)"
        )


def _asset_info(
    meta: Mapping[str, Any],
    index: int,
    props: Mapping[str, Any],
    lonlat: tuple[float, float, float, float] | None,
    patch_url: Callable[[str], str] | None,
) -> AssetInfo:
    """Band ``index`` (0-based) of one asset, from the asset's metadata over the item's properties."""
    shape = meta.get("proj:shape", props.get("proj:shape"))
    shape = (int(shape[0]), int(shape[1])) if shape else None
    if shape is not None and min(shape) < 1:
        raise ValueError(f"proj:shape {list(shape)} has no pixels")
    transform = _transform_of(meta, props, shape)
    if transform is not None and (not all(np.isfinite(tuple(transform)[:6])) or transform.a == 0 or transform.e == 0):
        raise ValueError(f"proj:transform {list(tuple(transform)[:6])} is not an affine transform with finite, "
                         "non-zero pixel sizes")
    if transform is not None and (transform.b != 0 or transform.d != 0):
        raise ValueError(f"proj:transform {list(tuple(transform)[:6])} is rotated or sheared, which eocube does not "
                         "read (north-up grids only)")
    rb = _raster_band(meta, index)
    href = str(meta["href"])
    return AssetInfo(
        href=patch_url(href) if patch_url else href,
        crs=_crs_of(meta) or _crs_of(props),
        transform=transform,
        shape=shape,
        dtype=rb.get("data_type"),
        nodata=rb.get("nodata"),
        scale=float(rb["scale"]) if rb.get("scale") is not None else 1.0,
        offset=float(rb["offset"]) if rb.get("offset") is not None else 0.0,
        band=index + 1,
        lonlat_bbox=lonlat,
    )


def parse_items(
    items: Sequence[Mapping[str, Any]],
    bands: Sequence[str] | None,
    *,
    item_assets: Mapping[str, Mapping[str, Any]] | None = None,
    patch_url: Callable[[str], str] | None = None,
    on_missing: str = "raise",
) -> tuple[list[ParsedItem], list[str]]:
    """Parse item dicts for the asked bands.

    Parameters
    ----------
    items
        STAC item dicts.
    bands
        Asset keys, ``<key>_<i>`` for band i of a multi-band asset, or eo band (common) names; a
        multi-band asset's key stands for all its bands. None: every single-band data asset
        common to all items.
    item_assets
        ``{collection id: item_assets}`` used where an asset lacks ``raster:bands``/``eo:bands``.
    patch_url
        Called on every href (signing, rewriting).
    on_missing
        ``"raise"``: an asset missing from some items is an error; ``"nodata"``: those pixels are nodata.

    Returns
    -------
    items : list of ParsedItem
        Sorted by time then id.
    bands : list of str
        Output band names.
    """
    if not items:
        raise EmptySearchError("no STAC item was given: pass a non-empty item list or check the search")
    names = list(bands) if bands is not None else default_bands(items)
    if isinstance(bands, str):
        names = [bands]
    if not names:
        raise AssetError(
            "no single-band data asset is common to all items: pass assets=[...] "
            f"(the first item has {sorted(items[0].get('assets', {}))})"
        )
    _check_unique(names)
    assets_per_item = [item_assets_of(item, item_assets) for item in items]
    names = _expand_multiband(names, assets_per_item)
    _check_unique(names)
    parsed: list[ParsedItem] = []
    missing: dict[str, list[str]] = {n: [] for n in names}
    for item, assets in zip(items, assets_per_item):
        props = item.get("properties", {})
        lonlat = _lonlat_bbox(item)
        found: dict[str, AssetInfo | None] = {}
        for name in names:
            hit = resolve_band(name, assets)
            if hit is None:
                missing[name].append(str(item.get("id")))
                found[name] = None
                continue
            try:
                found[name] = _asset_info(assets[hit[0]], hit[1], props, lonlat, patch_url)
            except (ValueError, TypeError, IndexError, CRSError) as exc:
                raise AssetError(
                    f"item {item.get('id')!r}, asset {hit[0]!r}: {redact(str(exc))}: fix the item's proj metadata "
                    "(proj:epsg/proj:code, proj:transform, proj:shape), or leave the item or the band out"
                ) from None
        parsed.append(ParsedItem(str(item.get("id")), _item_time(item), _item_lon(item), props, found))
    bad = {n: ids for n, ids in missing.items() if ids}
    if bad:
        all_missing = [n for n, ids in bad.items() if len(ids) == len(items)]
        if all_missing:
            keys = sorted(items[0].get("assets", {}))
            raise AssetError(
                f"asset(s) {all_missing} found in none of the {len(items)} items (by key or eo:bands common_name); "
                f"the first item's assets are {keys}"
            )
        if on_missing != "nodata":
            detail = "; ".join(f"{n!r} missing from {len(ids)} of {len(items)} items (e.g. {ids[:3]})" for n, ids in bad.items())
            raise AssetError(
                f"{detail}: drop those bands from assets=[...], filter the items, or pass on_missing='nodata' "
                "to fill them with nodata"
            )
    parsed.sort(key=lambda p: (p.time, p.id))
    return parsed, names


def _most_common(values: Iterable[Any]) -> Any:
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


def band_dtype_nodata(items: Sequence[ParsedItem], band: str) -> tuple[str | None, Any, float, float]:
    """Most common (dtype, nodata, scale, offset) of a band across items (None where unknown)."""
    infos = [it.bands[band] for it in items if it.bands.get(band) is not None]
    return (
        _most_common(i.dtype for i in infos),
        _most_common(i.nodata for i in infos),
        _most_common(i.scale for i in infos) or 1.0,
        _most_common(i.offset for i in infos) or 0.0,
    )


def _needs_grid_header(info: AssetInfo, crs_given: bool, resolution_given: bool) -> bool:
    """Whether the output grid needs this asset's header: its metadata lacks the grid and
    the grid cannot be made without it (no CRS from anywhere, no resolution, or no footprint)."""
    if info.has_grid:
        return False
    return info.lonlat_bbox is None or not resolution_given or (not crs_given and info.crs is None)


def _read_headers(
    hrefs: Sequence[str], read_header: Callable[[str], Mapping[str, Any] | None], workers: int
) -> dict[str, Mapping[str, Any] | None]:
    """``{href: header}``, read by at most ``workers`` threads at once (the first error is raised)."""
    if len(hrefs) <= 1:
        return {h: read_header(h) for h in hrefs}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(hrefs))), thread_name_prefix="eocube-stac-header") as pool:
        return dict(zip(hrefs, pool.map(read_header, hrefs)))


def _band_infos(items: Sequence[ParsedItem], band: str) -> list[AssetInfo]:
    return [it.bands[band] for it in items if it.bands.get(band) is not None]  # type: ignore[misc]


def _dtype_hrefs(items: Sequence[ParsedItem], bands: Sequence[str], already: set[str]) -> set[str]:
    """One href per band whose dtype no item gives (none where a header of the band is read anyway)."""
    out: set[str] = set()
    for band in bands:
        infos = _band_infos(items, band)
        if infos and all(i.dtype is None for i in infos) and not any(i.href in already for i in infos):
            out.add(infos[0].href)
    return out


def _retry_dtype_headers(
    items: Sequence[ParsedItem],
    bands: Sequence[str],
    headers: dict[str, Mapping[str, Any] | None],
    read_header: Callable[[str], Mapping[str, Any] | None],
) -> None:
    """For a band whose dtype no item gives and none of whose read headers could be read
    (``read_header`` gave None), read its other assets' headers one by one until one answers."""
    for band in bands:
        infos = _band_infos(items, band)
        if not infos or any(i.dtype is not None for i in infos) or any(headers.get(i.href) for i in infos):
            continue
        for info in infos:
            if info.href not in headers:
                headers[info.href] = read_header(info.href)
                if headers[info.href] is not None:
                    break


def complete_metadata(
    items: Sequence[ParsedItem],
    bands: Sequence[str],
    read_header: Callable[[str], Mapping[str, Any] | None],
    *,
    crs_given: bool,
    resolution_given: bool,
    dtype_given: bool,
    workers: int = HEADER_WORKERS,
) -> list[ParsedItem]:
    """Fill in from file headers what the output grid and dtypes need and the metadata lacks.

    The grid comes from ``proj:transform`` (or ``proj:bbox`` over ``proj:shape``) without I/O;
    an asset without them needs no header either when the item's footprint, a CRS (``crs=`` or
    ``proj:epsg``) and ``resolution=`` are known. A band's dtype comes from ``raster:bands``
    (or the collection's ``item_assets``); without it, and without ``dtype=``, one header of the
    band is read. Each file's header is read once, up to ``workers`` at a time. Nodata is never
    taken from a header, so the cube's nodata does not depend on ``dtype=`` (the files' own
    nodata still marks invalid pixels when mosaicking).

    Parameters
    ----------
    items
        Parsed items.
    bands
        Output band names.
    read_header
        ``href -> {"crs", "transform", "shape", "dtype", ...}`` (reads a header, never pixels), or
        None for a file that cannot be read and is to be left out (``on_error="nodata"``); an
        asset left out is None in its item.
    crs_given, resolution_given, dtype_given
        Whether ``crs=``, ``resolution=`` and ``dtype=`` were passed.
    workers
        Most headers read at once.

    Returns
    -------
    list of ParsedItem
        The items, with crs/transform/shape from headers where needed and dtypes filled in.
    """
    grid_hrefs = {
        info.href
        for it in items
        for info in it.bands.values()
        if info is not None and _needs_grid_header(info, crs_given, resolution_given)
    }
    dtype_hrefs = set() if dtype_given else _dtype_hrefs(items, bands, grid_hrefs)
    headers = _read_headers(sorted(grid_hrefs | dtype_hrefs), read_header, workers)
    if not dtype_given:
        _retry_dtype_headers(items, bands, headers, read_header)
    if not headers:
        return list(items)
    band_dtype = {
        band: _most_common(h["dtype"] for i in _band_infos(items, band) if (h := headers.get(i.href)) is not None)
        for band in bands
    }
    return [dataclasses.replace(it, bands=_completed(it, headers, grid_hrefs, band_dtype)) for it in items]


def _completed(
    item: ParsedItem,
    headers: Mapping[str, Mapping[str, Any] | None],
    grid_hrefs: set[str],
    band_dtype: Mapping[str, str | None],
) -> dict[str, AssetInfo | None]:
    """An item's bands with header values filled in; an asset whose header could not be read is dropped."""
    new: dict[str, AssetInfo | None] = {}
    for band, info in item.bands.items():
        if info is not None and info.href in headers and headers[info.href] is None:
            info = None  # unreadable (read_header warned): its pixels are nodata
        elif info is not None:
            header = headers.get(info.href)
            if info.href in grid_hrefs:
                assert header is not None
                info = dataclasses.replace(info, crs=header["crs"], transform=header["transform"], shape=header["shape"])
            dtype = info.dtype or (header["dtype"] if header is not None else band_dtype.get(band))
            info = dataclasses.replace(info, dtype=dtype)
        new[band] = info
    return new
