"""Issue 13: what open_stac tells (no secrets), what it does with unreadable headers, how exactly it warps.

- Case 16: signed hrefs (SAS ``sig=``, ``token=``, ``X-Amz-Signature=``) never reach an exception, a
  warning, a log record, the cube's attributes, a Zarr store or the progress output.
- Case 7c: ``on_error="nodata"`` also covers headers read while opening (items without proj metadata).
- Case 14: nearest-neighbour reprojection to the next UTM zone takes the source pixel that contains
  each output pixel's centre (checked against an exact pyproj reference, and against odc-stac).
- Case 15: a bbox outside the items is echoed in lon/lat, beside the items' lon/lat extent.
"""

from __future__ import annotations

import copy
import json
import logging
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import eocube
from eocube.stac import AssetReadError, AssetReadWarning, GridError, StacError, open_stac

from .conftest import ITEMS_FILE, published_items, rewrite

pytestmark = pytest.mark.services
MARKER = "SECRETMARKER123"
SIGNED = f"?st=2020-01-01&se=2099-01-01T{MARKER}&sp=r&sig={MARKER}&token={MARKER}&X-Amz-Signature={MARKER}"
ORIGIN = (499980.0, 9200020.0)
SMALL = (ORIGIN[0], ORIGIN[1] - 320.0, ORIGIN[0] + 320.0, ORIGIN[1])  # 32 x 32 pixels of the 10 m grid


def _sign(items: list[dict], bands=("B04", "B08")) -> list[dict]:
    out = copy.deepcopy(items)
    for item in out:
        for band in bands:
            item["assets"][band]["href"] += SIGNED
    return out


def _chain_texts(exc: BaseException) -> list[str]:
    """str and repr of an exception and of every exception chained to it, and the printed traceback."""
    texts, seen, todo = ["".join(traceback.format_exception(exc))], set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        texts += [str(e), repr(e), *getattr(e, "__notes__", [])]
        todo += [e.__cause__, e.__context__]
    return texts


def _store_texts(path: Path) -> list[str]:
    names = (".zattrs", ".zarray", ".zgroup", ".zmetadata", "zarr.json")
    return [p.read_text() for p in path.rglob("*") if p.name in names]


def _assert_clean(texts, where: str) -> None:
    leaks = [t for t in texts if MARKER in t]
    assert not leaks, f"the signature reached {where}: {leaks[0][:500]}"


def test_signed_hrefs_stay_out_of_errors_warnings_logs_attrs_stores_and_progress(
    http, http_items, tmp_path, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    good = _sign(http_items[:2])
    broken = copy.deepcopy(good)
    broken[1]["assets"]["B04"]["href"] = http.url + "/nowhere/B04.tif" + SIGNED  # 404

    # a failing href: the error names the file and the kind of signature, never its value
    cube = open_stac(broken, assets=["B04", "B08"], dtype="uint16", bounds=SMALL, retries=1)
    with pytest.raises(AssetReadError) as info:
        cube.compute()
    texts = _chain_texts(info.value)
    assert "nowhere/B04.tif?st=REDACTED" in str(info.value) and "sig=REDACTED" in str(info.value)
    _assert_clean(texts, "the exception (str, repr, chained causes, traceback)")

    # on_error="nodata": the warnings name the redacted href; the store and its progress bar stay clean
    lenient = open_stac(broken, assets=["B04", "B08"], dtype="uint16", bounds=SMALL, retries=1, on_error="nodata")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = eocube.to_zarr(lenient, tmp_path / "lenient.zarr", progress=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, AssetReadWarning)]
    assert messages and all("nowhere/B04.tif?st=REDACTED" in m for m in messages)
    _assert_clean([str(w.message) for w in caught], "a warning")
    assert report is not None
    values = eocube.open_zarr(tmp_path / "lenient.zarr").values
    assert (values[1, 0] == 0).all() and (values[0] != 0).any()  # the 404 band is nodata, the rest read

    # patch_url signs at read time: the same pixels (nginx ignores the query), nothing leaks
    signed = open_stac(http_items[:2], assets=["B04", "B08"], dtype="uint16", bounds=SMALL,
                       patch_url=lambda href: href + SIGNED)
    plain = open_stac(http_items[:2], assets=["B04", "B08"], dtype="uint16", bounds=SMALL)
    np.testing.assert_array_equal(signed.values, plain.values)
    eocube.to_zarr(signed, tmp_path / "signed.zarr", progress=True)
    unsigned_404 = rewrite(http_items[:1], http.url + "/nowhere", bands=("B04",))
    with pytest.raises(AssetReadError) as info:
        open_stac(unsigned_404, assets=["B04"], dtype="uint16", bounds=SMALL, retries=1,
                  patch_url=lambda href: href + SIGNED).compute()
    _assert_clean(_chain_texts(info.value), "the exception of a patch_url-signed href")

    for c in (cube, lenient, signed):
        _assert_clean([json.dumps(c.attrs, default=str)] + [json.dumps(c[k].attrs, default=str) for k in c.coords],
                      "the cube's attributes")
    _assert_clean(_store_texts(tmp_path / "lenient.zarr") + _store_texts(tmp_path / "signed.zarr"), "a Zarr store")
    _assert_clean([r.getMessage() for r in caplog.records], "a log record")
    out = capsys.readouterr()
    _assert_clean([out.out, out.err], "the progress output")


