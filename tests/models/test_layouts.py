"""Layouts (band / time x band / sequence), extra inputs, nodata policy, labels of the output cube."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

from eocube.models import apply_model


def _same_grid(out: xr.DataArray, cube: xr.DataArray) -> None:
    assert out.dims == ("time", "band", "y", "x")
    np.testing.assert_array_equal(out["y"].values, cube["y"].values)
    np.testing.assert_array_equal(out["x"].values, cube["x"].values)
    assert out.rio.crs == cube.rio.crs
    assert out.rio.transform() == cube.rio.transform()


def test_time_band_layout_single_map(make_cnn, make_unit_cube, forward_whole):
    cube = make_unit_cube(t=4, chunks={"y": 12, "x": 12})
    net = make_cnn(4 * 3, out_ch=3, kernels=(3, 3))  # channels = 4 dates x 3 bands, time-major
    out = apply_model(cube, net, layout="time_band", out_bands=["p", "q", "r"])
    _same_grid(out, cube)
    assert list(out["band"].values) == ["p", "q", "r"]
    np.testing.assert_array_equal(out["time"].values, cube["time"].values[-1:])  # a map is dated at the last date
    x = cube.values.reshape(1, 12, 41, 37)  # (t, c) -> t * C + c
    np.testing.assert_allclose(out.values, forward_whole(net, x), atol=1e-5, rtol=0)
    dated = apply_model(cube, net, layout="time_band", out_time="2021-12-31")
    assert pd.Timestamp(dated["time"].values[0]) == pd.Timestamp("2021-12-31")


def test_time_band_layout_per_date_output(make_cnn, make_unit_cube, forward_whole):
    cube = make_unit_cube(t=4, chunks={"y": 20, "x": 20})
    net = make_cnn(12, out_ch=4 * 2, kernels=(3,))
    out = apply_model(cube, net, layout="time_band", out_bands=["u", "v"])  # 8 = 4 dates x 2 names -> per date
    assert out.shape == (4, 2, 41, 37)
    np.testing.assert_array_equal(out["time"].values, cube["time"].values)
    ref = forward_whole(net, cube.values.reshape(1, 12, 41, 37)).reshape(4, 2, 41, 37)
    np.testing.assert_allclose(out.values, ref, atol=1e-5, rtol=0)


class _Seq(nn.Module):
    """(N, T, C, H, W) -> (N, T, C, H, W): a 3x3 spatial and 3-date temporal convolution."""

    def __init__(self, c: int) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv3d(c, c, (3, 3, 3), padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


def test_sequence_layout_round_trips_dims_and_coords(make_unit_cube, forward_whole):
    cube = make_unit_cube(t=5, chunks={"y": 10, "x": 10, "time": 2})
    net = _Seq(3)
    out = apply_model(cube, net, layout="sequence", out_bands="input", tile_size=8, batch_size=3)
    _same_grid(out, cube)
    np.testing.assert_array_equal(out["time"].values, cube["time"].values)
    assert list(out["band"].values) == list(cube["band"].values)
    assert out.attrs["model_halo"] == 1
    np.testing.assert_allclose(out.values, forward_whole(net, cube.values[None])[0], atol=1e-5, rtol=0)


class _GapFillLike(nn.Module):
    """Same call signature as eocube.learn's network: forward(values, valid, days)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[tuple[int, ...], ...]] = []

    def forward(self, values: torch.Tensor, valid: torch.Tensor, days: torch.Tensor) -> torch.Tensor:
        assert valid.dtype == torch.bool and valid.shape == values.shape
        # a filled value where invalid: mean of valid values over time, plus the day number / 1e5
        v = torch.where(valid, values, torch.zeros_like(values))
        mean = v.sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp_min(1)
        return torch.where(valid, values, mean) + days[:, :, None, None, None] / 1e5


def test_sequence_with_validity_and_days_arguments(make_unit_cube):
    cube = make_unit_cube(t=4, bands=("ndvi",), chunks={"y": 16, "x": 16})
    data = cube.values.copy()
    data[1, 0, 5:9, 3:7] = np.nan  # a cloud
    data[:, 0, 30, 30] = np.nan  # never observed
    cube = cube.copy(data=da.from_array(data, chunks=(4, 1, 16, 16)))
    out = apply_model(cube, _GapFillLike(), layout="sequence", valid_input="argument", time_input="days",
                      out_bands="input", mask_output=None, halo=0)
    got = out.values
    days = ((pd.DatetimeIndex(cube["time"].values) - pd.Timestamp("1970-01-01")).days.values / 1e5).astype("float32")
    mean = np.nanmean(np.delete(data[:, 0, 5:9, 3:7], 1, axis=0), axis=0)
    np.testing.assert_allclose(got[1, 0, 5:9, 3:7], mean + days[1], rtol=1e-6)
    np.testing.assert_allclose(got[0, 0, 0, 0], data[0, 0, 0, 0] + days[0], rtol=1e-6)
    assert np.isfinite(got).all()  # gap filling: mask_output=None keeps every output
    masked = apply_model(cube, _GapFillLike(), layout="sequence", valid_input="argument", time_input="days",
                         out_bands="input", mask_output="all", halo=0).values
    assert np.isnan(masked[:, 0, 30, 30]).all() and np.isfinite(masked[1, 0, 5:9, 3:7]).all()


