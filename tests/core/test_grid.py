"""The one grid value (:class:`eocube.grid.Grid`) against rasterio and odc-geo, and the one ``GridError``.

Coordinates, windows, snapped and scaled grids and bounds in another CRS are compared with what
rasterio (always installed) and odc-geo's ``GeoBox`` (the ``bench`` extra; skipped without it)
compute for the same grid. The package holds one class named ``Grid`` and one named ``GridError``
(found with :mod:`ast`), and the old import paths of the error name that class.
"""

from __future__ import annotations

import ast
import importlib.util
import pickle
import warnings
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import rasterio.transform
import rasterio.windows
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

import eocube
from eocube.cube import coords_from_transform, transform_from_coords
from eocube.errors import CubeError, EOCubeError, GridError
from eocube.grid import Grid, reproject_bounds

UTM = CRS.from_epsg(32735)
GRID = Grid(UTM, Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 9192000.0), (200, 124))


def _geobox(grid: Grid):
    geobox = pytest.importorskip("odc.geo.geobox")
    return geobox.GeoBox(grid.shape, grid.transform, grid.crs)


@contextmanager
def _quiet():
    """odc-geo 0.5 multiplies Affines with ``*``, which affine >= 3.1 flags as pending deprecation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        yield


def test_pixel_centres_equal_rasterio_and_odc_geo():
    y, x = GRID.coords
    rows, cols = np.arange(GRID.height), np.arange(GRID.width)
    xs, _ = rasterio.transform.xy(GRID.transform, np.zeros_like(cols), cols, offset="center")
    _, ys = rasterio.transform.xy(GRID.transform, rows, np.zeros_like(rows), offset="center")
    np.testing.assert_allclose(x, xs, rtol=0, atol=1e-9)
    np.testing.assert_allclose(y, ys, rtol=0, atol=1e-9)
    assert (x[0], y[0], x[-1], y[-1]) == (500005.0, 9191995.0, 501235.0, 9190005.0)
    with _quiet():
        coords = _geobox(GRID).coordinates
    np.testing.assert_array_equal(coords["x"].values, x)
    np.testing.assert_array_equal(coords["y"].values, y)


def test_coordinates_round_trip_and_a_cube_tells_its_grid():
    y, x = GRID.coords
    assert Grid.from_coords(y, x, UTM) == GRID
    cube = eocube.make_cube(np.zeros((1, 1, *GRID.shape), "float32"), time=["2021-06-01"], band=["a"], y=y, x=x,
                            crs="EPSG:32735")
    assert Grid.of(cube) == GRID
    assert Grid.of(cube).resolution == (10.0, -10.0) and Grid.of(cube).pixel_size == (10.0, 10.0)
    assert eocube.cube_info(cube).transform == GRID.transform
    assert transform_from_coords(x, y) == GRID.transform
    for got, want in zip(coords_from_transform(GRID.transform, *GRID.shape), GRID.coords):
        np.testing.assert_array_equal(got, want)
    # a grid refuses what no grid can be with ValueError; the cube convention says it to the user
    with pytest.raises(ValueError, match="no pixel size"):
        Grid.from_coords(y[:1], x)
    with pytest.raises(CubeError, match="at least 2 pixels"):
        transform_from_coords(x, y[:1])
    rotated = Affine(10.0, 1.0, 0.0, 0.0, -10.0, 0.0)
    with pytest.raises(ValueError, match="rotated"):
        _ = Grid(UTM, rotated, (2, 2)).coords
    with pytest.raises(CubeError, match="rotated or sheared grids are not supported"):
        coords_from_transform(rotated, 2, 2)


def test_bounds_and_extent_of_north_up_and_south_up_grids():
    assert GRID.bounds == (500000.0, 9190000.0, 501240.0, 9192000.0)
    assert GRID.bounds == tuple(rasterio.transform.array_bounds(*GRID.shape, GRID.transform)[i] for i in (0, 1, 2, 3))
    assert GRID.extent == (500000.0, 501240.0, 9190000.0, 9192000.0)
    south_up = Grid(UTM, Affine(10.0, 0.0, 0.0, 0.0, 10.0, 100.0), (3, 2))
    assert south_up.bounds == (0.0, 100.0, 20.0, 130.0) and not south_up.north_up and GRID.north_up
    assert south_up.extent == (0.0, 20.0, 130.0, 100.0)  # imshow's order, in the grid's direction


@pytest.mark.parametrize("bbox", [
    (500003.2, 9190001.0, 501234.5, 9191999.9),
    (499990.0, 9189990.0, 500010.0, 9190010.0),  # on pixel edges: no extra row or column
    (-1234.5, -77.25, 5678.9, 3.0),
])
def test_snapped_grid_equals_odc_geo_from_bbox(bbox):
    grid = Grid.from_bbox(bbox, UTM, resolution=(10.0, 10.0))
    geobox = pytest.importorskip("odc.geo.geobox")
    with _quiet():
        ref = geobox.GeoBox.from_bbox(bbox, UTM, resolution=10)
    assert grid.shape == tuple(ref.shape) and grid.transform == ref.affine
    left, bottom, right, top = grid.bounds
    assert left <= bbox[0] < left + 10 and right - 10 < bbox[2] <= right
    assert bottom <= bbox[1] < bottom + 10 and top - 10 < bbox[3] <= top


def test_an_edge_just_past_a_pixel_edge_keeps_its_pixel_unlike_odc_geo():
    """odc-geo drops up to 1 % of a pixel (its tol); eocube's loader keeps every pixel the bbox reaches
    beyond 1e-6 px, as it always has (so a grid, and a store's coordinates, do not change)."""
    bbox = (0.0, 0.0, 100.05, 100.0)
    assert Grid.from_bbox(bbox, UTM, resolution=(10.0, 10.0)).shape == (10, 11)
    geobox = pytest.importorskip("odc.geo.geobox")
    with _quiet():
        assert tuple(geobox.GeoBox.from_bbox(bbox, UTM, resolution=10).shape) == (10, 10)


def test_snapped_grid_on_an_anchor_and_an_exact_fit():
    grid = Grid.from_bbox((3.0, 0.0, 25.0, 10.0), resolution=(10.0, 5.0), anchor=(1.0, 2.0))
    assert grid.transform == Affine(10.0, 0.0, 1.0, 0.0, -5.0, 12.0) and grid.shape == (3, 3)
    # edges 1e-7 px past a pixel edge are float noise, not one more row or column
    assert Grid.from_bbox((1.0 - 1e-6, 0.0, 31.0 + 1e-6, 12.0), resolution=(10.0, 5.0), anchor=(1.0, 2.0)).shape == (3, 3)
    fit = Grid.from_bbox((500000.0, 9190000.0, 501240.0, 9192000.0), UTM, shape=(200, 124))
    assert fit == GRID
    assert fit.transform == rasterio.transform.from_bounds(500000.0, 9190000.0, 501240.0, 9192000.0, 124, 200)
    with pytest.raises(TypeError, match="either shape= or resolution="):
        Grid.from_bbox((0, 0, 1, 1))


def test_windows_equal_rasterio_and_odc_geo():
    sub = GRID.window(7, 19, 30, 41)
    win = rasterio.windows.Window(30, 7, 11, 12)
    assert sub.transform == rasterio.windows.transform(win, GRID.transform) and sub.shape == (12, 11)
    np.testing.assert_array_equal(sub.coords[1], GRID.coords[1][30:41])
    np.testing.assert_array_equal(sub.coords[0], GRID.coords[0][7:19])
    assert GRID[7:19, 30:41] == sub
    assert GRID[-5:, :3] == GRID.window(195, 200, 0, 3)  # numpy's slices, clipped to the grid
    assert GRID[190:400, 120:999].shape == (10, 4)
    outside = GRID.window(-2, 3, -1, 4)  # a window may reach past the grid (blocks at the edge of a file)
    assert outside.bounds == (499990.0, 9191970.0, 500040.0, 9192020.0)
    with _quiet():
        ref = _geobox(GRID)[7:19, 30:41]
    assert sub.transform == ref.affine and sub.shape == tuple(ref.shape)
    with pytest.raises(ValueError, match="step 1"):
        _ = GRID[::2, :]


@pytest.mark.parametrize("factor", [2, 4, Fraction(1, 2), Fraction(1, 4), 0.5, 3])
def test_scaled_grids_equal_odc_geo_zoom_and_nest(factor):
    fine = GRID.scaled(factor)
    assert fine.pixel_size == pytest.approx((10.0 / float(factor),) * 2, rel=1e-15)
    assert fine.shape == tuple(int(np.ceil(n * float(factor) - 1e-9)) for n in GRID.shape)
    assert fine.transform.c == GRID.transform.c and fine.transform.f == GRID.transform.f
    with _quiet():
        ref = _geobox(GRID).zoom_out(1 / float(factor))
    assert fine.shape == tuple(ref.shape)
    assert np.allclose(tuple(fine.transform)[:6], tuple(ref.affine)[:6], rtol=1e-12, atol=1e-9)
    # nesting: pixel k of the coarser grid holds pixels k*r .. k*r + r - 1 of the finer one
    coarse, finer = (GRID, fine) if float(factor) > 1 else (fine, GRID)
    r = round(coarse.pixel_size[0] / finer.pixel_size[0])
    yc, xc = coarse.coords
    yf, xf = finer.coords
    for k in (0, 3, len(xc) - 1):
        block = xf[k * r:(k + 1) * r]
        assert np.all(np.abs(block - xc[k]) < coarse.pixel_size[0] / 2)
        block = yf[k * r:(k + 1) * r]
        assert np.all(np.abs(block - yc[k]) < coarse.pixel_size[1] / 2)


def test_scaled_to_a_given_shape_and_bad_factors():
    assert GRID.scaled(Fraction(1, 3), shape=(66, 41)).shape == (66, 41)
    for bad in (0, -2, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite positive"):
            GRID.scaled(bad)


def test_offsets_and_aligned_windows():
    coarse = Grid(UTM, Affine(20.0, 0.0, 499960.0, 0.0, -20.0, 9192040.0), (110, 70))
    assert coarse.offset_to(GRID) == (2.0, 2.0)  # the fine grid's corner: 2 rows and 2 columns into the coarse one
    assert GRID.offset_to(coarse) == (-4.0, -4.0)
    assert GRID.aligned_window(GRID.window(5, 9, 11, 20)) == (5, 11)
    assert GRID.aligned_window(GRID.window(-3, 2, -1, 4)) == (-3, -1)
    half = Grid(UTM, GRID.transform @ Affine.translation(0.5, 0), (4, 4))
    assert GRID.aligned_window(half) is None  # half a pixel off: resample
    assert GRID.aligned_window(coarse) is None  # other pixel size
    assert GRID.aligned_window(Grid(CRS.from_epsg(32734), GRID.transform, (4, 4))) is None  # other CRS
    noise = Grid(UTM, GRID.transform @ Affine.translation(3 + 1e-9, 2 - 1e-9), (4, 4))
    assert GRID.aligned_window(noise) == (2, 3)


def test_bounds_in_another_crs():
    lonlat = GRID.bounds_in("EPSG:4326")
    assert lonlat == transform_bounds(UTM, "EPSG:4326", *GRID.bounds, densify_pts=21)
    # every pixel corner on the grid's outline lies inside the reprojected box
    to_lonlat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    left, bottom, right, top = GRID.bounds
    xs = np.r_[np.linspace(left, right, 50), np.full(50, right), np.linspace(left, right, 50), np.full(50, left)]
    ys = np.r_[np.full(50, top), np.linspace(bottom, top, 50), np.full(50, bottom), np.linspace(bottom, top, 50)]
    lon, lat = to_lonlat.transform(xs, ys)
    assert lonlat[0] <= lon.min() and lon.max() <= lonlat[2] and lonlat[1] <= lat.min() and lat.max() <= lonlat[3]
    assert lonlat[0] == pytest.approx(27.0, abs=1e-9) and lonlat[3] < 0  # tile 35MNM, south of the equator
    assert GRID.bounds_in(UTM) == GRID.bounds  # the same CRS: the same box
    assert reproject_bounds((0, 1, 2, 3), UTM, "EPSG:32735") == (0.0, 1.0, 2.0, 3.0)


def test_a_grid_pickles_and_prints():
    assert pickle.loads(pickle.dumps(GRID)) == GRID
    assert str(GRID) == ("Grid 200 x 124 px of 10 x 10 in EPSG:32735, bounds (500000.0, 9190000.0, 501240.0, "
                         "9192000.0)")


def test_one_grid_error_under_its_old_names():
    import eocube.models
    import eocube.stac

    assert eocube.stac.GridError is GridError and eocube.models.GridError is GridError
    assert issubclass(GridError, EOCubeError) and issubclass(GridError, ValueError)
    err = pickle.loads(pickle.dumps(GridError("bad grid")))
    assert type(err) is GridError and str(err) == "bad grid"


def _classes_named(name: str) -> list[str]:
    root = Path(importlib.util.find_spec("eocube").origin).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and node.name == name:
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


@pytest.mark.parametrize("name, home", [("Grid", "grid.py"), ("GridError", "errors.py")])
def test_the_package_defines_one_grid_and_one_grid_error(name, home):
    found = _classes_named(name)
    assert len(found) == 1 and found[0].startswith(home + ":"), found


def test_the_grid_module_imports_nothing_of_eocube():
    """grid.py stands on the lowest floor beside errors.py, so cube.py (which uses it) stays on floor 1."""
    path = Path(importlib.util.find_spec("eocube.grid").origin)
    tree = ast.parse(path.read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith(("eocube", ".")) or m == ""], imported
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level], "relative imports"
