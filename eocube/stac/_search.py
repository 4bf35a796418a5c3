"""Where items come from: a STAC API search, or items given directly.

Everything is normalised to a list of plain item dicts (GeoJSON Features), plus
the ``item_assets`` of their collections where the API can give them (they
carry ``raster:bands`` data types and nodata that many items omit).
"""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Mapping

from ._errors import EmptySearchError, StacError


def search_items(
    url: str,
    *,
    collections: str | Iterable[str] | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    datetime: str | None = None,
    query: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | str | None = None,  # noqa: A002  (STAC API's name)
    max_items: int | None = None,
    ids: Iterable[str] | None = None,
) -> tuple[list[dict], dict[str, dict]]:
    """Search a STAC API.

    Parameters
    ----------
    url
        Root of the STAC API (its landing page).
    collections, bbox, datetime, query, filter, max_items, ids
        Passed to :meth:`pystac_client.Client.search`; ``bbox`` is in lon/lat.

    Returns
    -------
    items : list of dict
        The matching items.
    item_assets : dict
        ``{collection id: item_assets}`` for the collections the items belong to.

    Raises
    ------
    EmptySearchError
        When nothing matches; the message repeats the query.
    """
    import pystac_client

    try:
        client = pystac_client.Client.open(url)
    except Exception as exc:  # network error, not a STAC API, ...
        raise StacError(
            f"cannot open the STAC API at {url!r}: {exc}. Check the URL (it must be the API's landing page) "
            "and that the server is reachable"
        ) from exc
    params: dict[str, Any] = {
        "collections": [collections] if isinstance(collections, str) else collections,
        "bbox": bbox,
        "datetime": datetime,
        "query": dict(query) if query else None,
        "filter": filter,
        "max_items": max_items,
        "ids": list(ids) if ids else None,
    }
    params = {k: v for k, v in params.items() if v is not None}
    search = client.search(**params)
    items = list(search.items_as_dicts())
    if not items:
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "no parameters"
        raise EmptySearchError(
            f"the STAC search at {url} found no item ({shown}): widen the datetime range or bbox, check the "
            "collection id (client.get_collections() lists them) and relax query/filter such as eo:cloud_cover"
        )
    item_assets: dict[str, dict] = {}
    for cid in sorted({it.get("collection") for it in items if it.get("collection")}):
        try:
            coll = client.get_collection(cid)
            item_assets[cid] = dict(coll.extra_fields.get("item_assets") or {})
            if not item_assets[cid] and hasattr(coll, "item_assets"):
                item_assets[cid] = {k: v.to_dict() for k, v in (coll.item_assets or {}).items()}
        except Exception:  # noqa: BLE001 - a collection document is optional metadata
            item_assets[cid] = {}
    return items, item_assets


def items_from_source(source: Any) -> list[dict]:
    """Normalise items given directly to a list of item dicts.

    Parameters
    ----------
    source
        A :class:`pystac.ItemCollection`, a list of :class:`pystac.Item` or item dicts, a
        FeatureCollection dict, a single item, a path to a JSON/GeoJSON file (an item or a
        FeatureCollection), or a static :class:`pystac.Catalog`/``Collection`` (or its path),
        whose items are collected recursively.

    Returns
    -------
    list of dict
        The items.
    """
    import pystac

    if isinstance(source, (str, PathLike)):
        path = Path(source)
        if not path.exists():
            raise StacError(f"STAC file {str(path)!r} does not exist: "
                            "pass a path to an item, a FeatureCollection or a catalog.json")
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise StacError(f"{str(path)!r} is not valid JSON ({exc}): pass a STAC item, FeatureCollection or catalog") from exc
        if doc.get("type") in ("Catalog", "Collection"):
            return items_from_source(pystac.read_file(str(path)))
        return items_from_source(doc)
    if isinstance(source, (pystac.Catalog,)):  # Collection is a Catalog
        return [it.to_dict(transform_hrefs=False) for it in source.get_items(recursive=True)]
    if isinstance(source, pystac.ItemCollection):
        return [it.to_dict(transform_hrefs=False) for it in source.items]
    if isinstance(source, pystac.Item):
        return [source.to_dict(transform_hrefs=False)]
    if isinstance(source, Mapping):
        if source.get("type") == "FeatureCollection":
            return [dict(f) for f in source.get("features", [])]
        if source.get("type") == "Feature":
            return [dict(source)]
        raise StacError(f"a dict of type {source.get('type')!r} is not a STAC item or FeatureCollection")
    if isinstance(source, Iterable):
        out: list[dict] = []
        for obj in source:
            if isinstance(obj, pystac.Item):
                out.append(obj.to_dict(transform_hrefs=False))
            elif isinstance(obj, Mapping) and obj.get("type") == "Feature":
                out.append(dict(obj))
            else:
                raise StacError(f"cannot use a {type(obj).__name__} as a STAC item: pass pystac.Item objects or item dicts")
        return out
    raise StacError(
        f"cannot read STAC items from a {type(source).__name__}: pass a pystac ItemCollection, a list of items, "
        "a JSON/GeoJSON path, a static catalog, or search an API with url=..."
    )