class _Echo(nn.Module):
    def forward(self, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        return x


def test_validity_channel_and_time_features_in_band_layout(make_unit_cube):
    cube = make_unit_cube(t=3, bands=("a", "b"), chunks={"y": 20, "x": 20})
    data = cube.values.copy()
    data[2, 1, 0:4, 0:4] = np.nan
    cube = cube.copy(data=data)
    seen: list[torch.Tensor] = []

    class Echo(_Echo):
        def forward(self, x: torch.Tensor, doy: torch.Tensor) -> torch.Tensor:
            seen.append(doy.clone())
            return x

    out = apply_model(cube, Echo(), valid_input="channel", time_input="doy", mask_output=None, fill_value=-7.0,
                      halo=0, out_bands=["a", "b", "valid"])
    got = out.values
    assert (got[2, 2, 0:4, 0:4] == 0).all() and (got[:2, 2] == 1).all() and (got[2, 2, 4:, 4:] == 1).all()
    assert (got[2, 1, 0:4, 0:4] == -7.0).all()
    assert torch.cat(seen).unique().tolist() == sorted(pd.DatetimeIndex(cube["time"].values).dayofyear.astype(float))


def test_nodata_is_filled_before_and_marked_after(make_cnn, make_unit_cube, forward_whole):
    cube = make_unit_cube(t=2, chunks={"y": 14, "x": 14})
    data = cube.values.copy()
    data[0, 1, 10:15, 20:25] = np.nan
    cube = cube.copy(data=da.from_array(data, chunks=(1, 3, 14, 14)))
    net = make_cnn(3, kernels=(3, 3))
    out = apply_model(cube, net, fill_value=0.5).values
    ref = forward_whole(net, np.nan_to_num(data, nan=0.5))
    hole = np.zeros(out.shape, bool)
    hole[0, :, 10:15, 20:25] = True
    assert np.isnan(out[hole]).all()
    np.testing.assert_allclose(out[~hole], ref[~hole], atol=1e-5, rtol=0)
    assert out.dtype == np.float32


@pytest.mark.parametrize("encoded", [False, True], ids=["attribute", "encoding"])
def test_integer_cube_with_nodata_value_and_class_map(make_unit_cube, encoded):
    cube = make_unit_cube(t=2, bands=("a", "b"), chunks={"y": 20, "x": 20})
    ints = (np.abs(cube.values) * 1000).astype("uint16") + 1
    ints[1, :, 0:3, 0:3] = 0
    cube = cube.copy(data=ints).rio.write_nodata(0, encoded=encoded)  # encoded: _FillValue in .encoding
    torch.manual_seed(0)
    net = nn.Conv2d(2, 4, 1)
    out = apply_model(cube, net, postprocess="argmax")
    assert out.dtype == np.uint8 and list(out["band"].values) == ["class"] and out.rio.nodata == 255
    got = out.values
    with torch.no_grad():
        ref = net(torch.from_numpy(ints.astype("float32"))).argmax(1).numpy()
    assert (got[1, 0, 0:3, 0:3] == 255).all()
    valid = np.ones(got.shape[:1] + got.shape[2:], bool)
    valid[1, 0:3, 0:3] = False
    np.testing.assert_array_equal(got[:, 0][valid], ref[valid])


def test_real_sentinel2_sample_keeps_grid_and_dates(sample):
    cube = sample.sel(band=["NDVI", "CLP"]).astype("float32")
    torch.manual_seed(0)
    net = nn.Conv2d(2, 1, 1)
    out = apply_model(cube, net, out_bands=["score"], chunks={"y": 50, "x": 50, "time": 17})
    _same_grid(out, cube)
    np.testing.assert_array_equal(out["time"].values, cube["time"].values)
    assert out.rio.crs.to_epsg() == 32633
    x = cube.values
    w, b = net.weight.detach().numpy()[0, :, 0, 0], float(net.bias.detach())
    expected = w[0] * x[:, 0] + w[1] * x[:, 1] + b
    expected[np.isnan(x).any(axis=1)] = np.nan
    np.testing.assert_allclose(out.values[:, 0], expected, atol=1e-5, rtol=1e-6)


def test_apply_model_builds_the_graph_without_reading_pixels(make_cnn, make_unit_cube):
    cube = make_unit_cube(chunks={"y": 20, "x": 20})

    def boom(block: np.ndarray) -> np.ndarray:
        raise RuntimeError("pixels were read")

    lazy = cube.copy(data=cube.data.map_blocks(boom, dtype="float32"))
    out = apply_model(lazy, make_cnn(3), halo=4)  # no error here: nothing computed
    with pytest.raises(RuntimeError, match="pixels were read"):
        out.compute()
