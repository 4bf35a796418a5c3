"""The small default networks of the tasks: segmentation, super-resolution, gap filling.

Each network records the keyword arguments it was built with as a :class:`NetConfig` (with its
``kind``), stored in checkpoints; :func:`build_network` rebuilds it.

SegNet and SuperResNet take one tensor per source, ``model(x_1, x_2, ...)`` with ``x_i`` of shape
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

* :class:`GapFillNet` (gap filling; architecture below) takes the ``sequence`` layout,
  ``model(values, valid, days)``.

Architecture of ``GapFillNet``
------------------------------
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
6. **Interval head** (``quantiles=(lo, hi)``, optional): two 1 x 1 x 1 convolutions on the
   *detached* block features give, per band, how far the ``lo`` and ``hi`` quantiles lie below
   and above the fill (softplus, so ``lower <= fill <= upper``). It is trained with the pinball
   loss beside the fill's MSE; as its input and the fill are detached, it never changes what the
   fill learns. ``forward(..., with_interval=True)`` returns ``(fill, lower, upper)``.

The receptive field is ``depth`` pixels in each spatial direction (the halo to
use when filling tile by tile, :attr:`GapFillNet.halo`) and the whole series
in time at inference. Size: about ``depth * hidden**2 * (9 + kernel_t)``
parameters (``hidden=24, depth=6``: about 50 k).
Padding is by replication in space and time, so windows of any size work.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..names import SUPERRES_PRIORS
from .errors import LearnError


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


def _box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over ``window x window`` neighbourhoods (reflected at the edges), same size as ``x``."""
    r = window // 2
    if r == 0:
        return x
    return F.avg_pool2d(F.pad(x, (r, r, r, r), mode="reflect"), window, stride=1)


def guided_upsample(low: torch.Tensor, guide: torch.Tensor, window: int = 7, eps: float = 1e-3) -> torch.Tensor:
    """Guided super-resolution in torch: local linear regression on the guide bands plus the bicubic residual.

    The torch twin of :func:`eocube.baselines.guided_highpass` (with the guide brought to the low
    resolution by its area mean), used as the prior of :class:`SuperResNet` (``prior="guided"``).

    Parameters
    ----------
    low
        ``(N, C, h, w)`` bands to super-resolve (normalised units).
    guide
        ``(N, K, h*f, w*f)`` guide bands at the fine scale (normalised units).
    window
        Edge (low-resolution pixels, odd) of each local regression's window.
    eps
        Ridge added to the guides' local covariance (normalised units, so relative to their variance): where the
        guides barely vary the regression shrinks to the window's mean and the result to bicubic.

    Returns
    -------
    torch.Tensor
        ``(N, C, h*f, w*f)``.
    """
    n, c, h, w = low.shape
    k = guide.shape[1]
    f = guide.shape[-1] // w
    gl = F.avg_pool2d(guide, f) if f > 1 else guide
    mg, ml = _box_mean(gl, window), _box_mean(low, window)
    cgg = _box_mean((gl[:, :, None] * gl[:, None]).reshape(n, k * k, h, w), window).reshape(n, k, k, h, w)
    cgg = cgg - mg[:, :, None] * mg[:, None]
    cgl = _box_mean((low[:, :, None] * gl[:, None]).reshape(n, c * k, h, w), window).reshape(n, c, k, h, w)
    cgl = cgl - ml[:, :, None] * mg[:, None]
    eye = torch.eye(k, dtype=low.dtype, device=low.device)
    a = torch.linalg.solve(cgg.permute(0, 3, 4, 1, 2) + eps * eye, cgl.permute(0, 3, 4, 2, 1))  # (n, h, w, k, c)
    a = a.permute(0, 4, 3, 1, 2)                                                               # (n, c, k, h, w)
    b = ml - (a * mg[:, None]).sum(2)
    a = _box_mean(a.reshape(n, c * k, h, w), window)
    b = _box_mean(b, window)
    fit_low = (a.reshape(n, c, k, h, w) * gl[:, None]).sum(2) + b
    size = guide.shape[-2:]
    a_f = F.interpolate(a, size=size, mode="bilinear", align_corners=False).reshape(n, c, k, *size)
    b_f = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
    resid = F.interpolate(low - fit_low, size=size, mode="bicubic", align_corners=False)
    return (a_f * guide[:, None]).sum(2) + b_f + resid


