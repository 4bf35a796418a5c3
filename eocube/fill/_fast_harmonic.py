"""Compiled (numba) harmonic regression kernels; see :mod:`eocube.fill._fast_common` for the design and pitfalls."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

if TYPE_CHECKING:
    from ._bound import Bound

from ._fast_common import (
    BLOCK,
    HARMONIC_TILE,
    _opts,
    _row,
    _small_matmul,
    cholesky_packed,
    is_data,
    kernel_nodata,
    observed_bounds,
    prefetch_tile,
    solve_packed,
    weighted_if_same,
    weights_tile,
)


@numba.jit(**_opts)
def _harmonic_weighted_if_same(values, valid, b, bv, y0, nrows, x0, nx, w, wv, nodata):  # pragma: no cover - compiled
    # When band ``b``'s usable observations are the weights ``w`` of the band factorised last: its
    # weighted values into ``wv`` and True; else False, early.
    t = values.shape[0]
    for i in range(t):
        w_row = w[i]
        wv_row = wv[i]
        for k in range(nrows):
            if weighted_if_same(_row(values, i, b, y0 + k)[x0:x0 + nx], _row(valid, i, bv, y0 + k)[x0:x0 + nx],
                                w_row[k * nx:(k + 1) * nx], wv_row[k * nx:(k + 1) * nx], nx, nodata):
                return False
    return True


@numba.jit(**_opts)
def _harmonic_factor(xxt, w, gram, p, m):  # pragma: no cover - compiled
    # The normal matrices of every pixel, sum over the dates of w_t B_t B_t' (B_t the design row),
    # as one product over the dates (``_small_matmul``) into a packed lower triangle
    # (row a(a+1)/2 + c for c <= a), then their Cholesky factors in place, vectorised over pixels.
    _small_matmul(xxt, w, gram)
    for a in range(p):  # a tiny ridge: a singular fit gives large, finite coefficients, not NaN
        g_aa = gram[a * (a + 1) // 2 + a]
        for j in range(m):
            g_aa[j] += 1e-9
    cholesky_packed(gram, p, m)


@numba.jit(**_opts)
def _harmonic_solve(values, valid, x, xt, b, bv, y0, nrows, x0, nx, min_obs, keep_observed, out, bad,
                    wv, gram, coef, model, cnt, nodata, bounding, lo, hi, acted):  # pragma: no cover - compiled
    # Right-hand sides B' (W y), the two triangular solves through the factors in ``gram``,
    # the model B coef and the output rows (observed values kept where usable; with ``bounding``,
    # the model clipped into [lo, hi] per pixel, and 1 in ``acted`` (uint8 or None) where it changed).
    t = values.shape[0]
    p = x.shape[1]
    m = nrows * nx
    _small_matmul(xt, wv, coef)  # (p, m) right-hand sides, solved in place below
    solve_packed(gram, coef, p, m)
    for k in range(nrows):
        bad_row = bad[b, y0 + k, x0:x0 + nx]
        for j in range(nx):
            bad_row[j] = cnt[k * nx + j] < min_obs
        for a in range(p):
            z_a = coef[a][k * nx:(k + 1) * nx]
            for j in range(nx):
                bad_row[j] |= ~(z_a[j] - z_a[j] == 0)
    _small_matmul(x, coef, model)  # (t, m)
    for i in range(t):
        m_i = model[i]
        for k in range(nrows):
            v_row = _row(values, i, b, y0 + k)[x0:x0 + nx]
            ok_row = _row(valid, i, bv, y0 + k)[x0:x0 + nx]
            o_row = out[i, b, y0 + k, x0:x0 + nx]
            m_row = m_i[k * nx:(k + 1) * nx]
            if not bounding:
                for j in range(nx):
                    v = v_row[j]
                    mv = m_row[j]
                    keep = keep_observed & (ok_row[j] != 0) & is_data(v, nodata)
                    o_row[j] = v if keep else mv
            else:
                lo_k = lo[k * nx:(k + 1) * nx]
                hi_k = hi[k * nx:(k + 1) * nx]
                for j in range(nx):
                    v = v_row[j]
                    mv = m_row[j]
                    lj = lo_k[j]
                    hj = hi_k[j]
                    keep = keep_observed & (ok_row[j] != 0) & is_data(v, nodata)
                    c = lj if mv < lj else mv
                    c = hj if c > hj else c
                    o_row[j] = v if keep else c
                    if acted is not None:
                        changed = (c != mv) & (mv == mv)
                        acted[i, b, y0 + k, x0 + j] = np.uint8(0) if keep else np.uint8(changed)


@numba.jit(**_opts)
def _harmonic_rows(bands, valid, x, min_obs, keep_observed, outs, bad, rows, cols, nodata, bounding, margin, lo_decl,
                   hi_decl, acted):  # pragma: no cover - compiled
    # Tiles of ``rows`` image rows x ``cols`` columns, all dates, in contiguous buffers of exactly
    # the tile's width: (dates, width) views of flat buffers, so every pixel loop runs over one
    # contiguous row. ``bands`` and ``outs``: one (time, 1, y, x) array per band (:func:`band_views`,
    # :func:`band_outputs`: dask's band blocks, not concatenated); ``bad`` holds every band.
    t, _, ny, nx = bands[0].shape
    nb = len(bands)
    p = x.shape[1]
    npair = p * (p + 1) // 2
    xt = np.ascontiguousarray(x.T)
    xxt = np.empty((npair, t))
    for a in range(p):
        for c in range(a + 1):
            for i in range(t):
                xxt[a * (a + 1) // 2 + c, i] = x[i, a] * x[i, c]
    n_max = rows * cols
    w_flat = np.empty(t * n_max, np.float32)  # 0/1: exact in float32, half the traffic
    wv_flat = np.empty(t * n_max, outs[0].dtype)  # the observations, exactly (float32 for float32 input)
    gram_flat = np.empty(npair * n_max)
    coef_flat = np.empty(p * n_max)
    model_flat = np.empty(t * n_max)
    cnt_flat = np.empty(n_max)
    lo_flat = np.empty(n_max)
    hi_flat = np.empty(n_max)
    vbands = valid.shape[1]
    for y0 in range(0, ny, rows):
        r = min(rows, ny - y0)
        for x0 in range(0, nx, cols):
            c = min(cols, nx - x0)
            n = r * c
            w = w_flat[:t * n].reshape((t, n))
            wv = wv_flat[:t * n].reshape((t, n))
            gram = gram_flat[:npair * n].reshape((npair, n))
            coef = coef_flat[:p * n].reshape((p, n))
            model = model_flat[:t * n].reshape((t, n))
            cnt = cnt_flat[:n]
            x0n, y0n = (x0 + cols, y0) if x0 + cols < nx else (0, y0 + rows)
            if y0n < ny:  # the next tile's input, fetched while this one is computed
                rn, cn = min(rows, ny - y0n), min(cols, nx - x0n)
                for b in range(nb):
                    prefetch_tile(bands[b], 0, y0n, rn, x0n, cn)
                prefetch_tile(valid, 0, y0n, rn, x0n, cn)
            for b in range(nb):
                bv = b if vbands > 1 else 0
                values = bands[b]
                # bands with the usable observations of the band before (one cloud mask for all
                # bands, the usual case) share its normal matrices and their factors
                if not (b > 0 and _harmonic_weighted_if_same(values, valid, 0, bv, y0, r, x0, c, w, wv, nodata)):
                    weights_tile(values, valid, 0, bv, y0, r, x0, c, w, wv, cnt, nodata)
                    _harmonic_factor(xxt, w, gram, p, n)
                if bounding:
                    observed_bounds(w, wv, n, margin, lo_decl, hi_decl, lo_flat, hi_flat)
                if acted is None:
                    _harmonic_solve(values, valid, x, xt, 0, bv, y0, r, x0, c, min_obs, keep_observed, outs[b],
                                    bad[b:b + 1], wv, gram, coef, model, cnt, nodata, bounding, lo_flat, hi_flat, None)
                else:
                    _harmonic_solve(values, valid, x, xt, 0, bv, y0, r, x0, c, min_obs, keep_observed, outs[b],
                                    bad[b:b + 1], wv, gram, coef, model, cnt, nodata, bounding, lo_flat, hi_flat,
                                    acted[b])
    return bad


def harmonic_rows(bands: tuple[np.ndarray, ...], valid: np.ndarray, x: np.ndarray, min_obs: int,
                  keep_observed: bool, outs: tuple[np.ndarray, ...], nodata: float | None = None,
                  bound: Bound | None = None, acted: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """Harmonic regression of a block given as the band views of :func:`band_views`, without copying
    it, into ``outs`` (:func:`band_outputs`).

    ``nodata``: the value that marks a missing observation (besides NaN); ``bound``: clip the
    model values (:class:`eocube.fill._bound.Bound`); ``acted``: bool views like ``outs``, True
    where it changed one. Returns a (band, y, x) mask of the series to fill otherwise (fewer than
    ``min_obs`` clear observations, or a singular fit).
    """
    t, _, ny, nx = bands[0].shape
    bad = np.empty((len(bands), ny, nx), dtype=np.bool_)
    cols = min(nx, HARMONIC_TILE)
    rows = max(1, min(ny, HARMONIC_TILE // max(cols, 1)))
    margin, lo, hi = (bound.margin, bound.lo, bound.hi) if bound is not None else (-1.0, -np.inf, np.inf)
    return _harmonic_rows(bands, valid.view(np.uint8), np.ascontiguousarray(x, dtype=np.float64), int(min_obs),
                          bool(keep_observed), outs, bad, rows, cols, kernel_nodata(bands[0].dtype, nodata),
                          bound is not None, float(margin), float(lo), float(hi),
                          None if acted is None else tuple(a.view(np.uint8) for a in acted))


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
