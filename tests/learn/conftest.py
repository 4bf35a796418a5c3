"""Shared fixtures of the eocube.learn tests: the real Sentinel-2 sample and a tiny config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eocube.datasets import sentinel2_sample
from eocube.learn.config import load_config

TINY = {
    "sampler": {"patch_size": 12, "min_clear_fraction": 0.3},
    "network": {"hidden": 8, "depth": 2, "kernel_t": 3},
    "train": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 2, "val_windows": 4, "num_workers": 0,
              "progress": False, "lr": 0.01},
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
