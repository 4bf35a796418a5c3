"""Issue 21 item 9: hostile and surprising inputs on every public entry point.

Each case below was found by the audit (``/work/notes-helpers/audit-table.md``): before the fix it
gave a silent wrong result, a traceback or a misleading message; now it gives the right result or
one clear error. Grouped by entry point: the cube convention (``make_cube``, ``validate_cube``,
what every entry point checks first), ``to_zarr`` / ``open_zarr``, ``apply_model``,
``fill_gaps``, ``open_stac``, ``burn_polygons``, the bundled samples.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from affine import Affine

import eocube
from eocube.cube import make_cube, validate_cube
from eocube.errors import CubeError

STAC_ITEMS = Path(__file__).resolve().parents[1] / "stac" / "data" / "site2-2020_jun_jul-35MNM.geojson"


def small(t: int = 3, b: int = 2, h: int = 4, w: int = 6, *, dtype: str = "float32", **kwargs) -> xr.DataArray:
    """A random cube on a 10 m UTM grid, north up."""
    data = np.random.default_rng(0).random((t, b, h, w)).astype(dtype)
    coords = {"time": pd.date_range("2020-01-01", periods=t, freq="10D"), "band": [f"b{i}" for i in range(b)],
              "y": 5000000 - 10 * np.arange(h) - 5.0, "x": 400005 + 10 * np.arange(w, dtype=float), "crs": "EPSG:32633"}
    return make_cube(data, **{**coords, **kwargs})


# ----------------------------------------------------------------------------- the cube convention


STALE = {
    "every second column": lambda c: c.isel(x=slice(None, None, 2)),
    "x reversed": lambda c: c.isel(x=slice(None, None, -1)),
    "y sorted ascending": lambda c: c.sortby("y"),
    "transform of another grid": lambda c: c.rio.write_transform(Affine(20, 0, 400000, 0, -20, 5000000)),
}


@pytest.mark.parametrize("case", sorted(STALE))
def test_a_transform_that_disagrees_with_the_coordinates_is_refused(case, tmp_path):
    """rioxarray keeps the old GeoTransform after a subset with a step, a reversal or a sortby: the store
    was written with it (GDAL then read another grid) and burn_polygons / apply_model used it."""
    cube = STALE[case](small())
    with pytest.raises(CubeError, match=r"disagrees with its transform.*rio\.transform\(recalc=True\)"):
        eocube.to_zarr(cube, tmp_path / "x.zarr", progress=False)
    assert not (tmp_path / "x.zarr").exists()
    repaired = cube.rio.write_transform(cube.rio.transform(recalc=True))  # the remedy the message gives
    assert validate_cube(repaired) is repaired


def test_open_zarr_refuses_a_plain_store_whose_coordinates_were_sorted(tmp_path):
    """A store written by xarray after sortby('y') keeps the north-up GeoTransform: `eocube apply` on it
    wrote an output shifted by the cube's height (1 km on the bundled sample)."""
    ds = small().sortby("y").to_dataset(name="cube")
    ds.to_zarr(tmp_path / "plain.zarr", zarr_format=2)
    with pytest.raises(CubeError, match=r"plain\.zarr:cube's y coordinate .* disagrees with its transform"):
        eocube.open_zarr(tmp_path / "plain.zarr")


@pytest.mark.parametrize("x, message", [
    ([5.0, 5, 5, 5, 5, 5], r"x coordinate is not strictly increasing or decreasing \(steps 0\.\.0\)"),
    ([5.0, 5.0], r"not strictly increasing or decreasing"),
    ([1.0, 2, np.nan, 4, 5, 6], r"x coordinate has 1 non-finite value\(s\) \(NaN or inf, first at index 2\)"),
    ([1.0, 2, 3, 4, 5, np.inf], r"x coordinate has 1 non-finite value"),
])
def test_coordinates_that_make_no_grid_are_refused(x, message):
    """A constant coordinate passed (a grid of pixel size 0); NaN/inf said 'not regularly spaced (steps nan..nan)'."""
    with pytest.raises(CubeError, match=message):
        small(w=len(x), x=np.asarray(x))


def test_dates_with_a_time_zone_are_converted_to_utc():
    """make_cube dropped the offset: 12:00+02:00 became 12:00 (it is 10:00 UTC); mixed offsets raised pandas' error."""
    cube = small(t=2, time=["2020-06-01T12:00+02:00", "2020-06-01T11:00+00:00"])
    assert list(cube["time"].values) == [np.datetime64("2020-06-01T10:00"), np.datetime64("2020-06-01T11:00")]


