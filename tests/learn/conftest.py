"""Shared fixtures of the eocube.learn tests: the real Sentinel-2 sample and a tiny config."""

from __future__ import annotations

import types

import dask.array as da
import numpy as np
import pytest
import torch
from scipy import ndimage

from eocube.cube import make_cube
from eocube.datasets import sentinel2_sample
from eocube.learn.config import load_config

TINY = {
    "sampler": {"patch_size": 12, "min_clear_fraction": 0.3},
    "network": {"hidden": 8, "depth": 2, "kernel_t": 3},
    "train": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 2, "val_windows": 4, "num_workers": 0,
              "progress": False, "lr": 0.01, "export": False},
}
"""A network and run small enough for a test (seconds on 2 cores)."""


@pytest.fixture(scope="session")
def sample():
    """The bundled real cube, loaded once (lazy-reading tests open their own)."""
    return sentinel2_sample().compute()


@pytest.fixture
def tiny_config():
    """Training config of a few small steps."""
    return load_config(overrides=TINY)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)

# --- tiny synthetic scenes for segmentation and super-resolution (10 m + 20 m sources, labels)

CLASS_VALUES = [1, 3, 7]
CLASS_NAMES = ["forest", "water", "farm"]
CLASS_COLORS = ["#1b7837", "#2166ac", "#e0c35a"]


def _coords(n: int, res: float, x0: float = 500000.0, y0: float = 5800000.0):
    return y0 - res * (np.arange(n) + 0.5), x0 + res * (np.arange(n) + 0.5)


def scene(size: int = 128, seed: int = 0, chunks: int | None = 32):
    """``(s10, s20, labels)``: 4 bands at 10 m, 2 bands at 20 m, uint8 labels (0 = unlabelled) at 10 m.

    Classes are smooth blobs; each band is a class-dependent level plus noise, so a small
    network separates them. Lazy (dask) when ``chunks`` is given.
    """
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), 6)
    idx = np.digitize(field, np.quantile(field, [0.4, 0.7]))
    labels = np.asarray(CLASS_VALUES, dtype="uint8")[idx]
    labels[rng.random((size, size)) < 0.2] = 0  # unlabelled
    level10 = np.array([[0.1, 0.3, 0.2, 0.6], [0.05, 0.08, 0.04, 0.02], [0.2, 0.25, 0.3, 0.35]])
    b10 = level10[idx].transpose(2, 0, 1) + 0.03 * rng.normal(size=(4, size, size))
    level20 = np.array([[0.4, 0.2], [0.02, 0.01], [0.3, 0.4]])
    fine20 = level20[idx].transpose(2, 0, 1) + 0.02 * ndimage.gaussian_filter(rng.normal(size=(2, size, size)), (0, 1, 1))
    b20 = fine20.reshape(2, size // 2, 2, size // 2, 2).mean((2, 4))

    def cube(a, bands, res, dtype="float32", **kw):
        arr = a[None].astype(dtype)
        if chunks:
            arr = da.from_array(arr, chunks=(1, -1, chunks // (res // 10), chunks // (res // 10)))
        y, x = _coords(a.shape[-1], res)
        return make_cube(arr, time=["2024-06-01"], band=bands, y=y, x=x, crs="EPSG:32633", **kw)

    s10 = cube(b10, ["B02", "B03", "B04", "B08"], 10)
    s20 = cube(b20, ["B11", "B12"], 20)
    lab = cube(labels[None], ["label"], 10, dtype="uint8", nodata=0,
               attrs={"class_values": CLASS_VALUES, "class_names": CLASS_NAMES, "class_colors": CLASS_COLORS})
    return s10, s20, lab, fine20


@pytest.fixture
def synth():
    """The synthetic scene maker and its classes: ``synth.scene(size)``, ``synth.CLASS_VALUES``."""
    return types.SimpleNamespace(scene=scene, CLASS_VALUES=CLASS_VALUES, CLASS_NAMES=CLASS_NAMES, CLASS_COLORS=CLASS_COLORS)
