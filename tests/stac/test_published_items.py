"""open_stac on published items that bent the loader (issue 13, cases 10 to 13).

The items are published documents (``data/published/``, ``data/``; see ``data/PROVENANCE.md``);
their hrefs point to small local COGs written on the items' own grids. Grids are compared to
the projection extension (``proj:transform``, ``proj:shape``), pixels to the files' pixels.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from eocube.stac import open_stac

from .conftest import DATA, N_ITEMS, pattern, published_items, read_log, write_cog

LANDSAT_FILE = DATA / "published" / "LC08_L2SR_081119_20200101_20200823_02_T2.json"
ORIGIN = (499980.0, 9200020.0)  # upper-left corner of tile 35MNM's 10 m grid (the published proj:transform)


def _bounds(cols: int, rows: int, res: float = 10.0) -> tuple[float, float, float, float]:
    """Bounds of the first ``rows`` x ``cols`` pixels of the 35MNM grid."""
    return (ORIGIN[0], ORIGIN[1] - rows * res, ORIGIN[0] + cols * res, ORIGIN[1])


def _landsat(tmp_path: Path, keys: tuple[str, ...]) -> tuple[dict, dict[str, np.ndarray]]:
    """The published Landsat item (EPSG:3031, 1164.15 x 1150.65 m pixels) with ``keys`` on local COGs.

    The COGs have the item's own ``proj:transform`` and ``proj:shape`` (200 x 200).
    """
    item = json.loads(LANDSAT_FILE.read_text())
    data = {}
    for i, key in enumerate(keys):
        asset = item["assets"][key]
        pixels = np.random.default_rng([10, i]).integers(1, 10000, size=tuple(asset["proj:shape"])).astype("uint16")
        path = tmp_path / key
        write_cog(path, pixels, "EPSG:3031", Affine(*asset["proj:transform"][:6]))
        asset["href"] = str(path)
        data[key] = pixels
    return item, data


# ---------------------------------------------------------------- case 10: non-square native pixels


def test_non_square_native_pixels_keep_the_items_grid(tmp_path):
    keys = ("SR_B4.TIF", "SR_B5.TIF")
    item, data = _landsat(tmp_path, keys)
    asset = item["assets"]["SR_B4.TIF"]
    cube = open_stac([item], assets=list(keys))
    assert cube.rio.crs.to_epsg() == item["properties"]["proj:epsg"]
    assert cube.rio.transform() == Affine(*asset["proj:transform"][:6])
    assert cube.shape == (1, 2, *asset["proj:shape"])
    assert cube.dtype == np.uint16
    values = cube.compute().values
    for b, key in enumerate(keys):
        np.testing.assert_array_equal(values[0, b], data[key])
    # resolution as an (x, y) pair gives the same grid; one number gives square pixels
    pair = open_stac([item], assets=list(keys), resolution=(1164.15, 1150.6499999999999))
    assert pair.rio.transform() == cube.rio.transform() and pair.shape == cube.shape
    square = open_stac([item], assets=list(keys), resolution=1000)
    assert square.rio.resolution() == (1000.0, -1000.0)


# ---------------------------------------------------------------- case 11: eo:bands as indices (pre-1.0)


def test_pre_1_0_eo_band_indices_resolve_to_common_names(tmp_path):
    item, data = _landsat(tmp_path, ("SR_B4.TIF", "SR_B5.TIF"))
    cube = open_stac([item], assets=["red", "nir08"])
    assert list(cube.band.values) == ["red", "nir08"]
    values = cube.compute().values
    np.testing.assert_array_equal(values[0, 0], data["SR_B4.TIF"])
    np.testing.assert_array_equal(values[0, 1], data["SR_B5.TIF"])
    # by default every single-band raster asset is a band (no header read: dtype given)
    every = open_stac([item], dtype="uint16")
    assert list(every.band.values)[:7] == [f"SR_B{i}.TIF" for i in range(1, 8)]


# ---------------------------------------------------------------- case 12: items without raster:bands/proj:*


def _fresh(items: list[dict], tag: str, bands=("B04", "B08")) -> list[dict]:
    """Copies with new URLs for ``bands`` (same files): nothing cached by GDAL or the loader."""
    out = copy.deepcopy(items)
    for item in out:
        for band in bands:
            item["assets"][band]["href"] += f"?test={tag}"
    return out


def _without_proj(items: list[dict], keep: tuple[str, ...] = ()) -> list[dict]:
    """Copies without the projection extension's fields, except those in ``keep``."""
    out = copy.deepcopy(items)
    for item in out:
        for meta in (item["properties"], *item["assets"].values()):
            for key in [k for k in meta if k.startswith("proj:") and k not in keep]:
                del meta[key]
    return out


class _OpenCounter:
    """Counts ``rasterio.open`` calls (one per header read) and how many ran at once."""

    def __init__(self, monkeypatch, delay: float = 0.0):
        self.calls = 0
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()
        self._real = rasterio.open
        self._delay = delay
        monkeypatch.setattr(rasterio, "open", self)

    def __call__(self, *args, **kwargs):
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self._delay)
            return self._real(*args, **kwargs)
        finally:
            with self._lock:
                self.running -= 1


def test_proj_bbox_and_shape_give_the_grid_without_reading_a_header(http, http_items, monkeypatch):
    items = _without_proj(_fresh(http_items, "bbox"), keep=("proj:epsg", "proj:bbox", "proj:shape"))
    asset = http_items[0]["assets"]["B04"]
    opens = _OpenCounter(monkeypatch)
    before = len(read_log(http.log))
    cube = open_stac(items, assets=["B04", "B08"], dtype="uint16")
    assert opens.calls == 0 and len(read_log(http.log)) == before, "building the cube read headers"
    assert cube.rio.transform() == Affine(*asset["proj:transform"][:6])
    assert cube.shape[2:] == tuple(asset["proj:shape"])