def _without_proj(items: list[dict], band: str) -> list[dict]:
    """Items whose ``band`` asset lacks proj:shape/transform/bbox: its header is read when opening."""
    out = copy.deepcopy(items)
    for item in out:
        for key in ("proj:shape", "proj:transform", "proj:bbox"):
            item["assets"][band].pop(key, None)
    return out


def test_on_error_nodata_covers_headers_read_at_open_time(http, http_items):
    items = _without_proj(_sign(http_items[:3], bands=("B04",)), "B04")
    items[1]["assets"]["B04"]["href"] = http.url + "/nowhere/B04.tif" + SIGNED  # 404
    items[2]["assets"]["B04"]["href"] = http.url + "/corrupt/B04.tif" + SIGNED  # header fine, tiles cut off
    # on_error="nodata": one warning per unreadable asset, those bands are nodata, the others read
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cube = open_stac(items, assets=["B04"], bounds=SMALL, retries=1, on_error="nodata")
    messages = [str(w.message) for w in caught if issubclass(w.category, AssetReadWarning)]
    assert len(messages) == 1 and "nowhere/B04.tif?st=REDACTED" in messages[0] and "while opening" in messages[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = cube.values
    messages += [str(w.message) for w in caught if issubclass(w.category, AssetReadWarning)]
    assert any("corrupt/B04.tif?st=REDACTED" in m and "while reading" in m for m in messages), messages
    _assert_clean(messages, "a warning")
    assert cube.dtype == np.uint16 and cube.rio.transform() == Affine(10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1])
    assert (values[1:] == 0).all() and (values[0, 0, 16:, 16:] != 0).all()
    # on_error='raise' (the default): an error at open time that names the (redacted) href and the remedy
    with pytest.raises(AssetReadError, match=r"nowhere/B04\.tif\?st=REDACTED.*on_error='nodata'") as info:
        open_stac(items, assets=["B04"], bounds=SMALL, retries=1)
    _assert_clean(_chain_texts(info.value), "the open-time exception")


def test_bbox_outside_the_items_is_echoed_in_lon_lat():
    bbox = (10.0, 45.0, 10.1, 45.1)
    with pytest.raises(GridError, match="does not overlap") as info:
        open_stac(ITEMS_FILE, assets=["B04"], dtype="uint16", bbox=bbox)
    msg = str(info.value)
    lonlat = msg.index("(10.0, 45.0, 10.1, 45.1)")
    assert "lon/lat" in msg[:lonlat + 60]
    assert "(26.9" in msg and "-8.2" in msg  # the items' lon/lat extent (tile 35MNM)
    projected = msg.find("EPSG:32735")
    assert projected == -1 or projected > lonlat  # projected coordinates only as secondary information
    # projected numbers given as bbox= are recognised as such
    with pytest.raises(StacError, match=r"bbox=.*lon/lat.*bounds="):
        open_stac(ITEMS_FILE, assets=["B04"], dtype="uint16", bbox=(500000, 9100000, 501000, 9101000))


