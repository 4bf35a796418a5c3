"""A block function that stands for a kill after N blocks (the same dask name in every run)."""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
import xarray as xr

_STATE = {"after": None, "count": 0}
_LOCK = threading.Lock()


class Killed(BaseException):
    """Stands for a kill (SIGKILL, walltime): nothing of eocube's may catch it."""


def _maybe_die(block: np.ndarray) -> np.ndarray:
    with _LOCK:
        if _STATE["after"] is not None:
            if _STATE["count"] >= _STATE["after"]:
                raise Killed(f"killed after {_STATE['after']} blocks")
            _STATE["count"] += 1
    return block * 2


def doubled(cube: xr.DataArray) -> xr.DataArray:
    """``cube * 2`` through one task per block, killable with :func:`kill_after`."""
    data = da.map_blocks(_maybe_die, cube.data, dtype=cube.dtype)
    return cube.copy(data=data)


class kill_after:  # noqa: N801 - a context manager, named as one is used: `with kill_after(n):`
    """Within the block, the N+1-th block computed raises :class:`Killed`."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        _STATE.update(after=self.n, count=0)

    def __exit__(self, *exc: object) -> None:
        _STATE.update(after=None, count=0)
