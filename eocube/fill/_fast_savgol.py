"""Compiled (numba) Savitzky-Golay kernel; see :mod:`eocube.fill._fast_common` for the design and pitfalls.

The NumPy kernel (:func:`eocube.fill._savgol.savgol_fill` with ``engine="numpy"``) writes the
window sums as dense (dates x dates) products, mostly multiplications by zero outside each
date's window. Here each date's sums run over its window only, one tile of image rows at a
time, and each pixel's small Hankel system is solved in the same pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

if TYPE_CHECKING:
    from ._bound import Bound

from ._fast_common import (
    SAVGOL_TILE,
    _opts,
    _row,
    _small_matmul,
    cholesky_packed,
    is_data,
    kernel_nodata,
    observed_bounds,
    solve_packed,
    tile_rows,
    weights_tile,
)


@numba.jit(**_opts)
def _hankel_packed(moments, gram, p, m):  # pragma: no cover - compiled
    # The Hankel normal matrices (entry (a, c) = moment a + c) as packed lower triangles.
    for a in range(p):
        for c in range(a + 1):
            src = moments[a + c]
            dst = gram[a * (a + 1) // 2 + c]
            for j in range(m):
                dst[j] = src[j]


@numba.jit(**_opts)
def _savgol_out(values, valid, i, b, bv, y0, r, model, count, linear, min_count, keep_observed, out, nodata,
                lo, hi, acted):  # pragma: no cover
    # Date i's output rows: the observation where clear (and kept), else the fit, or the linear
    # filling where the window holds too few clear observations or the fit failed, clipped into
    # [lo, hi] per pixel (+-inf without a bound); 1 in ``acted`` (uint8 or None) where that changed it.
    nx = values.shape[3]
    for k in range(r):
        v_row = _row(values, i, b, y0 + k)
        ok_row = _row(valid, i, bv, y0 + k)
        lin_row = _row(linear, i, b, y0 + k)
        o_row = _row(out, i, b, y0 + k)
        m_k = model[k * nx:(k + 1) * nx]
        c_k = count[k * nx:(k + 1) * nx]
        lo_k = lo[k * nx:(k + 1) * nx]
        hi_k = hi[k * nx:(k + 1) * nx]
        for j in range(nx):
            v = v_row[j]
            mv = m_k[j]
            lv = lin_row[j]
            lj = lo_k[j]
            hj = hi_k[j]
            short = (c_k[j] < min_count) | ~(mv - mv == 0)
            fit = lv if short else mv
            c = lj if fit < lj else fit
            c = hj if c > hj else c
            keep = keep_observed & (ok_row[j] != 0) & is_data(v, nodata)
            o_row[j] = v if keep else c
            if acted is not None:
                changed = (c != fit) & (fit == fit)
                acted[i, b, y0 + k, j] = np.uint8(0) if keep else np.uint8(changed)


@numba.jit(**_opts)
def _savgol_rows(values, valid, lo, hi, powers, p, keep_observed, linear, out, rows, nodata, margin, lo_decl, hi_decl,
                 acted):  # pragma: no cover
    # Tiles of ``rows`` image rows x all dates, band by band. ``powers[i, k, s]``: (delta)^k for
    # the s-th date of date i's window (dates lo[i]..hi[i]), k < 2p - 1; the first p rows weight
    # the values (right-hand sides), all 2p - 1 the clear counts (moments).
    t, nb, ny, nx = values.shape
    n = rows * nx
    q = 2 * p - 1
    # flat buffers, viewed per tile as C-contiguous (k, m) arrays of exactly the tile's width
    w_flat = np.empty(t * n, np.float32)  # 0/1: exact in float32, half the traffic
    wy_flat = np.empty(t * n, out.dtype)  # the observations, exactly (float32 for float32 input)
    mom_flat = np.empty(q * n)
    rhs_flat = np.empty(p * n)
    gram_flat = np.empty(p * (p + 1) // 2 * n)
    cnt = np.empty(n)  # clear counts over all dates: filled by the shared loader, unused here
    b_lo = np.empty(n)
    b_hi = np.empty(n)
    vbands = valid.shape[1]
    min_count = p + 1
    for b in range(nb):
        bv = b if vbands > 1 else 0
        for y0 in range(0, ny, rows):
            r = min(rows, ny - y0)
            m = r * nx
            w = w_flat[:t * m].reshape((t, m))
            wy = wy_flat[:t * m].reshape((t, m))
            mom = mom_flat[:q * m].reshape((q, m))
            rhs = rhs_flat[:p * m].reshape((p, m))
            gram = gram_flat[:p * (p + 1) // 2 * m].reshape((p * (p + 1) // 2, m))
            weights_tile(values, valid, b, bv, y0, r, 0, nx, w, wy, cnt[:m], nodata)
            observed_bounds(w, wy, m, margin, lo_decl, hi_decl, b_lo, b_hi)
            for i in range(t):
                a, e = lo[i], hi[i] + 1
                _small_matmul(powers[i, :, :e - a], w[a:e], mom)
                _small_matmul(powers[i, :p, :e - a], wy[a:e], rhs)
                _hankel_packed(mom, gram, p, m)
                cholesky_packed(gram, p, m)
                solve_packed(gram, rhs, p, m)  # the fit's value at the window's centre: rhs[0]
                _savgol_out(values, valid, i, b, bv, y0, r, rhs[0], mom[0], linear, min_count, keep_observed, out,
                            nodata, b_lo, b_hi, acted)
    return out


def savgol_rows(values: np.ndarray, valid: np.ndarray, days: np.ndarray, window: float, order: int,
                keep_observed: bool, linear: np.ndarray, nodata: float | None = None, bound: Bound | None = None,
                acted: np.ndarray | None = None) -> np.ndarray:
    """Savitzky-Golay filling of a 4-D block accepted by :func:`rows_contiguous`, without copying it.

    ``linear`` is the block's linear filling (same shape and dtype as the result), used where a
    window holds fewer than ``order + 2`` clear observations; ``nodata`` marks missing values
    (besides NaN); ``bound`` (:class:`eocube.fill._bound.Bound`) clips the filled values, and
    ``acted`` (bool, shaped as the result, or None) gets True where it changed one.
    """
    d = np.asarray(days, dtype="float64")
    half = window / 2.0
    delta = (d[None, :] - d[:, None]) / half  # (target, source), as the NumPy kernel
    inside = np.abs(delta) <= 1.0
    lo = inside.argmax(axis=1)
    hi = len(d) - 1 - inside[:, ::-1].argmax(axis=1)
    p = order + 1
    span = int((hi - lo).max()) + 1
    powers = np.zeros((len(d), 2 * p - 1, span))
    for i in range(len(d)):
        window_delta = delta[i, lo[i]:hi[i] + 1]
        for k in range(2 * p - 1):
            powers[i, k, :len(window_delta)] = window_delta ** k
    out = np.empty(values.shape, linear.dtype)
    rows = tile_rows(values.shape, SAVGOL_TILE)
    margin, b_lo, b_hi = (bound.margin, bound.lo, bound.hi) if bound is not None else (-1.0, -np.inf, np.inf)
    return _savgol_rows(values, valid.view(np.uint8), lo.astype(np.int64), hi.astype(np.int64), powers, p,
                        bool(keep_observed), linear, out, rows, kernel_nodata(values.dtype, nodata), float(margin),
                        float(b_lo), float(b_hi), None if acted is None else acted.view(np.uint8))
