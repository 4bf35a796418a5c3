"""The halo (overlap) a model needs: its spatial receptive-field radius, found by probing.

The probe feeds a random input of ``S x S`` pixels and back-propagates from the output at the
centre pixel (every sample, date and channel summed). The input pixels with a non-zero
gradient are those the centre output depends on; the halo is their largest distance from the
centre (Chebyshev, in pixels). Gradients outside the receptive field are exactly zero, so the
answer does not depend on a tolerance. When the model has no gradient (integer outputs,
``argmax`` inside), a perturbation probe is used instead: every input pixel at one distance
ring is changed and outputs that change at all are looked for. A receptive field reaching the
probe's edge doubles ``S`` (up to ``max_size``); beyond it the model looks at the whole image
(global pooling, attention) and the caller must give ``halo`` explicitly.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ._errors import HaloError

ArgsBuilder = Callable[[np.ndarray], list[np.ndarray]]
"""Maps a window ``(t, F, S, S)`` of float32 values to the model's argument arrays."""
Forward = Callable[[Sequence[torch.Tensor]], torch.Tensor]
"""Runs the model on argument tensors and returns the canonical ``(N, t, K, S, S)`` output."""


def _radius(mask: np.ndarray, centre: int) -> int:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return 0
    return int(max(np.abs(rows - centre).max(), np.abs(cols - centre).max()))


def _gradient_field(x: np.ndarray, build: ArgsBuilder, forward: Forward, centre: int) -> np.ndarray | None:
    arrays = build(x)
    first = torch.from_numpy(arrays[0].copy()).requires_grad_(True)
    rest = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays[1:]]
    with torch.enable_grad():
        out = forward([first, *rest])
        if not out.requires_grad or not torch.is_floating_point(out):
            return None
        out[..., centre, centre].float().sum().backward()
    grad = first.grad
    if grad is None:
        return None
    # collapse every axis but the last two (samples, dates, channels)
    return grad.abs().reshape(-1, grad.shape[-2], grad.shape[-1]).sum(0).numpy() > 0


def _perturbation_field(x: np.ndarray, build: ArgsBuilder, forward: Forward, centre: int) -> np.ndarray:
    """Where a change at the centre pixel changes the output (influence field, same radius)."""
    with torch.inference_mode():
        base = forward([torch.from_numpy(np.ascontiguousarray(a)) for a in build(x)])
        bumped = x.copy()
        bumped[..., centre, centre] += 10.0 + np.abs(bumped[..., centre, centre])
        other = forward([torch.from_numpy(np.ascontiguousarray(a)) for a in build(bumped)])
    diff = (base != other).reshape(-1, base.shape[-2], base.shape[-1]).any(0)
    return diff.numpy()


def probe_halo(
    build: ArgsBuilder,
    forward: Forward,
    n_time: int,
    channels: int,
    *,
    size: int = 33,
    max_size: int = 257,
    multiple: int = 1,
) -> int:
    """Receptive-field radius of a model, in pixels.

    Parameters
    ----------
    build
        Window -> model argument arrays (the engine's own input path).
    forward
        Argument tensors -> canonical output (the engine's own output path).
    n_time, channels
        Shape of the probe window ``(n_time, channels, S, S)``.
    size, max_size
        First and largest probe size ``S``.
    multiple
        ``S`` is rounded up to a multiple of it (models that need sizes divisible by 2^k).

    Returns
    -------
    int
        The halo: pixels of context needed on each side for outputs equal to a whole-image pass.
    """
    rng = np.random.default_rng(0)
    s = size
    while True:
        s_eff = -(-s // multiple) * multiple
        centre = s_eff // 2
        x = rng.standard_normal((n_time, channels, s_eff, s_eff)).astype("float32")
        field = _gradient_field(x, build, forward, centre)
        if field is None:
            field = _perturbation_field(x, build, forward, centre)
        radius = _radius(field, centre)
        if radius < min(centre, s_eff - 1 - centre):
            return radius
        if s_eff >= max_size:
            raise HaloError(
                f"the model's receptive field reaches the edge of a {s_eff} x {s_eff} probe: it looks at the whole "
                "image (global pooling, attention) or further than half of that; pass halo=<pixels> explicitly, "
                "knowing that outputs may then differ from a whole-image pass near chunk edges, or rechunk so "
                "that one chunk holds the whole image"
            )
        s = 2 * s_eff - 1
