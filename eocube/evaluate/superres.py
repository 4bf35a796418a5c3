"""Scores of super-resolved bands on held-out pixels: RMSE, PSNR with a fixed data range, SSIM, SAM.

Two rules keep the figures comparable between splits and honest: PSNR and SSIM use a **fixed data
range** per band (e.g. the reflectance scale: 1.0, or 10000 for Sentinel-2 digital numbers), never
the range of the test truth (one bright pixel in a test block would move PSNR by several dB); and
**nodata or saturated truth is never scored** (:func:`scorable`): those pixels are left out for every
method and every metric.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .protocol import EvaluateError

Boxes = np.ndarray | Sequence[np.ndarray]


def scorable(truth: np.ndarray, *, nodata: float | None = 0, saturation: float | None = None) -> np.ndarray:
    """``(..., H, W)`` bool: pixels whose truth is finite, not ``nodata`` and not above ``saturation`` in every band.

    Parameters
    ----------
    truth
        ``(C, H, W)`` true bands.
    nodata
        The truth's nodata value (Sentinel-2: 0), or None.
    saturation
        Values above it are saturated or out of the sensor's scale (e.g. 10000 for reflectance x 10000);
        None: no upper bound.
    """
    t = np.asarray(truth, dtype="float64")
    ok = np.isfinite(t)
    if nodata is not None:
        ok &= t != nodata
    if saturation is not None:
        ok &= t <= saturation
    return ok.all(axis=-3)


def _boxes(x: Boxes) -> list[np.ndarray]:
    return [np.asarray(x)] if isinstance(x, np.ndarray) else [np.asarray(b) for b in x]


def superres_scores(
    pred: Boxes,
    truth: Boxes,
    *,
    data_range: float | Sequence[float],
    valid: Boxes | None = None,
    scale: float = 1.0,
) -> dict[str, list[float]]:
    """Per band and their mean: RMSE, PSNR, SSIM; SAM; on the valid pixels of held-out boxes.

    Parameters
    ----------
    pred, truth
        ``(C, h, w)`` arrays, or lists of them (one per held-out box; boxes may differ in size).
    data_range
        Fixed data range of PSNR and SSIM, one for all bands or one per band, in the truth's units
        (e.g. 10000 for reflectance x 10000). Must not come from the test truth.
    valid
        ``(h, w)`` bool per box: the pixels to score (default :func:`scorable` with nodata 0, no
        saturation bound). Invalid pixels are left out for every method and metric (SSIM leaves out
        the windows that hold one).
    scale
        RMSE is divided by it (e.g. 10000: RMSE in reflectance).

    Returns
    -------
    dict
        ``rmse``, ``psnr``, ``ssim``: per band, then the mean over bands; ``sam``: ``[degrees]``;
        ``n``: ``[pixels scored]``.
    """
    from ..learn.metrics import psnr, rmse, sam, ssim

    ps, ts = _boxes(pred), _boxes(truth)
    vs = [scorable(t) for t in ts] if valid is None else [np.asarray(v, bool) for v in _boxes(valid)]
    if len(ps) != len(ts) or len(vs) != len(ts) or any(
            p.shape != t.shape or v.shape != t.shape[-2:] for p, t, v in zip(ps, ts, vs)):
        raise EvaluateError(f"pred {[p.shape for p in ps]}, truth {[t.shape for t in ts]} and valid "
                            f"{[v.shape for v in vs]} must match box by box ((C, h, w) and (h, w))")
    nb = ts[0].shape[0]
    rng = np.broadcast_to(np.asarray(data_range, "float64"), (nb,))
    if not (np.isfinite(rng).all() and (rng > 0).all()):
        raise EvaluateError(f"data_range must be positive and finite, got {data_range!r}")
    n = int(sum(v.sum() for v in vs))
    if n == 0:
        raise EvaluateError("no valid pixel to score: every truth pixel is nodata or saturated")
    masked = [(np.where(v, p, np.nan), np.where(v, t, np.nan)) for p, t, v in zip(ps, ts, vs)]
    allp = np.concatenate([p[:, v] for p, t, v in zip(ps, ts, vs)], 1)[None, :, :, None].astype("float64")
    allt = np.concatenate([t[:, v] for p, t, v in zip(ps, ts, vs)], 1)[None, :, :, None].astype("float64")
    out: dict[str, list[float]] = {"rmse": [], "psnr": [], "ssim": []}
    for c in range(nb):
        out["rmse"].append(rmse(allp[:, c], allt[:, c]) / scale)
        out["psnr"].append(psnr(allp[:, c:c + 1], allt[:, c:c + 1], rng[c]))
        s, w = [], []
        for p, t in masked:  # SSIM per box, weighted by its valid pixels
            v = ssim(p[None, c:c + 1], t[None, c:c + 1], rng[c])
            if np.isfinite(v):
                s.append(v)
                w.append(np.isfinite(t[c]).sum())
        out["ssim"].append(float(np.average(s, weights=w)) if s else float("nan"))
    for k in list(out):
        out[k].append(float(np.nanmean(out[k])))
    out["sam"] = [sam(allp, allt)]
    out["n"] = [n]
    return out