def _reference_index(grid_transform: Affine, shape, src_transform: Affine, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest source pixel (row * n + col + 1) of every output pixel centre, and where it is inside."""
    from pyproj import Transformer

    g, s = grid_transform, src_transform  # north-up grids
    cols, rows = np.meshgrid(np.arange(shape[1]) + 0.5, np.arange(shape[0]) + 0.5)
    sx, sy = Transformer.from_crs(32734, 32735, always_xy=True).transform(g.c + g.a * cols, g.f + g.e * rows)
    sc, sr = np.floor((sx - s.c) / s.a).astype(int), np.floor((sy - s.f) / s.e).astype(int)
    inside = (sc >= 0) & (sc < n) & (sr >= 0) & (sr < n)
    return np.where(inside, sr.clip(0, n - 1) * n + sc.clip(0, n - 1) + 1, 0), inside


def test_nearest_reprojection_to_the_next_utm_zone_takes_the_containing_source_pixel(tmp_path):
    """Published 35MNM grid (EPSG:32735, 10 m) to EPSG:32734: each output pixel holds its source pixel's index."""
    from pyproj import Transformer

    item = copy.deepcopy(published_items()[0])
    asset = item["assets"]["B04"]
    src_transform, n = Affine(*asset["proj:transform"][:6]), 1024
    path = tmp_path / "index.tif"
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="uint32", crs="EPSG:32735",
                       transform=src_transform, nodata=0, tiled=True, blockxsize=256, blockysize=256) as dst:
        dst.write((np.arange(n * n, dtype="uint32") + 1).reshape(n, n), 1)
    item["assets"] = {"B04": {**asset, "href": str(path)}}
    item["links"] = []
    to_lonlat = Transformer.from_crs(32735, 4326, always_xy=True)
    lon0, lat0 = to_lonlat.transform(src_transform.c + 1000, src_transform.f - (n - 100) * 10)
    lon1, lat1 = to_lonlat.transform(src_transform.c + (n - 100) * 10, src_transform.f - 1000)
    cube = open_stac([item], assets=["B04"], crs="EPSG:32734", resolution=10, bbox=(lon0, lat0, lon1, lat1), chunks=512)
    out = cube.values[0, 0]
    ref, inside = _reference_index(cube.rio.transform(), out.shape, src_transform, n)
    assert inside.mean() > 0.95
    miss = (out[inside] != ref[inside]).mean()
    assert miss < 0.0005, f"{miss:.4%} of the output pixels miss their nearest source pixel"
    try:
        import odc.stac
        import pystac
        from odc.geo.geobox import GeoBox
    except ImportError:  # odc-stac is the bench extra; the exact reference above is the test
        return
    geobox = GeoBox(out.shape, cube.rio.transform(), "EPSG:32734")
    odc_out = odc.stac.load([pystac.Item.from_dict(item)], bands=["B04"], geobox=geobox, resampling="nearest")
    odc_miss = (odc_out["B04"].values[0][inside] != ref[inside]).mean()
    assert miss <= odc_miss, f"eocube misses {miss:.4%}, odc-stac {odc_miss:.4%}"


def test_a_signed_search_url_stays_out_of_search_errors_and_logs(stac_api, caplog):
    from .services import free_port

    caplog.set_level(logging.DEBUG)
    with pytest.raises(StacError, match=r"cannot open the STAC API at .*token=REDACTED") as info:
        open_stac(url=f"http://127.0.0.1:{free_port()}/api?token={MARKER}", bbox=(27.0, -8.0, 27.1, -7.9))
    texts = _chain_texts(info.value)
    with pytest.raises(StacError, match=r"found no item") as info:
        open_stac(url=f"{stac_api.url}/?token={MARKER}", collections="sentinel-2-l2a", datetime="1999-01-01/1999-12-31")
    texts += _chain_texts(info.value)
    _assert_clean(texts, "a search error")
    _assert_clean([r.getMessage() for r in caplog.records], "a log record of the search")