def test_items_without_proj_use_their_geometry_with_crs_and_resolution(http, http_items, monkeypatch):
    items = _without_proj(_fresh(http_items, "geometry"))
    opens = _OpenCounter(monkeypatch)
    before = len(read_log(http.log))
    cube = open_stac(items, assets=["B04", "B08"], crs="EPSG:32735", resolution=10, dtype="uint16",
                     bounds=_bounds(64, 48))
    assert opens.calls == 0 and len(read_log(http.log)) == before, "building the cube read headers"
    assert cube.rio.transform() == Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]) and cube.shape[2:] == (48, 64)
    whole = open_stac(items, assets=["B04"], crs="EPSG:32735", resolution=10, dtype="uint16")
    assert whole.rio.transform().a == 10 and whole.sizes["x"] > 10000  # the items' footprint, from geometry
    assert opens.calls == 0
    values = cube.compute().values
    for t in range(N_ITEMS):
        np.testing.assert_array_equal(values[t, 1], pattern(t, 1, (512, 512))[:48, :64])


def test_headers_that_must_be_read_are_read_in_parallel_once_per_asset(http_items, monkeypatch):
    items = _without_proj(_fresh(http_items, "parallel"))  # no crs, no grid in the items: headers are needed
    opens = _OpenCounter(monkeypatch, delay=0.2)
    cube = open_stac(items, assets=["B04", "B08"], dtype="uint16")
    assert opens.calls == 2 * N_ITEMS, f"{opens.calls} header reads for {2 * N_ITEMS} assets"
    assert 1 < opens.most <= 8, f"{opens.most} header reads ran at once"
    # the grid is the files' own (512 x 512 windows at the published origin)
    published = Affine(*http_items[0]["assets"]["B04"]["proj:transform"][:6])
    assert cube.rio.transform() == published and cube.shape[2:] == (512, 512)


@pytest.mark.parametrize("nodata", [None, 0])
def test_nodata_does_not_depend_on_dtype(http_items, nodata):
    items = _fresh(http_items[:2], "nodata", bands=("B04",))  # no raster:bands: the dtype comes from a header
    bounds = _bounds(32, 32)
    native = open_stac(items, assets=["B04"], bounds=bounds, nodata=nodata)
    asked = open_stac(items, assets=["B04"], bounds=bounds, nodata=nodata, dtype="uint16")
    assert native.dtype == asked.dtype == np.uint16
    assert native.rio.nodata == asked.rio.nodata and native.rio.nodata == nodata
    np.testing.assert_array_equal(native.values, asked.values)


def test_an_unknown_nodata_is_said_never_defaulted_silently(http_items):
    """Without nodata in the metadata or nodata=, the 0s of digital numbers would pass as data: warn."""
    from eocube.stac import NodataWarning

    items = _fresh(http_items[:2], "unknown-nodata", bands=("B04",))
    with pytest.warns(NodataWarning, match=r"no nodata for \['B04'\].*Pass nodata= \(e.g. nodata=0"):
        cube = open_stac(items, assets=["B04"], bounds=_bounds(32, 32), dtype="uint16")
    assert cube.rio.nodata is None
    # a float output does not help: NaN marks only uncovered pixels, the files' 0s are still read as data
    with pytest.warns(NodataWarning, match=r"no nodata for \['B04'\]"):
        open_stac(items, assets=["B04"], bounds=_bounds(32, 32), dtype="float32")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", NodataWarning)
        assert open_stac(items, assets=["B04"], bounds=_bounds(32, 32), nodata=0).rio.nodata == 0


# ---------------------------------------------------------------- case 13: multi-band assets


def _visual(tmp_path: Path) -> tuple[dict, np.ndarray]:
    """The first published 35MNM item with its 3-band ``visual`` asset on a local 3-band COG."""
    item = copy.deepcopy(published_items()[0])
    asset = item["assets"]["visual"]
    data = np.random.default_rng(13).integers(1, 256, size=(3, 48, 64)).astype("uint8")
    path = tmp_path / "visual.tif"
    with rasterio.open(path, "w", driver="COG", width=64, height=48, count=3, dtype="uint8", nodata=0,
                       crs="EPSG:32735", transform=Affine(*asset["proj:transform"][:6])) as dst:
        dst.write(data)
    asset["href"] = str(path)
    return item, data


def test_multi_band_assets_expose_each_band_from_its_own_index(tmp_path):
    item, data = _visual(tmp_path)
    assert len(item["assets"]["visual"]["eo:bands"]) == 3
    cube = open_stac([item], assets=["visual"], bounds=_bounds(64, 48))
    assert list(cube.band.values) == ["visual_1", "visual_2", "visual_3"]
    assert cube.dtype == np.uint8
    values = cube.compute().values
    for b in range(3):
        np.testing.assert_array_equal(values[0, b], data[b])
    second = open_stac([item], assets=["visual_2"], bounds=_bounds(64, 48)).compute()
    np.testing.assert_array_equal(second.values[0, 0], data[1])


def test_a_multi_band_assets_bands_are_found_by_their_eo_names(tmp_path):
    item, data = _visual(tmp_path)
    item["assets"] = {"visual": item["assets"]["visual"]}  # no single-band asset claims red or blue
    cube = open_stac([item], assets=["red", "blue"], bounds=_bounds(64, 48)).compute()
    assert list(cube.band.values) == ["red", "blue"]
    np.testing.assert_array_equal(cube.values[0, 0], data[0])  # eo:bands[0] is B04, red
    np.testing.assert_array_equal(cube.values[0, 1], data[2])  # eo:bands[2] is B02, blue
