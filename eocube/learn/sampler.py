"""Lazy patch sampling from a cube and the torch Dataset of self-supervised gaps.

:class:`PatchSampler` draws windows ``(time x band x H x W)`` inside a pixel box
of a (lazy) cube, keeping only windows with enough clear observations; it reads
nothing but the chunks its windows touch, through the patch dataset's
:class:`~eocube.learn.dataset.WindowReader` (a small LRU of chunks per worker), or, with
``in_memory=True``, the box once.
:class:`GapDataset` turns windows into training examples: real cloud masks from
a :class:`~eocube.learn.gaps.MaskBank` hide some clear observations, which
become the targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch.utils.data import Dataset

from .dataset import WindowReader
from .errors import LearnError
from .gaps import MaskBank
from .normalisation import Normaliser

IN_MEMORY_AUTO_BYTES = 1 << 30


def days_since_epoch(time: np.ndarray | xr.DataArray) -> np.ndarray:
    """Acquisition times as float64 days since 1970-01-01 (the network's time input)."""
    t = pd.DatetimeIndex(np.asarray(time))
    return ((t - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy("float64")


@dataclass(frozen=True)
class Window:
    """A window of a cube, in absolute index coordinates of the cube."""

    time: slice
    y: slice
    x: slice


class PatchSampler:
    """Draw windows with enough clear observations from a pixel box of a cube.

    Parameters
    ----------
    values
        ``(time, band, y, x)`` measurement bands (lazy or in memory).
    clear
        ``(time, y, x)`` boolean clear mask on the same grid.
    box
        ``(y, x)`` slices of the box windows must stay in (absolute indices).
    patch_size
        Window height and width.
    time_size
        Dates per window; None for the whole series.
    min_clear_fraction
        Windows whose fraction of clear (date, pixel) pairs is lower are rejected.
    in_memory
        Load the box once (True), read each window lazily (False), or decide by
        size (``"auto"``: below 1 GiB).
    max_tries
        Draws before giving up on finding a window clear enough.
    """

    def __init__(
        self,
        values: xr.DataArray,
        clear: xr.DataArray,
        box: tuple[slice, slice],
        *,
        patch_size: int,
        time_size: int | None = None,
        min_clear_fraction: float = 0.3,
        in_memory: bool | str = "auto",
        max_tries: int = 200,
    ) -> None:
        n_t, _, height, width = values.shape
        ys, xs = box
        if ys.stop > height or xs.stop > width or ys.start < 0 or xs.start < 0:
            raise LearnError(f"box y={ys}, x={xs} is outside the {height} x {width} px cube: fix the region")
        if ys.stop - ys.start < patch_size or xs.stop - xs.start < patch_size:
            raise LearnError(
                f"box of {ys.stop - ys.start} x {xs.stop - xs.start} px is smaller than patch_size={patch_size}: "
                "enlarge the region or lower sampler.patch_size"
            )
        self.time_size = n_t if time_size is None else int(time_size)
        if not 2 <= self.time_size <= n_t:
            raise LearnError(f"time_size={time_size} must be between 2 and the {n_t} dates of the cube")
        self.n_time, self.box, self.patch_size = n_t, box, int(patch_size)
        self.min_clear_fraction, self.max_tries = float(min_clear_fraction), int(max_tries)
        self.days = days_since_epoch(values["time"].values)
        self.values, self.clear = values, clear
        nbytes = values.dtype.itemsize * n_t * values.shape[1] * (ys.stop - ys.start) * (xs.stop - xs.start)
        self._cache: tuple[np.ndarray, np.ndarray] | None = None
        self._readers: tuple[WindowReader, WindowReader] | None = None
        if in_memory is True or (in_memory == "auto" and nbytes < IN_MEMORY_AUTO_BYTES):
            self._cache = (
                np.asarray(values.isel(y=ys, x=xs).values, dtype="float32"),
                np.asarray(clear.isel(y=ys, x=xs).values, dtype=bool),
            )
        else:
            self._readers = (WindowReader(values), WindowReader(clear))

    def draw(self, rng: np.random.Generator) -> Window:
        """A random window of the box whose clear fraction reaches the threshold.

        Raises
        ------
        LearnError
            When ``max_tries`` draws all fall short of the threshold.
        """
        ys, xs = self.box
        p = self.patch_size
        best = 0.0
        for _ in range(self.max_tries):
            t0 = int(rng.integers(0, self.n_time - self.time_size + 1))
            y0 = int(rng.integers(ys.start, ys.stop - p + 1))
            x0 = int(rng.integers(xs.start, xs.stop - p + 1))
            w = Window(slice(t0, t0 + self.time_size), slice(y0, y0 + p), slice(x0, x0 + p))
            frac = float(self.read_clear(w).mean())
            if frac >= self.min_clear_fraction:
                return w
            best = max(best, frac)
        raise LearnError(
            f"no window of {self.time_size} dates x {p} x {p} px with a clear fraction >= "
            f"{self.min_clear_fraction} in {self.max_tries} draws (best {best:.2f}): lower "
            "sampler.min_clear_fraction or use a less cloudy region"
        )

    def _local(self, w: Window) -> tuple[slice, slice]:
        ys, xs = self.box
        return slice(w.y.start - ys.start, w.y.stop - ys.start), slice(w.x.start - xs.start, w.x.stop - xs.start)

    def read_clear(self, w: Window) -> np.ndarray:
        """``(T, h, w)`` clear mask of a window."""
        if self._cache is not None:
            ly, lx = self._local(w)
            return self._cache[1][w.time, ly, lx]
        return np.asarray(self._readers[1].read(w.y, w.x)[w.time], dtype=bool)

    def read(self, w: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(T, C, h, w)`` float32 values and ``(T, h, w)`` clear mask of a window."""
        if self._cache is not None:
            ly, lx = self._local(w)
            return self._cache[0][w.time, :, ly, lx], self._cache[1][w.time, ly, lx]
        vals = np.asarray(self._readers[0].read(w.y, w.x)[w.time], dtype="float32")
        return vals, self.read_clear(w)


def make_example(
    values: np.ndarray,
    clear: np.ndarray,
    hide: np.ndarray,
    days: np.ndarray,
    normaliser: Normaliser,
) -> dict[str, torch.Tensor]:
    """Tensors of one example from a window and the observations to hide.

    Parameters
    ----------
    values
        ``(T, C, h, w)`` raw values.
    clear
        ``(T, h, w)`` clear mask.
    hide
        ``(T, h, w)`` artificial clouds (True = hide).
    days
        ``(T,)`` times in days.
    normaliser
        Band statistics.

    Returns
    -------
    dict
        ``values`` (normalised, 0 where not finite), ``valid`` (network input
        mask), ``target_mask`` (hidden clear observations), ``days``.
    """
    finite = np.isfinite(values)
    ok = clear[:, None] & finite
    norm = normaliser.normalise(np.where(finite, values, 0.0).astype("float32"))
    return {
        "values": torch.from_numpy(np.where(ok, norm, 0.0).astype("float32")),
        "valid": torch.from_numpy(ok & ~hide[:, None]),
        "target_mask": torch.from_numpy(ok & hide[:, None]),
        "days": torch.from_numpy(np.asarray(days, dtype="float64")),
    }


class GapDataset(Dataset):
    """Self-supervised gap-filling examples drawn from a :class:`PatchSampler`.

    Example ``i`` of epoch ``e`` is fully determined by ``(seed, e, i)``, so
    runs, resumed runs and every DDP rank see reproducible data.

    Parameters
    ----------
    sampler
        Where windows come from.
    bank
        Real cloud masks.
    normaliser
        Band statistics.
    length
        Examples per epoch.
    p_date
        Probability that a date gets an artificial cloud mask.
    seed
        Base seed.
    fixed
        Ignore the epoch (validation: the same windows every time).
    """

    def __init__(
        self,
        sampler: PatchSampler,
        bank: MaskBank,
        normaliser: Normaliser,
        *,
        length: int,
        p_date: float,
        seed: int = 0,
        fixed: bool = False,
    ) -> None:
        self.sampler, self.bank, self.normaliser = sampler, bank, normaliser
        self.length, self.p_date, self.seed, self.fixed = int(length), float(p_date), int(seed), fixed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's examples (call before iterating; workers get a copy)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 0 if self.fixed else self.epoch + 1, int(i)])
        w = self.sampler.draw(rng)
        values, clear = self.sampler.read(w)
        t, _, h, ww = values.shape
        for _ in range(20):  # make sure something is hidden (a window is rarely missed twice)
            hide = self.bank.sample(t, h, ww, rng, self.p_date)
            if (hide & clear).any():
                break
        return make_example(values, clear, hide, self.sampler.days[w.time], self.normaliser)