def test_a_time_zone_aware_time_coordinate_is_named_with_its_remedy():
    cube = small().assign_coords(time=pd.date_range("2020-01-01", periods=3, tz="Europe/Berlin"))
    with pytest.raises(CubeError, match=r"dates carry a time zone.*tz_convert\(None\)"):
        validate_cube(cube)
    fixed = cube.assign_coords(time=cube.indexes["time"].tz_convert(None))
    assert str(fixed["time"].values[0]) == "2019-12-31T23:00:00.000000000"


def test_an_empty_selection_is_refused_with_the_slice_order():
    """A north-up cube's .sel(y=slice(bottom, top)) is empty; burn_polygons then raised rioxarray's NoDataInBounds."""
    cube = small()
    empty = cube.sel(y=slice(4999950.0, 5000000.0))
    assert empty.sizes["y"] == 0
    with pytest.raises(CubeError, match=r"no pixels along y .*slice\(top, bottom\)"):
        eocube.to_zarr(empty, "unused.zarr", progress=False)


def test_latitudes_beyond_90_in_a_geographic_crs_are_refused():
    with pytest.raises(CubeError, match=r"geographic CRS EPSG:4326.*beyond the latitudes' \+-90.*swapped"):
        small(h=2, w=2, y=np.array([120.5, 119.5]), x=np.array([45.5, 46.5]), crs="EPSG:4326")


def test_metadata_that_disagrees_with_itself_is_refused():
    cube = small()
    cube.attrs["crs"] = "EPSG:4326"
    with pytest.raises(CubeError, match=r"attrs\['crs'\] \(EPSG:4326\) disagrees with its spatial_ref"):
        validate_cube(cube)
    cube = small()
    cube.attrs.update({"_FillValue": -9999.0, "nodata": 0})
    with pytest.raises(CubeError, match=r"different nodata values \(_FillValue=-9999\.0, nodata=0\)"):
        validate_cube(cube)


def test_a_nodata_value_the_dtype_cannot_hold_is_one_clear_error():
    """A bool copy of a float cube keeps nodata NaN: fill_gaps raised rioxarray's OverflowError."""
    from eocube.fill import fill_gaps

    cube = small()
    flags = cube.copy(data=np.ones(cube.shape, bool))
    with pytest.raises(CubeError, match=r"nodata value cannot be held by its dtype bool"):
        fill_gaps(flags)


def test_objects_and_strings_are_not_cube_values():
    with pytest.raises(CubeError, match=r"holds object values, not numbers"):
        validate_cube(small().astype(object))
    with pytest.raises(CubeError, match=r"holds <U\d+ values, not numbers"):
        validate_cube(small().astype(str))


def test_a_rotated_transform_is_refused():
    cube = small().rio.write_transform(Affine(10, 1, 400000, 1, -10, 5000000))
    with pytest.raises(CubeError, match=r"rotated or sheared transform"):
        validate_cube(cube)


def test_make_cube_errors_name_the_argument():
    with pytest.raises(CubeError, match=r"make_cube needs crs="):
        small(crs=None)
    with pytest.raises(CubeError, match=r"crs='EPSG:99999999' is not a CRS"):
        small(crs="EPSG:99999999")
    with pytest.raises(CubeError, match=r"not a date between 1678 and 2261") as info:
        small(t=2, time=["1700-01-01", "2300-01-01"])
    assert "\n" not in str(info.value)  # pandas' advice on formats left out


def test_make_cube_takes_a_transform_for_a_one_pixel_grid():
    cube = make_cube(np.ones((1, 1, 1, 1)), time=["2020-01-01"], band=["b"], y=[5.0], x=[5.0], crs="EPSG:32633",
                     transform=Affine(10, 0, 0, 0, -10, 10))
    assert cube.rio.transform() == Affine(10, 0, 0, 0, -10, 10)


# ----------------------------------------------------------------------------- apply_model


def test_apply_model_refuses_a_strided_cube_and_object_values():
    """Before: a cube subset with a step gave an output on the old 10 m grid (its coordinates 20 m apart),
    and an object-dtype cube an all-NaN output, both silently."""
    import torch

    net = torch.nn.Conv2d(2, 1, 3, padding=1)
    strided = small(h=16, w=32).isel(x=slice(None, None, 2))
    with pytest.raises(CubeError, match=r"disagrees with its transform"):
        eocube.apply_model(strided, net, layout="band")
    with pytest.raises(CubeError, match=r"holds object values"):
        eocube.apply_model(small(h=16, w=16).astype(object), net, layout="band")


