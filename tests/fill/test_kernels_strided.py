"""The compiled row kernels equal the NumPy reference on strided dask-like blocks (no copy path)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from eocube.fill._fast_common import rows_contiguous
from eocube.fill._harmonic import harmonic_fill
from eocube.fill._linear import linear_fill
from eocube.fill._neighbours import nearest_fill, next_fill, previous_fill
from eocube.fill._savgol import savgol_fill
from eocube.fill._whittaker import whittaker_fill

CASES = [
    (linear_fill, {}),
    (linear_fill, {"extrapolate": "none"}),
    (nearest_fill, {}),
    (nearest_fill, {"extrapolate": "none"}),
    (previous_fill, {}),
    (previous_fill, {"extrapolate": "none"}),
    (next_fill, {}),
    (next_fill, {"extrapolate": "none"}),
    (whittaker_fill, {}),
    (whittaker_fill, {"extrapolate": "none", "keep_observed": False}),
    (whittaker_fill, {"extrapolate": "linear", "lmbda": 300.0}),
    (harmonic_fill, {}),
    (harmonic_fill, {"keep_observed": False, "harmonics": 1, "trend": False}),
    (savgol_fill, {}),
    (savgol_fill, {"keep_observed": False, "window": 45.0, "order": 1}),
    (savgol_fill, {"window": 90.0, "order": 3}),
]


@pytest.mark.parametrize("dtype, nx, ny, mask_bands, nan_fraction", list(
    itertools.product(["float32", "float64"], [3, 100, 300], [1, 7], [1, 3], [0.0, 0.02]))
    + [("uint16", 100, 7, 1, 0.0), ("int16", 300, 7, 3, 0.0)])  # digital numbers, as a STAC asset gives
def test_row_kernels_match_the_reference_on_strided_views(dtype, nx, ny, mask_bands, nan_fraction):
    # nan_fraction 0 with one mask band: the bands share their weights (Whittaker reuses one
    # factorisation); NaN values marked clear make the bands' weights differ (factorised per band).
    rng = np.random.default_rng(1)
    t = 31  # odd: the compiled products handle rows two at a time, plus the odd one
    days = np.cumsum(rng.uniform(2, 12, t)) + 100
    big = rng.normal(size=(t, 4, ny + 3, nx + 5))
    if np.dtype(dtype).kind == "f":
        big = big.astype(dtype)
        big[rng.random(big.shape) < nan_fraction] = np.nan  # NaN values marked clear must be ignored
    else:
        big = (1000 + 300 * big).astype(dtype)
    ok_big = rng.random((t, 3, ny + 3, nx + 5)) < 0.4
    ok_big[:, :, 0, :3] = False  # pixels with no clear observation
    ok_big[7, :, 0, 1] = True  # ... and with exactly one
    values = big[:, 1:4, 2:2 + ny, 3:3 + nx]  # a strided view with offsets, as dask hands over
    valid = ok_big[:, :mask_bands, 1:1 + ny, 2:2 + nx]
    assert rows_contiguous(values, valid)
    for kernel, options in CASES:
        fast = kernel(values, valid, days, **options)
        ref = kernel(values, valid, days, engine="numpy", **options)
        assert fast.shape == values.shape and fast.dtype == ref.dtype
        np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref), err_msg=f"{kernel.__name__} {options}")
        np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5, equal_nan=True, err_msg=f"{kernel.__name__} {options}")


@pytest.mark.parametrize("ndim, nx", [(3, 3), (3, 300), (4, 100)])
def test_days_to_clear_kernel_matches_the_reference_on_strided_views(ndim, nx):
    from eocube.fill.quality import distance_to_clear

    rng = np.random.default_rng(2)
    t = 31
    days = np.cumsum(rng.uniform(2, 12, t)) + 100
    days[5] = days[4] + 0.25  # a fractional day
    ok_big = rng.random((t, 3, 9, nx + 5)) < 0.3
    ok_big[:, :, 0, :3] = False  # pixels with no clear observation
    ok_big[7, :, 0, 1] = True  # ... and with exactly one
    valid = ok_big[:, 1, 1:8, 2:2 + nx] if ndim == 3 else ok_big[:, 1:3, 1:8, 2:2 + nx]
    fast = distance_to_clear(valid, days)
    ref = distance_to_clear(valid, days, engine="numpy")
    assert fast.dtype == np.float32 and fast.shape == valid.shape
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
    np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=1e-4, equal_nan=True)
    assert (fast[valid] == 0).all()


@pytest.mark.parametrize("stat", ["median", "mean", "max", "min"])
@pytest.mark.parametrize("dtype, mask_bands", [("float32", 1), ("float64", 3), ("uint16", 1)])
def test_composite_kernel_matches_the_reference_on_strided_views(stat, dtype, mask_bands):
    from eocube.fill.composite import _composite_block

    rng = np.random.default_rng(3)
    t = 31
    big = rng.normal(size=(t, 4, 10, 105))
    big[:, :, :, :50] = np.round(big[:, :, :, :50])  # ties
    if np.dtype(dtype).kind == "f":
        big = big.astype(dtype)
        big[rng.random(big.shape) < 0.02] = np.nan  # NaN values marked clear must be ignored
    else:
        big = (1000 + 300 * big).astype(dtype)
    ok_big = rng.random((t, 3, 10, 105)) < 0.6
    ok_big[:, :, 0, :3] = False  # pixels with no clear observation
    values = big[:, 1:4, 2:9, 3:103]
    valid = ok_big[:, :mask_bands, 1:8, 2:102]
    sizes = [0, 1, 2, 3, 4, 5, 6, 10]  # an empty period, odd and even lengths
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    groups = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    fast = _composite_block(values, valid, groups=groups, stat=stat)
    ref = _composite_block(values, valid, groups=groups, stat=stat, engine="numpy")
    assert fast.shape == ref.shape == (len(groups),) + values.shape[1:] and fast.dtype == ref.dtype
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
    np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=1e-6, equal_nan=True)
