"""Compiled (numba) Savitzky-Golay kernel; see :mod:`eocube.fill._fast_common` for the design and pitfalls.

The NumPy kernel (:func:`eocube.fill._savgol.savgol_fill` with ``engine="numpy"``) writes the
window sums as dense (dates x dates) products, mostly multiplications by zero outside each
date's window. Here each date's sums run over its window only, one tile of image rows at a
time, and each pixel's small Hankel system is solved in the same pass.
"""

from __future__ import annotations

import numba
import numpy as np

from ._fast_common import SAVGOL_TILE, _opts, _row, _small_matmul, weights_tile


@numba.jit(**_opts)
def _hankel_solve_first(moments, rhs, low, z, p, m, model):  # pragma: no cover - compiled
    # Per pixel, the Cholesky solution of G c = rhs with G[a, c] = moments[a + c] (p x p), and its
    # first component (the fitted value at the window's centre) into ``model``; NaN where G is
    # not positive definite. The steps of ``eocube.fill._common.batched_spd_solve``, except that
    # the diagonal keeps the reciprocal of L's diagonal (multiplications instead of divisions,
    # which are the slow part of this small solve).
    for c in range(p):
        l_cc = low[c * p + c]
        mom = moments[2 * c]
        for j in range(m):
            l_cc[j] = mom[j]
        for k in range(c):
            l_ck = low[c * p + k]
            for j in range(m):
                l_cc[j] -= l_ck[j] * l_ck[j]
        for j in range(m):
            s = l_cc[j]
            l_cc[j] = 1.0 / np.sqrt(s) if s > 0 else np.nan
        for r in range(c + 1, p):
            l_rc = low[r * p + c]
            mom = moments[r + c]
            for j in range(m):
                l_rc[j] = mom[j]
            for k in range(c):
                l_rk = low[r * p + k]
                l_ck = low[c * p + k]
                for j in range(m):
                    l_rc[j] -= l_rk[j] * l_ck[j]
            for j in range(m):
                l_rc[j] *= l_cc[j]
    for a in range(p):  # forward: L z = rhs
        z_a = z[a]
        r_a = rhs[a]
        for j in range(m):
            z_a[j] = r_a[j]
        for k in range(a):
            l_ak = low[a * p + k]
            z_k = z[k]
            for j in range(m):
                z_a[j] -= l_ak[j] * z_k[j]
        l_aa = low[a * p + a]
        for j in range(m):
            z_a[j] *= l_aa[j]
    for a in range(p - 1, -1, -1):  # backward: L' c = z, in place in z
        z_a = z[a]
        for k in range(a + 1, p):
            l_ka = low[k * p + a]
            z_k = z[k]
            for j in range(m):
                z_a[j] -= l_ka[j] * z_k[j]
        l_aa = low[a * p + a]
        for j in range(m):
            z_a[j] *= l_aa[j]
    z0 = z[0]
    for j in range(m):
        model[j] = z0[j]


@numba.jit(**_opts)
def _savgol_out(values, valid, i, b, bv, y0, r, model, count, linear, min_count, keep_observed, out):  # pragma: no cover
    # Date i's output rows: the observation where clear (and kept), else the fit, or the linear
    # filling where the window holds too few clear observations or the fit failed.
    nx = values.shape[3]
    for k in range(r):
        v_row = _row(values, i, b, y0 + k)
        ok_row = _row(valid, i, bv, y0 + k)
        lin_row = _row(linear, i, b, y0 + k)
        o_row = _row(out, i, b, y0 + k)
        m_k = model[k * nx:(k + 1) * nx]
        c_k = count[k * nx:(k + 1) * nx]
        for j in range(nx):
            v = v_row[j]
            mv = m_k[j]
            lv = lin_row[j]
            short = (c_k[j] < min_count) | ~(mv - mv == 0)
            fit = lv if short else mv
            keep = keep_observed & (ok_row[j] != 0) & (v - v == 0)
            o_row[j] = v if keep else fit


@numba.jit(**_opts)
def _savgol_rows(values, valid, lo, hi, powers, p, keep_observed, linear, out, rows):  # pragma: no cover
    # Tiles of ``rows`` image rows x all dates, band by band. ``powers[i, k, s]``: (delta)^k for
    # the s-th date of date i's window (dates lo[i]..hi[i]), k < 2p - 1; the first p rows weight
    # the values (right-hand sides), all 2p - 1 the clear counts (moments).
    t, nb, ny, nx = values.shape
    n = rows * nx
    q = 2 * p - 1
    # flat buffers, viewed per tile as C-contiguous (k, m) arrays of exactly the tile's width
    w_flat = np.empty(t * n)
    wy_flat = np.empty(t * n)
    mom_flat = np.empty(q * n)
    rhs_flat = np.empty(p * n)
    low_flat = np.empty(p * p * n)
    z_flat = np.empty(p * n)
    model = np.empty(n)
    cnt = np.empty(n)
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
            low = low_flat[:p * p * m].reshape((p * p, m))
            z = z_flat[:p * m].reshape((p, m))
            weights_tile(values, valid, b, bv, y0, r, 0, nx, w, wy, cnt[:m])
            for i in range(t):
                a, e = lo[i], hi[i] + 1
                _small_matmul(powers[i, :, :e - a], w[a:e], mom)
                _small_matmul(powers[i, :p, :e - a], wy[a:e], rhs)
                _hankel_solve_first(mom, rhs, low, z, p, m, model)
                _savgol_out(values, valid, i, b, bv, y0, r, model, mom[0], linear, min_count, keep_observed, out)
    return out


def savgol_rows(values: np.ndarray, valid: np.ndarray, days: np.ndarray, window: float, order: int,
                keep_observed: bool, linear: np.ndarray) -> np.ndarray:
    """Savitzky-Golay filling of a 4-D block accepted by :func:`rows_contiguous`, without copying it.

    ``linear`` is the block's linear filling (same shape and dtype as the result), used where a
    window holds fewer than ``order + 2`` clear observations.
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
    rows = max(1, min(values.shape[2], SAVGOL_TILE // max(values.shape[3], 1)))
    return _savgol_rows(values, valid.view(np.uint8), lo.astype(np.int64), hi.astype(np.int64), powers, p,
                        bool(keep_observed), linear, out, rows)