# ----------------------------------------------------------------------------- fill_gaps


def test_fill_gaps_refuses_an_empty_time_axis_and_complex_values():
    from eocube.fill import FillError, fill_gaps

    with pytest.raises(FillError, match=r"no dates"):  # was ZeroDivisionError inside dask
        fill_gaps(small(t=0, time=[]))
    with pytest.raises(FillError, match=r"complex64 values: gap filling works on real numbers"):
        fill_gaps(small().astype("complex64"), method="whittaker")  # was a numba TypingError


@pytest.mark.parametrize("method, options", [
    ("whittaker", {"lmbda": float("nan")}),   # gaps stayed NaN, silently
    ("whittaker", {"lmbda": float("inf")}),
    ("whittaker", {"lmbda": -5}),             # ValueError inside the first task
    ("savgol", {"window": float("nan")}),
    ("harmonic", {"period": float("inf")}),
    ("harmonic", {"harmonics": -1}),
    ("linear", {"extrapolate": "sometimes"}),
    ("nearest", {"engine": "cuda"}),
])
def test_fill_gaps_refuses_bad_option_values_when_called(method, options):
    from eocube.fill import FillError, fill_gaps

    with pytest.raises(FillError, match=rf"method '{method}': "):
        fill_gaps(small(), method=method, **options)


def test_fill_gaps_time_grid_dates_with_an_offset_are_utc():
    """'2020-01-05T00:00+05:00' became 2020-01-05T00:00 (it is 2020-01-04T19:00 UTC)."""
    from eocube.fill import FillError, fill_gaps

    filled = fill_gaps(small(), time_grid=["2020-01-05T00:00+05:00"])
    assert filled["time"].values[0] == np.datetime64("2020-01-04T19:00")
    with pytest.raises(FillError, match=r"1 missing date\(s\)"):  # said 'must be sorted and unique'
        fill_gaps(small(), time_grid=[None, "2020-01-05"])


def test_a_clear_mask_in_reverse_order_says_so():
    from eocube.fill import fill_gaps
    from eocube.masks import MaskError

    cube = small()
    clear = xr.ones_like(cube.isel(band=0, drop=True), dtype=bool).isel(y=slice(None, None, -1))
    with pytest.raises(MaskError, match=r"y coordinate does not match the cube's \(the same 4 values in reverse order\)"):
        fill_gaps(cube, clear)


# ----------------------------------------------------------------------------- open_stac


def _items(n: int = 3) -> list[dict]:
    items = json.loads(STAC_ITEMS.read_text())["features"]
    return copy.deepcopy(sorted(items, key=lambda it: it["properties"]["datetime"])[:n])


def _open(items=None, **kwargs):
    from eocube.stac import open_stac

    args = {"assets": ["B04", "B08"], "dtype": "uint16", "nodata": 0, "bounds": (500000, 9190000, 501000, 9191000)}
    return open_stac(_items() if items is None else items, **{**args, **kwargs})


@pytest.mark.parametrize("nodata, dtype", [(float("nan"), "uint16"), (-1, "uint16"), (0.5, "uint16"), (1e6, "uint8")])
def test_open_stac_refuses_a_nodata_value_the_dtype_cannot_hold(nodata, dtype):
    """It was cast: NaN and 0.5 became 0, -1 became 65535, 1e6 became 64 in uint8 (and marked real pixels)."""
    from eocube.stac import StacError

    with pytest.raises(StacError, match=rf"cannot be held by band 'B04''s dtype {dtype}"):
        _open(nodata=nodata, dtype=dtype)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"max_items": -1}, "StacError", r"max_items=-1: give a whole number >= 1"),  # dropped the last item
    ({"max_items": 0}, "StacError", r"max_items=0"),
    ({"resolution": float("inf")}, "GridError", r"not a finite positive pixel size"),  # a 1 x 1 px grid of NaN
    ({"bounds": (np.nan, 9190000, 501000, 9191000)}, "GridError", r"holds NaN or inf"),  # ValueError
    ({"bounds": (-np.inf, 9190000, 501000, 9191000)}, "GridError", r"holds NaN or inf"),  # OverflowError
    ({"chunks": {"y": 0}}, "StacError", r"chunks\['y'\]=0"),  # silently the whole axis
    ({"chunks": -7}, "StacError", r"chunks\['y'\]=-7"),
    ({"dtype": object}, "StacError", r"holds no numbers"),
    ({"dtype": "floaty"}, "StacError", r"dtype='floaty' is not a NumPy dtype"),  # TypeError
    ({"assets": []}, "StacError", r"assets=\[\] names no band"),  # said 'no single-band data asset is common'
])
def test_open_stac_refuses_bad_arguments_with_one_clear_error(kwargs, error, message):
    from eocube import stac

    with pytest.raises(getattr(stac, error), match=message):
        _open(**kwargs)


