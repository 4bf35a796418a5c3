"""The compact spatio-temporal gap-filling network.

Architecture (``GapFillNet``)
-----------------------------
Input, for a window of ``T`` dates, ``C`` bands and ``H x W`` pixels:

* ``values`` ``(B, T, C, H, W)``: normalised band values (anything where not valid);
* ``valid`` ``(B, T, C, H, W)``: True where the value is a clear observation;
* ``days`` ``(B, T)``: acquisition times in days (any origin, e.g. since 1970).

1. **Linear prior.** Every band of every pixel is linearly interpolated in time
   between its valid observations (constant beyond the first/last one), exactly
   as the classical baseline does (:func:`temporal_linear_fill`).
2. **Features per date and pixel** (``4 C + 2`` channels): the masked values,
   the validity, the linear prior, the time (days, clipped at 365) to the nearest valid
   observation of each band, and the day of year as ``sin``/``cos``.
3. **Stem**: a 1 x 1 x 1 convolution to ``hidden`` channels.
4. **``depth`` factorised (2+1)-D residual blocks**: a 3 x 3 spatial convolution
   applied to each date (context from neighbouring pixels *at the same date*,
   which is what partly cloudy dates offer), GELU, then a temporal convolution
   of width ``kernel_t`` with dilation ``2 ** (i % 3)`` applied to each pixel
   (seasonal shape from the other dates), GELU, added to the block input.
5. **Head**: a 1 x 1 x 1 convolution to ``C`` channels giving a *correction* to
   the linear prior. The head starts at zero, so an untrained network is
   exactly linear interpolation and training can only learn what the prior
   misses.

The receptive field is ``depth`` pixels in each spatial direction (the halo to
use when filling tile by tile, :attr:`GapFillNet.halo`) and the whole series
in time at inference. Size: about ``depth * hidden**2 * (9 + kernel_t)``
parameters (``hidden=24, depth=6``: about 50 k).
Padding is by replication in space and time, so windows of any size work.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class NetworkConfig:
    """Size of a :class:`GapFillNet`."""

    n_bands: int = 1
    """Number of bands filled (and read) by the network."""
    hidden: int = 24
    """Channels of the hidden feature maps."""
    depth: int = 6
    """Number of (2+1)-D residual blocks; also the spatial halo in pixels."""
    kernel_t: int = 5
    """Width of the temporal convolutions (odd)."""

    def to_dict(self) -> dict[str, int]:
        """Plain dict (stored in checkpoints)."""
        return asdict(self)


def temporal_linear_fill(
    values: torch.Tensor, valid: torch.Tensor, days: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear interpolation in time between valid observations.

    Parameters
    ----------
    values
        ``(B, T, ...)`` values; entries where ``valid`` is False are ignored.
    valid
        ``(B, T, ...)`` boolean validity.
    days
        ``(B, T)`` times in days, increasing along ``T``.

    Returns
    -------
    filled : torch.Tensor
        Like ``values``: valid entries unchanged, gaps linearly interpolated,
        constant extrapolation before the first / after the last valid value,
        0 where a series has no valid value at all.
    distance : torch.Tensor
        Days to the nearest valid observation (0 at valid entries, 1e4 where
        there is none).
    """
    b, t = values.shape[:2]
    extra = values.dim() - 2
    shape_t = (1, t) + (1,) * extra
    idx = torch.arange(t, device=values.device).view(shape_t).expand_as(values)
    neg = torch.full_like(idx, -1)
    prev = torch.where(valid, idx, neg).cummax(dim=1).values
    big = torch.full_like(idx, t)
    nxt = torch.where(valid, idx, big).flip(1).cummin(dim=1).values.flip(1)
    has_prev = prev >= 0
    has_next = nxt < t
    prev_c = prev.clamp(0, t - 1)
    next_c = nxt.clamp(0, t - 1)
    v = torch.where(valid, values, torch.zeros_like(values))
    v_prev = torch.gather(v, 1, prev_c)
    v_next = torch.gather(v, 1, next_c)
    rel = days - days[:, :1]  # relative times, in the caller's precision (float64 keeps sub-second steps)
    d = rel.to(values.dtype).reshape((b, t) + (1,) * extra).expand_as(values)
    d_prev = torch.gather(d, 1, prev_c)
    d_next = torch.gather(d, 1, next_c)
    span = (d_next - d_prev).clamp_min(1e-6)
    w = ((d - d_prev) / span).clamp(0, 1)
    both = torch.lerp(v_prev, v_next, w)
    filled = torch.where(
        has_prev & has_next, both, torch.where(has_prev, v_prev, torch.where(has_next, v_next, torch.zeros_like(v)))
    )
    filled = torch.where(valid, v, filled)
    inf = torch.full_like(d, 1e4)
    dist = torch.minimum(torch.where(has_prev, d - d_prev, inf), torch.where(has_next, d_next - d, inf))
    return filled, dist


