"""Compiled (numba) harmonic regression kernels; see :mod:`eocube.fill._fast_common` for the design and pitfalls."""

from __future__ import annotations

import numba
import numpy as np

from ._fast_common import BLOCK, LINEAR_TILE, WHITTAKER_TILE, _opts, _row  # noqa: F401


@numba.jit(**_opts)
def _harmonic_row(values, valid, x, xt, xxt, b, bv, y, min_obs, keep_observed, out, bad,
                  w, wv, gram, coef, model, cnt):  # pragma: no cover - compiled
    # One image row (all dates). The normal equations of every pixel are sums over the dates of
    # w_t B_t B_t' and w_t y_t B_t (w = clear 0/1, B_t the design row): two matrix products
    # (BLAS, ~4x faster than the same sums in loops) gram = (B_t B_t')_packed' W and
    # rhs = B' (W y); then Cholesky vectorised over the pixels and model = B coef (BLAS again).
    t = values.shape[0]
    p = x.shape[1]
    m = values.shape[3]
    cnt[:] = 0.0
    for i in range(t):
        v_row = _row(values, i, b, y)
        ok_row = _row(valid, i, bv, y)
        w_row = w[i]
        wv_row = wv[i]
        for j in range(m):
            v = v_row[j]
            ok = ok_row[j] & (v - v == 0)
            w_row[j] = 1.0 if ok else 0.0
            wv_row[j] = v if ok else 0.0
        for j in range(m):
            cnt[j] += w_row[j]
    np.dot(xxt, w, gram)      # (p(p+1)/2, m): packed lower triangle, row a(a+1)/2 + c for c <= a
    np.dot(xt, wv, coef)      # (p, m) right-hand sides, solved in place below
    # Cholesky in place; the diagonal keeps the reciprocal of L's diagonal
    for a in range(p):
        g_aa = gram[a * (a + 1) // 2 + a]
        for j in range(m):
            g_aa[j] += 1e-9
    for c in range(p):
        g_cc = gram[c * (c + 1) // 2 + c]
        for k in range(c):
            g_ck = gram[c * (c + 1) // 2 + k]
            for j in range(m):
                g_cc[j] -= g_ck[j] * g_ck[j]
        for j in range(m):
            sd = g_cc[j]
            g_cc[j] = 1.0 / np.sqrt(sd) if sd > 0 else np.nan
        for r in range(c + 1, p):
            g_rc = gram[r * (r + 1) // 2 + c]
            for k in range(c):
                g_rk = gram[r * (r + 1) // 2 + k]
                g_ck = gram[c * (c + 1) // 2 + k]
                for j in range(m):
                    g_rc[j] -= g_rk[j] * g_ck[j]
            for j in range(m):
                g_rc[j] *= g_cc[j]
    for r in range(p):  # forward substitution
        z_r = coef[r]
        for k in range(r):
            g_rk = gram[r * (r + 1) // 2 + k]
            z_k = coef[k]
            for j in range(m):
                z_r[j] -= g_rk[j] * z_k[j]
        g_rr = gram[r * (r + 1) // 2 + r]
        for j in range(m):
            z_r[j] *= g_rr[j]
    for r in range(p - 1, -1, -1):  # back substitution
        z_r = coef[r]
        for k in range(r + 1, p):
            g_kr = gram[k * (k + 1) // 2 + r]
            z_k = coef[k]
            for j in range(m):
                z_r[j] -= g_kr[j] * z_k[j]
        g_rr = gram[r * (r + 1) // 2 + r]
        for j in range(m):
            z_r[j] *= g_rr[j]
    bad_row = bad[b, y]
    for j in range(m):
        bad_row[j] = cnt[j] < min_obs
    for a in range(p):
        z_a = coef[a]
        for j in range(m):
            bad_row[j] |= ~(z_a[j] - z_a[j] == 0)
    np.dot(x, coef, model)    # (t, m)
    for i in range(t):
        v_row = _row(values, i, b, y)
        ok_row = _row(valid, i, bv, y)
        o_row = out[i, b, y]
        m_row = model[i]
        for j in range(m):
            v = v_row[j]
            mv = m_row[j]
            keep = keep_observed & ok_row[j] & (v - v == 0)
            o_row[j] = v if keep else mv


@numba.jit(**_opts)
def _harmonic_rows(values, valid, x, min_obs, keep_observed, out, bad):  # pragma: no cover - compiled
    t, nb, ny, nx = values.shape
    p = x.shape[1]
    npair = p * (p + 1) // 2
    xt = np.ascontiguousarray(x.T)
    xxt = np.empty((npair, t))
    for a in range(p):
        for c in range(a + 1):
            for i in range(t):
                xxt[a * (a + 1) // 2 + c, i] = x[i, a] * x[i, c]
    w = np.empty((t, nx))
    wv = np.empty((t, nx))
    gram = np.empty((npair, nx))
    coef = np.empty((p, nx))
    model = np.empty((t, nx))
    cnt = np.empty(nx)
    vbands = valid.shape[1]
    for b in range(nb):
        bv = b if vbands > 1 else 0
        for y in range(ny):
            _harmonic_row(values, valid, x, xt, xxt, b, bv, y, min_obs, keep_observed, out, bad,
                          w, wv, gram, coef, model, cnt)
    return out, bad


def harmonic_rows(values: np.ndarray, valid: np.ndarray, x: np.ndarray, min_obs: int,
                  keep_observed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic regression of a 4-D block accepted by :func:`rows_contiguous`, without copying it.

    Returns the filled block and a (band, y, x) mask of the series to fill otherwise
    (fewer than ``min_obs`` clear observations, or a singular fit).
    """
    t, nb, ny, nx = values.shape
    out = np.empty(values.shape, values.dtype)
    bad = np.empty((nb, ny, nx), dtype=np.bool_)
    return _harmonic_rows(values, valid, np.ascontiguousarray(x, dtype=np.float64), int(min_obs),
                          bool(keep_observed), out, bad)


@numba.jit(**_opts)
def harmonic_2d(values, valid, x, min_obs, keep_observed):  # pragma: no cover - compiled
    # returns (out, fallback) where fallback marks series to fill otherwise (too few observations)
    t, n = values.shape
    p = x.shape[1]
    out = np.empty((t, n), dtype=values.dtype)
    fallback = np.zeros(n, dtype=np.bool_)
    gram = np.empty((p, p, BLOCK))
    rhs = np.empty((p, BLOCK))
    coef = np.empty((p, BLOCK))
    count = np.empty(BLOCK, dtype=np.int64)
    for s in range(0, n, BLOCK):
        e = min(s + BLOCK, n)
        m = e - s
        gram[:] = 0.0
        rhs[:] = 0.0
        count[:] = 0
        for i in range(t):
            for a in range(p):
                xa = x[i, a]
                for b in range(a + 1):
                    xab = xa * x[i, b]
                    for j in range(m):
                        v = values[i, s + j]
                        if valid[i, s + j] and np.isfinite(v):
                            gram[a, b, j] += xab
            for j in range(m):
                v = values[i, s + j]
                if valid[i, s + j] and np.isfinite(v):
                    count[j] += 1
                    for a in range(p):
                        rhs[a, j] += x[i, a] * v
        for a in range(p):
            for j in range(m):
                gram[a, a, j] += 1e-9
        # Cholesky in place (lower triangle), vectorised over pixels
        for c in range(p):
            for j in range(m):
                sdiag = gram[c, c, j]
                for k in range(c):
                    sdiag -= gram[c, k, j] ** 2
                gram[c, c, j] = np.sqrt(sdiag) if sdiag > 0 else np.nan
            for r in range(c + 1, p):
                for j in range(m):
                    acc = gram[r, c, j]
                    for k in range(c):
                        acc -= gram[r, k, j] * gram[c, k, j]
                    gram[r, c, j] = acc / gram[c, c, j]
        for r in range(p):
            for j in range(m):
                acc = rhs[r, j]
                for k in range(r):
                    acc -= gram[r, k, j] * coef[k, j]
                coef[r, j] = acc / gram[r, r, j]
        for r in range(p - 1, -1, -1):
            for j in range(m):
                acc = coef[r, j]
                for k in range(r + 1, p):
                    acc -= gram[k, r, j] * coef[k, j]
                coef[r, j] = acc / gram[r, r, j]
        for j in range(m):
            bad = count[j] < min_obs
            for a in range(p):
                if not np.isfinite(coef[a, j]):
                    bad = True
            fallback[s + j] = bad
        for i in range(t):
            for j in range(m):
                v = values[i, s + j]
                if keep_observed and valid[i, s + j] and np.isfinite(v):
                    out[i, s + j] = v
                else:
                    acc = 0.0
                    for a in range(p):
                        acc += x[i, a] * coef[a, j]
                    out[i, s + j] = acc
    return out, fallback
