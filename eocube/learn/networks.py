"""Small default networks for segmentation and super-resolution on nested sources.

Both take one tensor per source, ``model(x_1, x_2, ...)`` with ``x_i`` of shape
``(N, C_i, H / r_i, W / r_i)`` (``r_i`` the source's pixel size over the reference's), which is
what ``apply_model`` passes for the ``band`` layout. Coarser sources are resampled to the
reference source's size inside the network (bilinear for segmentation, bicubic for
super-resolution), so the exported program runs on tiles of any size.

* :class:`SegNet`: a 1 x 1 stem on the concatenated sources, ``depth`` residual 3 x 3 blocks with
  dilations 1, 2, 4, 1, ... (context of a few tens of pixels at little cost), a 1 x 1 head giving
  class logits.
* :class:`SuperResNet`: the low-resolution bands upsampled bicubically, concatenated with the
  guide (fine) bands, ``depth`` 3 x 3 conv layers predicting a residual added to the upsampled
  bands (an untrained network is bicubic upsampling).

``halo`` (reference pixels) bounds the receptive field: the buffer of the spatial split and
the halo ``apply_model`` reads around tiles.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F


class NetConfig(dict):
    """The keyword arguments a network was built with (stored in checkpoints)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.items()}


def _resample(x: torch.Tensor, like: torch.Tensor, mode: str) -> torch.Tensor:
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode=mode, align_corners=False)


class _Block(nn.Module):
    def __init__(self, ch: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation, padding_mode="replicate")
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, padding_mode="replicate")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


class SegNet(nn.Module):
    """Per-pixel classifier over nested sources.

    Parameters
    ----------
    in_channels
        Channels of each source, in argument order.
    n_classes
        Output classes (logits).
    ratios
        Pixel size of each source over the reference's (1 for the reference).
    hidden
        Feature channels.
    depth
        Residual blocks.
    """

    def __init__(self, in_channels: Sequence[int], n_classes: int, ratios: Sequence[int] | None = None,
                 hidden: int = 32, depth: int = 4) -> None:
        super().__init__()
        ratios = list(ratios or [1] * len(in_channels))
        self.config = NetConfig(kind="segnet", in_channels=list(in_channels), n_classes=int(n_classes),
                                ratios=ratios, hidden=int(hidden), depth=int(depth))
        self.ref = ratios.index(min(ratios))
        self.stem = nn.Conv2d(sum(in_channels), hidden, 1)
        dil = [(1, 2, 4)[i % 3] for i in range(depth)]
        self.blocks = nn.ModuleList(_Block(hidden, d) for d in dil)
        self.head = nn.Conv2d(hidden, n_classes, 1)
        self.halo = int(sum(d + 1 for d in dil) + 2 * max(ratios))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, n_classes, H, W)`` on the reference grid."""
        ref = xs[self.ref]
        h = self.stem(torch.cat([_resample(x, ref, "bilinear") for x in xs], dim=1))
        for b in self.blocks:
            h = b(h)
        return self.head(F.gelu(h))


class SuperResNet(nn.Module):
    """Low-resolution bands to the guide's grid: bicubic upsampling plus a learnt residual.

    Parameters
    ----------
    in_channels
        Channels of each source, in argument order.
    low
        Index of the source whose bands are predicted (upsampled and corrected).
    ratios
        Pixel size of each source over the reference's.
    hidden
        Feature channels.
    depth
        3 x 3 conv layers.
    """

    def __init__(self, in_channels: Sequence[int], low: int, ratios: Sequence[int] | None = None,
                 hidden: int = 32, depth: int = 4) -> None:
        super().__init__()
        ratios = list(ratios or [1] * len(in_channels))
        self.config = NetConfig(kind="superres", in_channels=list(in_channels), low=int(low), ratios=ratios,
                                hidden=int(hidden), depth=int(depth))
        self.ref, self.low = ratios.index(min(ratios)), int(low)
        layers: list[nn.Module] = [nn.Conv2d(sum(in_channels), hidden, 3, padding=1, padding_mode="replicate")]
        for _ in range(depth - 2):
            layers += [nn.GELU(), nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode="replicate")]
        layers += [nn.GELU(), nn.Conv2d(hidden, in_channels[low], 3, padding=1, padding_mode="replicate")]
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)
        self.halo = int(max(depth, 2) + 3 * max(ratios))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """The low source's bands ``(N, C_low, H, W)`` on the reference grid."""
        ref = xs[self.ref]
        up = [_resample(x, ref, "bicubic") for x in xs]
        return up[self.low] + self.body(torch.cat(up, dim=1))


def build_network(config: dict[str, Any]) -> nn.Module:
    """A network from its stored :class:`NetConfig` (``kind`` ``segnet`` or ``superres``)."""
    kw = dict(config)
    kind = kw.pop("kind")
    if kind == "segnet":
        return SegNet(**kw)
    if kind == "superres":
        return SuperResNet(**kw)
    raise ValueError(f"unknown network kind {kind!r}")


__all__ = ["NetConfig", "SegNet", "SuperResNet", "build_network"]