def _broken(field: str):
    def nan_transform(item):
        item["assets"]["B04"]["proj:transform"][2] = float("nan")

    def empty_shape(item):
        item["assets"]["B04"]["proj:shape"] = [0, 0]

    def rotated(item):
        item["assets"]["B04"]["proj:transform"][1] = 1.0

    def bad_datetime(item):
        item["properties"]["datetime"] = "yesterday"

    def unknown_epsg(item):
        item["properties"]["proj:epsg"] = 99999

    return {"nan_transform": nan_transform, "empty_shape": empty_shape, "rotated": rotated,
            "bad_datetime": bad_datetime, "unknown_epsg": unknown_epsg}[field]


@pytest.mark.parametrize("field, message", [
    ("nan_transform", r"proj:transform \[10\.0, 0\.0, nan.*finite"),     # ValueError: cannot convert NaN
    ("empty_shape", r"proj:shape \[0, 0\] has no pixels"),              # 'does not overlap the items'
    ("rotated", r"rotated or sheared"),                                  # the rotation was ignored
    ("bad_datetime", r"datetime 'yesterday', which is not a date"),      # pandas DateParseError
    ("unknown_epsg", r"asset 'B04'.*EPSG"),                              # rasterio CRSError
])
def test_open_stac_names_the_item_with_broken_metadata(field, message):
    from eocube.stac import AssetError

    items = _items()
    _broken(field)(items[0])
    with pytest.raises(AssetError, match=rf"item '{items[0]['id']}'.*{message}"):
        _open(items)


@pytest.mark.timeout(30)
def test_open_stac_refuses_a_graph_too_large_to_build():
    """Bounds of 20,000 x 30,000 km at 1 m: 1.7 billion read tasks, built one by one until memory ran out."""
    from eocube.stac import GridError

    with pytest.raises(GridError, match=r"1,716,687,012 read tasks, more than 2,000,000"):
        _open(assets=["B04"], bounds=(-1e7, 0, 2e7, 2e7), resolution=1)


# ----------------------------------------------------------------------------- burn_polygons

X0, Y0 = 465000.0, 5080000.0


def _grid(t: int = 1, h: int = 20, w: int = 30) -> xr.DataArray:
    return make_cube(np.zeros((t, 1, h, w), "float32"), time=pd.date_range("2021-05-01", periods=t), band=["red"],
                     y=Y0 - 10 * (np.arange(h) + 0.5), x=X0 + 10 * (np.arange(w) + 0.5), crs="EPSG:32633")


def _polygons(geoms, classes=None, crs="EPSG:32633"):
    from eocube.labels import Polygons

    geoms = np.asarray(geoms, dtype=object)
    return Polygons(geoms, {"c": np.asarray(classes or ["a"] * len(geoms), dtype=object)}, crs, "test polygons")


def _counts(labels: xr.DataArray) -> dict[str, int]:
    names = dict(zip(labels.attrs["class_values"], labels.attrs["class_names"]))
    values, counts = np.unique(labels.values, return_counts=True)
    return {names.get(int(v), "nodata"): int(c) for v, c in zip(values, counts)}


def test_burn_polygons_repairs_a_self_intersecting_polygon_and_says_so():
    """A bow tie's shapely area is 0, so priority='smaller' drew it over a 1600 m2 square inside it: the square
    kept 2 of its 16 pixels. Repaired (two triangles, 5000 m2), the square is on top."""
    from eocube.labels import burn_polygons

    bow = shapely.Polygon([(X0, Y0), (X0 + 100, Y0 - 100), (X0 + 100, Y0), (X0, Y0 - 100)])
    square = shapely.box(X0 + 60, Y0 - 70, X0 + 100, Y0 - 30)
    with pytest.warns(UserWarning, match=r"1 polygons of test polygons are invalid \(e\.g\. feature 0: Self-intersection"):
        labels = burn_polygons(_polygons([bow, square], ["bow", "square"]), _grid(), field="c")
    assert _counts(labels)["square"] == 16


