"""The halo (overlap) a model needs: its receptive-field radius in base pixels, found by probing.

The probe feeds random inputs of ``S x S`` base pixels (each source at its own resolution,
``S / ratio`` pixels) and back-propagates from the output pixel at the centre (every sample,
date and channel summed). The input pixels of each source with a non-zero gradient are those
the centre output depends on. The halo is the largest distance, in base pixels, by which such
an input pixel's footprint sticks out of the output pixel's footprint: a tile whose core holds
the output pixel and whose window extends ``halo`` base pixels further on each side then holds
every input it depends on. For one source on the output's grid it is the Chebyshev distance of
the farthest dependency (the classic receptive-field radius).

Gradients outside the receptive field are exactly zero, so the answer does not depend on a
tolerance. When the model has no gradient (integer outputs, ``argmax`` inside), a
perturbation probe is used instead: each source's centre pixel is changed and the outputs
that change at all are looked for (the influence field has the same reach). A field reaching
the probe's edge doubles ``S`` (up to ``max_size``); beyond it the model looks at the whole
image (global pooling, attention) and the caller must give ``halo`` explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np
import torch

from ._errors import HaloError
from ._tiling import SAME_GRID, OutScale, round_up

ArgsBuilder = Callable[[Sequence[np.ndarray]], list[list[np.ndarray]]]
"""Maps one window ``(t_i, C_i, S_i, S_i)`` per source to each source's model argument arrays."""
Forward = Callable[[Sequence[Sequence[torch.Tensor]]], torch.Tensor]
"""Runs the model on each source's argument tensors and returns the canonical ``(N, t, K, H, W)`` output."""


def _reach(lo: int, hi: int, ratio: int, a: Fraction, b: Fraction) -> Fraction:
    """How far input pixels ``lo..hi`` (footprints ``[k r, (k + 1) r)``) stick out of ``[a, b)``."""
    return max(Fraction(0), a - lo * ratio, Fraction((hi + 1) * ratio) - b)


def _field_reach(field: np.ndarray, ratio: int, a: Fraction, b: Fraction) -> tuple[Fraction, bool]:
    rows, cols = np.nonzero(field)
    if rows.size == 0:
        return Fraction(0), False
    reach = max(_reach(int(rows.min()), int(rows.max()), ratio, a, b),
                _reach(int(cols.min()), int(cols.max()), ratio, a, b))
    n = field.shape[-1]
    at_edge = bool(rows.min() == 0 or cols.min() == 0 or rows.max() == n - 1 or cols.max() == n - 1)
    return reach, at_edge


def _gradient_reach(
    windows: list[np.ndarray], build: ArgsBuilder, forward: Forward, ratios: Sequence[int], scale: Fraction
) -> tuple[Fraction, bool] | None:
    per_source = build(windows)
    tensors: list[list[torch.Tensor]] = []
    for arrays in per_source:
        first = torch.from_numpy(arrays[0].copy()).requires_grad_(True)
        tensors.append([first, *(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays[1:])])
    with torch.enable_grad():
        out = forward(tensors)
        if not out.requires_grad or not torch.is_floating_point(out):
            return None
        o = out.shape[-1] // 2
        out[..., o, o].float().sum().backward()
    a, b = o / scale, (o + 1) / scale
    reach, edge = Fraction(0), False
    for ts, r in zip(tensors, ratios):
        grad = ts[0].grad
        if grad is None:
            continue
        field = grad.abs().reshape(-1, grad.shape[-2], grad.shape[-1]).sum(0).numpy() > 0
        got, at_edge = _field_reach(field, r, a, b)
        reach, edge = max(reach, got), edge or at_edge
    return reach, edge


def _perturbation_reach(
    windows: list[np.ndarray], build: ArgsBuilder, forward: Forward, ratios: Sequence[int], scale: Fraction
) -> tuple[Fraction, bool]:
    def run(ws: list[np.ndarray]) -> torch.Tensor:
        with torch.inference_mode():
            return forward([[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays] for arrays in build(ws)])

    base = run(windows)
    reach, edge = Fraction(0), False
    for i, r in enumerate(ratios):
        bumped = [w.copy() for w in windows]
        c = bumped[i].shape[-1] // 2
        bumped[i][..., c, c] += 10.0 + np.abs(bumped[i][..., c, c])
        diff = (base != run(bumped)).reshape(-1, base.shape[-2], base.shape[-1]).any(0).numpy()
        rows, cols = np.nonzero(diff)
        if rows.size == 0:
            continue
        lo, hi = Fraction(c * r), Fraction((c + 1) * r)  # the bumped input pixel's footprint
        for idx in (rows, cols):
            for o in (int(idx.min()), int(idx.max())):
                reach = max(reach, o / scale - lo, hi - (o + 1) / scale)
        n = diff.shape[-1]
        edge = edge or bool(rows.min() == 0 or cols.min() == 0 or rows.max() == n - 1 or cols.max() == n - 1)
    return reach, edge


def probe_halo(
    build: ArgsBuilder,
    forward: Forward,
    shapes: Sequence[tuple[int, int]],
    ratios: Sequence[int] = (1,),
    scale: OutScale = SAME_GRID,
    *,
    unit: int = 1,
    size: int = 33,
    max_size: int = 257,
) -> int:
    """Receptive-field reach of a model, in base pixels.

    Parameters
    ----------
    build
        One window per source -> each source's model argument arrays (the engine's own input path).
    forward
        Argument tensors -> canonical output (the engine's own output path).
    shapes
        ``(dates, channels)`` of each source's probe window.
    ratios
        Base pixels per pixel of each source.
    scale
        Output pixels per base pixel.
    unit
        ``S`` is a multiple of it (the alignment and the size multiple).
    size, max_size
        First and largest probe size ``S`` (base pixels; both grow with the coarsest ratio).

    Returns
    -------
    int
        The halo: base pixels of context needed on each side for outputs equal to a whole-image pass.
    """
    rng = np.random.default_rng(0)
    top = max(ratios)
    s = max(size, 16 * top)
    max_size = max(max_size, 64 * top)
    while True:
        s_eff = round_up(s, unit)
        windows = [
            rng.standard_normal((t, c, s_eff // r, s_eff // r)).astype("float32") for (t, c), r in zip(shapes, ratios)
        ]
        found = _gradient_reach(windows, build, forward, ratios, scale.scale)
        if found is None:
            found = _perturbation_reach(windows, build, forward, ratios, scale.scale)
        reach, at_edge = found
        if not at_edge:
            return math.ceil(reach)
        if s_eff >= max_size:
            raise HaloError(
                f"the model's receptive field reaches the edge of a {s_eff} x {s_eff} probe: it looks at the whole "
                "image (global pooling, attention) or further than half of that; pass halo=<pixels> explicitly, "
                "knowing that outputs may then differ from a whole-image pass near chunk edges, or rechunk so "
                "that one chunk holds the whole image"
            )
        s = 2 * s_eff - 1
