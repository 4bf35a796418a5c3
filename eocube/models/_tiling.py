"""Tile and chunk geometry on the base grid, for several nested sources and a scaled output (pure).

Every length here is in *base* pixels (the finest source's grid) unless named otherwise. A
source with ratio ``r`` has one pixel per ``r x r`` base pixels; the output has ``scale``
pixels per base pixel along each axis (a :class:`~fractions.Fraction`: 4 for a x4
super-resolution of the base, 1/4 for a stride-4 classifier).

Seamlessness rests on one number, the *alignment* ``A = lcm(ratios, denominator(scale))``:
chunk boundaries, tile origins, tile sizes and the halo are multiples of ``A``, so every tile
window starts on a pixel corner of every source and of the output, its coarse windows cover
exactly its base footprint, and its output pixels are those of a whole-image pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class OutScale:
    """Output pixels per base pixel, and what becomes of a last, partial output pixel."""

    scale: Fraction = Fraction(1)
    partial: Literal["floor", "ceil"] = "ceil"
    """``"ceil"``: an output pixel that covers the image's last base pixels only partly is kept (as
    strided convolutions with ``padding = kernel // 2`` give); ``"floor"``: it is dropped (kernel = stride)."""

    def length(self, n: int) -> int:
        """Output pixels for ``n`` base pixels starting on an aligned origin."""
        v = n * self.scale
        if v.denominator == 1:
            return int(v)
        return math.ceil(v) if self.partial == "ceil" else math.floor(v)


SAME_GRID = OutScale()
"""Scale 1: the output on the base grid."""


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple``."""
    return -(-int(n) // multiple) * multiple


def aligned_chunks(chunks: Sequence[int], align: int, minimum: int) -> tuple[int, ...]:
    """Chunks whose inner boundaries are multiples of ``align`` and which are at least ``minimum`` long.

    Boundaries are moved up to the next multiple of ``align``; a chunk shorter than ``minimum``
    (dask's overlap needs depth <= chunk) is merged into its neighbour.
    """
    total = int(sum(chunks))
    bounds: list[int] = []
    pos = 0
    for c in chunks[:-1]:
        pos += int(c)
        b = min(round_up(pos, align), total)
        if b < total and (not bounds or b > bounds[-1]):
            bounds.append(b)
    edges = [0, *bounds, total]
    out: list[int] = []
    for a, b in itertools.pairwise(edges):
        c = b - a
        if out and (c < minimum or out[-1] < minimum):
            out[-1] += c
        else:
            out.append(c)
    return tuple(out)


def source_chunks(base: Sequence[int], ratio: int, n_source: int) -> tuple[int, ...]:
    """Chunks of a source with ``ratio`` matching the base chunks (whose inner boundaries it divides)."""
    if ratio == 1:
        return tuple(base)
    inner = [c // ratio for c in base[:-1]]
    return (*inner, n_source - sum(inner))


def output_chunks(base: Sequence[int], scale: OutScale) -> tuple[int, ...]:
    """Output chunks matching the base chunks."""
    edges = [0]
    for c in base:
        edges.append(edges[-1] + int(c))
    return tuple(scale.length(b) - scale.length(a) for a, b in itertools.pairwise(edges))


def windows(core: int, lead: int, block: int, halo: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """Tiles along one axis of a block.

    Parameters
    ----------
    core
        The block's own pixels (its chunk).
    lead
        Overlap pixels before them in the block (``halo``, or 0 on the image's first chunk).
    block
        The block's length, overlap included.
    halo, tile
        Context on each side and the tile edge.

    Yields
    ------
    tuple
        ``(core start, core stop)`` in chunk coordinates, ``(window start, window stop)`` in block coordinates.
    """
    for start in range(0, core, tile):
        stop = min(start + tile, core)
        yield start, stop, max(0, lead + start - halo), min(block, lead + stop + halo)


def source_window(w0: int, w1: int, ratio: int, block: int) -> tuple[int, int]:
    """The window of a source with ``ratio`` covering base window ``[w0, w1)`` (``w0`` aligned)."""
    return w0 // ratio, min(block, -(-w1 // ratio))


def scale_mask(mask: np.ndarray, scale: OutScale, shape: tuple[int, int], how: str) -> np.ndarray:
    """Bring a ``(t, h, w)`` nodata mask of the reference grid onto the output grid.

    Each output pixel gets ``how`` (``"any"`` / ``"all"``) of the reference pixels it covers
    (partly covered ones included); for a finer output every output pixel takes the value of
    the reference pixel it lies in.
    """
    p, q = scale.scale.numerator, scale.scale.denominator
    m = mask
    if p > 1:
        m = np.repeat(np.repeat(m, p, axis=-2), p, axis=-1)
    if q > 1:
        neutral = how == "all"
        t, h, w = m.shape
        ph, pw = -h % q, -w % q
        if ph or pw:
            m = np.pad(m, [(0, 0), (0, ph), (0, pw)], constant_values=neutral)
        blocks = m.reshape(t, m.shape[1] // q, q, m.shape[2] // q, q)
        m = blocks.all(axis=(2, 4)) if how == "all" else blocks.any(axis=(2, 4))
    out = np.zeros((m.shape[0], *shape), dtype=bool)
    hh, ww = min(shape[0], m.shape[1]), min(shape[1], m.shape[2])
    out[:, :hh, :ww] = m[:, :hh, :ww]
    return out
