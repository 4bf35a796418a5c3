"""Issue 21, item 7: a plain Zarr store with CF packing (``scale_factor``, ``add_offset``) is decoded.

xarray packs float values into integers when asked (``encoding={"dtype": "int16", "scale_factor":
0.01, "add_offset": 100}``). eocube.open_zarr used to read such a store with the packed integers
as if they were the values (-32768 where the data were missing). Now it decodes them, lazily, on
the same checked chunk reads (a damaged chunk is still named).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import eocube
from eocube.errors import CorruptChunkError

SCALE, OFFSET, FILL = 0.01, 100.0, -32768


def _values() -> np.ndarray:
    values = (np.random.default_rng(3).random((3, 2, 8, 10)) * 300).astype("float32")
    values[0, 0, 0, :4] = np.nan  # missing: stored as the _FillValue
    return values


def _write_packed(path, zarr_format: int, values: np.ndarray, **encoding) -> None:
    """Write ``values`` as a cube with plain xarray, packed by ``encoding``."""
    cube = eocube.make_cube(values, time=pd.date_range("2021-03-01", periods=3, freq="10D"), band=["red", "nir"],
                            y=5080000.0 - 10.0 * (np.arange(8) + 0.5), x=465000.0 + 10.0 * (np.arange(10) + 0.5),
                            crs="EPSG:32633", name="reflectance")
    ds = cube.to_dataset()
    ds["reflectance"].attrs.pop("_FillValue", None)  # xarray takes it from the encoding
    ds["reflectance"].encoding = encoding
    ds.to_zarr(path, zarr_format=zarr_format, consolidated=zarr_format == 2)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_packed_store_is_read_as_its_values_with_missing_pixels_nan(tmp_path, zarr_format):
    values = _values()
    _write_packed(tmp_path / "packed.zarr", zarr_format, values, dtype="int16", scale_factor=SCALE,
                  add_offset=OFFSET, _FillValue=FILL)
    stored = xr.open_zarr(tmp_path / "packed.zarr", mask_and_scale=False, consolidated=zarr_format == 2)["reflectance"]
    assert stored.dtype == np.int16  # the store really holds packed integers

    cube = eocube.open_zarr(tmp_path / "packed.zarr")
    assert np.issubdtype(cube.dtype, np.floating)
    assert not {"scale_factor", "add_offset"} & (set(cube.attrs) | set(cube.encoding))
    assert np.isnan(cube.rio.nodata)
    got = cube.values
    np.testing.assert_array_equal(np.isnan(got), np.isnan(values))
    np.testing.assert_allclose(got[~np.isnan(got)], values[~np.isnan(values)], atol=SCALE / 2 + 1e-6)
    # lazy, on the checked reads, and named the same way in every process (resumable)
    assert any(name.startswith("eocube-read-") for name in cube.data.__dask_graph__().layers)
    assert eocube.open_zarr(tmp_path / "packed.zarr").data.name == cube.data.name

    # a result written from it holds the values, not the packing
    eocube.to_zarr(cube, tmp_path / "copy.zarr", progress=False)
    np.testing.assert_array_equal(eocube.open_zarr(tmp_path / "copy.zarr").values, got)


def test_a_damaged_chunk_of_a_packed_store_is_still_named(tmp_path):
    _write_packed(tmp_path / "packed.zarr", 2, _values(), dtype="int16", scale_factor=SCALE, add_offset=OFFSET,
                  _FillValue=FILL, chunks=(1, 1, 8, 10))
    (tmp_path / "packed.zarr" / "reflectance" / "1.0.0.0").write_bytes(b"not a chunk")
    cube = eocube.open_zarr(tmp_path / "packed.zarr")
    with pytest.raises(CorruptChunkError, match=r"chunk key 1\.0\.0\.0"):
        cube.compute()


def test_an_integer_store_without_packing_keeps_its_integers_and_nodata(tmp_path):
    values = np.nan_to_num(_values()).astype("uint16")
    _write_packed(tmp_path / "plain.zarr", 2, values, dtype="uint16", _FillValue=0)
    cube = eocube.open_zarr(tmp_path / "plain.zarr")
    assert cube.dtype == np.uint16 and cube.rio.nodata == 0
    np.testing.assert_array_equal(cube.values, values)
