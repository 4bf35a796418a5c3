"""The ``gaps`` target of :class:`~eocube.learn.patches.PatchDataset`: artificial gaps made of real clouds.

Gap-filling examples are made by *hiding* clear observations (clear masks come from
:mod:`eocube.masks`) under real cloud masks taken from other dates and other places of the
training blocks: :class:`MaskBank` holds the cloud masks, :meth:`MaskBank.sample` cuts, flips
and assigns them to the dates of a window; :class:`GapTarget` is what the dataset needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import LearnError


@dataclass
class MaskBank:
    """Real cloud masks to hide clear observations with.

    Parameters
    ----------
    masks
        ``(N, H, W)`` boolean cloud masks (True = cloud), e.g. the cloud band of a
        cube at its cloudy dates.
    """

    masks: np.ndarray

    @classmethod
    def from_cloud_band(
        cls, cloud: np.ndarray, *, min_fraction: float = 0.02, max_fraction: float = 1.0
    ) -> MaskBank:
        """Keep the dates of a ``(time, y, x)`` cloud array whose cloudy fraction is in range.

        Parameters
        ----------
        cloud
            ``(time, y, x)`` cloud mask (nonzero or True = cloud; NaN = no cloud).
        min_fraction, max_fraction
            Range of cloudy fraction of the dates to keep (fully cloudy dates
            included by default, as in real series).

        Returns
        -------
        MaskBank
        """
        c = np.nan_to_num(np.asarray(cloud, dtype="float32")) > 0
        frac = c.mean(axis=(1, 2))
        keep = (frac >= min_fraction) & (frac <= max_fraction)
        if not keep.any():
            raise LearnError(
                f"no date has a cloudy fraction within [{min_fraction}, {max_fraction}] "
                f"(fractions {np.round(frac, 2).tolist()[:10]}...): lower gaps.min_cloud_fraction "
                "or take masks from a cloudier cube"
            )
        return cls(masks=c[keep])

    def sample(self, n_dates: int, height: int, width: int, rng: np.random.Generator, p_date: float) -> np.ndarray:
        """Artificial clouds for a window.

        Each date is covered, with probability ``p_date``, by a mask drawn at
        random from the bank, at a random place, randomly flipped and
        transposed (when square).

        Parameters
        ----------
        n_dates, height, width
            Window size.
        rng
            Random generator (the caller seeds it, so windows are reproducible).
        p_date
            Probability that a date receives a cloud mask.

        Returns
        -------
        numpy.ndarray
            ``(n_dates, height, width)`` boolean, True = hide.
        """
        n, mh, mw = self.masks.shape
        if height > mh or width > mw:
            raise LearnError(
                f"window {height} x {width} px is larger than the cloud masks ({mh} x {mw} px): "
                "use a smaller patch_size or masks from a larger region"
            )
        out = np.zeros((n_dates, height, width), dtype=bool)
        for t in np.flatnonzero(rng.random(n_dates) < p_date):
            m = self.masks[rng.integers(n)]
            if rng.random() < 0.5:
                m = m[::-1]
            if rng.random() < 0.5:
                m = m[:, ::-1]
            if mh == mw and rng.random() < 0.5:
                m = m.T
            y0 = rng.integers(0, m.shape[0] - height + 1)
            x0 = rng.integers(0, m.shape[1] - width + 1)
            out[t] = m[y0 : y0 + height, x0 : x0 + width]
        return out


@dataclass
class GapTarget:
    """What :class:`~eocube.learn.patches.PatchDataset` needs for the ``gaps`` target.

    The source is read with its dates stacked as channels (``time="all"``: ``T * C`` channels,
    date-major) and its cloudy observations as NaN; an example hides some of its clear
    observations under masks of :attr:`bank` and asks the network to bring them back.
    """

    bank: MaskBank
    """Real cloud masks (from the training blocks only)."""
    p_date: float
    """Probability that a date of a window gets an artificial cloud mask."""
    days: np.ndarray
    """``(T,)`` acquisition times in days since 1970-01-01."""
    margin: int = 0
    """Pixels at each window edge read as context only (``sampler.halo: context``): hidden there, never scored."""

    @property
    def n_dates(self) -> int:
        """Dates of the series."""
        return len(self.days)

    def example(self, x: np.ndarray, norm: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Arrays of one example from a window.

        Parameters
        ----------
        x
            ``(T * C, h, w)`` raw values, NaN where not clear.
        norm
            ``x`` normalised (anything where NaN).
        rng
            The example's random generator.

        Returns
        -------
        dict
            ``values`` ``(T, C, h, w)`` (normalised, 0 where not clear), ``valid`` (the network's
            input mask), ``target_mask`` (hidden clear observations), ``days``.
        """
        t = self.n_dates
        shape = (t, x.shape[0] // t) + x.shape[1:]
        ok = np.isfinite(x).reshape(shape)
        clear = ok.all(1)
        core = np.zeros(shape[2:], bool)  # scored pixels: all but the context margin
        m = int(self.margin)
        core[m:shape[2] - m, m:shape[3] - m] = True
        for _ in range(20):  # make sure something is hidden (a window is rarely missed twice)
            hide = self.bank.sample(t, shape[2], shape[3], rng, self.p_date)
            if (hide & clear & core).any():
                break
        return {"values": np.where(ok, norm.reshape(shape), 0.0).astype("float32"),
                "valid": ok & ~hide[:, None], "target_mask": ok & (hide & core)[:, None],
                "days": np.asarray(self.days, dtype="float64")}


def days_since_epoch(time: np.ndarray) -> np.ndarray:
    """Acquisition times as float64 days since 1970-01-01 (the network's time input)."""
    t = pd.DatetimeIndex(np.asarray(time))
    return ((t - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy("float64")


def bank_from_blocks(cloud: np.ndarray, blocks: list[tuple[slice, slice]], *, min_fraction: float) -> MaskBank:
    """A :class:`MaskBank` of the cloud masks of some blocks (the training blocks), cut to one size.

    Parameters
    ----------
    cloud
        ``(time, y, x)`` cloud band (nonzero = cloud).
    blocks
        ``(y, x)`` slices of the blocks.
    min_fraction
        Keep the block-dates at least this cloudy.
    """
    if not blocks:
        raise LearnError("no training block to take cloud masks from: change split.fractions or split.block_size")
    h = min(b[0].stop - b[0].start for b in blocks)
    w = min(b[1].stop - b[1].start for b in blocks)
    stack = np.concatenate([np.asarray(cloud[:, ys.start:ys.start + h, xs.start:xs.start + w]) for ys, xs in blocks])
    return MaskBank.from_cloud_band(stack, min_fraction=min_fraction)


__all__ = ["GapTarget", "MaskBank", "bank_from_blocks", "days_since_epoch"]