@pytest.mark.parametrize("geom, message", [
    (shapely.Polygon([(X0, Y0), (np.inf, Y0 - 50), (X0 + 50, Y0 - 50)]), r"NaN or infinite coordinates"),  # burned (0, 0)
    (shapely.Polygon([(X0, Y0), (np.nan, Y0 - 50), (X0 + 50, Y0 - 50)]), r"NaN or infinite coordinates"),
    (shapely.GeometryCollection([shapely.box(X0, Y0 - 40, X0 + 40, Y0), shapely.Point(X0 + 200, Y0 - 100)]),
     r"GeometryCollection with \['Point'\] parts"),  # the point was burned as a pixel
])
def test_burn_polygons_refuses_geometries_it_cannot_burn(geom, message):
    from eocube.labels import LabelError, burn_polygons

    with pytest.raises(LabelError, match=message):
        burn_polygons(_polygons([geom]), _grid(), field="c")


def test_burn_polygons_refuses_polygons_in_another_crs_than_declared():
    """UTM metres declared as lon/lat reprojected to inf: an all-nodata label cube, silently."""
    from eocube.labels import LabelError, burn_polygons

    utm_as_lonlat = _polygons([shapely.box(X0 + 20, Y0 - 80, X0 + 60, Y0 - 30)], crs="EPSG:4326")
    with pytest.raises(LabelError, match=r"cannot be reprojected from EPSG:4326 to EPSG:32633.*is that their CRS"):
        burn_polygons(utm_as_lonlat, _grid(), field="c")


def test_burn_polygons_warns_when_no_polygon_meets_the_grid():
    """Latitude and longitude swapped (both in range): an all-nodata label cube, silently."""
    from pyproj import Transformer

    from eocube.labels import burn_polygons

    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    box = shapely.box(X0 + 20, Y0 - 80, X0 + 60, Y0 - 30)
    swapped = shapely.transform(box, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))[:, ::-1])
    with pytest.warns(UserWarning, match=r"none of the 1 polygons of test polygons meets the grid of like.*swapped"):
        labels = burn_polygons(_polygons([swapped], crs="EPSG:4326"), _grid(), field="c")
    assert _counts(labels) == {"nodata": 600}


def test_burn_polygons_on_a_grid_without_dates_one_pixel_or_bad_chunks():
    from eocube.labels import LabelError, burn_polygons

    box = _polygons([shapely.box(X0, Y0 - 10, X0 + 10, Y0)])
    with pytest.raises(LabelError, match=r"like has no dates.*pass time="):  # IndexError
        burn_polygons(box, _grid(t=0), field="c")
    one = _grid().isel(y=slice(0, 1), x=slice(0, 1))  # 'a cube needs at least 2 pixels along y and x'
    assert _counts(burn_polygons(box, one, field="c")) == {"a": 1}
    with pytest.raises(LabelError, match=r"chunks=0: give a chunk size >= 1"):  # ZeroDivisionError
        burn_polygons(box, _grid(), field="c", chunks=0)


@pytest.mark.parametrize("case", ["every second column", "y sorted ascending"])
def test_burn_polygons_refuses_a_like_with_a_stale_transform(case):
    """Before: 20 pixels burned on the 10 m grid for a 20 m cube; nothing at all on the sorted one."""
    from eocube.labels import burn_polygons

    with pytest.raises(CubeError, match=r"like's [xy] coordinate .* disagrees with its transform"):
        burn_polygons(_polygons([shapely.box(X0 + 20, Y0 - 80, X0 + 60, Y0 - 30)]), STALE[case](_grid()), field="c")


# ----------------------------------------------------------------------------- bundled samples


@pytest.mark.parametrize("name", ["sentinel2", "sentinel2_l1c:20m"])
def test_open_sample_refuses_chunks_it_cannot_take(name):
    from eocube.datasets import open_sample

    with pytest.raises(CubeError, match=r"chunks\['y'\]=0: a chunk size is a whole number >= 1"):  # ZeroDivisionError
        open_sample(name, chunks={"y": 0})
    with pytest.raises(CubeError, match=r"chunks names the dim 'z'"):
        open_sample(name, chunks={"z": 4})
