"""Spatial block split into train / validation / test, with a buffer between the parts.

The reference grid is cut into square blocks of ``block_size`` pixels; a seeded permutation
gives each block to ``train``, ``val`` or ``test`` in the given fractions. A patch window of a
part is kept only when the window, **grown by the network's halo and by the buffer**, touches
blocks of that part alone. So every window a network reads in training, with all the context
its receptive field reaches, stays at least ``buffer`` pixels away from any validation or test
block: no test pixel is ever seen in training (``tests/learn/test_split.py`` proves it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import LearnError

PARTS = ("train", "val", "test")
"""Names of the parts, in the order of their codes (0, 1, 2) in :meth:`BlockSplit.mask`."""


@dataclass(frozen=True)
class BlockSplit:
    """Blocks of a grid assigned to train (0), val (1) and test (2).

    Parameters
    ----------
    shape
        ``(height, width)`` of the reference grid in pixels.
    block_size
        Edge of the blocks in reference pixels.
    buffer
        Smallest distance in pixels between a window (grown by its halo) and the blocks of another part.
    assignment
        ``(blocks_y, blocks_x)`` int8 part code of each block.
    """

    shape: tuple[int, int]
    block_size: int
    buffer: int
    assignment: np.ndarray

    @classmethod
    def make(
        cls,
        shape: tuple[int, int],
        *,
        block_size: int,
        fractions: Sequence[float] = (0.7, 0.15, 0.15),
        buffer: int = 0,
        seed: int = 0,
    ) -> BlockSplit:
        """A seeded random assignment of blocks to the parts.

        Parameters
        ----------
        shape
            ``(height, width)`` of the reference grid.
        block_size
            Block edge in pixels.
        fractions
            Shares of the blocks for train, val and test (normalised); each non-zero share gets at
            least one block.
        buffer
            See the class.
        seed
            Seed of the permutation.

        Returns
        -------
        BlockSplit
        """
        if block_size < 1 or buffer < 0:
            raise LearnError(f"split.block_size must be >= 1 and split.buffer >= 0, got {block_size}, {buffer}")
        fr = np.asarray(list(fractions) + [0.0] * (3 - len(fractions)), dtype=float)[:3]
        if (fr < 0).any() or fr.sum() <= 0:
            raise LearnError(f"split.fractions must be non-negative with a positive sum, got {list(fractions)}")
        fr = fr / fr.sum()
        nby, nbx = -(-shape[0] // block_size), -(-shape[1] // block_size)
        n = nby * nbx
        if n < int((fr > 0).sum()):
            raise LearnError(
                f"a {shape[0]} x {shape[1]} px grid holds {n} block(s) of {block_size} px, fewer than the parts "
                f"asked for: lower split.block_size"
            )
        counts = np.floor(fr * n).astype(int)
        counts[(fr > 0) & (counts == 0)] = 1
        while counts.sum() > n:
            counts[int(np.argmax(counts))] -= 1
        counts[0] += n - counts.sum()
        codes = np.repeat(np.arange(3, dtype="int8"), counts)
        order = np.random.default_rng([int(seed), 31337]).permutation(n)
        assignment = np.empty(n, dtype="int8")
        assignment[order] = codes
        return cls((int(shape[0]), int(shape[1])), int(block_size), int(buffer), assignment.reshape(nby, nbx))

    def code(self, part: str) -> int:
        """Code of a part name."""
        if part not in PARTS:
            raise LearnError(f"unknown split part {part!r}: use one of {PARTS}")
        return PARTS.index(part)

    def mask(self) -> np.ndarray:
        """``(height, width)`` int8 part code of every pixel (0 train, 1 val, 2 test)."""
        b = self.block_size
        full = np.repeat(np.repeat(self.assignment, b, axis=0), b, axis=1)
        return full[: self.shape[0], : self.shape[1]]

    def blocks(self, part: str) -> list[tuple[slice, slice]]:
        """``(y, x)`` pixel slices of the blocks of a part."""
        c, b = self.code(part), self.block_size
        h, w = self.shape
        return [(slice(i * b, min(h, (i + 1) * b)), slice(j * b, min(w, (j + 1) * b)))
                for i, j in zip(*np.nonzero(self.assignment == c))]

    def window_ok(self, part: str, y0: int, x0: int, size: int, halo: int) -> bool:
        """Whether a window ``[y0, y0+size) x [x0, x0+size)`` grown by ``halo + buffer`` touches ``part`` only."""
        m, b = halo + self.buffer, self.block_size
        h, w = self.shape
        ys = slice(max(0, y0 - m) // b, (min(h, y0 + size + m) - 1) // b + 1)
        xs = slice(max(0, x0 - m) // b, (min(w, x0 + size + m) - 1) // b + 1)
        return bool((self.assignment[ys, xs] == self.code(part)).all())

    def windows(self, part: str, size: int, *, halo: int = 0, stride: int | None = None, multiple: int = 1) -> np.ndarray:
        """Top-left corners of the windows of a part.

        Parameters
        ----------
        part
            ``"train"``, ``"val"`` or ``"test"``.
        size
            Window edge in reference pixels.
        halo
            The network's receptive field (context beyond the window), in reference pixels.
        stride
            Step between candidate windows (default ``size // 2``); rounded up to ``multiple``.
        multiple
            Window corners are multiples of this (the resolution ratio of the coarsest source).

        Returns
        -------
        numpy.ndarray
            ``(n, 2)`` int64 ``(y0, x0)``, possibly empty.
        """
        step = max(1, stride or size // 2)
        step = -(-step // multiple) * multiple
        h, w = self.shape
        out = [(y, x) for y in range(0, h - size + 1, step) for x in range(0, w - size + 1, step)
               if self.window_ok(part, y, x, size, halo)]
        return np.asarray(out, dtype="int64").reshape(-1, 2)

    def to_dict(self) -> dict:
        """Plain dict (stored in checkpoints)."""
        return {"shape": list(self.shape), "block_size": self.block_size, "buffer": self.buffer,
                "assignment": self.assignment.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> BlockSplit:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(d["shape"]), int(d["block_size"]), int(d["buffer"]), np.asarray(d["assignment"], dtype="int8"))


__all__ = ["PARTS", "BlockSplit"]
