"""The cube convention and its validator."""

from __future__ import annotations

import numpy as np
import pytest

import eocube
from eocube.cube import coords_from_transform, transform_from_coords


def test_make_cube_follows_the_convention(make_cube):
    cube = make_cube()
    assert cube.dims == eocube.DIMS
    assert np.issubdtype(cube.time.dtype, np.datetime64)
    assert list(cube.band.values) == ["red", "nir"]
    assert cube.rio.crs.to_epsg() == 32633
    assert np.isnan(cube.rio.nodata)
    # pixel centres: the transform's origin is half a pixel before the first centre
    t = cube.rio.transform()
    assert (t.a, t.e, t.c, t.f) == (10.0, -10.0, 465000.0, 5080000.0)


def test_transform_and_coords_are_inverse():
    y, x = np.array([95.0, 85.0, 75.0]), np.array([5.0, 15.0, 25.0, 35.0])
    t = transform_from_coords(x, y)
    y2, x2 = coords_from_transform(t, 3, 4)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(x, x2)


def test_cube_info_summarises(make_cube):
    info = eocube.cube_info(make_cube(chunks={"time": -1, "band": 1, "y": 4, "x": 5}))
    assert info.crs == "EPSG:32633"
    assert info.shape == (6, 2, 8, 10)
    assert info.resolution == (10.0, -10.0)
    text = str(info)
    assert "6 dates x 2 bands x 8 x 10 px" in text and "red, nir" in text and "2020-01-01" in text


@pytest.mark.parametrize(
    "broken, message",
    [
        (lambda c: c.values, "not an xarray.DataArray"),
        (lambda c: c.to_dataset(name="v"), "is an xarray.Dataset"),
        (lambda c: c.transpose("band", "time", "y", "x"), "reorder with"),
        (lambda c: c.isel(band=0, drop=True), "add a band dim"),
        (lambda c: c.rename(y="lat", x="lon"), "rename the spatial dims"),
        (lambda c: c.assign_coords(time=np.arange(c.sizes["time"])), "expected datetime64"),
        (lambda c: c.assign_coords(band=["red", "red"]), "duplicate band names"),
        (lambda c: c.assign_coords(x=np.r_[0.0, 1.0, 5.0, np.arange(7) + 10.0]), "not regularly spaced"),
        (lambda c: c.drop_vars("spatial_ref"), "has no CRS"),
    ],
)
def test_validator_says_what_is_wrong_and_how_to_fix_it(make_cube, broken, message):
    with pytest.raises(eocube.CubeError, match=message):
        eocube.validate_cube(broken(make_cube()))


def test_unknown_band_lists_the_available_ones(make_cube):
    with pytest.raises(eocube.BandError, match=r"\['swir'\] not in the cube; available bands: \['red', 'nir'\]"):
        eocube.select_bands(make_cube(), ["swir"])
    assert eocube.select_bands(make_cube(), "nir").band.values.tolist() == ["nir"]


def test_time_axis_checks(make_cube):
    from eocube.cube import check_time_axis

    cube = make_cube()
    with pytest.raises(eocube.CubeError, match="not sorted"):
        check_time_axis(cube.isel(time=[2, 1, 0]))
    with pytest.raises(eocube.CubeError, match="duplicate dates"):
        check_time_axis(cube.isel(time=[0, 0, 1]))


@pytest.mark.parametrize(
    ("times", "message"),
    [
        ([2, 1, 0, 3, 4, 5], "time axis is not sorted: sort it with cube.sortby"),
        ([0, 0, 1, 2, 3, 4], r"duplicate dates \(2020-01-01 00:00:00\): merge them first"),
    ],
)
def test_validate_cube_refuses_unsorted_and_duplicate_times(make_cube, times, message):
    """Issue 13, case 8: the validator every entry point calls checks the time axis itself."""
    cube = make_cube().isel(time=times)
    with pytest.raises(eocube.CubeError, match=message):
        eocube.validate_cube(cube)
    with pytest.raises(eocube.CubeError, match=message.replace("cube.", "source.")):
        eocube.validate_cube(cube, name="source")


def test_validate_cube_refuses_missing_dates(make_cube):
    cube = make_cube()
    times = cube.time.values.copy()
    times[3] = np.datetime64("NaT")
    with pytest.raises(eocube.CubeError, match=r"1 missing dates \(NaT\): drop them first"):
        eocube.validate_cube(cube.assign_coords(time=times))


def test_make_cube_refuses_unsorted_times(make_cube):
    cube = make_cube()
    with pytest.raises(eocube.CubeError, match="not sorted"):
        eocube.make_cube(cube.values, time=cube.time.values[::-1], band=cube.band.values, y=cube.y.values,
                         x=cube.x.values, crs="EPSG:32633")


def test_sample_is_the_real_sentinel2_series(sample):
    assert sample.dims == eocube.DIMS and sample.chunks is not None  # lazy
    assert sample.sizes == {"time": 68, "band": 4, "y": 101, "x": 100}
    assert list(sample.band.values) == ["NDVI", "CLP", "CLM", "IS_DATA"]
    assert str(sample.time.values[0])[:19] == "2015-07-11T10:00:08"
    assert str(sample.time.values[-1])[:10] == "2017-12-22"
    assert sample.rio.crs.to_epsg() == 32633
    bounds = sample.rio.bounds()  # from the published bbox.geojson
    np.testing.assert_allclose(bounds, (465181.0522318204, 5079244.8912012065, 466180.53145382757, 5080254.63349641))
    clm = sample.sel(band="CLM").values
    assert set(np.unique(clm[np.isfinite(clm)])) <= {0.0, 1.0}
    assert 0.2 < clm.mean() < 0.8  # real clouds
    from eocube.datasets import SAMPLES

    assert "MIT" in SAMPLES["sentinel2"].provenance


def test_accessor_shows_the_cube_and_runs_the_pipeline(tmp_path, sample):
    text = repr(sample.eocube)
    assert "EPSG:32633" in text and "2015-07-11 .. 2017-12-22" in text and "chunks" in text
    clear = sample.eocube.clear_from_cloud_band("CLM", data_band="IS_DATA")
    filled = sample.eocube.gapfill(clear, bands="NDVI")
    report = filled.eocube.to_zarr(tmp_path / "f.zarr", progress=False)
    assert report.chunks_written == report.chunks_total
    assert eocube.open_zarr(tmp_path / "f.zarr").eocube.info.bands == ("NDVI",)


def test_every_eocube_error_pickles_as_itself():
    """A worker's error reaches the client pickled: AssetReadError (ValueError + OSError) and
    StoreNotFoundError (ValueError + FileNotFoundError) used to fail to unpickle."""
    import pickle

    import eocube.evaluate.protocol  # registers its error
    import eocube.fill
    import eocube.models
    import eocube.plan
    import eocube.stac  # noqa: F401
    from eocube.errors import EOCubeError

    classes, todo = set(), [EOCubeError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in classes:
                classes.add(sub)
                todo.append(sub)
    assert {"AssetReadError", "StoreNotFoundError", "ChunkPlanError"} <= {c.__name__ for c in classes}
    for cls in classes:
        error = cls("what is wrong: what to do")
        error.problem = "what is wrong"
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is cls and str(back) == str(error) and back.problem == "what is wrong"
