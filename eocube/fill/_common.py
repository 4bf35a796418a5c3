"""Helpers shared by the gap-filling kernels (pure NumPy)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def as_block(values: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """One array for a block given as the list of its band blocks, concatenated along ``band``
    (a copy; ``fill_gaps`` hands the Whittaker and harmonic kernels such lists, which their
    compiled paths take without concatenating, see :func:`eocube.fill._fast_common.band_views`)."""
    return np.concatenate(values, axis=1) if isinstance(values, (list, tuple)) else values


def prepare(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """Flatten ``values`` to (time, n) float and the usable-observation mask likewise.

    Non-finite values are never usable, whatever ``valid`` says.
    """
    t = values.shape[0]
    out_dtype = np.result_type(values.dtype, np.float32)
    flat = values.reshape(t, -1).astype(out_dtype, copy=False)
    ok = np.broadcast_to(valid, values.shape).reshape(t, -1) & np.isfinite(flat)
    return flat, ok, out_dtype


def prepare_2d(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """Values as a C-contiguous float (time, n) array and the mask as a contiguous bool (time, n) array."""
    t = values.shape[0]
    out_dtype = np.result_type(values.dtype, np.float32)
    flat = np.ascontiguousarray(values.reshape(t, -1), dtype=out_dtype)
    ok = np.ascontiguousarray(np.broadcast_to(valid, values.shape).reshape(t, -1), dtype=bool)
    return flat, ok, out_dtype


def check_engine(engine: str) -> None:
    """Raise for an unknown engine name."""
    if engine not in ("numba", "numpy"):
        raise ValueError(f"engine must be 'numba' (compiled, default) or 'numpy' (reference), got {engine!r}")


def finish(model: np.ndarray, flat: np.ndarray, ok: np.ndarray, shape: tuple[int, ...], dtype: np.dtype,
           keep_observed: bool) -> np.ndarray:
    """Put observed values back where usable (unless smoothing) and restore the block shape."""
    model = model.astype(dtype, copy=False)
    if keep_observed:
        model = np.where(ok, flat, model)
    return model.reshape(shape)


def batched_spd_solve(gram, rhs: np.ndarray) -> np.ndarray:
    """Solve many small symmetric positive definite systems at once (Cholesky, vectorised over n).

    Parameters
    ----------
    gram
        Array (p, p, n), or nested sequences ``gram[i][j]`` of arrays (n,): one p x p
        matrix per column n (only ``i >= j`` is read).
    rhs
        Array (p, n).

    Returns
    -------
    numpy.ndarray
        Solutions (p, n); NaN where a matrix is not positive definite.

    Notes
    -----
    ``numpy.linalg.solve`` on a stack of (n, p, p) matrices calls LAPACK once per
    matrix; for p <= ~10 and n ~ 1e5 this loop over p with vector operations over n
    is several times faster.
    """
    p = len(rhs)
    low: dict[tuple[int, int], np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(p):
            s = gram[j][j] - sum((low[j, k] ** 2 for k in range(j)), np.zeros(()))
            low[j, j] = np.sqrt(np.where(s > 0, s, np.nan))
            for i in range(j + 1, p):
                acc = gram[i][j] - sum((low[i, k] * low[j, k] for k in range(j)), np.zeros(()))
                low[i, j] = acc / low[j, j]
        z = [np.empty(0)] * p
        for i in range(p):
            z[i] = (rhs[i] - sum((low[i, k] * z[k] for k in range(i)), np.zeros(()))) / low[i, i]
        x = [np.empty(0)] * p
        for i in reversed(range(p)):
            x[i] = (z[i] - sum((low[k, i] * x[k] for k in range(i + 1, p)), np.zeros(()))) / low[i, i]
    return np.stack(x)
