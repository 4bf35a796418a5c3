"""Fixtures shared by the whole suite: small synthetic cubes on real grids, and the bundled sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import eocube


def synthetic_cube(
    t: int = 6,
    bands: tuple[str, ...] = ("red", "nir"),
    h: int = 8,
    w: int = 10,
    dtype: str = "float32",
    seed: int = 0,
    chunks: dict[str, int] | None = None,
    nodata: float | int | None = None,
) -> xr.DataArray:
    """A small random cube on a 10 m UTM grid (EPSG:32633), optionally dask-backed."""
    rng = np.random.default_rng(seed)
    data = (rng.random((t, len(bands), h, w)) * 1000).astype(dtype)
    x = 465000.0 + 10.0 * (np.arange(w) + 0.5)
    y = 5080000.0 - 10.0 * (np.arange(h) + 0.5)
    times = pd.date_range("2020-01-01", periods=t, freq="5D")
    cube = eocube.make_cube(data, time=times, band=list(bands), y=y, x=x, crs="EPSG:32633",
                            nodata=nodata, name="synthetic", attrs={"units": "reflectance x 1000"})
    return cube.chunk(chunks) if chunks else cube


def same_cube(a: xr.DataArray, b: xr.DataArray) -> None:
    """Assert two cubes are equal: values, dims, dtype, times, band names, grid, CRS, transform and nodata."""
    assert a.dims == b.dims and a.dtype == b.dtype
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.time.values, b.time.values)
    assert [str(v) for v in a.band.values] == [str(v) for v in b.band.values]
    np.testing.assert_array_equal(a.y.values, b.y.values)
    np.testing.assert_array_equal(a.x.values, b.x.values)
    assert a.rio.crs == b.rio.crs
    assert a.rio.transform() == b.rio.transform()
    na, nb = a.rio.nodata, b.rio.nodata
    assert (na is None and nb is None) or (na == nb) or (np.isnan(na) and np.isnan(nb))


@pytest.fixture
def assert_same_cube():
    """The check that two cubes are equal (see :func:`same_cube`)."""
    return same_cube


@pytest.fixture
def make_cube():
    """Factory of small synthetic cubes (see :func:`synthetic_cube`)."""
    return synthetic_cube


@pytest.fixture(scope="session")
def sample() -> xr.DataArray:
    """The bundled real Sentinel-2 sample (lazy)."""
    from eocube.datasets import sentinel2_sample

    return sentinel2_sample()
