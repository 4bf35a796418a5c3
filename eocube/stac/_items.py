"""From STAC item dicts to a small data model: which file holds which band, on which grid.

Only metadata is used (proj, eo and raster extensions, the collection's
``item_assets``); no file is opened here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from affine import Affine
from rasterio.crs import CRS

from ._errors import AssetError, EmptySearchError

RASTER_TYPES = ("image/tiff", "image/vnd.stac.geotiff", "image/jp2", "application/x-hdf")


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
    """``raster:bands[0].data_type``."""
    nodata: float | int | None
    """``raster:bands[0].nodata``."""
    scale: float = 1.0
    """``raster:bands[0].scale``."""
    offset: float = 0.0
    """``raster:bands[0].offset``."""


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


def _raster_band(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    bands = meta.get("raster:bands") or meta.get("bands") or []
    return bands[0] if len(bands) >= 1 and isinstance(bands[0], Mapping) else {}


def _eo_bands(meta: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(meta.get("eo:bands") or [])


def _item_time(item: Mapping[str, Any]) -> pd.Timestamp:
    props = item.get("properties", {})
    value = props.get("datetime") or props.get("start_datetime")
    if value is None:
        raise AssetError(f"item {item.get('id')!r} has neither datetime nor start_datetime: it cannot be placed in time")
    ts = pd.Timestamp(value)
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
    return raster and "data" in roles and len(_eo_bands(meta)) <= 1 and len(meta.get("raster:bands") or []) <= 1


def resolve_band(name: str, assets: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Asset key for a band asked by asset key or by eo ``name``/``common_name``.

    Returns None when no asset matches; raises when several single-band assets match.
    """
    if name in assets:
        return name
    hits = [
        key
        for key, meta in assets.items()
        if len(_eo_bands(meta)) == 1
        and name in (_eo_bands(meta)[0].get("common_name"), _eo_bands(meta)[0].get("name"))
    ]
    if len(hits) > 1:
        raise AssetError(
            f"band {name!r} matches several assets {hits} by eo:bands name/common_name: ask for one asset key instead"
        )
    return hits[0] if hits else None


def default_bands(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Asset keys present as single-band data rasters in every item (first item's order)."""
    first = items[0].get("assets", {})
    keys = [k for k, m in first.items() if is_data_asset(k, m)]
    return [k for k in keys if all(k in it.get("assets", {}) for it in items)]


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
        Asset keys or eo band (common) names; None: every single-band data asset common to all items.
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
    dupes = [n for n, c in Counter(names).items() if c > 1]
    if dupes:
        raise AssetError(f"bands {dupes} are asked for more than once: list each band once")
    parsed: list[ParsedItem] = []
    missing: dict[str, list[str]] = {n: [] for n in names}
    for item in items:
        templates = dict((item_assets or {}).get(item.get("collection", ""), {}))
        assets = {k: {**templates.get(k, {}), **v} for k, v in item.get("assets", {}).items()}
        props = item.get("properties", {})
        found: dict[str, AssetInfo | None] = {}
        for name in names:
            key = resolve_band(name, assets)
            if key is None:
                missing[name].append(str(item.get("id")))
                found[name] = None
                continue
            meta = assets[key]
            tr = meta.get("proj:transform", props.get("proj:transform"))
            shape = meta.get("proj:shape", props.get("proj:shape"))
            rb = _raster_band(meta)
            href = str(meta["href"])
            found[name] = AssetInfo(
                href=patch_url(href) if patch_url else href,
                crs=_crs_of(meta) or _crs_of(props),
                transform=Affine(*tr[:6]) if tr else None,
                shape=(int(shape[0]), int(shape[1])) if shape else None,
                dtype=rb.get("data_type"),
                nodata=rb.get("nodata"),
                scale=float(rb.get("scale", 1.0)),
                offset=float(rb.get("offset", 0.0)),
            )
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
