"""The engine on a CUDA device (skipped, with its reason, where torch sees none)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from eocube.models import apply_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch (CPU build or no GPU)"),
]


def test_cuda_matches_cpu_and_auto_picks_cuda(make_cnn, make_unit_cube):
    devices: list[str] = []

    class Spy(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            devices.append(x.device.type)
            return self.inner(x)

    net = Spy(make_cnn(3))
    cube = make_unit_cube(t=4, chunks={"y": 16, "x": 16, "time": 2})
    cpu = apply_model(cube, net, device="cpu").values
    devices.clear()
    gpu = apply_model(cube, net, device="auto", batch_size=3).values
    assert set(devices) == {"cuda"}
    # cuDNN may use TF32 for convolutions: compare at that precision
    np.testing.assert_allclose(gpu, cpu, atol=5e-3, rtol=5e-3)


@pytest.mark.parametrize("autocast", ["bf16", "fp16"])
def test_autocast_on_cuda(make_cnn, make_unit_cube, autocast):
    net = make_cnn(3)
    cube = make_unit_cube(chunks={"y": 20, "x": 20})
    ref = apply_model(cube, net, device="cpu").values
    got = apply_model(cube, net, device="cuda", autocast=autocast)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.values, ref, atol=5e-2, rtol=5e-2)


def test_seamless_on_cuda_with_tiles(make_cnn, make_unit_cube):
    net = make_cnn(3, kernels=(3, 5, 3))
    cube = make_unit_cube(chunks={"y": 9, "x": 8})
    whole = apply_model(cube, net, device="cuda", chunks={"y": 41, "x": 37}, tile_size=None).values
    tiled = apply_model(cube, net, device="cuda", tile_size=5, batch_size=16).values
    np.testing.assert_allclose(tiled, whole, atol=5e-3, rtol=5e-3)


def test_prefetched_feeding_matches_plain_feeding_and_cpu(make_unit_cube):
    """Deliverable 6: pinned memory, non-blocking copies on a second stream; same numbers as without."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 3 * 16, 3, padding=1), nn.PixelShuffle(4), nn.Conv2d(3, 2, 3, padding=1)).eval()
    cube = make_unit_cube(t=4, chunks={"y": 13, "x": 11, "time": 2})
    cpu = apply_model(cube, net, device="cpu", tile_size=6).values
    plain = apply_model(cube, net, device="cuda", tile_size=6, batch_size=2, prefetch=False).values
    fed = apply_model(cube, net, device="cuda", tile_size=6, batch_size=2, prefetch=True).values
    np.testing.assert_array_equal(fed, plain)  # the same kernels on the same inputs
    np.testing.assert_allclose(fed, cpu, atol=5e-3, rtol=5e-3)


def test_feeder_overlaps_copies_with_compute():
    """The next batch's copy is issued on a side stream and waited for by an event, not a sync."""
    from eocube.models._feed import Feeder

    feeder = Feeder(torch.device("cuda"), prefetch=True)
    staged = feeder.stage([np.ones((2, 3, 8, 8), np.float32)])
    assert staged.event is not None and staged.tensors[0].device.type == "cuda"
    (t,) = feeder.ready(staged)
    assert float(t.sum()) == 2 * 3 * 8 * 8
