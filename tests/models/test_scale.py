"""Outputs at another scale than the reference grid: super-resolution and strided classifiers.

Each model runs chunk-wise on chunks and tiles that do not divide the image and must equal one
whole-image forward pass (max abs difference <= 1e-5), on an output grid whose transform is the
input's scaled (same corner, pixel size divided by the scale, CRS kept).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from eocube.models import (
    ModelSpec,
    OutputShapeError,
    OutputSpec,
    SourceSpec,
    apply_model,
)


def super_resolution(in_ch: int = 3, factor: int = 4, seed: int = 0) -> nn.Module:
    """A x``factor`` super-resolution network (convolutions, then PixelShuffle)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_ch, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, in_ch * factor * factor, 3, padding=1), nn.PixelShuffle(factor),
        nn.Conv2d(in_ch, 2, 3, padding=1),
    ).eval()


def strided(in_ch: int = 3, classes: int = 4, kernel: int = 3, seed: int = 0) -> nn.Module:
    """A /4 classifier: two stride-2 convolutions (``padding = kernel // 2`` for odd kernels)."""
    torch.manual_seed(seed)
    pad = kernel // 2 if kernel % 2 else 0
    return nn.Sequential(
        nn.Conv2d(in_ch, 8, kernel, stride=2, padding=pad), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, classes, kernel, stride=2, padding=pad),
    ).eval()


def _grid_scaled(out, cube, factor: float) -> None:
    t_in, t_out = cube.rio.transform(), out.rio.transform()
    assert t_out.a == pytest.approx(t_in.a / factor) and t_out.e == pytest.approx(t_in.e / factor)
    assert (t_out.c, t_out.f) == pytest.approx((t_in.c, t_in.f))
    assert out.rio.crs == cube.rio.crs
    np.testing.assert_allclose(out["x"].values, t_out.c + t_out.a * (np.arange(out.sizes["x"]) + 0.5))
    np.testing.assert_allclose(out["y"].values, t_out.f + t_out.e * (np.arange(out.sizes["y"]) + 0.5))


def test_x4_super_resolution_is_seamless_on_a_4x_finer_grid(make_unit_cube, forward_whole):
    net = super_resolution()
    cube = make_unit_cube(chunks={"y": 9, "x": 8, "time": 2})  # 41 x 37 px: chunks and tiles do not divide it
    out = apply_model(cube, net, tile_size=5, batch_size=3)
    assert out.shape == (3, 2, 164, 148) and out.attrs["model_scale"] == "4"
    assert len(out.chunks[2]) * len(out.chunks[3]) >= 12
    _grid_scaled(out, cube, 4)
    ref = forward_whole(net, cube.values)
    np.testing.assert_allclose(out.values, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kernel, size", [(3, (11, 10)), (2, (10, 9))], ids=["ceil-padded-3x3", "floor-2x2"])
def test_stride_4_classifier_is_seamless_on_a_4x_coarser_grid(make_unit_cube, forward_whole, kernel, size):
    net = strided(kernel=kernel)
    cube = make_unit_cube(chunks={"y": 10, "x": 9, "time": 3})  # boundaries not on multiples of 4
    out = apply_model(cube, net, tile_size=6, batch_size=2)
    ref = forward_whole(net, cube.values)  # 41 x 37 px -> ceil (3x3, padding 1) or floor (2x2) of / 4
    assert ref.shape[-2:] == size and out.shape == (3, 4) + size
    assert out.attrs["model_scale"] == "1/4" and out.attrs["model_halo"] % 4 == 0
    _grid_scaled(out, cube, 0.25)
    np.testing.assert_allclose(out.values, ref, atol=1e-5, rtol=0)
    classes = apply_model(cube, net, postprocess="argmax", tile_size=7)
    np.testing.assert_array_equal(classes.values[:, 0], ref.argmax(1))


def test_nodata_reaches_the_output_pixels_it_covers(make_unit_cube):
    cube = make_unit_cube(t=1, chunks={"y": 16, "x": 16})
    data = cube.values.copy()
    data[0, 1, 10, 21] = np.nan
    cube = cube.copy(data=data)
    fine = apply_model(cube, super_resolution()).values
    hole = np.isnan(fine[0, 0])
    assert hole.sum() == 16 and hole[40:44, 84:88].all()  # the 4 x 4 output pixels of input pixel (10, 21)
    coarse = apply_model(cube, strided()).values
    assert np.isnan(coarse[0, 0]).sum() == 1 and np.isnan(coarse[0, 0, 2, 5])  # (10 // 4, 21 // 4)


def test_declared_scale_is_checked_and_used(make_unit_cube):
    cube = make_unit_cube(chunks={"y": 20, "x": 20})
    spec = ModelSpec(sources=(SourceSpec(),), output=OutputSpec(scale=Fraction(1, 4)))
    out = apply_model(cube, strided(), spec)
    assert out.shape[-2:] == (11, 10)
    with pytest.raises(OutputShapeError, match=r"scale is /4 .* but the spec declares x2"):
        apply_model(cube, strided(), scale=2)


class _Resize(nn.Module):
    """Output 3/2 the input size: not an integer ratio."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=1.5, mode="nearest")


def test_output_scale_that_is_not_an_integer_ratio(make_unit_cube):
    with pytest.raises(OutputShapeError, match="the model's output scale is not an integer ratio"):
        apply_model(make_unit_cube(), _Resize())