def test_a_new_signature_keeps_the_loads_name_so_a_store_stays_resumable(http_items):
    """Signed-URL tokens change between runs (Planetary Computer: hourly); the dask name, which
    the Zarr writer's fingerprint takes as the computation, must not (issue 13, case 2)."""
    first = open_stac(_sign(http_items[:2]), assets=["B04"], dtype="uint16", nodata=0, bounds=SMALL)
    resigned = copy.deepcopy(http_items[:2])
    for item in resigned:
        item["assets"]["B04"]["href"] += SIGNED.replace(MARKER, "ANOTHERTOKEN456")
    second = open_stac(resigned, assets=["B04"], dtype="uint16", nodata=0, bounds=SMALL)
    assert first.data.name == second.data.name
    other_file = copy.deepcopy(resigned)
    other_file[0]["assets"]["B04"]["href"] = other_file[0]["assets"]["B04"]["href"].replace("B04", "B08")
    assert open_stac(other_file, assets=["B04"], dtype="uint16", nodata=0, bounds=SMALL).data.name != first.data.name


def test_only_signatures_and_credentials_leave_the_loads_name(http_items):
    """A query parameter that picks the data (an object version) keeps two loads apart, so a store
    is never reused for other data; rotated credentials in gdal_env keep the name."""
    def load(query: str, **gdal_env):
        items = copy.deepcopy(http_items[:2])
        for item in items:
            item["assets"]["B04"]["href"] += query
        return open_stac(items, assets=["B04"], dtype="uint16", nodata=0, bounds=SMALL, gdal_env=gdal_env).data.name

    v1 = load(f"?versionId=1&sig={MARKER}", AWS_SESSION_TOKEN="token-1", AWS_SECRET_ACCESS_KEY="secret-1")
    assert load("?versionId=1&sig=other", AWS_SESSION_TOKEN="token-2", AWS_SECRET_ACCESS_KEY="secret-2") == v1
    assert load(f"?versionId=2&sig={MARKER}", AWS_SESSION_TOKEN="token-1", AWS_SECRET_ACCESS_KEY="secret-1") != v1
    assert load(f"?versionId=1&sig={MARKER}", AWS_SESSION_TOKEN="token-1", AWS_SECRET_ACCESS_KEY="secret-1",
                AWS_S3_ENDPOINT="other.example") != v1  # another server: other data


def test_the_graphs_tasks_show_no_signature_nor_gdal_credentials(http, http_items, caplog, monkeypatch):
    """A distributed worker logs a failed task ("Compute Failed"; up to distributed 2024.11 with its
    arguments, read_block(Block(...))) into the job log: the tasks' reprs show neither a signed href's
    query values nor ``gdal_env`` values."""
    from distributed import Client

    from eocube.cluster.local import QuietEOCubeErrors

    # an eocube local cluster started earlier in this process leaves its filter of "Compute Failed"
    # records on the worker logger; without it the record this test reads is logged whatever ran before
    worker_logger = logging.getLogger("distributed.worker")
    monkeypatch.setattr(worker_logger, "filters", [f for f in worker_logger.filters
                                                   if not isinstance(f, QuietEOCubeErrors)])

    items = _sign(http_items[:2])
    items[1]["assets"]["B04"]["href"] = http.url + "/nowhere/B04.tif" + SIGNED  # 404: the task fails
    cube = open_stac(items, assets=["B04"], dtype="uint16", nodata=0, bounds=SMALL, retries=1,
                     gdal_env={"AWS_SESSION_TOKEN": MARKER})
    tasks = [repr(task) for task in dict(cube.data.__dask_graph__()).values()]
    assert any("B04.tif?st=REDACTED" in t for t in tasks)
    _assert_clean(tasks, "a task's repr")
    caplog.set_level(logging.WARNING)
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client, \
            pytest.raises(Exception, match=r"nowhere/B04\.tif\?st=REDACTED"):  # an AssetReadError's message
        client.compute(cube.data).result()
    assert any("Compute Failed" in r.getMessage() for r in caplog.records)
    _assert_clean([r.getMessage() for r in caplog.records], "the worker's log")
