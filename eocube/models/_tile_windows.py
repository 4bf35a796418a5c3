"""Tile windows of one shape per block axis, so that a chunk's tiles share full batches (pure).

:func:`._tiling.windows` clips each tile's window (the tile plus ``halo`` on each side) at the
block: a tile on the image's edge, or a last tile shorter than ``tile``, gets a smaller window
than the others, and tiles of different shapes cannot be stacked into one batch. Here such a
window is instead *slid inward* over real pixels of the block until it has the common length
``min(tile + 2 * halo, block)``: it still contains the clipped window, so each kept pixel sees
at least the context it saw before, and its edges stay on the image's edges where the clipped
window's did (a window clipped at the block's start or end keeps that edge). With ``halo`` at
least the model's receptive field, a kept pixel's value does not depend on the pixels further
out, so the kept output is the same as with the clipped window. Nothing is padded: no value the
model sees is made up.

Window starts stay on multiples of ``align`` (the alignment of :mod:`._tiling`, so that coarser
sources and a scaled output stay on pixel corners): the common length is rounded up so that a
window ending on the block's end starts on that grid (at most ``align - 1`` pixels more).
"""

from __future__ import annotations

from collections.abc import Iterator


def tile_windows(core: int, lead: int, block: int, halo: int, tile: int,
                 align: int = 1) -> Iterator[tuple[int, int, int, int]]:
    """Tiles along one axis of a block, their windows all of one length.

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
    align
        Window starts are multiples of it (block coordinates; the block starts aligned, and so
        do ``lead``, ``halo`` and, when a block has several tiles, ``tile``).

    Yields
    ------
    tuple
        ``(core start, core stop)`` in chunk coordinates, ``(window start, window stop)`` in block
        coordinates, as :func:`._tiling.windows` yields them; each window holds the clipped one.
    """
    target = min(tile + 2 * halo, block)
    length = block - (block - target) // align * align  # >= target; block - length is a multiple of align
    for start in range(0, core, tile):
        stop = min(start + tile, core)
        w0 = max(0, lead + start - halo)  # the clipped window is [w0, min(block, lead + stop + halo))
        a = min(w0, block - length)
        yield start, stop, a, a + length
