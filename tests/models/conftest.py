"""Small models and cubes for the model-engine tests."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

import eocube


def cnn(in_ch: int, out_ch: int = 2, kernels: tuple[int, ...] = (3, 5, 3), hidden: int = 8, seed: int = 0) -> nn.Module:
    """A random stride-1 CNN; its receptive-field radius is sum(k // 2 for k in kernels)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    ch = in_ch
    for i, k in enumerate(kernels):
        last = i == len(kernels) - 1
        layers.append(nn.Conv2d(ch, out_ch if last else hidden, k, padding=k // 2))
        if not last:
            layers.append(nn.ReLU())
        ch = hidden
    return nn.Sequential(*layers).eval()


def unit_cube(t: int = 3, bands: tuple[str, ...] = ("a", "b", "c"), h: int = 41, w: int = 37,
              chunks: dict[str, int] | None = None, seed: int = 0) -> xr.DataArray:
    """A cube of unit-scale random values (so that 1e-5 is a meaningful tolerance)."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((t, len(bands), h, w)).astype("float32")
    x = 465000.0 + 10.0 * (np.arange(w) + 0.5)
    y = 5080000.0 - 10.0 * (np.arange(h) + 0.5)
    cube = eocube.make_cube(data, time=pd.date_range("2021-03-01", periods=t, freq="7D"), band=list(bands),
                            y=y, x=x, crs="EPSG:32633")
    return cube.chunk(chunks) if chunks else cube


def whole(model: nn.Module, *args: np.ndarray) -> np.ndarray:
    """One forward pass over the whole image (the reference)."""
    with torch.no_grad():
        return model(*[torch.from_numpy(np.ascontiguousarray(a)) for a in args]).numpy()


@pytest.fixture
def make_cnn() -> Callable[..., nn.Module]:
    return cnn


@pytest.fixture
def make_unit_cube() -> Callable[..., xr.DataArray]:
    return unit_cube


@pytest.fixture
def forward_whole() -> Callable[..., np.ndarray]:
    return whole


@pytest.fixture(autouse=True)
def _local_threads():
    """Tests run on dask's threaded scheduler unless they start a cluster."""
    import dask

    with dask.config.set(scheduler="threads", num_workers=2):
        yield
