"""No silent wrong result (issue 13) in gap filling: nodata values are missing, smoothers stay bounded."""

from __future__ import annotations

import functools
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import eocube
from eocube.fill import BOUNDED, METHODS, STATISTICS, composite, days_to_clear, fill_gaps
from tests.conftest import synthetic_cube

ENGINES = ["numba", "numpy"]


def _digital_numbers(nodata=0, dtype="uint16", encoded=False, t=9):
    """A cube of digital numbers with nodata values scattered over it, its float twin (nodata
    replaced by NaN, NaN as nodata) and a clear mask (time, y, x) with clouds."""
    cube = synthetic_cube(t=t, h=8, w=10, dtype=dtype, nodata=None if encoded else nodata, chunks={"y": 4, "x": 5})
    rng = np.random.default_rng(3)
    holes = rng.random(cube.shape) < 0.25
    holes[:, :, 0, 0] = True  # a pixel that is nodata on every date
    cube = cube.copy(data=cube.data.map_blocks(np.copy))
    values = cube.values
    values[values == nodata] = nodata + 1 if nodata < 1 else nodata - 1  # natural ones: not nodata
    values[holes] = nodata
    cube = cube.copy(data=values).chunk({"y": 4, "x": 5})
    if encoded:  # what rioxarray reports for data read without decoding: the value in the encoding
        cube.encoding["_FillValue"] = nodata
    twin = cube.astype("float32").where(~holes).rio.write_nodata(np.nan, encoded=False)
    twin.attrs.pop("nodata", None)
    twin.encoding.pop("_FillValue", None)
    clear = xr.DataArray(rng.random((t, 8, 10)) < 0.7, dims=("time", "y", "x"),
                         coords={"time": cube.time, "y": cube.y, "x": cube.x})
    return cube, twin, clear


def _assert_nan_nodata(result: xr.DataArray) -> None:
    assert np.isnan(result.rio.nodata)
    assert result.rio.encoded_nodata is None
    for key in ("_FillValue", "missing_value", "fill_value", "nodata"):
        value = result.attrs.get(key, np.nan)
        assert value is not None and np.isnan(value), f"{key}={value!r} left on a float result"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("time_grid", [None, "3D"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_integer_nodata_is_missing_for_every_method(method, time_grid, engine):
    cube, twin, clear = _digital_numbers()
    assert cube.rio.nodata == 0 and cube.dtype == np.uint16
    got = fill_gaps(cube, clear, method=method, time_grid=time_grid, engine=engine)
    want = fill_gaps(twin, clear, method=method, time_grid=time_grid, engine=engine)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-6, atol=1e-3)
    assert np.isnan(got.values[:, :, 0, 0]).all()  # only nodata: nothing to fill from
    assert not (got.values == 0).any()  # a 0 is nodata: it never comes out as a value
    _assert_nan_nodata(got)


@pytest.mark.parametrize("nodata,dtype,encoded", [(-9999.0, "float32", False), (0, "uint16", True),
                                                  (0, "int16", False), (255, "uint8", False)])
@pytest.mark.parametrize("method", ["linear", "whittaker", "harmonic", "savgol"])
def test_float_and_encoded_nodata_is_missing(method, nodata, dtype, encoded):
    cube, twin, clear = _digital_numbers(nodata=nodata, dtype=dtype, encoded=encoded)
    if encoded:
        assert cube.rio.encoded_nodata == nodata
    got = fill_gaps(cube, clear, method=method)
    want = fill_gaps(twin, clear, method=method)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-6, atol=1e-3)
    assert not (got.values == nodata).any()
    _assert_nan_nodata(got)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kernel", sorted(METHODS))
def test_kernels_take_nodata_on_every_path(kernel, engine):
    # 4-D blocks (the compiled row kernels) and 2-D blocks (their fallbacks, and the NumPy kernels)
    rng = np.random.default_rng(5)
    days = np.cumsum(rng.integers(3, 12, 30)).astype(float)
    values = rng.integers(1, 1000, (30, 2, 3, 4)).astype("uint16")
    values[rng.random(values.shape) < 0.2] = 0
    valid = rng.random((30, 1, 3, 4)) < 0.8
    twin = np.where(values == 0, np.nan, values).astype("float32")
    for v, w, f in ((values, valid, twin), (values.reshape(30, -1), np.broadcast_to(valid, values.shape).reshape(30, -1),
                                             twin.reshape(30, -1))):
        got = METHODS[kernel](v, w, days, engine=engine, nodata=0)
        want = METHODS[kernel](f, w, days, engine=engine)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("stat", sorted(STATISTICS))
