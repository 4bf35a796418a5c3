"""Gap filling: known answers per method, interpolate_na equality on real data, grids, quality, bad inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.signal import savgol_filter

import eocube
from eocube.errors import CubeError
from eocube.fill import METHODS, FillError, composite, days_to_clear, fill_gaps
from eocube.fill._harmonic import harmonic_fill
from eocube.fill._linear import linear_fill
from eocube.fill._neighbours import nearest_fill, next_fill, previous_fill
from eocube.fill._savgol import savgol_fill
from eocube.fill._whittaker import whittaker_fill
from eocube.masks import MaskError, clear_from_cloud_band

RNG = np.random.default_rng(42)
DAYS = np.cumsum(RNG.integers(3, 16, 40)).astype(float)  # irregular revisits


def series_cube(signal: np.ndarray, clear: np.ndarray, days: np.ndarray = DAYS, chunks=None):
    """A (time, 1, 3, 4) cube whose pixels all follow ``signal``; the mask varies per pixel."""
    t = len(days)
    data = np.broadcast_to(signal[:, None, None, None], (t, 1, 3, 4)).astype("float32").copy()
    cube = eocube.make_cube(data, time=pd.Timestamp("2020-01-01") + pd.to_timedelta(days, unit="D"), band=["v"],
                            y=100.0 - 10 * np.arange(3), x=5.0 + 10 * np.arange(4), crs="EPSG:32633")
    mask = xr.DataArray(clear, dims=("time", "y", "x"), coords={"time": cube.time, "y": cube.y, "x": cube.x})
    return (cube.chunk(chunks) if chunks else cube), mask


def random_clear(t: int, seed: int = 0, share: float = 0.6) -> np.ndarray:
    clear = np.random.default_rng(seed).random((t, 3, 4)) < share
    clear[[0, -1]] = True  # no extrapolation: every method interpolates
    return clear


@pytest.mark.parametrize("method", ["linear", "whittaker"])
def test_linear_series_is_recovered_exactly(method):
    signal = 0.2 + 0.003 * DAYS
    cube, clear = series_cube(signal, random_clear(len(DAYS)), chunks={"y": 2})
    filled = fill_gaps(cube, clear, method=method, **({"lmbda": 1e3} if method == "whittaker" else {}))
    assert filled.chunks is not None  # lazy
    np.testing.assert_allclose(filled.values[:, 0], np.broadcast_to(signal[:, None, None], (len(DAYS), 3, 4)),
                               atol=1e-5 if method == "linear" else 2e-4)


def test_sinusoid_is_recovered_by_harmonic_regression():
    signal = 0.4 + 0.25 * np.sin(2 * np.pi * DAYS / 365.25 + 1.0) + 0.05 * np.cos(4 * np.pi * DAYS / 365.25)
    clear = random_clear(len(DAYS), seed=1, share=0.5)
    clear[:, 0, 0] = False
    clear[5:30:3, 0, 0] = True  # 9 clear dates only: harmonic, not the linear fallback
    cube, mask = series_cube(signal, clear)
    # unbounded: the fit's own values before the first and after the last clear date (beyond them)
    filled = fill_gaps(cube, mask, method="harmonic", harmonics=2, trend=False, min_obs=6, bound=None)
    np.testing.assert_allclose(filled.values[:, 0], np.broadcast_to(signal[:, None, None], filled.shape[:1] + (3, 4)),
                               atol=1e-5)


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("shape", [(1,), (1, 1, 3)])  # 2-D: the NumPy path; 4-D blocks: the compiled sweeps
def test_nearest_previous_next_on_a_step(engine, shape):
    days = np.array([0, 10, 15, 20, 30.0])
    values = np.broadcast_to(np.array([1, np.nan, np.nan, np.nan, 5.0]).reshape((5,) + (1,) * len(shape)),
                             (5,) + shape).copy()
    ok = np.isfinite(values)

    def first(method, v=values, o=ok, d=days, **options):
        return METHODS[method](v, o, d, engine=engine, **options).reshape(len(d), -1)[:, 0].tolist()

    assert first("previous") == [1, 1, 1, 1, 5]
    assert first("next") == [1, 5, 5, 5, 5]
    assert first("nearest") == [1, 1, 1, 5, 5]  # 15: a tie (15 days either way) goes to the earlier one
    assert np.isnan(first("previous", values[1:], ok[1:], days[1:], extrapolate="none")[:3]).all()
    assert np.isnan(first("next", values[:-1], ok[:-1], days[:-1], extrapolate="none")[1:]).all()


def test_savgol_equals_scipy_on_regular_complete_data():
    y = RNG.normal(size=(40, 7))
    days = np.arange(40) * 5.0
    got = savgol_fill(y, np.ones_like(y, dtype=bool), days, window=50, order=2, keep_observed=False)
    np.testing.assert_allclose(got[5:-5], savgol_filter(y, 11, 2, axis=0)[5:-5], atol=1e-10)


def test_whittaker_solves_its_normal_equations():
    from eocube.fill._whittaker import penalty_bands

    y = RNG.normal(size=(len(DAYS), 5))
    ok = RNG.random(y.shape) < 0.6
    z = whittaker_fill(y, ok, DAYS, lmbda=7.0, extrapolate="linear", keep_observed=False)
    p0, p1, p2 = penalty_bands(DAYS)
    pen = np.diag(p0) + np.diag(p1, 1) + np.diag(p1, -1) + np.diag(p2, 2) + np.diag(p2, -2)
    for j in range(5):
        w = np.diag(ok[:, j].astype(float))
        np.testing.assert_allclose(z[:, j], np.linalg.solve(w + 7.0 * pen, w @ y[:, j]), atol=1e-6)


@pytest.mark.parametrize("kernel,options", [
    (linear_fill, {}), (linear_fill, {"extrapolate": "none"}),
    (nearest_fill, {}), (previous_fill, {"extrapolate": "none"}), (next_fill, {}),
    (whittaker_fill, {}), (whittaker_fill, {"extrapolate": "none", "keep_observed": False}),
    (harmonic_fill, {}), (harmonic_fill, {"keep_observed": False, "harmonics": 1}),
    (savgol_fill, {}), (savgol_fill, {"keep_observed": False, "order": 0}),
])
def test_compiled_kernels_match_the_numpy_reference(kernel, options):
    y = RNG.normal(size=(len(DAYS), 2, 5, 7)).astype("float32")
    ok = RNG.random((len(DAYS), 1, 5, 7)) < 0.5
    ok[:, :, 0, :2] = False            # no clear observation
    ok[7, :, 0, 1] = True              # exactly one
    y[3, 0, 2, 2] = np.nan             # NaN marked clear: still a gap
    fast = kernel(y, ok, DAYS, **options)
    ref = kernel(y, ok, DAYS, engine="numpy", **options)
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5)
    assert np.isnan(fast[:, :, 0, 0]).all()  # policy: no clear observation -> NaN


def test_linear_equals_xarray_interpolate_na_on_the_real_sample(sample):
    cube = sample.chunk({"time": -1, "band": 1, "y": 32, "x": 32})
    clear = clear_from_cloud_band(cube, "CLM", data_band="IS_DATA")
    ours = fill_gaps(cube, clear, bands="NDVI").compute()
    ref = cube.sel(band=["NDVI"]).where(clear).interpolate_na("time", use_coordinate=True).compute()
    both = ours.notnull() & ref.notnull()
    assert int(both.sum()) > 0.9 * ours.size
    assert float(abs(ours - ref).where(both).max()) < 1e-5


def test_every_method_runs_on_the_real_sample_and_keeps_observations(sample):
    cube = sample.chunk({"time": -1, "band": 1, "y": 64, "x": 64})
    clear = clear_from_cloud_band(cube, "CLM", data_band="IS_DATA")
    ndvi = cube.sel(band=["NDVI"]).values
    ok = clear.values[:, None] & np.isfinite(ndvi)
    for method in METHODS:
        filled = fill_gaps(cube, clear, method=method, bands="NDVI")
        values = filled.values
        assert filled.rio.crs == cube.rio.crs and filled.attrs["eocube_fill"] == method
        np.testing.assert_array_equal(values[ok], ndvi[ok])
        assert np.isfinite(values).all()  # every pixel has clear observations in this sample


def test_regular_time_grid_and_quality():
    signal = 1.0 + 0.01 * DAYS
    clear = random_clear(len(DAYS), seed=3)
    cube, mask = series_cube(signal, clear)
    filled = fill_gaps(cube, mask, time_grid="10D")
    grid = pd.date_range(cube.time.values[0], cube.time.values[-1], freq="10D")
    assert (pd.DatetimeIndex(filled.time.values) == grid).all()
    expected = 1.0 + 0.01 * ((grid - pd.Timestamp("2020-01-01")) / pd.Timedelta(days=1)).to_numpy()
    np.testing.assert_allclose(filled.values[:, 0, 1, 2], expected, rtol=1e-5)
    monthly = fill_gaps(cube, mask, time_grid="monthly")
    assert (pd.DatetimeIndex(monthly.time.values).day == 1).all()

    quality = days_to_clear(mask)
    q = quality.values
    assert (q[clear] == 0).all() and (q[~clear] > 0).all()
    t = np.argwhere(~clear[:, 0, 0])[0][0]
    clear_days = DAYS[clear[:, 0, 0]]
    assert q[t, 0, 0] == pytest.approx(np.min(np.abs(clear_days - DAYS[t])))
    assert days_to_clear(mask, time_grid="10D").sizes["time"] == len(grid)


def test_no_clear_observation_gives_nan_value_and_quality():
    cube, mask = series_cube(np.ones(len(DAYS)), random_clear(len(DAYS)))
    mask[:, 1, 1] = False
    for method in METHODS:
        assert np.isnan(fill_gaps(cube, mask, method=method).values[:, 0, 1, 1]).all(), method
    assert np.isnan(days_to_clear(mask).values[:, 1, 1]).all()


def test_monthly_median_composite():
    days = np.array([0, 5, 10, 40, 45, 100.0])
    values = np.array([1, 2, 30, 4, 6, 9.0])
    clear = np.ones((6, 3, 4), dtype=bool)
    clear[2] = False  # the outlier is cloudy
    cube, mask = series_cube(values, clear, days=days)
    comp = composite(cube, mask, freq="MS")
    assert comp.chunks is not None
    assert pd.DatetimeIndex(comp.time.values).strftime("%m-%d").tolist() == ["01-01", "02-01", "03-01", "04-01"]
    got = comp.values[:, 0, 0, 0]
    np.testing.assert_allclose(got[[0, 1, 3]], [1.5, 5.0, 9.0])
    assert np.isnan(got[2])  # March: no observation
    eocube.validate_cube(comp)


def test_bad_inputs_give_clear_errors(make_cube):
    cube = make_cube(t=6)
    clear = xr.ones_like(cube.isel(band=0, drop=True), dtype=bool)
    with pytest.raises(FillError, match="unknown gap-filling method 'spline'.*linear"):
        fill_gaps(cube, clear, method="spline")
    with pytest.raises(FillError, match="has no option.*lmbda"):
        fill_gaps(cube, clear, method="linear", lmbda=3)
    with pytest.raises(MaskError, match="dims"):
        fill_gaps(cube, clear.isel(y=0))
    with pytest.raises(MaskError, match="time coordinate does not match"):
        fill_gaps(cube, clear.isel(time=slice(0, 5)))
    with pytest.raises(CubeError, match="not sorted"):
        fill_gaps(cube.isel(time=[1, 0, 2, 3, 4, 5]))
    dup = cube.isel(time=[0, 0, 1, 2, 3, 4])
    with pytest.raises(CubeError, match="duplicate dates"):
        fill_gaps(dup)
    chunked = cube.chunk({"time": 2})
    with pytest.raises(FillError, match="split into 3 chunks.*cube.chunk"):
        fill_gaps(chunked, clear, rechunk=False)
    auto = fill_gaps(chunked, clear)
    assert len(auto.chunks[0]) == 1
    np.testing.assert_array_equal(auto.values, fill_gaps(cube, clear).values)
    with pytest.raises(FillError, match="not a pandas frequency"):
        fill_gaps(cube, clear, time_grid="fortnightly-ish")


@pytest.mark.parametrize("method", ["whittaker", "harmonic"])
def test_shared_mask_brings_bands_together_for_methods_that_share_work(make_cube, method):
    cube = make_cube(t=12, bands=("blue", "red", "nir")).chunk({"time": 4, "band": 1})
    clear = xr.DataArray(np.random.default_rng(3).random((12, cube.sizes["y"], cube.sizes["x"])) < 0.7,
                         dims=("time", "y", "x"), coords={"time": cube.time, "y": cube.y, "x": cube.x})
    merged = fill_gaps(cube, clear, method=method)
    assert merged.chunks[0] == (12,) and merged.chunks[1] == (1, 1, 1)  # one task per pixel block, all bands
    # the band blocks go to the kernel as a list: no band rechunk (a concatenation copy) in the graph
    fresh = make_cube(t=12, bands=("blue", "red", "nir")).chunk({"time": -1, "band": 1})
    whole_time = fill_gaps(fresh, clear.chunk({"time": -1}), method=method)
    assert whole_time.chunks[1] == (1, 1, 1) and any("groups" in name for name in whole_time.data.dask.layers)
    assert not [name for name in whole_time.data.dask.layers if "rechunk" in name]
    per_band = xr.concat([fill_gaps(cube.isel(band=[b]), clear, method=method) for b in range(3)], dim="band")
    np.testing.assert_allclose(merged.values, per_band.values, rtol=1e-6, atol=1e-6)
    # bands kept apart where nothing is shared: per-band masks, or a method without shared work
    per_band_mask = clear.expand_dims(band=cube.band.values).transpose("time", "band", "y", "x")
    for apart in (fill_gaps(cube, per_band_mask, method=method), fill_gaps(cube, clear, method="linear")):
        assert apart.chunks[1] == (1, 1, 1) and not any("groups" in name for name in apart.data.dask.layers)
    with pytest.raises(FillError, match="split into 3 chunks"):
        fill_gaps(cube, clear, method=method, rechunk=False)


def test_without_a_mask_the_kernels_get_real_mask_blocks(make_cube):
    # dask's ones() are broadcast (zero strides), which the compiled row kernels refuse: a cube
    # whose gaps are only NaN would silently take the slow fallback paths.
    from eocube.fill._fast_common import rows_contiguous
    from eocube.fill.temporal import _valid_array

    cube = make_cube(t=6).chunk({"time": -1, "band": 1})
    valid = _valid_array(cube, None, cube.data.chunks)
    block = valid.blocks[0, 0, 0, 0].compute()
    assert block.all() and block.strides[3] == 1
    assert rows_contiguous(cube.data.blocks[0, 0, 0, 0].compute().astype("float32"), block)


def test_band_views_take_dask_band_blocks_without_a_copy():
    from eocube.fill._common import as_block
    from eocube.fill._fast_common import band_views
    from eocube.fill._harmonic import harmonic_fill
    from eocube.fill._whittaker import whittaker_fill

    rng = np.random.default_rng(5)
    cube = rng.random((10, 3, 4, 5)).astype("float32")
    valid = rng.random((10, 1, 4, 5)) < 0.7
    blocks = [cube[:, b:b + 1] for b in range(3)]  # strided views, as dask hands over an in-memory cube's blocks
    views = band_views(blocks, valid)
    assert len(views) == 3 and all(np.shares_memory(v, cube[:, b]) for b, v in enumerate(views))
    days = np.arange(10.0) * 5
    for kernel in (whittaker_fill, harmonic_fill):
        result = kernel(blocks, valid, days)  # a list in, a list out: one result block per band block
        assert isinstance(result, list) and [r.shape for r in result] == [b.shape for b in blocks]
        np.testing.assert_array_equal(np.concatenate(result, axis=1), kernel(cube, valid, days))
        np.testing.assert_allclose(np.concatenate(result, axis=1), kernel(cube, valid, days, engine="numpy"),
                                   rtol=1e-5, atol=1e-5)
    # blocks numba types differently (a contiguous one among views): concatenated, same result
    mixed = [np.ascontiguousarray(blocks[0])] + blocks[1:]
    assert band_views(mixed, valid) is None
    np.testing.assert_array_equal(as_block(mixed), cube)
    np.testing.assert_array_equal(whittaker_fill(mixed, valid, days), whittaker_fill(cube, valid, days))
    # a per-band mask: each band its own
    per_band = rng.random((10, 3, 4, 5)) < 0.7
    np.testing.assert_array_equal(np.concatenate(harmonic_fill(blocks, per_band, days), axis=1),
                                  harmonic_fill(cube, per_band, days))
