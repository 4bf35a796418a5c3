"""Spatial-context features: per-band local means and standard deviations over square windows.

A per-pixel classifier given these features sees the neighbourhood a convolutional network sees
(texture, edges, field size), which makes it the baseline a reviewer asks for beside a network.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from ._errors import BaselineError

DEFAULT_WINDOWS: tuple[int, ...] = (3, 7, 15)
"""Window edges (pixels) of :func:`context_features`."""


def context_features(
    bands: np.ndarray,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    *,
    names: Sequence[str] | None = None,
    include_bands: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """Per band, the local mean and standard deviation over square windows of each size.

    Parameters
    ----------
    bands
        ``(C, H, W)`` values (e.g. reflectances). NaN (nodata) spreads to every window that holds it.
    windows
        Odd window edges in pixels (e.g. 3, 7, 15), centred on each pixel. Borders are mirrored
        (``d c b a | a b c d | d c b a``, scipy's ``reflect``, NumPy's ``symmetric``).
    names
        Band names for the feature names (default ``b0``, ``b1``, ...).
    include_bands
        Put the bands themselves first.

    Returns
    -------
    features, feature_names
        ``(F, H, W)`` float32 with ``F = C * (include_bands + 2 * len(windows))``: the bands, then for
        each window the C means and the C standard deviations (population, ``ddof=0``); and their names
        (``B04``, ``B04_mean7``, ``B04_std7``, ...).
    """
    x = np.asarray(bands, dtype="float64")
    if x.ndim != 3:
        raise BaselineError(f"bands must be (band, y, x), got shape {x.shape}: select one date first")
    windows = [int(w) for w in windows]
    if any(w < 1 or w % 2 == 0 for w in windows):
        raise BaselineError(f"windows must be odd sizes >= 1 (centred on the pixel), got {windows}")
    names = [str(n) for n in names] if names is not None else [f"b{i}" for i in range(x.shape[0])]
    if len(names) != x.shape[0]:
        raise BaselineError(f"{len(names)} names for {x.shape[0]} bands")
    out, out_names = [], []
    if include_bands:
        out.append(x.astype("float32"))
        out_names += names
    for w in windows:
        size = (1, w, w)
        mean = ndimage.uniform_filter(x, size=size, mode="reflect")
        sq = ndimage.uniform_filter(x * x, size=size, mode="reflect")
        std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
        out += [mean.astype("float32"), std.astype("float32")]
        out_names += [f"{n}_mean{w}" for n in names] + [f"{n}_std{w}" for n in names]
    return np.concatenate(out, 0), out_names