PRIORS = SUPERRES_PRIORS
"""What :class:`SuperResNet` adds its learnt residual to (:data:`eocube.names.SUPERRES_PRIORS`)."""


class SuperResNet(nn.Module):
    """Low-resolution bands to the guide's grid: a prior (bicubic, or guided regression) plus a learnt residual.

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
    prior
        ``bicubic``: the low bands upsampled bicubically (an untrained network is bicubic upsampling).
        ``guided``: :func:`guided_upsample` of the low bands on the reference source's bands (an untrained
        network is the guided baseline), also given to the layers as input.
    window
        ``prior="guided"``: edge of the local regressions' windows, in pixels of the low source.
    clip
        The layers see their inputs clipped to ``[-clip, clip]`` (normalised units; None: not clipped), so
        values far outside the training range (hot spots, saturation) cannot drive the residual; the prior is
        not clipped.
    fallback
        With ``clip``: where a band to sharpen (the low source, upsampled to the reference grid) lies
        beyond ``[-clip, clip]``, the output within the layers' reach (``depth`` pixels) is the prior
        alone. Outside the training range (a saturated hot spot) the residual is an extrapolation; the
        prior (a local regression for ``guided``) is not. The guide bands do not trigger it: a bright
        roof or dark water in them is not out of range for what is predicted.
    """

    def __init__(self, in_channels: Sequence[int], low: int, ratios: Sequence[int] | None = None,
                 hidden: int = 32, depth: int = 4, prior: str = "bicubic", window: int = 7,
                 clip: float | None = None, fallback: bool = False) -> None:
        super().__init__()
        ratios = list(ratios or [1] * len(in_channels))
        if prior not in PRIORS:
            raise LearnError(f"network.prior={prior!r}: use one of {', '.join(PRIORS)}")
        if window < 1 or window % 2 == 0:
            raise LearnError(f"network.window={window}: give an odd number of pixels >= 1")
        self.config = NetConfig(kind="superres", in_channels=list(in_channels), low=int(low), ratios=ratios,
                                hidden=int(hidden), depth=int(depth))
        if fallback and clip is None:
            raise LearnError("network.fallback needs network.clip: the range beyond which the output falls back "
                             "to the prior (e.g. clip: 6)")
        if prior != "bicubic" or clip is not None:  # old configurations stay as they were stored
            self.config.update(prior=prior, window=int(window), clip=None if clip is None else float(clip))
        if fallback:
            self.config.update(fallback=True)
        self.ref, self.low = ratios.index(min(ratios)), int(low)
        self.prior, self.window, self.clip, self.fallback = prior, int(window), clip, bool(fallback)
        self.reach = max(depth, 1)
        extra = in_channels[low] if prior == "guided" else 0
        layers: list[nn.Module] = [nn.Conv2d(sum(in_channels) + extra, hidden, 3, padding=1, padding_mode="replicate")]
        for _ in range(depth - 2):
            layers += [nn.GELU(), nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode="replicate")]
        layers += [nn.GELU(), nn.Conv2d(hidden, in_channels[low], 3, padding=1, padding_mode="replicate")]
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)
        reach = 2 * (self.window // 2) + 3 if prior == "guided" else 3
        self.halo = int(max(depth, 2) + reach * max(ratios))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """The low source's bands ``(N, C_low, H, W)`` on the reference grid."""
        ref = xs[self.ref]
        up = [_resample(x, ref, "bicubic") for x in xs]
        if self.prior == "guided":
            base = guided_upsample(xs[self.low], ref, self.window)
            up.append(base)
        else:
            base = up[self.low]
        feats = torch.cat(up, dim=1)
        keep = None
        if self.clip is not None:
            if self.fallback:  # 1 where no band to sharpen is out of range within the layers' reach
                wild = (up[self.low].abs() > self.clip).any(dim=1, keepdim=True).to(feats.dtype)
                keep = 1.0 - F.max_pool2d(wild, 2 * self.reach + 1, stride=1, padding=self.reach)
            feats = feats.clamp(-self.clip, self.clip)
        residual = self.body(feats)
        return base + (residual if keep is None else residual * keep)


DAYS_PER_YEAR = 365.25


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


class _Block3d(nn.Module):
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
    n_bands
        Bands filled (and read) by the network.
    hidden
        Channels of the hidden feature maps.
    depth
        Number of (2+1)-D residual blocks; also the spatial halo in pixels.
    kernel_t
        Width of the temporal convolutions (odd).
    quantiles
        ``(lo, hi)`` quantile levels of the interval head (e.g. ``(0.1, 0.9)``: a nominal 80 %
        interval), or None for no interval head (networks of earlier eocube versions).
    """

    def __init__(self, n_bands: int = 1, hidden: int = 24, depth: int = 6, kernel_t: int = 5,
                 quantiles: Sequence[float] | None = None) -> None:
        super().__init__()
        if kernel_t % 2 != 1:
            raise LearnError(f"kernel_t must be odd (got {kernel_t}): use 3, 5 or 7")
        self.quantiles = check_quantiles(quantiles)
        self.config = NetConfig(kind="gapfill", n_bands=int(n_bands), hidden=int(hidden), depth=int(depth),
                                kernel_t=int(kernel_t))
        if self.quantiles is not None:  # absent from older configs, so they rebuild unchanged
            self.config["quantiles"] = list(self.quantiles)
        self.n_bands, self.halo = int(n_bands), int(depth)
        self.stem = nn.Conv3d(4 * n_bands + 2, hidden, 1)
        self.blocks = nn.ModuleList(_Block3d(hidden, kernel_t, 2 ** (i % 3)) for i in range(depth))
        self.head = nn.Conv3d(hidden, n_bands, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if self.quantiles is not None:
            self.interval_head = nn.Sequential(nn.Conv3d(hidden, hidden, 1), nn.GELU(), nn.Conv3d(hidden, 2 * n_bands, 1))

    def forward(self, values: torch.Tensor, valid: torch.Tensor, days: torch.Tensor,
                with_interval: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
        if c != self.n_bands:
            raise LearnError(f"the network was built for {self.n_bands} band(s), got {c}")
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
        fill = prior + delta
        if not with_interval:
            return fill
        if self.quantiles is None:
            raise LearnError("this network has no interval head: build it with quantiles=(lo, hi) "
                             "(config network.quantiles) to get an interval")
        below, above = F.softplus(self.interval_head(x.detach()).transpose(1, 2)).chunk(2, dim=2)
        base = fill.detach()
        return fill, base - below, base + above


def check_quantiles(quantiles: Sequence[float] | None) -> tuple[float, float] | None:
    """``(lo, hi)`` with ``0 < lo < 0.5 < hi < 1`` as floats, or None; a :class:`LearnError` otherwise."""
    if quantiles is None or (isinstance(quantiles, (list, tuple)) and len(quantiles) == 0):
        return None
    try:
        lo, hi = (float(q) for q in quantiles)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not 0 < lo < 0.5 < hi < 1:
        raise LearnError(f"network.quantiles {quantiles!r}: give two levels lo < 0.5 < hi in (0, 1), e.g. "
                         "[0.1, 0.9] (a nominal 80 % interval), or null for no interval head")
    return lo, hi


def build_network(config: dict[str, Any]) -> nn.Module:
    """A network from its stored :class:`NetConfig` (``kind`` ``segnet``, ``superres`` or ``gapfill``)."""
    kw = dict(config)
    kind = kw.pop("kind")
    if kind == "segnet":
        return SegNet(**kw)
    if kind == "superres":
        return SuperResNet(**kw)
    if kind == "gapfill":
        return GapFillNet(**kw)
    raise LearnError(f"unknown network kind {kind!r}")


__all__ = ["PRIORS", "GapFillNet", "NetConfig", "SegNet", "SuperResNet", "build_network", "check_quantiles",
           "guided_upsample", "temporal_linear_fill"]
