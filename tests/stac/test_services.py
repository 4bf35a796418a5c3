"""open_stac against real local services: a STAC API (rustac), HTTP range requests (nginx), S3 (moto)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from affine import Affine

from eocube.stac import AssetReadError, AssetReadWarning, EmptySearchError, open_stac

from .conftest import BANDS, BUCKET, N_ITEMS, pattern, published_items, read_log, rewrite, write_cog

pytestmark = pytest.mark.services
ORIGIN = (499980.0, 9200020.0)


def _bounds(col0, row0, col1, row1, res=10.0):
    """Target-CRS bounds of a pixel window of the 10 m grid."""
    x0, y0 = ORIGIN
    return (x0 + col0 * res, y0 - row1 * res, x0 + col1 * res, y0 - row0 * res)


def test_stac_api_search_gives_a_lazy_exact_cube(stac_api, http):
    before = len(read_log(http.log))
    cube = open_stac(url=stac_api.url, collections="sentinel-2-l2a", datetime="2020-06-01/2020-06-30",
                     max_items=10, assets=["B04", "B08", "SCL"])
    assert len(read_log(http.log)) == before, "opening must not touch the COG server"
    items = published_items()[:N_ITEMS]
    asset = items[0]["assets"]["B04"]
    assert cube.sizes["time"] == N_ITEMS and list(cube.band.values) == list(BANDS)
    assert cube.rio.transform() == Affine(*asset["proj:transform"][:6])
    assert cube.shape[2:] == tuple(asset["proj:shape"])
    # dtypes from the collection's raster:bands (uint16 bands, uint8 SCL): the cube takes the common type
    assert cube.dtype == np.uint16 and cube.rio.nodata == 0
    assert list(cube.item_ids.values) == [it["id"] for it in items]
    # the pixels are the files' pixels, at the same place
    window = cube.isel(y=slice(100, 300), x=slice(200, 450)).compute()
    for t in range(N_ITEMS):
        for b in (0, 1):
            np.testing.assert_array_equal(window[t, b].values, pattern(t, b, (512, 512))[100:300, 200:450])
        scl = np.repeat(np.repeat(pattern(t, 2, (256, 256)), 2, 0), 2, 1)  # 20 m -> 10 m, nearest
        np.testing.assert_array_equal(window[t, 2].values, scl[100:300, 200:450])
    # beyond the COG window there is no data: nodata
    assert int(cube[0, 0, 600, 600].compute()) == 0


def test_empty_search_shows_the_query(stac_api):
    with pytest.raises(EmptySearchError, match=r"found no item.*datetime='1999-01-01/1999-12-31'"):
        open_stac(url=stac_api.url, collections="sentinel-2-l2a", datetime="1999-01-01/1999-12-31", assets=["B04"])


def test_band_and_bbox_subset_reads_only_those_windows(http, http_items, cog_dir):
    fresh = copy.deepcopy(http_items)  # new URLs (same files): nothing cached by GDAL or the loader
    for item in fresh:
        for band in BANDS:
            item["assets"][band]["href"] += "?test=subset"
    cube = open_stac(fresh, assets=["B04", "B08", "SCL"], dtype="uint16", nodata=0,
                     bounds=_bounds(20, 20, 120, 120))
    assert cube.shape[2:] == (100, 100)
    before = len(read_log(http.log))
    sub = cube.sel(band="B08").isel(time=[0, 1]).compute()
    log = read_log(http.log)[before:]
    assert sub.shape == (2, 100, 100) and (sub.values > 0).any()
    touched = {uri for _, uri, *_ in log}
    expected = {f"/{it['id']}/B08.tif" for it in http_items[:2]}
    assert touched == expected, f"reads went to {touched}"
    gets = [entry for entry in log if entry[0] == "GET"]
    assert gets and all(status == 206 for _, _, status, _, _ in gets), f"every read is a range request: {log}"
    for uri in expected:
        sent = sum(n for _, u, _, _, n in log if u == uri)
        size = (cog_dir / uri.lstrip("/")).stat().st_size
        assert sent < size / 2, f"{uri}: {sent} of {size} bytes read for a 100 x 100 window"


def test_s3_hrefs_through_moto(s3, http_items):
    svc, env = s3
    items = rewrite(published_items()[:2], f"s3://{BUCKET}", bands=("B04",))
    cube = open_stac(items, assets=["B04"], gdal_env=env, bounds=_bounds(0, 0, 64, 48))
    assert cube.dtype == np.uint16  # read from the header (the items have no raster:bands)
    np.testing.assert_array_equal(cube[1, 0].values, pattern(1, 0, (512, 512))[:48, :64])


def test_solar_day_groups_tiles_and_fills_from_the_next(http, http_items, cog_dir):
    first = http_items[0]
    other = copy.deepcopy(first)  # a second acquisition of the same solar day, without the nodata hole
    other["id"] = first["id"] + "-neighbour"
    other["properties"]["datetime"] = first["properties"]["datetime"].replace("08:06:11", "08:06:40")
    other["assets"]["B04"]["href"] = f"{http.url}/neighbour/B04.tif"
    write_cog(cog_dir / "neighbour" / "B04.tif", np.full((64, 64), 7, dtype="uint16"),
              "EPSG:32735", Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]))
    cube = open_stac([other, first], assets=["B04"], bounds=_bounds(0, 0, 32, 32), chunks={"y": 16, "x": 16})
    assert cube.sizes["time"] == 1 and cube.item_ids.values[0] == f"{first['id']},{other['id']}"
    got = cube[0, 0].values
    expected = pattern(0, 0, (512, 512))[:32, :32].copy()
    expected[:16, :16] = 7  # the first item's nodata hole is filled by the next item of the day
    np.testing.assert_array_equal(got, expected)
    ungrouped = open_stac([first, other], assets=["B04"], groupby="time", bounds=_bounds(0, 0, 32, 32))
    assert ungrouped.sizes["time"] == 2


def test_dtype_rescale_and_reprojection(http_items):
    items = copy.deepcopy(http_items[:1])
    items[0]["assets"]["B04"]["raster:bands"] = [{"data_type": "uint16", "nodata": 0, "scale": 0.0001, "offset": -0.1}]
    bounds = _bounds(0, 0, 40, 40)
    raw = open_stac(items, assets=["B04"], bounds=bounds).compute()
    scaled = open_stac(items, assets=["B04"], bounds=bounds, rescale=True).compute()
    assert raw.dtype == np.uint16 and scaled.dtype == np.float32
    valid = raw.values != 0
    np.testing.assert_allclose(scaled.values[valid], raw.values[valid] * 0.0001 - 0.1, rtol=1e-6, atol=1e-6)
    assert np.isnan(scaled.values[~valid]).all()
    as_float = open_stac(items, assets=["B04"], bounds=bounds, dtype="float32").compute()
    assert np.isnan(as_float.values[~valid]).all() and (as_float.values[valid] == raw.values[valid]).all()
    # another UTM zone: resampled on the fly, values stay within the source's values
    warped = open_stac(items, assets=["B04"], crs="EPSG:32734", resolution=20,
                       bbox=(27.005, -7.27, 27.04, -7.24)).compute()
    assert warped.rio.crs.to_epsg() == 32734
    vals = warped.values[warped.values != 0]
    assert vals.size > 0.9 * warped.size and np.isin(vals, pattern(0, 0, (512, 512))).all()


def test_unreachable_and_corrupt_assets_name_the_href(http, http_items):
    missing = rewrite(http_items[:1], http.url + "/nowhere", bands=("B04",))
    cube = open_stac(missing, assets=["B04"], dtype="uint16", bounds=_bounds(0, 0, 32, 32), retries=2)
    with pytest.raises(AssetReadError, match=r"nowhere/.*B04\.tif.*unreachable or missing"):
        cube.compute()
    corrupt = copy.deepcopy(http_items[:1])
    corrupt[0]["assets"]["B04"]["href"] = http.url + "/corrupt/B04.tif"
    cube = open_stac(corrupt, assets=["B04"], dtype="uint16", nodata=0, bounds=_bounds(0, 0, 512, 512), retries=2)
    with pytest.raises(AssetReadError, match=r"corrupt/B04\.tif"):
        cube.compute()
    lenient = open_stac(corrupt, assets=["B04"], dtype="uint16", nodata=0, bounds=_bounds(0, 0, 512, 512),
                        retries=2, on_error="nodata")
    with pytest.warns(AssetReadWarning, match=r"corrupt/B04\.tif"):
        values = lenient.compute().values
    assert (values == 0).all()
