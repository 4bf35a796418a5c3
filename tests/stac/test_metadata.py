"""open_stac on published item metadata: grid, times, bands and input errors (no pixel read)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pystac
import pytest
from affine import Affine

from eocube.stac import AssetError, EmptySearchError, GridError, MixedCRSError, StacError, open_stac

from .conftest import DATA, ITEMS_FILE, published_items


def test_published_items_give_their_exact_grid_times_and_bands():
    items = published_items()
    cube = open_stac(ITEMS_FILE, assets=["B04", "B08"], dtype="uint16")
    asset = items[0]["assets"]["B04"]
    assert cube.rio.crs.to_epsg() == items[0]["properties"]["proj:epsg"]
    assert cube.rio.transform() == Affine(*asset["proj:transform"][:6])
    assert cube.shape == (len(items), 2, *asset["proj:shape"])
    expected_times = pd.to_datetime([it["properties"]["datetime"] for it in items]).tz_localize(None)
    assert list(cube.time.values) == list(expected_times.values)
    assert list(cube.band.values) == ["B04", "B08"]
    assert cube.dtype == np.uint16  # kept, not upcast
    # pixel centres: the first x is half a pixel right of the left edge
    assert cube.x.values[0] == asset["proj:transform"][2] + 5.0
    assert cube.y.values[0] == asset["proj:transform"][5] - 5.0
    assert list(cube.item_ids.values) == [it["id"] for it in items]
    assert set(cube.tile.values) == {"35MNM"}


def test_inputs_itemcollection_dicts_and_file_agree():
    items = published_items()
    from_file = open_stac(ITEMS_FILE, assets=["red"], dtype="uint16")
    from_dicts = open_stac(items, assets=["red"], dtype="uint16")
    from_pystac = open_stac(pystac.ItemCollection([pystac.Item.from_dict(it) for it in items]), assets=["red"], dtype="uint16")
    for other in (from_dicts, from_pystac):
        assert other.shape == from_file.shape
        assert other.rio.transform() == from_file.rio.transform()
        assert (other.time.values == from_file.time.values).all()


def test_common_names_resolve_to_assets_and_name_the_bands():
    cube = open_stac(ITEMS_FILE, assets=["red", "nir", "swir16"], dtype="uint16")
    assert list(cube.band.values) == ["red", "nir", "swir16"]
    # swir16 is a 20 m asset: the output takes the finest resolution (10 m)
    assert cube.rio.resolution() == (10.0, -10.0)
    with pytest.raises(AssetError, match="rededge.*several assets"):
        open_stac(ITEMS_FILE, assets=["rededge"], dtype="uint16")


def test_resolution_and_bounds_snap_to_the_item_grid():
    cube = open_stac(ITEMS_FILE, assets=["B04"], dtype="uint16", resolution=60, bounds=(500005, 9100000, 501000, 9101000))
    t = cube.rio.transform()
    assert (t.a, t.e) == (60.0, -60.0)
    assert (t.c - 499980) % 60 == 0 and (9200020 - t.f) % 60 == 0
    assert t.c <= 500005 and t.f >= 9101000


def test_missing_asset_names_the_items_and_the_remedy():
    items = published_items()[:3]
    broken = copy.deepcopy(items)
    del broken[1]["assets"]["B08"]
    with pytest.raises(AssetError, match=r"'B08' missing from 1 of 3 items.*on_missing='nodata'"):
        open_stac(broken, assets=["B04", "B08"], dtype="uint16")
    cube = open_stac(broken, assets=["B04", "B08"], dtype="uint16", on_missing="nodata")
    assert cube.sizes["band"] == 2
    with pytest.raises(AssetError, match="found in none"):
        open_stac(items, assets=["B99"], dtype="uint16")


def test_mixed_crs_is_an_error_unless_a_target_crs_is_given():
    s2_28q = json.loads((DATA / "S2A_28QCH_20200714_0_L2A.json").read_text())
    items = published_items()[:2] + [s2_28q]
    with pytest.raises(MixedCRSError, match=r"EPSG:32735 \(4 assets\).*crs='EPSG:32735'"):
        open_stac(items, assets=["B04", "B08"], dtype="uint16")
    cube = open_stac(items, assets=["B04"], dtype="uint16", crs="EPSG:4326", resolution=0.01)
    assert cube.rio.crs.to_epsg() == 4326
    assert cube.sizes["time"] == 3


def test_bbox_outside_the_items_and_empty_inputs_are_clear_errors():
    with pytest.raises(GridError, match="does not overlap the items"):
        open_stac(ITEMS_FILE, assets=["B04"], dtype="uint16", bounds=(0, 0, 1000, 1000))
    with pytest.raises(GridError, match="does not overlap"):
        open_stac(ITEMS_FILE, assets=["B04"], dtype="uint16", bbox=(10.0, 45.0, 10.1, 45.1))
    with pytest.raises(EmptySearchError):
        open_stac([], assets=["B04"])
    with pytest.raises(StacError, match="nothing to open"):
        open_stac()


def test_opening_is_lazy_and_the_graph_is_deterministic():
    a = open_stac(ITEMS_FILE, assets=["B04"], dtype="uint16", chunks={"y": 2048, "x": 2048})
    b = open_stac(ITEMS_FILE, assets=["B04"], dtype="uint16", chunks={"y": 2048, "x": 2048})
    assert a.data.name == b.data.name
    assert a.chunks[2][0] == 2048 and a.data.npartitions == 13 * 6 * 6


def test_a_file_wider_than_its_metadata_dtype_is_refused_not_wrapped(tmp_path):
    """Metadata says uint8, the file holds uint16 values above 255: an error, never wrapped values."""
    import numpy as np
    import pytest
    import rasterio
    from affine import Affine

    from eocube.stac import StacError, open_stac

    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)
    path = tmp_path / "b.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint16",
                       crs="EPSG:32635", transform=transform, nodata=0) as dst:
        dst.write(np.full((1, 8, 8), 1000, dtype="uint16"))
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": "wide", "collection": "test",
        "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
        "geometry": {"type": "Polygon", "coordinates": [[[27.0, -54.0], [27.1, -54.0], [27.1, -53.9],
                                                          [27.0, -53.9], [27.0, -54.0]]]},
        "bbox": [27.0, -54.0, 27.1, -53.9],
        "properties": {"datetime": "2020-06-01T08:00:00Z", "proj:epsg": 32635},
        "links": [],
        "assets": {"B": {"href": str(path), "type": "image/tiff; application=geotiff",
                         "proj:shape": [8, 8], "proj:transform": list(transform)[:6],
                         "raster:bands": [{"data_type": "uint8", "nodata": 0}], "roles": ["data"]}},
    }
    cube = open_stac([item], assets=["B"])
    assert cube.dtype == np.uint8  # as the metadata says
    with pytest.raises(StacError, match="holds uint16 pixels but its STAC metadata.*says uint8.*wrap"):
        cube.compute()