def test_composites_skip_nodata(stat, engine, monkeypatch):
    module = sys.modules["eocube.fill.composite"]
    if engine == "numpy":  # the reference kernel, through the same wrapper
        monkeypatch.setattr(module, "_composite_block", functools.partial(module._composite_block, engine="numpy"))
    cube, twin, clear = _digital_numbers(t=12)
    got = composite(cube, clear, freq="10D", stat=stat)
    want = composite(twin, clear, freq="10D", stat=stat)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-6)
    assert not (got.values == 0).any()
    _assert_nan_nodata(got)


def test_days_to_clear_counts_nodata_as_not_clear():
    cube, twin, clear = _digital_numbers()
    got = days_to_clear(clear, cube=cube)
    assert got.dims == ("time", "band", "y", "x")
    usable = (clear & (cube != 0)).transpose("time", "band", "y", "x")
    np.testing.assert_array_equal(got.values, days_to_clear(usable).values)
    np.testing.assert_array_equal(got.values, days_to_clear(clear, cube=twin).values)
    assert np.isnan(got.values[:, :, 0, 0]).all()
    assert not (got.values[cube.values == 0] == 0).any()  # a nodata value is never "observed"
    grid = days_to_clear(clear, cube=cube, time_grid="3D")
    np.testing.assert_array_equal(grid.values, days_to_clear(usable, time_grid="3D").values)


# --- case 9: smoothers stay within a plausible range ---------------------------------------------

def _sparse_ndvi(sample):
    """2 x 2 pixels on the bundled sample's 68 dates, clear only on days 60, 730 and 735."""
    times = pd.DatetimeIndex(sample.time.values)
    days = ((times - times[0]) / pd.Timedelta(days=1)).to_numpy()
    data = np.full((len(times), 1, 2, 2), np.nan, "float32")
    clear = np.zeros((len(times), 2, 2), bool)
    for day, ndvi in ((60, 0.72), (730, 0.70), (735, 0.415)):
        i = int(np.argmin(np.abs(days - day)))
        data[i] = ndvi
        clear[i] = True
    cube = eocube.make_cube(data, time=times, band=["NDVI"], y=[15.0, 5.0], x=[5.0, 15.0],
                            crs="EPSG:32633")
    mask = xr.DataArray(clear, dims=("time", "y", "x"), coords={"time": cube.time, "y": cube.y, "x": cube.x})
    return cube, mask


@pytest.mark.parametrize("engine", ENGINES)
def test_whittaker_on_a_sparse_series_stays_within_the_observed_range(sample, engine):
    cube, clear = _sparse_ndvi(sample)
    unbounded = fill_gaps(cube, clear, method="whittaker", bound=None, engine=engine).values
    assert unbounded.max() > 3.0  # the overshoot this guards against (3.5 here)
    filled, bounded = fill_gaps(cube, clear, method="whittaker", engine=engine, return_bounded=True)
    low, high = 0.415 - 0.1 * (0.72 - 0.415), 0.72 + 0.1 * (0.72 - 0.415)
    values = filled.values
    assert np.isfinite(values).all()
    assert (values >= np.float32(low)).all() and (values <= np.float32(high)).all()
    observed = np.broadcast_to(clear.values[:, None], values.shape)
    np.testing.assert_array_equal(values[observed], cube.values[observed])  # clear observations unchanged
    flags = bounded.values
    assert bounded.dtype == bool and bounded.dims == filled.dims and bounded.name == "bounded"
    assert not flags[observed].any()
    np.testing.assert_array_equal(flags, ~observed & (unbounded != values))
    assert flags.any()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("method", sorted(BOUNDED))