class _Block(nn.Module):
    """One factorised (2+1)-D residual block: spatial 3x3 per date, then temporal per pixel."""

    def __init__(self, hidden: int, kernel_t: int, dilation: int) -> None:
        super().__init__()
        self.spatial = nn.Conv3d(hidden, hidden, (1, 3, 3), padding=(0, 1, 1), padding_mode="replicate")
        pad_t = dilation * (kernel_t - 1) // 2
        self.temporal = nn.Conv3d(
            hidden, hidden, (kernel_t, 1, 1), padding=(pad_t, 0, 0), dilation=(dilation, 1, 1),
            padding_mode="replicate",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, hidden, T, H, W)
        return x + F.gelu(self.temporal(F.gelu(self.spatial(x))))


class GapFillNet(nn.Module):
    """Compact spatio-temporal gap-filling network (see the module docstring).

    Parameters
    ----------
    config
        Network size; ``NetworkConfig()`` by default.
    """

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetworkConfig()
        c = self.config
        if c.kernel_t % 2 != 1:
            raise ValueError(f"kernel_t must be odd (got {c.kernel_t}): use 3, 5 or 7")
        self.stem = nn.Conv3d(4 * c.n_bands + 2, c.hidden, 1)
        self.blocks = nn.ModuleList(_Block(c.hidden, c.kernel_t, 2 ** (i % 3)) for i in range(c.depth))
        self.head = nn.Conv3d(c.hidden, c.n_bands, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def halo(self) -> int:
        """Spatial receptive-field radius in pixels (the halo for tiled inference)."""
        return self.config.depth

    def forward(self, values: torch.Tensor, valid: torch.Tensor, days: torch.Tensor) -> torch.Tensor:
        """Reconstruct every band at every date.

        Parameters
        ----------
        values
            ``(B, T, C, H, W)`` normalised values.
        valid
            ``(B, T, C, H, W)`` boolean, True at clear observations.
        days
            ``(B, T)`` acquisition times in days since 1970-01-01 (float64
        recommended: float32 resolves only about 3 minutes at today's dates).

        Returns
        -------
        torch.Tensor
            ``(B, T, C, H, W)`` reconstruction (normalised units) at every date,
            including the valid ones.
        """
        b, t, c, h, w = values.shape
        if c != self.config.n_bands:
            raise ValueError(f"the network was built for {self.config.n_bands} band(s), got {c}")
        valid = valid.bool()
        values = torch.where(valid, values, torch.zeros_like(values))
        prior, dist = temporal_linear_fill(values, valid, days)
        dist = (dist.clamp(max=365.0) / 100.0)
        phase = (2 * math.pi * torch.remainder(days, DAYS_PER_YEAR) / DAYS_PER_YEAR).to(values.dtype)
        season = torch.stack([torch.sin(phase), torch.cos(phase)], dim=2)  # (B, T, 2)
        season = season[:, :, :, None, None].expand(b, t, 2, h, w)
        feats = torch.cat([values, valid.to(values.dtype), prior, dist, season], dim=2)  # (B, T, F, H, W)
        x = self.stem(feats.transpose(1, 2))  # (B, F, T, H, W)
        for block in self.blocks:
            x = block(x)
        delta = self.head(x).transpose(1, 2)  # (B, T, C, H, W)
        return prior + delta
