"""Chunked application equals one whole-image pass; the halo is found by probing; batching is neutral."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from eocube.models import HaloError, apply_model


@pytest.mark.parametrize(
    "chunks, tile_size",
    [({"y": 9, "x": 8, "time": 2}, None), ({"y": 20, "x": 16, "time": 3}, 6)],
    ids=["many-chunks", "tiles-inside-chunks"],
)
def test_chunked_result_equals_whole_image_forward(make_cnn, make_unit_cube, forward_whole, chunks, tile_size):
    net = make_cnn(3, kernels=(3, 5, 3))  # receptive-field radius 1 + 2 + 1 = 4
    cube = make_unit_cube(chunks=chunks)
    out = apply_model(cube, net, tile_size=tile_size, batch_size=4)
    assert out.attrs["model_halo"] == 4
    assert len(out.chunks[2]) * len(out.chunks[3]) >= 6  # really many chunks (and tiles of 6 px inside)
    ref = forward_whole(net, cube.values)
    got = out.values
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)  # borders included (no padding beyond the image)


def test_halo_smaller_than_receptive_field_shows_seams(make_cnn, make_unit_cube, forward_whole):
    net = make_cnn(3, kernels=(3, 5, 3))
    cube = make_unit_cube(chunks={"y": 9, "x": 8})
    ref = forward_whole(net, cube.values)
    err = np.abs(apply_model(cube, net, halo=1, tile_size=None).values - ref)
    assert err.max() > 1e-3  # the test above would catch a missing halo
    # seams only near chunk edges: rows 3..5 of the first chunk row are 3+ px from any edge
    assert err[:, :, 2:6, 2:5].max() < 1e-5


@pytest.mark.parametrize(
    "layers, radius",
    [
        ([nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 5, padding=2)], 3),
        ([nn.Conv2d(3, 4, 3, padding=3, dilation=3), nn.Tanh(), nn.Conv2d(4, 1, 3, padding=1)], 4),
        ([nn.Conv2d(3, 2, 1)], 0),
        ([nn.Conv2d(3, 2, 3, padding=1), nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(2, 1, 1)], 2),
    ],
    ids=["3x3+5x5", "dilated", "1x1", "maxpool"],
)
def test_probe_finds_the_receptive_field(make_unit_cube, layers, radius):
    torch.manual_seed(1)
    out = apply_model(make_unit_cube(), nn.Sequential(*layers), halo="probe")
    assert out.attrs["model_halo"] == radius


class _Thresholded(nn.Module):
    """No gradient reaches the input (the probe falls back to perturbation)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv(x) > 0).float()


def test_probe_without_gradients_uses_perturbation(make_unit_cube, forward_whole):
    torch.manual_seed(0)
    net = _Thresholded()
    cube = make_unit_cube(chunks={"y": 10, "x": 10})
    out = apply_model(cube, net)
    assert out.attrs["model_halo"] == 2
    np.testing.assert_array_equal(out.values, forward_whole(net, cube.values))


class _GlobalMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(dim=(2, 3), keepdim=True)


def test_global_receptive_field_asks_for_an_explicit_halo(make_unit_cube):
    with pytest.raises(HaloError, match="pass halo=<pixels> explicitly"):
        apply_model(make_unit_cube(), _GlobalMean())


def test_module_halo_attribute_is_used(make_cnn, make_unit_cube):
    net = make_cnn(3, kernels=(3, 3))
    net.halo = 5  # e.g. eocube.learn's GapFillNet declares its halo
    assert apply_model(make_unit_cube(), net).attrs["model_halo"] == 5
    assert apply_model(make_unit_cube(), net, halo="probe").attrs["model_halo"] == 2


def test_batch_size_does_not_change_results(make_cnn, make_unit_cube):
    net = make_cnn(3)
    cube = make_unit_cube(t=5, chunks={"y": 15, "x": 15, "time": 5})
    one = apply_model(cube, net, batch_size=1, tile_size=7).values
    many = apply_model(cube, net, batch_size=13, tile_size=7).values
    np.testing.assert_allclose(one, many, atol=1e-6, rtol=0)


def test_size_multiple_pads_tiles_for_unet_like_models(make_unit_cube):
    class Down(nn.Module):  # needs even sizes, returns the input size
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.shape[-1] % 4 == 0 and x.shape[-2] % 4 == 0, f"size {tuple(x.shape)} not a multiple of 4"
            return nn.functional.interpolate(nn.functional.avg_pool2d(self.conv(x), 2), scale_factor=2)

    cube = make_unit_cube(chunks={"y": 13, "x": 11})
    out = apply_model(cube, Down(), size_multiple=4, halo=6, tile_size=None)
    assert out.shape == (3, 2, 41, 37)
    assert np.isfinite(out.values).all()


def test_bf16_autocast_on_cpu_is_close_to_float32(make_cnn, make_unit_cube):
    net = make_cnn(3)
    cube = make_unit_cube(chunks={"y": 20, "x": 20})
    ref = apply_model(cube, net, device="cpu").values
    got = apply_model(cube, net, device="cpu", autocast="bf16")
    assert got.dtype == np.float32
    values = got.values
    assert not np.array_equal(values, ref)  # autocast really ran in bf16
    np.testing.assert_allclose(values, ref, atol=3e-2, rtol=3e-2)
