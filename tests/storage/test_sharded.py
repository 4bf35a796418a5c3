"""Sharded Zarr format 3: round trips, the format chosen by default, file counts, a killed write resumed."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import rasterio
import zarr

import eocube
from eocube.io import _layout

from ._kill import Killed, doubled, kill_after

METADATA = 16  # root + 6 arrays' zarr.json, their coordinate chunks, and slack: the constant of "shards + metadata"


def files(path) -> list:
    return [p for p in path.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "dtype, nodata",
    [("float32", None), ("float32", -1.0), ("float64", None), ("uint16", None), ("uint16", 0), ("int16", -9999),
     ("uint8", 255), ("int32", -1)],
)
def test_sharded_format3_round_trip(tmp_path, make_cube, dtype, nodata, assert_same_cube):
    cube = make_cube(dtype=dtype, nodata=nodata, h=16, w=20, chunks={"time": -1, "band": 1, "y": 8, "x": 10})
    cube.attrs["long_name"] = "synthetic reflectance"
    report = eocube.to_zarr(cube, tmp_path / "s.zarr", zarr_format=3, chunks={"y": 4, "x": 5},
                            provenance={"step": "sharded"}, progress=False)
    assert (report.chunks_total, report.unit, report.zarr_format) == (2 * 2 * 2, "shards", 3)
    array = zarr.open_array(str(tmp_path / "s.zarr"), path="synthetic", mode="r")
    assert array.shards == (6, 1, 8, 10) and array.chunks == (6, 1, 4, 5)  # 4 chunks in each shard
    back = eocube.open_zarr(tmp_path / "s.zarr")
    assert back.chunks is not None and back.data.chunksize == (6, 1, 8, 10)  # lazy, one task per shard
    assert_same_cube(cube, back)
    assert back.attrs["units"] == "reflectance x 1000" and back.attrs["long_name"] == "synthetic reflectance"
    assert back.attrs["eocube_provenance"] == {"step": "sharded"}
    # one file per shard (+ metadata), never one per chunk
    shard_files = [p for p in (tmp_path / "s.zarr" / "synthetic").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert len(shard_files) == 8


def test_the_default_format_follows_the_output(tmp_path, make_cube):
    small = make_cube(chunks={"time": -1, "band": 1, "y": 4, "x": 5})
    assert eocube.to_zarr(small, tmp_path / "a.zarr", progress=False).zarr_format == 2  # small and local
    assert _layout.choose_format(None, None, remote=True, nbytes=10, units=1)[0] == 3
    assert _layout.choose_format(None, None, remote=False, nbytes=5 * 2**30, units=100)[0] == 3
    assert _layout.choose_format(None, None, remote=False, nbytes=10, units=20_000)[0] == 3
    assert _layout.choose_format(None, True, remote=True, nbytes=5 * 2**30, units=1)[0] == 2
    with pytest.raises(ValueError, match="gdal_compatible=True needs zarr_format=2"):
        _layout.choose_format(3, True, remote=False, nbytes=10, units=1)
    # resuming keeps the store's format even when the default would now differ
    eocube.to_zarr(small, tmp_path / "b.zarr", zarr_format=3, progress=False)
    assert eocube.to_zarr(small, tmp_path / "b.zarr", progress=False).chunks_written == 0


def test_a_tile_year_gets_few_shards():
    # one MGRS tile-year: 73 dates x 10 bands x 10980^2 px uint16, dask chunks of 256^2 (18,490 of them per band set)
    shape, chunks = (73, 10, 10980, 10980), (73, 1, 256, 256)
    layout = _layout.choose_layout(shape, 2, chunks, 3, budget=4 * 2**30)
    info = layout.describe(shape, 2)
    assert info["units"] <= _layout.FEW_FILES < 10_000
    assert info["unit_bytes"] <= 4 * 2**30 // 4
    assert all(u % c == 0 for u, c in zip(layout.unit, layout.chunks))
    assert layout.shards == layout.unit and "dask chunks per shard" in layout.reason
    with pytest.raises(ValueError, match="not a multiple of chunks"):
        _layout.choose_layout(shape, 2, chunks, 3, chunks={"y": 100}, budget=2**30)


def test_a_killed_sharded_write_resumes_bit_identically_computing_only_the_missing_shards(tmp_path, make_cube,
                                                                                         assert_same_cube):
    cube = doubled(make_cube(h=32, w=40, chunks={"time": -1, "band": 1, "y": 8, "x": 10}))  # 2 x 4 x 4 = 32 shards
    kwargs = {"zarr_format": 3, "chunks": {"y": 4, "x": 5}, "provenance": {"job": "kill"}, "progress": False}
    reference = eocube.to_zarr(cube, tmp_path / "ref.zarr", **kwargs)
    assert reference.chunks_total == 32
    store = tmp_path / "k.zarr"
    with dask.config.set(scheduler="synchronous"), kill_after(11), pytest.raises(Killed):
        eocube.to_zarr(cube, store, **kwargs)
    # killed: an unfinished store, 11 markers (one per shard written), never opened as complete
    ledger = store / ".eocube-progress" / "synthetic"
    assert len(list(ledger.iterdir())) == 11
    with pytest.raises(eocube.IncompleteStoreError, match=r"11 of 32 shards written"):
        eocube.open_zarr(store)
    # files: shards written + their markers + metadata, never one per chunk
    assert len(files(store)) <= 11 + 11 + METADATA
    resumed = eocube.to_zarr(cube, store, **kwargs)
    assert (resumed.chunks_written, resumed.chunks_skipped) == (32 - 11, 11)
    assert not (store / ".eocube-progress").exists()
    assert_same_cube(eocube.open_zarr(tmp_path / "ref.zarr"), eocube.open_zarr(store))
    shard_bytes = {p.relative_to(store): p.read_bytes() for p in (store / "synthetic" / "c").rglob("*") if p.is_file()}
    ref_bytes = {p.relative_to(tmp_path / "ref.zarr"): p.read_bytes()
                 for p in (tmp_path / "ref.zarr" / "synthetic" / "c").rglob("*") if p.is_file()}
    assert shard_bytes == ref_bytes and len(shard_bytes) == 32  # bit-identical shard files
    assert len(files(store)) <= 32 + METADATA


def test_format2_output_still_opens_in_the_installed_gdal(tmp_path, sample):
    cube = sample.sel(band=["NDVI"]).isel(x=slice(0, 50)).chunk({"time": -1, "band": 1, "y": 64, "x": 64})
    eocube.to_zarr(cube, tmp_path / "g.zarr", gdal_compatible=True, progress=False)
    assert zarr.open_group(str(tmp_path / "g.zarr"), mode="r").metadata.zarr_format == 2
    with rasterio.open(f'ZARR:"{tmp_path / "g.zarr"}":/sentinel2') as src:
        assert src.crs.to_epsg() == 32633
        assert src.transform.almost_equals(cube.rio.transform(), precision=1e-6)
        np.testing.assert_array_equal(src.read(1), cube.isel(time=0, band=0).values)


def test_which_gdal_reads_sharded_format3(tmp_path, make_cube):
    """GDAL reads the sharding codec from 3.13 on (its Zarr driver docs); rasterio's wheels here carry 3.10."""
    cube = make_cube(h=16, w=20, chunks={"time": -1, "band": 1, "y": 8, "x": 10})
    eocube.to_zarr(cube, tmp_path / "s.zarr", zarr_format=3, chunks={"y": 4, "x": 5}, progress=False)
    version = tuple(int(p) for p in rasterio.__gdal_version__.split(".")[:2])
    try:
        with rasterio.open(f'ZARR:"{tmp_path / "s.zarr"}":/synthetic') as src:
            first = src.read(1)
        opened = True
    except rasterio.errors.RasterioError:
        opened = False
    if version < (3, 13):
        assert not opened, f"GDAL {rasterio.__gdal_version__} read sharded Zarr v3: update the README"
    else:
        assert opened
        np.testing.assert_array_equal(first, cube.isel(time=0, band=0).values)
