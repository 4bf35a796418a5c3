"""The network: its linear prior, its untrained behaviour and its spatial halo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eocube.learn.networks import GapFillNet, temporal_linear_fill


def linear_reference(values, valid, days):
    """np.interp per pixel (constant beyond the ends; NaN without any observation)."""
    out = np.full(values.shape, np.nan, dtype="float32")
    for i in range(values.shape[2]):
        for j in range(values.shape[3]):
            m = valid[:, i, j]
            if m.any():
                out[:, 0, i, j] = np.interp(days, days[m], values[m, 0, i, j])
    return out


def _irregular(rng, t=20, h=5, w=4):
    days = np.cumsum(rng.integers(3, 30, size=t)).astype("float64") + 16000
    values = rng.normal(size=(t, 1, h, w)).astype("float32")
    valid = rng.random((t, h, w)) < 0.5
    valid[:, 0, 0] = False  # a series with no observation at all
    valid[:, 0, 1] = False
    valid[7, 0, 1] = True  # a series with a single observation
    return values, valid, days


def test_linear_prior_matches_numpy_interp_including_edges():
    rng = np.random.default_rng(1)
    values, valid, days = _irregular(rng)
    filled, dist = temporal_linear_fill(
        torch.from_numpy(values)[None], torch.from_numpy(valid[:, None])[None], torch.from_numpy(days)[None].float()
    )
    expected = linear_reference(values, valid, days)
    got = filled[0].numpy()
    has = valid.any(axis=0)
    np.testing.assert_allclose(got[:, :, has], expected[:, :, has], atol=1e-5)
    assert np.all(got[:, 0, ~has] == 0)  # no observation at all: 0 (the normalised mean)
    assert np.all(dist[0].numpy()[valid[:, None]] == 0)
    # distance to the nearest observation of the single-observation series
    np.testing.assert_allclose(dist[0, :, 0, 0, 1].numpy(), np.abs(days - days[7]), rtol=1e-5)


def test_untrained_network_is_linear_interpolation():
    rng = np.random.default_rng(2)
    values, valid, days = _irregular(rng)
    valid[:, 0, :2] = True
    net = GapFillNet(n_bands=1, hidden=8, depth=2, kernel_t=3).eval()
    with torch.no_grad():
        out = net(torch.from_numpy(values)[None], torch.from_numpy(valid[:, None])[None], torch.from_numpy(days)[None])
    np.testing.assert_allclose(out[0].numpy(), linear_reference(values, valid, days), atol=1e-5)


def test_size_is_configurable_and_checked():
    small = GapFillNet(hidden=8, depth=2)
    big = GapFillNet(hidden=32, depth=6)

    def count(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    assert count(big) > 10 * count(small)
    assert big.halo == 6
    with pytest.raises(ValueError, match="odd"):
        GapFillNet(kernel_t=4)
    with pytest.raises(ValueError, match="band"):
        small(torch.zeros(1, 5, 2, 4, 4), torch.ones(1, 5, 2, 4, 4, dtype=torch.bool), torch.arange(5.0)[None])
