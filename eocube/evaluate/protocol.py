"""The artificial-gap protocol: hide clear observations behind real cloud masks, fill, score.

Hiding uniformly random pixels flatters every method (gaps of one pixel-date, always
surrounded by clear neighbours in time). Real clouds come in blobs and runs of dates,
so the held-out set is made of real cloud masks: the cloud mask of another date
(``donor="dates"``) or of the same date moved to other pixels (``donor="pixels"``)
is laid over a date's clear observations, until the wanted fraction is hidden.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import EOCubeError


class EvaluateError(EOCubeError, ValueError):
    """The evaluation protocol cannot run on the given input (no clear data, bad fraction)."""


def artificial_gaps(
    clear: xr.DataArray,
    fraction: float = 0.2,
    seed: int = 0,
    *,
    donor: str = "dates",
) -> tuple[xr.DataArray, xr.DataArray]:
    """Hide a fraction of the clear observations behind real cloud masks (seeded).

    Parameters
    ----------
    clear
        Boolean clear mask (time, y, x), True = clear (loaded into memory: 1 byte per pixel-date).
    fraction
        Share of the clear observations to hide, in (0, 1).
    seed
        Random seed: the same seed gives the same gaps.
    donor
        ``"dates"``: lay the cloud mask of another, randomly chosen date over each date;
        ``"pixels"``: lay the same date's cloud mask shifted by a random offset
        (wrapping around the image).

    Returns
    -------
    train_clear, held_out
        Boolean masks like ``clear``: the observations a method may use, and the
        hidden clear observations it is scored on (``train_clear | held_out == clear``,
        disjoint).
    """
    if not 0 < fraction < 1:
        raise EvaluateError(f"fraction must be between 0 and 1 (exclusive), got {fraction!r}")
    if donor not in ("dates", "pixels"):
        raise EvaluateError(f"donor must be 'dates' or 'pixels', got {donor!r}")
    if set(clear.dims) != {"time", "y", "x"} or clear.dtype != bool:
        raise EvaluateError(f"clear must be a boolean (time, y, x) mask, got dims {clear.dims} dtype {clear.dtype}")
    clear = clear.transpose("time", "y", "x")
    ok = np.asarray(clear.values, dtype=bool)
    total = int(ok.sum())
    cloudy = ~ok
    if total == 0:
        raise EvaluateError("the mask has no clear observation: nothing to hide and score on")
    if not cloudy.any():
        raise EvaluateError("the mask has no cloud at all: there is no real cloud mask to borrow; "
                            "pass a mask with clouds (or use a cloud mask from another cube)")
    rng = np.random.default_rng(seed)
    goal = fraction * total
    hidden = np.zeros_like(ok)
    donors = [i for i in range(ok.shape[0]) if cloudy[i].any()]
    count = 0
    for _ in range(50):  # passes over the dates; each pass hides more
        for t in rng.permutation(ok.shape[0]):
            if donor == "dates":
                cloud = cloudy[donors[rng.integers(len(donors))]]
            else:
                dy, dx = rng.integers(ok.shape[1]), rng.integers(ok.shape[2])
                cloud = np.roll(cloudy[donors[rng.integers(len(donors))]], (dy, dx), axis=(0, 1))
            new = cloud & ok[t] & ~hidden[t]
            room = goal - count
            if room <= 0:
                break
            n_new = int(new.sum())
            if n_new > room:  # the last mask: keep a connected-ish part so the total is on target
                flat = np.flatnonzero(new)
                new = np.zeros_like(new)
                new.flat[flat[: int(np.ceil(room))]] = True
                n_new = int(new.sum())
            hidden[t] |= new
            count += n_new
        if count >= goal:
            break
    train = clear.copy(data=ok & ~hidden)
    held = clear.copy(data=hidden)
    train.name, held.name = "train_clear", "held_out"
    held.attrs = {"fraction": fraction, "seed": seed, "donor": donor}
    return train, held
