"""Burning polygons onto a cube's grid: outside parts, priority, CRS, rules, nodata, laziness."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio.features
import shapely

from eocube.errors import EOCubeError
from eocube.labels import (
    ClassInfo,
    FieldError,
    LabelError,
    Polygons,
    burn_polygons,
    class_counts,
    classes_from_attrs,
)

CLASSES = (ClassInfo(1, "forest", "1A9641"), ClassInfo(2, "water", "2C7BB6"))


def polys(geoms, classes, crs="EPSG:32633"):
    return Polygons(np.asarray(geoms, dtype=object), {"fclass": np.asarray(classes, dtype=object)}, crs, "test")


def label_array(lab):
    return np.asarray(lab.values[0, 0])


def test_label_cube_follows_the_convention(h):
    like = h.grid()
    lab = burn_polygons(polys([h.box(2, 2, 6, 5)], ["forest"]), like, field="fclass", classes=CLASSES)
    assert lab.dims == ("time", "band", "y", "x") and lab.shape == (1, 1, 20, 30)
    assert list(lab.band.values) == ["label"] and lab.time.values[0] == like.time.values[0]
    assert lab.dtype == np.uint8 and lab.rio.nodata == 0
    assert lab.rio.crs == like.rio.crs and lab.rio.transform() == like.rio.transform()
    assert (lab.x.values == like.x.values).all() and (lab.y.values == like.y.values).all()
    assert classes_from_attrs(lab) == CLASSES


def test_polygon_partly_outside_is_burned_inside_only(h):
    like = h.grid()
    part = h.box(-5, -10, 5, 4)  # sticks out to the west and north: columns 0..4, rows 0..3 inside
    outside = h.box(40, 40, 50, 50)  # wholly outside the grid
    lab = burn_polygons(polys([part, outside], ["forest", "water"]), like, field="fclass", classes=CLASSES)
    a = label_array(lab)
    expected = np.zeros((20, 30), "uint8")
    expected[0:4, 0:5] = 1
    np.testing.assert_array_equal(a, expected)


@pytest.mark.parametrize("file_order", [("forest", "water"), ("water", "forest")])
def test_overlap_priority_by_class_both_orders(h, file_order):
    big, small = h.box(0, 0, 10, 10), h.box(5, 5, 15, 15)  # overlap: rows 5..9, columns 5..9
    shapes = {"forest": big, "water": small}
    p = polys([shapes[c] for c in file_order], list(file_order))
    overlap = (slice(5, 10), slice(5, 10))
    water_top = label_array(burn_polygons(p, h.grid(), field="fclass", classes=CLASSES,
                                          priority=["water", "forest"]))
    forest_top = label_array(burn_polygons(p, h.grid(), field="fclass", classes=CLASSES, priority=[1, 2]))
    assert (water_top[overlap] == 2).all() and (forest_top[overlap] == 1).all()
    # outside the overlap each polygon keeps its class whatever the priority
    for a in (water_top, forest_top):
        assert (a[0:5, 0:10] == 1).all() and (a[10:15, 5:15] == 2).all()
    # "file": the later feature wins
    later = label_array(burn_polygons(p, h.grid(), field="fclass", classes=CLASSES, priority="file"))
    assert (later[overlap] == (2 if file_order[-1] == "water" else 1)).all()


@pytest.mark.parametrize("file_order", [0, 1])
def test_default_priority_smaller_on_top(h, file_order):
    lake, forest = h.box(4, 4, 6, 6), h.box(0, 0, 12, 12)  # a lake inside a forest
    geoms, names = [forest, lake], ["forest", "water"]
    if file_order:
        geoms, names = geoms[::-1], names[::-1]
    a = label_array(burn_polygons(polys(geoms, names), h.grid(), field="fclass", classes=CLASSES))
    assert (a[4:6, 4:6] == 2).all() and (a[0:12, 0:12] == 1).sum() == 144 - 4


def test_unknown_priority_class_is_an_error(h):
    with pytest.raises(LabelError, match="'grass' is not a class"):
        burn_polygons(polys([h.box(0, 0, 2, 2)], ["forest"]), h.grid(), field="fclass", classes=CLASSES,
                      priority=["grass"])


def test_polygons_in_another_crs_give_the_same_pixels(h, tmp_path):
    # edges on pixel edges, 5 m from every pixel centre: far more than the reprojection error
    shapes = [h.box(1, 2, 9, 7), shapely.union(h.box(12, 3, 20, 6), h.box(12, 6, 15, 15)), h.box(22, 10, 29, 19)]
    names = ["forest", "water", "forest"]
    utm = burn_polygons(polys(shapes, names), h.grid(), field="fclass", classes=CLASSES)
    path = h.write_geojson(tmp_path / "lonlat.geojson", [h.to_lonlat(g) for g in shapes], {"fclass": names},
                           crs="EPSG:4326")
    lonlat = burn_polygons(path, h.grid(), field="fclass", classes=CLASSES)
    a = label_array(utm)
    assert (a == 1).sum() == 8 * 5 + 7 * 9 and (a == 2).sum() == 8 * 3 + 3 * 9
    np.testing.assert_array_equal(label_array(lonlat), a)


@pytest.mark.parametrize("fmt", ["geojson", "gpkg", "parquet"])
def test_file_formats(h, tmp_path, fmt):
    shapes, names = [h.box(1, 1, 4, 4), h.box(10, 10, 12, 19)], ["water", "forest"]
    writer = {"geojson": h.write_geojson, "gpkg": h.write_gpkg, "parquet": h.write_geoparquet}[fmt]
    path = writer(tmp_path / f"p.{fmt}", shapes, {"fclass": names, "id": [1, 2]})
    a = label_array(burn_polygons(path, h.grid(), field="fclass", classes=CLASSES))
    assert (a == 2).sum() == 9 and (a == 1).sum() == 18 and (a == 0).sum() == 600 - 27


def test_all_touched_vs_centre(h):
    # a square from 16 to 34 m: holds one pixel centre (25 m), touches three pixels along each axis
    p = polys([shapely.box(h.X0 + 16, h.Y0 - 34, h.X0 + 34, h.Y0 - 16)], ["forest"])
    centre = label_array(burn_polygons(p, h.grid(), field="fclass", classes=CLASSES))
    touched = burn_polygons(p, h.grid(), field="fclass", classes=CLASSES, all_touched=True)
    assert touched.attrs["labels_rule"] == "all_touched"
    t = label_array(touched)
    assert (centre == 1).sum() == 1 and centre[2, 2] == 1
    assert (t == 1).sum() == 9 and (t[1:4, 1:4] == 1).all()


def test_unlabelled_pixels_are_nodata(h):
    p = polys([h.box(0, 0, 3, 3)], ["water"])
    lab = burn_polygons(p, h.grid(), field="fclass", classes=CLASSES)
    assert lab.rio.nodata == 0 and (label_array(lab) == 0).sum() == 600 - 9
    assert class_counts(lab) == {"forest": 0, "water": 9, "unlabelled": 591}
    lab255 = burn_polygons(p, h.grid(), field="fclass", classes=CLASSES, nodata=255)
    assert lab255.rio.nodata == 255 and (label_array(lab255) == 255).sum() == 591
    # a class 0: nodata moves to 255
    with0 = burn_polygons(p, h.grid(), field="fclass", classes=[(0, "water"), (1, "forest")])
    assert with0.rio.nodata == 255 and (label_array(with0) == 0).sum() == 9
    with pytest.raises(LabelError, match="also the value of class 'water'"):
        burn_polygons(p, h.grid(), field="fclass", classes=CLASSES, nodata=2)


def test_mapping_merges_field_values_and_unmapped_values(h):
    shapes = [h.box(0, 0, 2, 2), h.box(5, 5, 7, 7), h.box(10, 10, 12, 12)]
    p = polys(shapes, ["meadow", "grass", "lake"])
    classes = [ClassInfo(4, "meadow", "#a6d96a")]
    with pytest.raises(FieldError, match=r"have fclass values with no class: \{'lake': 1\}.*unmapped='drop'"):
        burn_polygons(p, h.grid(), field="fclass", mapping={"meadow": "meadow", "grass": "meadow"}, classes=classes)
    lab = burn_polygons(p, h.grid(), field="fclass", mapping={"meadow": "meadow", "grass": 4}, classes=classes,
                        unmapped="drop")
    assert class_counts(lab) == {"meadow": 8, "unlabelled": 592}
    assert classes_from_attrs(lab)[0].color == "A6D96A"


def test_classes_made_from_the_field_or_the_mapping(h):
    p = polys([h.box(0, 0, 1, 1), h.box(2, 2, 3, 3), h.box(4, 4, 5, 5)], ["water", "forest", "water"])
    lab = burn_polygons(p, h.grid(), field="fclass")  # sorted names get 1, 2, ...
    assert [(c.value, c.name) for c in classes_from_attrs(lab)] == [(1, "forest"), (2, "water")]
    lab = burn_polygons(p, h.grid(), field="fclass", mapping={"water": "wet", "forest": "dry"})
    assert [(c.value, c.name) for c in classes_from_attrs(lab)] == [(1, "wet"), (2, "dry")]
    ints = Polygons(p.geometry, {"code": np.array([7, 3, 7])}, p.crs)
    lab = burn_polygons(ints, h.grid(), field="code")
    assert [c.value for c in classes_from_attrs(lab)] == [3, 7] and label_array(lab)[0, 0] == 7


def test_missing_field_names_the_fields(h, tmp_path):
    path = h.write_gpkg(tmp_path / "p.gpkg", [h.box(0, 0, 2, 2)], {"fclass": ["forest"], "osm_id": ["12"]})
    with pytest.raises(FieldError) as err:
        burn_polygons(path, h.grid(), field="landuse", classes=CLASSES)
    assert isinstance(err.value, ValueError) and isinstance(err.value, EOCubeError)
    assert "no field 'landuse'" in str(err.value) and "['fclass', 'osm_id']" in str(err.value)


def test_unreadable_files_are_clear_errors(h, tmp_path):
    from eocube.labels import VectorFileNotFoundError, VectorReadError

    with pytest.raises(VectorFileNotFoundError, match="does not exist") as err:
        burn_polygons(tmp_path / "nope.gpkg", h.grid(), field="fclass")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ValueError)
    junk = tmp_path / "junk.gpkg"
    junk.write_text("this is not a GeoPackage\n")
    with pytest.raises(VectorReadError, match="cannot read .*junk.gpkg.* as vector data"):
        burn_polygons(junk, h.grid(), field="fclass")
    plain = tmp_path / "plain.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}), plain)
    with pytest.raises(VectorReadError, match="not GeoParquet"):
        burn_polygons(plain, h.grid(), field="fclass")
    gpkg = h.write_gpkg(tmp_path / "p.gpkg", [h.box(0, 0, 2, 2)], {"fclass": ["forest"]})
    with pytest.raises(VectorReadError, match=r"layer 'roads'.*its layers: \['p'\]"):
        burn_polygons(gpkg, h.grid(), field="fclass", layer="roads")


def test_lines_are_refused(h):
    p = Polygons(np.array([shapely.LineString([(h.X0, h.Y0 - 5), (h.X0 + 50, h.Y0 - 5)])], dtype=object),
                 {"fclass": np.array(["water"], dtype=object)}, "EPSG:32633")
    with pytest.raises(LabelError, match=r"\['LineString'\] geometries.*buffer"):
        burn_polygons(p, h.grid(), field="fclass", classes=CLASSES)


def random_polygons(h, n=60, seed=1):
    rng = np.random.default_rng(seed)
    centres = rng.uniform([-5, -5], [35, 25], size=(n, 2))
    radii = rng.uniform(0.7, 6, n)
    geoms = [shapely.Point(h.X0 + c[0] * h.RES, h.Y0 - c[1] * h.RES).buffer(r * h.RES, quad_segs=3)
             for c, r in zip(centres, radii)]
    return polys(geoms, rng.choice(["forest", "water"], n).tolist())


@pytest.mark.parametrize("all_touched", [False, True])
def test_lazy_reads_nothing_and_chunks_equal_the_whole_grid(h, monkeypatch, all_touched):
    calls = []
    original = rasterio.features.rasterize

    def counting(*args, **kwargs):
        calls.append(kwargs["out_shape"])
        return original(*args, **kwargs)

    monkeypatch.setattr(rasterio.features, "rasterize", counting)
    p = random_polygons(h)
    lab = burn_polygons(p, h.grid(chunks=7), field="fclass", classes=CLASSES, all_touched=all_touched)
    assert calls == [] and lab.chunks[2] == (7, 7, 6) and lab.chunks[3] == (7, 7, 7, 7, 2)
    chunked = label_array(lab)
    assert 1 < len(calls) <= 3 * 5 and all(s[0] <= 7 and s[1] <= 7 for s in calls)
    # reference: one rasterisation of the whole grid, larger polygons first
    order = np.argsort(-shapely.area(p.geometry), kind="stable")
    values = [1 if v == "forest" else 2 for v in p.fields["fclass"]]
    whole = original([(p.geometry[i], values[i]) for i in order], out_shape=(20, 30),
                     transform=h.grid().rio.transform(), all_touched=all_touched, fill=0, dtype="uint8")
    np.testing.assert_array_equal(chunked, whole)
    assert 0 < (whole == 1).sum() and 0 < (whole == 2).sum() and 0 < (whole == 0).sum()


def test_graph_name_is_deterministic(h):
    p = random_polygons(h)
    a = burn_polygons(p, h.grid(chunks=8), field="fclass", classes=CLASSES)
    b = burn_polygons(random_polygons(h), h.grid(chunks=8), field="fclass", classes=CLASSES)
    c = burn_polygons(p, h.grid(chunks=8), field="fclass", classes=CLASSES, all_touched=True)
    assert a.data.name == b.data.name != c.data.name


def test_attributes_round_trip_through_zarr(h, tmp_path):
    import eocube

    lab = burn_polygons(random_polygons(h), h.grid(chunks=8), field="fclass", classes=CLASSES, nodata=255)
    eocube.to_zarr(lab, tmp_path / "labels.zarr", progress=False)
    back = eocube.open_zarr(tmp_path / "labels.zarr")
    assert classes_from_attrs(back) == CLASSES
    assert back.rio.nodata == 255 and back.dtype == np.uint8 and list(back.band.values) == ["label"]
    assert back.attrs["labels_rule"] == "centre" and back.rio.crs == lab.rio.crs
    np.testing.assert_array_equal(back.values, lab.values)
