"""Helpers shared by the gap-filling kernels (pure NumPy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ._errors import FillError

if TYPE_CHECKING:
    from ._bound import Bound


def as_block(values: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """One array for a block given as the list of its band blocks, concatenated along ``band``
    (a copy; ``fill_gaps`` hands the Whittaker and harmonic kernels such lists, which their
    compiled paths take without concatenating, see :func:`eocube.fill._fast_common.band_views`)."""
    return np.concatenate(values, axis=1) if isinstance(values, (list, tuple)) else values


def kernel_nodata(dtype: np.dtype, nodata: float | int | None) -> np.generic | None:
    """``nodata`` as a scalar of ``dtype`` for the compiled kernels, or None where no value of that
    dtype can equal it (None, NaN, or a value the dtype cannot hold exactly, e.g. -9999 for uint16)."""
    if nodata is None:
        return None
    dtype = np.dtype(dtype)
    try:
        value = float(nodata)
    except (TypeError, ValueError):
        return None
    if value != value:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            if not (info.min <= value <= info.max) or value != int(value):
                return None
            return dtype.type(int(value))
        cast = dtype.type(value)
    return cast if float(cast) == value else None


def is_nodata(values: np.ndarray, nodata: float | int | None) -> np.ndarray | np.bool_:
    """True where ``values`` equal the nodata value (compared in the values' own dtype, as the
    compiled kernels do; False everywhere for None, NaN, or a value the dtype cannot hold)."""
    value = kernel_nodata(values.dtype, nodata)
    return np.False_ if value is None else values == value


def prepare(values: np.ndarray, valid: np.ndarray, nodata: float | int | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """Flatten ``values`` to (time, n) float and the usable-observation mask likewise.

    Non-finite values and values equal to ``nodata`` are never usable, whatever ``valid`` says.
    """
    t = values.shape[0]
    out_dtype = np.result_type(values.dtype, np.float32)
    flat = values.reshape(t, -1).astype(out_dtype, copy=False)
    ok = np.broadcast_to(valid, values.shape).reshape(t, -1) & np.isfinite(flat)
    ok &= ~is_nodata(values.reshape(t, -1), nodata)
    return flat, ok, out_dtype


def prepare_2d(values: np.ndarray, valid: np.ndarray, nodata: float | int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """Values as a C-contiguous float (time, n) array and the mask as a contiguous bool (time, n)
    array (False where a value equals ``nodata``; the kernels themselves skip non-finite values)."""
    t = values.shape[0]
    out_dtype = np.result_type(values.dtype, np.float32)
    flat = np.ascontiguousarray(values.reshape(t, -1), dtype=out_dtype)
    ok = np.ascontiguousarray(np.broadcast_to(valid, values.shape).reshape(t, -1), dtype=bool)
    missing = is_nodata(values.reshape(t, -1), nodata)
    if isinstance(missing, np.ndarray):
        ok = ok & ~missing
    return flat, ok, out_dtype


def is_positive(value: object) -> bool:
    """Whether ``value`` is a finite real number > 0 (not NaN, inf, a bool or a string)."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and bool(np.isfinite(value)) and value > 0)


def is_count(value: object) -> bool:
    """Whether ``value`` is an integer >= 0 (a whole float such as 2.0 counts; a bool does not)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return bool(np.isfinite(value)) and float(value).is_integer() and value >= 0


def check_engine(engine: str) -> None:
    """Raise for an unknown engine name."""
    if engine not in ("numba", "numpy"):
        raise FillError(f"engine must be 'numba' (compiled, default) or 'numpy' (reference), got {engine!r}")


def finish(model: np.ndarray, flat: np.ndarray, ok: np.ndarray, shape: tuple[int, ...], dtype: np.dtype,
           keep_observed: bool, bound: Bound | None = None, return_bounded: bool = False
           ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Put observed values back where usable (unless smoothing) and restore the block shape.

    With ``bound`` (:class:`eocube.fill._bound.Bound`), the other values are clipped into it
    first (see :func:`~eocube.fill._bound.clip`). With ``return_bounded`` the result is
    ``(filled, acted)``, ``acted`` True where the clip changed a value (all False without ``bound``).
    """
    acted = None
    if bound is not None:
        from ._bound import clip

        model, acted = clip(model, flat, ok, ok if keep_observed else np.zeros_like(ok), bound)
    model = model.astype(dtype, copy=False)
    if keep_observed:
        model = np.where(ok, flat, model)
    if not return_bounded:
        return model.reshape(shape)
    return model.reshape(shape), (np.zeros(shape, bool) if acted is None else acted.reshape(shape))


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
