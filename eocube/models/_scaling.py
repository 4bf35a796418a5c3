"""Per-band value scaling before the model (the STAC MLM ``value_scaling`` objects), pure NumPy."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._spec import Scaling


def _one(x: np.ndarray, s: Scaling) -> np.ndarray:
    if s.type == "z-score":
        return (x - np.float32(s.mean)) / np.float32(s.stddev)
    if s.type == "min-max":
        return (x - np.float32(s.minimum)) / np.float32(s.maximum - s.minimum)  # type: ignore[operator]
    if s.type == "offset":
        return x - np.float32(s.value)
    if s.type == "scale":
        return x / np.float32(s.value)
    if s.type == "clip":
        return np.clip(x, s.minimum, s.maximum)
    if s.type == "clip-min":
        return np.maximum(x, np.float32(s.minimum))
    if s.type == "clip-max":
        return np.minimum(x, np.float32(s.maximum))
    raise ValueError(f"unknown value scaling {s.type!r}")


def check_scaling(scaling: Sequence[Scaling], n_bands: int, source: str) -> None:
    """One scaling for all bands or one per band (a clear error otherwise)."""
    if len(scaling) not in (0, 1, n_bands):
        raise ValueError(
            f"source {source!r} has {len(scaling)} value scalings for {n_bands} bands: give one for all bands or one per band"
        )


def apply_scaling(x: np.ndarray, scaling: Sequence[Scaling]) -> np.ndarray:
    """Scale a ``(t, C, h, w)`` float32 block band by band (one scaling for all, or one per band)."""
    if not scaling:
        return x
    if len(scaling) == 1:
        return _one(x, scaling[0]).astype(np.float32, copy=False)
    out = np.empty_like(x)
    for c, s in enumerate(scaling):
        out[:, c] = _one(x[:, c], s)
    return out