def test_smoothers_are_bounded_by_default_and_on_request(method, engine):
    rng = np.random.default_rng(11)
    t = 40
    times = pd.Timestamp("2021-01-01") + pd.to_timedelta(np.cumsum(rng.integers(5, 15, t)), unit="D")
    data = (0.5 + 0.3 * rng.standard_normal((t, 2, 4, 6))).astype("float32")
    cube = eocube.make_cube(data, time=times, band=["a", "b"], y=10.0 * np.arange(4), x=10.0 * np.arange(6),
                            crs="EPSG:32633", attrs={"valid_range": [0.0, 1.0]}).chunk({"y": 2})
    mask = xr.DataArray(rng.random((t, 4, 6)) < 0.25, dims=("time", "y", "x"),
                        coords={"time": cube.time, "y": cube.y, "x": cube.x})
    options = {"harmonic": {"min_obs": 4}, "savgol": {"window": 120}, "whittaker": {"lmbda": 0.1}}[method]
    free = fill_gaps(cube, mask, method=method, bound=None, engine=engine, **options).values
    filled, bounded = fill_gaps(cube, mask, method=method, engine=engine, return_bounded=True, **options)
    values, flags = filled.values, bounded.values
    ok = np.broadcast_to(mask.values[:, None], data.shape)
    low = np.where(ok, data, np.inf).min(axis=0)
    high = np.where(ok, data, -np.inf).max(axis=0)
    width = high - low
    lo = np.maximum(low - 0.1 * width, 0.0)  # intersected with the declared valid_range attribute
    hi = np.minimum(high + 0.1 * width, 1.0)
    inside = ~ok & np.isfinite(values)
    assert (values[inside] >= np.broadcast_to(lo, values.shape)[inside] - 1e-6).all()
    assert (values[inside] <= np.broadcast_to(hi, values.shape)[inside] + 1e-6).all()
    np.testing.assert_array_equal(values[ok], data[ok])  # observations kept, even outside valid_range
    np.testing.assert_array_equal(flags, ~ok & (free != values) & ~np.isnan(free))
    # declared range only, from an option; the widened observed range is not used then
    only = fill_gaps(cube, mask, method=method, engine=engine, bound="valid_range", valid_range=(0.2, 0.8),
                     **options).values
    assert (only[~ok & np.isfinite(only)] >= np.float32(0.2)).all()
    assert (only[~ok & np.isfinite(only)] <= np.float32(0.8)).all()
    np.testing.assert_allclose(only, np.where(ok, free, np.clip(free, 0.2, 0.8)), rtol=1e-6)


@pytest.mark.parametrize("method", sorted(BOUNDED))
def test_compiled_and_reference_kernels_bound_alike(method):
    rng = np.random.default_rng(2)
    days = np.cumsum(rng.integers(3, 20, 30)).astype(float)
    values = rng.normal(size=(30, 2, 5, 7)).astype("float32")
    valid = rng.random((30, 1, 5, 7)) < 0.3
    for margin, valid_range in ((0.1, None), (0.0, (-0.5, 0.5))):
        fast, fast_flags = METHODS[method](values, valid, days, margin=margin, valid_range=valid_range,
                                           return_bounded=True)
        ref, ref_flags = METHODS[method](values, valid, days, margin=margin, valid_range=valid_range,
                                         return_bounded=True, engine="numpy")
        np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=1e-4)
        assert (fast_flags != ref_flags).mean() < 0.002  # values right on a bound may round either way


def test_non_smoothers_report_no_bound_and_bad_bound_options_fail():
    cube, _, clear = _digital_numbers()
    filled, bounded = fill_gaps(cube, clear, method="linear", return_bounded=True)
    assert bounded.shape == filled.shape and not bounded.values.any()
    with pytest.raises(ValueError, match="bound"):
        _ = fill_gaps(cube, clear, method="whittaker", bound="minmax").values
    with pytest.raises(ValueError, match="valid_range"):
        _ = fill_gaps(cube, clear, method="whittaker", bound="valid_range").values
    with pytest.raises(eocube.fill.FillError, match="nodata"):
        fill_gaps(cube, clear, method="linear", nodata=5)


def test_model_quicklook_reads_an_encoded_integer_nodata_as_missing():
    """A uint16 cube read without decoding (nodata 0 in its encoding): ``rio.nodata`` raised on it."""
    pytest.importorskip("matplotlib")
    from eocube.plot.model_quicklook import _image, _pick_date

    cube, _, _ = _digital_numbers(encoded=True)
    when = pd.Timestamp(cube["time"].values[0])
    image = _image(cube, when, [str(cube["band"].values[0])], 100)
    assert np.array_equal(np.isnan(image), cube.isel(time=0, band=[0]).values == 0)
    assert 0 <= _pick_date(cube, 100) < cube.sizes["time"]
