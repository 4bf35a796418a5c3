"""Zarr round trip, GDAL interoperability, and refusal of bad or unfinished stores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr

import eocube
from eocube.io.zarr_writer import WRITE_ATTR


def assert_same_cube(a: xr.DataArray, b: xr.DataArray) -> None:
    assert a.dims == b.dims and a.dtype == b.dtype
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.time.values, b.time.values)
    assert list(a.band.values) == list(b.band.values)
    np.testing.assert_array_equal(a.y.values, b.y.values)
    np.testing.assert_array_equal(a.x.values, b.x.values)
    assert a.rio.crs == b.rio.crs
    assert a.rio.transform() == b.rio.transform()
    na, nb = a.rio.nodata, b.rio.nodata
    assert (na == nb) or (np.isnan(na) and np.isnan(nb))


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("dtype, nodata", [("float32", None), ("uint16", 0), ("int16", -9999)])
def test_round_trip_is_exact(tmp_path, make_cube, zarr_format, dtype, nodata):
    cube = make_cube(dtype=dtype, nodata=nodata, chunks={"time": -1, "band": 1, "y": 4, "x": 4})
    report = eocube.to_zarr(cube, tmp_path / "c.zarr", zarr_format=zarr_format,
                            provenance={"source": "test", "params": {"k": 1}}, progress=False)
    assert (report.chunks_total, report.chunks_written, report.chunks_skipped) == (2 * 2 * 3, 12, 0)
    back = eocube.open_zarr(tmp_path / "c.zarr")
    assert back.chunks is not None  # lazy
    assert_same_cube(cube, back)
    assert back.attrs["units"] == "reflectance x 1000"
    assert back.attrs["eocube_provenance"] == {"source": "test", "params": {"k": 1}}
    assert back.attrs["eocube_version"] == eocube.__version__
    assert "eocube_created" in back.attrs
    # compressed, in the asked format
    group = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    assert group.metadata.zarr_format == zarr_format
    assert group.attrs[WRITE_ATTR]["status"] == "complete"
    assert len(group["synthetic"].compressors) == 1


def test_in_memory_cube_is_chunked_and_written(tmp_path, make_cube):
    cube = make_cube()  # numpy-backed
    eocube.to_zarr(cube, tmp_path / "m.zarr", progress=False)
    assert_same_cube(cube, eocube.open_zarr(tmp_path / "m.zarr"))


def test_gdal_reads_crs_geotransform_and_nodata(tmp_path, sample):
    cube = sample.sel(band=["NDVI"]).chunk({"time": -1, "band": 1, "y": 64, "x": 64})
    eocube.to_zarr(cube, tmp_path / "g.zarr", zarr_format=2, progress=False)
    with rasterio.open(f'ZARR:"{tmp_path / "g.zarr"}":/sentinel2') as src:
        assert src.crs.to_epsg() == 32633
        assert src.transform.almost_equals(cube.rio.transform(), precision=1e-6)
        assert (src.height, src.width, src.count) == (101, 100, 68)  # GDAL folds time x band into bands
        assert np.isnan(src.nodata)
        first = src.read(1)
    np.testing.assert_array_equal(first, cube.isel(time=0, band=0).values)


def test_a_complete_store_is_not_rewritten(tmp_path, make_cube):
    cube = make_cube(chunks={"time": -1, "band": 1, "y": 8, "x": 5})
    eocube.to_zarr(cube, tmp_path / "c.zarr", progress=False)
    again = eocube.to_zarr(cube, tmp_path / "c.zarr", progress=False)
    assert again.chunks_written == 0 and again.chunks_skipped == again.chunks_total == 4


def test_an_unfinished_store_is_refused_then_resumed(tmp_path, make_cube):
    cube = make_cube(chunks={"time": -1, "band": 1, "y": 8, "x": 5})
    eocube.to_zarr(cube, tmp_path / "c.zarr", progress=False, provenance={"run": 1})
    # Simulate a kill after 3 of 4 chunks: status back to in-progress, one marker missing.
    group = zarr.open_group(str(tmp_path / "c.zarr"), mode="r+")
    state = dict(group.attrs[WRITE_ATTR], status="in-progress")
    group.attrs[WRITE_ATTR] = state
    ledger = tmp_path / "c.zarr" / ".eocube-progress" / "synthetic"
    ledger.mkdir(parents=True)
    for key in ("0.0.0.0", "0.0.0.1", "0.1.0.0"):
        (ledger / key).write_text("done\n")
    with pytest.raises(eocube.IncompleteStoreError, match=r"unfinished write \(3 of 4 chunks.*run the same command again"):
        eocube.open_zarr(tmp_path / "c.zarr")
    assert eocube.open_zarr(tmp_path / "c.zarr", allow_incomplete=True).shape == cube.shape
    report = eocube.to_zarr(cube, tmp_path / "c.zarr", progress=False, provenance={"run": 1})
    assert (report.chunks_written, report.chunks_skipped) == (1, 3)
    eocube.open_zarr(tmp_path / "c.zarr")  # complete again
    assert not (tmp_path / "c.zarr" / ".eocube-progress").exists()


def test_resuming_another_computation_is_refused(tmp_path, make_cube):
    cube = make_cube(chunks={"time": -1, "band": 1, "y": 8, "x": 5})
    eocube.to_zarr(cube, tmp_path / "c.zarr", progress=False, provenance={"method": "linear"})
    with pytest.raises(eocube.ResumeMismatchError, match="different computation.*overwrite"):
        eocube.to_zarr(cube, tmp_path / "c.zarr", progress=False, provenance={"method": "whittaker"})
    report = eocube.to_zarr(cube * 2, tmp_path / "c.zarr", progress=False, mode="overwrite")
    assert report.chunks_written == 4
    np.testing.assert_array_equal(eocube.open_zarr(tmp_path / "c.zarr").values, (cube * 2).values)
    with pytest.raises(eocube.StoreError, match="already exists"):
        eocube.to_zarr(cube, tmp_path / "c.zarr", progress=False, mode="fail")


def test_bad_paths_and_stores_give_clear_errors(tmp_path, make_cube):
    with pytest.raises(eocube.StoreNotFoundError, match="no Zarr store at"):
        eocube.open_zarr(tmp_path / "missing.zarr")
    (tmp_path / "notzarr").mkdir()
    (tmp_path / "notzarr" / "file.txt").write_text("hello")
    with pytest.raises(eocube.StoreError, match="not a readable Zarr store"):
        eocube.open_zarr(tmp_path / "notzarr")
    with pytest.raises(eocube.StoreError, match="not a readable Zarr store|not written by eocube"):
        eocube.to_zarr(make_cube(), tmp_path / "notzarr", progress=False)
    # a Zarr store that holds no cube
    xr.Dataset({"temperature": (("y", "x"), np.zeros((2, 2)))}).to_zarr(tmp_path / "plain.zarr", zarr_format=2)
    with pytest.raises(eocube.StoreError, match=r"holds no cube.*temperature"):
        eocube.open_zarr(tmp_path / "plain.zarr")
    # a corrupt store: its metadata is not JSON
    eocube.to_zarr(make_cube(), tmp_path / "bad.zarr", progress=False)
    (tmp_path / "bad.zarr" / ".zmetadata").write_text("{ not json")
    (tmp_path / "bad.zarr" / ".zgroup").write_text("{ not json")
    with pytest.raises(eocube.StoreError, match="not a readable Zarr store"):
        eocube.open_zarr(tmp_path / "bad.zarr")


def test_a_wrong_input_leaves_no_store(tmp_path, make_cube):
    with pytest.raises(eocube.CubeError):
        eocube.to_zarr(make_cube().values, tmp_path / "x.zarr")
    with pytest.raises(eocube.CubeError):
        eocube.to_zarr(make_cube().isel(band=0), tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()


def test_provenance_is_json_in_the_store(tmp_path, make_cube):
    eocube.to_zarr(make_cube(), tmp_path / "p.zarr", progress=False, provenance={"source": "sample"})
    attrs = json.loads((tmp_path / "p.zarr" / ".zattrs").read_text())
    assert json.loads(attrs["eocube_provenance"]) == {"source": "sample"}


def test_check_target_raises_before_any_work_and_overwrite_spares_other_folders(tmp_path, make_cube):
    from eocube.io import check_target

    cube = make_cube(chunks={"time": -1, "band": 1, "y": 8, "x": 5})
    eocube.to_zarr(cube, tmp_path / "c.zarr", progress=False, provenance={"method": "linear"})
    before = sorted(p.name for p in (tmp_path / "c.zarr").rglob("*"))
    with pytest.raises(eocube.ResumeMismatchError):
        check_target(cube, tmp_path / "c.zarr", provenance={"method": "harmonic"})
    check_target(cube, tmp_path / "c.zarr", provenance={"method": "harmonic"}, mode="overwrite")
    assert sorted(p.name for p in (tmp_path / "c.zarr").rglob("*")) == before  # nothing touched
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("precious")
    with pytest.raises(eocube.StoreError, match="not a Zarr store, so eocube will not delete it"):
        eocube.to_zarr(cube, tmp_path / "docs", mode="overwrite", progress=False)
    assert (tmp_path / "docs" / "thesis.tex").read_text() == "precious"
