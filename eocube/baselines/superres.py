"""Super-resolution baselines: bicubic upsampling, and guided regression with high-pass injection.

The guided baseline is the classic answer to "the network sees the fine guide bands, bicubic does
not": per low-resolution band, a local linear regression from the guide bands (brought to the low
resolution) to the band, applied to the guide bands at the fine scale, plus the bicubic upsampling
of what the regression leaves (its residual at the low resolution). Where the band is a linear
function of the guides the result is exact; where the guides do not explain it, it falls back to
bicubic. In the spirit of the component-substitution / high-pass-filter baselines DSen2 compares to.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._errors import BaselineError


def bicubic(low: np.ndarray, factor: int = 2) -> np.ndarray:
    """``(C, h, w)`` -> ``(C, h*f, w*f)``: bicubic upsampling (torch, ``align_corners=False``, as
    :class:`~eocube.learn.networks.SuperResNet`'s own upsampling)."""
    import torch
    from torch.nn import functional as F

    x = np.asarray(low)
    if x.ndim != 3:
        raise BaselineError(f"low must be (band, y, x), got shape {x.shape}")
    t = torch.as_tensor(np.ascontiguousarray(x, dtype="float32"))[None]
    return F.interpolate(t, scale_factor=factor, mode="bicubic", align_corners=False)[0].numpy()


def _bilinear(x: np.ndarray, factor: int) -> np.ndarray:
    import torch
    from torch.nn import functional as F

    t = torch.as_tensor(np.ascontiguousarray(x, dtype="float64"))[None]
    return F.interpolate(t, scale_factor=factor, mode="bilinear", align_corners=False)[0].numpy()


def area_mean(values: np.ndarray, factor: int = 2) -> np.ndarray:
    """``(..., H, W)`` -> ``(..., H/f, W/f)``: mean of each ``f x f`` block (H and W multiples of f)."""
    x = np.asarray(values, dtype="float64")
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise BaselineError(f"the grid {h} x {w} is not a multiple of the factor {factor}")
    return x.reshape(*x.shape[:-2], h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


def guided_highpass(
    low: np.ndarray,
    guide: np.ndarray,
    *,
    guide_low: np.ndarray | None = None,
    factor: int = 2,
    window: int = 7,
    eps: float = 1e-4,
) -> np.ndarray:
    """Guided super-resolution: local linear regression on the guide bands plus the bicubic residual.

    Parameters
    ----------
    low
        ``(C, h, w)`` bands to super-resolve.
    guide
        ``(K, h*f, w*f)`` guide bands at the fine scale (e.g. Sentinel-2's 10 m bands).
    guide_low
        ``(K, h, w)``: the guide bands brought to the low resolution the way ``low`` was made (the
        sensor's MTF, or the degradation of a reduced-resolution protocol). Default
        :func:`area_mean` of ``guide``.
    factor
        Resolution ratio.
    window
        Edge (low-resolution pixels, odd) of the window of each local regression.
    eps
        Ridge regularisation relative to each guide's variance over the image: where the guides
        barely vary in a window the regression shrinks to the window's mean (and the result to bicubic).

    Returns
    -------
    numpy.ndarray
        ``(C, h*f, w*f)`` float32. At each low-resolution pixel the coefficients ``a`` (per guide)
        and ``b`` of ``low ~ a . guide_low + b`` over the window (averaged over the windows that
        hold the pixel, as the guided filter does) are upsampled bilinearly and applied to
        ``guide``; the residual ``low - (a . guide_low + b)`` is upsampled bicubically and added.
    """
    lo = np.asarray(low, dtype="float64")
    g = np.asarray(guide, dtype="float64")
    if lo.ndim != 3 or g.ndim != 3:
        raise BaselineError(f"low and guide must be (band, y, x), got shapes {lo.shape} and {g.shape}")
    if g.shape[1:] != (lo.shape[1] * factor, lo.shape[2] * factor):
        raise BaselineError(f"guide {g.shape[1:]} must be low {lo.shape[1:]} times the factor {factor}")
    if window < 1 or window % 2 == 0:
        raise BaselineError(f"window must be odd and >= 1, got {window}")
    gl = area_mean(g, factor) if guide_low is None else np.asarray(guide_low, dtype="float64")
    if gl.shape != (g.shape[0], *lo.shape[1:]):
        raise BaselineError(f"guide_low {gl.shape} must be (guide bands, *low's grid) = {(g.shape[0], *lo.shape[1:])}")
    k = g.shape[0]

    def mean(x):
        return ndimage.uniform_filter(x, size=(1,) * (x.ndim - 2) + (window, window), mode="reflect")

    mg, ml = mean(gl), mean(lo)
    cgg = mean(gl[:, None] * gl[None]) - mg[:, None] * mg[None]       # (K, K, h, w)
    cgl = mean(lo[:, None] * gl[None]) - ml[:, None] * mg[None]       # (C, K, h, w)
    ridge = eps * np.maximum(gl.reshape(k, -1).var(1), 1e-12)
    a_mat = np.moveaxis(cgg, (0, 1), (-2, -1)) + np.diag(ridge)       # (h, w, K, K)
    rhs = np.moveaxis(cgl, (0, 1), (-1, -2))                          # (h, w, K, C)
    a = np.moveaxis(np.linalg.solve(a_mat, rhs), (-2, -1), (1, 0))    # (C, K, h, w)
    b = ml - np.einsum("ckyx,kyx->cyx", a, mg)
    a, b = mean(a), mean(b)
    fit_low = np.einsum("ckyx,kyx->cyx", a, gl) + b
    a_f = _bilinear(a.reshape(-1, *lo.shape[1:]), factor).reshape(*a.shape[:2], *g.shape[1:])
    b_f = _bilinear(b, factor)
    out = np.einsum("ckyx,kyx->cyx", a_f, g) + b_f + bicubic(lo - fit_low, factor)
    return out.astype("float32")
