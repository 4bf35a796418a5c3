"""Compiled (numba) Whittaker smoother kernels; see :mod:`eocube.fill._fast_common` for the design and pitfalls."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

if TYPE_CHECKING:
    from ._bound import Bound

from ._fast_common import (
    BLOCK,
    WHITTAKER_TILE,
    _opts,
    _row,
    _unowned,
    bounded_or,
    finish_bounds,
    is_data,
    kernel_nodata,
    observed_or,
    range_row,
    tile_rows,
    weighted_if_same,
)


@numba.jit(**_opts)
def _usable_weights(v_row, ok_row, w_row, n, nodata):  # pragma: no cover - compiled
    # 1.0 where an observation is clear (``ok_row`` uint8), finite and not nodata, else 0.0
    for j in range(n):
        v = v_row[j]
        w_row[j] = 1.0 if (ok_row[j] != 0) & is_data(v, nodata) else 0.0


@numba.jit(**_opts)
def _pivot_two(d_i, w_i, c0, l1_i, d_p, l2_i, d_pp, m):  # pragma: no cover - compiled
    for j in range(m):
        a = l1_i[j]
        b = l2_i[j]
        d_i[j] = w_i[j] + c0 - (a * a * d_p[j] + b * b * d_pp[j])


@numba.jit(**_opts)
def _reciprocal(inv_i, d_i, m):  # pragma: no cover - compiled
    for j in range(m):
        inv_i[j] = 1.0 / d_i[j]


@numba.jit(**_opts)
def _next_l1(l1_n, c1, l1_i, l2_n, d_p, inv_i, m):  # pragma: no cover - compiled
    for j in range(m):
        l1_n[j] = (c1 - l1_i[j] * l2_n[j] * d_p[j]) * inv_i[j]


@numba.jit(**_opts)
def _scaled(dst, c, src, m):  # pragma: no cover - compiled
    for j in range(m):
        dst[j] = c * src[j]


@numba.jit(**_opts)
def _held_outside(r_buf, z_i, zf, zl, first, last, fi, m):  # pragma: no cover - compiled
    # the smoothed value, held at the first/last clear date outside them. Every operand loaded
    # unconditionally: a load inside ``a if c else b`` stops LLVM from making a vector select.
    for j in range(m):
        zi = z_i[j]
        f = zf[j]
        la = zl[j]
        zi = f if fi < first[j] else zi
        r_buf[j] = la if fi > last[j] else zi


@numba.jit(**_opts)
def _sub_two(z_i, l1_i, z_p, l2_i, z_pp, m):  # pragma: no cover - compiled
    # z_i -= l1_i z_p + l2_i z_pp. Row operations live in small functions: the same loop written
    # inline in a bigger function ran about 2x slower here (vectorised less well).
    for j in range(m):
        z_i[j] -= l1_i[j] * z_p[j] + l2_i[j] * z_pp[j]


@numba.jit(**_opts)
def _scale_sub_two(z_i, inv_i, l1_n, z_n, l2_nn, z_nn, m):  # pragma: no cover - compiled
    for j in range(m):
        z_i[j] = z_i[j] * inv_i[j] - l1_n[j] * z_n[j] - l2_nn[j] * z_nn[j]


@numba.jit(**_opts)
def _weighted(v_row, w_row, z_row, n):  # pragma: no cover - compiled
    for j in range(n):
        v = v_row[j]
        z_row[j] = v if w_row[j] > 0.5 else 0.0


@numba.jit(**_opts)
def _whittaker_factor(values, valid, b, bv, y0, r, a0p, a1, a2, lmbda,
                      w3, z3, w, dd, inv, l1, l2, z, nodata, ranging, lo, hi):  # pragma: no cover - compiled
    # Rows y0:y0+r (all dates): weights, right-hand side z and the banded LDL' of (W + lambda P)
    # per pixel, vectorised over the pixels; the division by D goes into the back substitution
    # (one reciprocal per pixel and date). Every pixel loop is a small
    # function touching few arrays, without a branch: loops over more arrays (LLVM gives up its
    # run-time overlap checks) or written inline in a big function ran 2-5x slower (not or less
    # vectorised). ``w3``/``z3`` are (time, rows, x) views of the (time, rows * x) ``w``/``z``.
    # ``ranging``: each pixel's clear minimum and maximum into ``lo``/``hi`` on the way (``range_row``).
    t = values.shape[0]
    nx = values.shape[3]
    m = r * nx
    eps = 1e-9 * lmbda
    w3, z3, w, dd, inv = _unowned(w3), _unowned(z3), _unowned(w), _unowned(dd), _unowned(inv)
    l1, l2, z = _unowned(l1), _unowned(l2), _unowned(z)
    for i in range(t):
        for k in range(r):
            v_row = _row(values, i, b, y0 + k)
            ok_row = _row(valid, i, bv, y0 + k)
            _usable_weights(v_row, ok_row, w3[i, k], nx, nodata)
            _weighted(v_row, w3[i, k], z3[i, k], nx)
            if ranging:
                range_row(v_row, ok_row, lo[k * nx:(k + 1) * nx], hi[k * nx:(k + 1) * nx], nx, nodata)
        w_i = w[i]
        d_i = dd[i]
        c0 = lmbda * a0p[i] + eps
        if i >= 2:
            _pivot_two(d_i, w_i, c0, l1[i], dd[i - 1], l2[i], dd[i - 2], m)
        elif i == 1:
            l1_i = l1[i]
            d_p = dd[i - 1]
            for j in range(m):
                d_i[j] = w_i[j] + c0 - l1_i[j] * l1_i[j] * d_p[j]
        else:
            for j in range(m):
                d_i[j] = w_i[j] + c0
        inv_i = inv[i]
        _reciprocal(inv_i, d_i, m)
        if i + 1 < t:
            c1 = lmbda * a1[i]
            if i >= 1:
                _next_l1(l1[i + 1], c1, l1[i], l2[i + 1], dd[i - 1], inv_i, m)
            else:
                _scaled(l1[i + 1], c1, inv_i, m)
        if i + 2 < t:
            _scaled(l2[i + 2], lmbda * a2[i], inv_i, m)


@numba.jit(**_opts)
def _whittaker_back(inv, l1, l2, z, m):  # pragma: no cover - compiled
    t = z.shape[0]
    inv, l1, l2, z = _unowned(inv), _unowned(l1), _unowned(l2), _unowned(z)
    for i in range(t - 1, -1, -1):
        z_i = z[i]
        inv_i = inv[i]
        if i + 2 < t:
            _scale_sub_two(z_i, inv_i, l1[i + 1], z[i + 1], l2[i + 2], z[i + 2], m)
        elif i + 1 < t:
            l1_n = l1[i + 1]
            z_n = z[i + 1]
            for j in range(m):
                z_i[j] = z_i[j] * inv_i[j] - l1_n[j] * z_n[j]
        else:
            for j in range(m):
                z_i[j] *= inv_i[j]
    # per pixel: clear count, first/last clear date and first clear value


@numba.jit(**_opts)
def _whittaker_stats(w, cnt, first, last, m):  # pragma: no cover - compiled
    # per pixel: number of clear dates, first and last clear date (-1 where none)
    t = w.shape[0]
    w, cnt, first, last = _unowned(w), _unowned(cnt), _unowned(first), _unowned(last)
    cnt[:m] = 0.0
    first[:m] = -1.0
    last[:m] = -1.0
    for i in range(t):
        _accumulate(cnt, w[i], m)
        _where_set(last, w[i], float(i), m)
    for i in range(t - 1, -1, -1):
        _where_set(first, w[i], float(i), m)


@numba.jit(**_opts)
def _accumulate(acc, w_i, m):  # pragma: no cover - compiled
    for j in range(m):
        acc[j] += w_i[j]


@numba.jit(**_opts)
def _where_set(dst, w_i, value, m):  # pragma: no cover - compiled
    for j in range(m):
        d = dst[j]
        dst[j] = value if w_i[j] > 0.5 else d


@numba.jit(**_opts)
def _whittaker_special(values, b, y0, extrapolate, z, cnt, first, last, zf, zl, m):  # pragma: no cover
    t = z.shape[0]
    nx = values.shape[3]
    for j in range(m):  # scalar, once per pixel: what to use outside the clear dates, special cases
        f = int(first[j])
        la = int(last[j])
        c = cnt[j]
        if c > 1.5:
            zf[j] = z[f, j]
            zl[j] = z[la, j]
        elif c > 0.5:  # one clear observation: hold it
            v1 = values[f, b, y0 + j // nx, j % nx]
            for i in range(t):
                z[i, j] = v1
            zf[j] = v1
            zl[j] = v1
        else:  # none: NaN everywhere
            for i in range(t):
                z[i, j] = np.nan
            zf[j] = np.nan
            zl[j] = np.nan
        if extrapolate == 1:  # the smoother's own values everywhere
            first[j] = -1.0
            last[j] = float(t)
        elif extrapolate == 2:
            zf[j] = np.nan
            zl[j] = np.nan


@numba.jit(**_opts)
def _whittaker_out(values, valid, b, bv, y0, r, keep_observed, out, z, first, last, zf, zl,
                   r_buf, nodata, bounding, lo, hi, acted):  # pragma: no cover - compiled
    # Dates on which every pixel of the tile has a clear date on both sides (most of them) take the
    # smoothed rows as they are, without the pass that holds values outside (9.1 -> 6.0 us per
    # band of a 512-pixel tile). ``bounding``: filled values clipped into [lo, hi] per pixel, and
    # where that changed one, 1 in ``acted`` (uint8 like ``out``, or None).
    t = z.shape[0]
    nx = values.shape[3]
    m = r * nx
    z, first, last, zf, zl = _unowned(z), _unowned(first), _unowned(last), _unowned(zf), _unowned(zl)
    r_buf = _unowned(r_buf)
    inside_from = first[:m].max()
    inside_to = last[:m].min()
    for i in range(t):
        fi = float(i)
        if inside_from <= fi <= inside_to:
            src = z[i]
        else:
            _held_outside(r_buf, z[i], zf, zl, first, last, fi, m)
            src = r_buf
        for k in range(r):
            o_row = _row(out, i, b, y0 + k)
            v_row = _row(values, i, b, y0 + k)
            ok_row = _row(valid, i, bv, y0 + k)
            s_k = src[k * nx:(k + 1) * nx]
            if not bounding:
                observed_or(o_row, v_row, ok_row, s_k, keep_observed, nx, nodata)
            elif acted is None:
                bounded_or(o_row, v_row, ok_row, s_k, keep_observed, nx, nodata, lo[k * nx:(k + 1) * nx],
                           hi[k * nx:(k + 1) * nx], None)
            else:
                bounded_or(o_row, v_row, ok_row, s_k, keep_observed, nx, nodata, lo[k * nx:(k + 1) * nx],
                           hi[k * nx:(k + 1) * nx], _row(acted, i, b, y0 + k))


@numba.jit(**_opts)
def _whittaker_load_if_same(values, valid, b, bv, y0, r, w3, z3, nodata, ranging, lo, hi):  # pragma: no cover
    # When band ``b``'s usable observations are the weights ``w3`` of the band factorised last:
    # its right-hand side into ``z3`` and True (that factorisation serves it); else False, early.
    # ``ranging``: each pixel's clear minimum and maximum into ``lo``/``hi`` on the way.
    t = values.shape[0]
    nx = values.shape[3]
    w3, z3 = _unowned(w3), _unowned(z3)
    for i in range(t):
        for k in range(r):
            v_row = _row(values, i, b, y0 + k)
            ok_row = _row(valid, i, bv, y0 + k)
            if weighted_if_same(v_row, ok_row, w3[i, k], z3[i, k], nx, nodata):
                return False
            if ranging:
                range_row(v_row, ok_row, lo[k * nx:(k + 1) * nx], hi[k * nx:(k + 1) * nx], nx, nodata)
    return True


@numba.jit(**_opts)
def _whittaker_forward(l1, l2, z, m):  # pragma: no cover - compiled
    # forward substitution through the unit lower factor, in place
    t = z.shape[0]
    l1, l2, z = _unowned(l1), _unowned(l2), _unowned(z)
    for i in range(1, t):
        z_i = z[i]
        if i >= 2:
            _sub_two(z_i, l1[i], z[i - 1], l2[i], z[i - 2], m)
        else:
            l1_i = l1[i]
            z_p = z[i - 1]
            for j in range(m):
                z_i[j] -= l1_i[j] * z_p[j]


@numba.jit(**_opts)
def _whittaker_rows(bands, valid, a0p, a1, a2, lmbda, extrapolate, keep_observed, outs, rows, nodata,
                    bounding, margin, lo_decl, hi_decl, acted):  # pragma: no cover
    # Tile by tile (``rows`` image rows x all dates), band by band within a tile. The banded
    # factorisation of (W + lambda P) depends only on the weights: when a band has the same usable
    # observations as the band factorised before it (a cloud mask shared by the bands, the usual
    # case), only its right-hand side is substituted, which saves most of the work per band.
    # Stages stay separate compiled functions: in one big function the same loops ran ~10x
    # slower (not vectorised). ``valid`` comes as uint8 (a bool array stops some loops vectorising).
    # ``bands`` and ``outs``: one (time, 1, y, x) array per band (:func:`band_views`,
    # :func:`band_outputs`: dask's band blocks, not concatenated). ``bounding``: each band's filled
    # values are clipped into its pixels' bounds (``observed_bounds``, from the loaded weights and
    # values, before the substitutions overwrite them); ``acted``: None, or one uint8 view per band.
    t, _, ny, nx = bands[0].shape
    nb = len(bands)
    n = rows * nx
    w = np.empty((t, n))
    dd = np.empty((t, n))
    inv = np.empty((t, n))
    l1 = np.zeros((t, n))
    l2 = np.zeros((t, n))
    z = np.empty((t, n))
    cnt = np.empty(n)
    first = np.empty(n)
    last = np.empty(n)
    first_w = np.empty(n)
    last_w = np.empty(n)
    zf = np.empty(n)
    zl = np.empty(n)
    r_buf = np.empty(n)
    lo = np.empty(n)
    hi = np.empty(n)
    lo_v = np.empty(n, outs[0].dtype)  # each pixel's clear minimum and maximum, in the values' float type
    hi_v = np.empty(n, outs[0].dtype)
    w3 = w.reshape((t, rows, nx))
    z3 = z.reshape((t, rows, nx))
    vbands = valid.shape[1]
    for y0 in range(0, ny, rows):
        r = min(rows, ny - y0)
        m = r * nx
        for b in range(nb):
            bv = b if vbands > 1 else 0
            values = bands[b]
            out_b = outs[b]
            ranging = bounding and margin >= 0
            if ranging:
                lo_v[:m] = np.inf
                hi_v[:m] = -np.inf
            if not (b > 0 and _whittaker_load_if_same(values, valid, 0, bv, y0, r, w3, z3, nodata, ranging, lo_v,
                                                      hi_v)):
                if ranging:  # the band's weights differ from the last band's: its range from the start
                    lo_v[:m] = np.inf
                    hi_v[:m] = -np.inf
                _whittaker_factor(values, valid, 0, bv, y0, r, a0p, a1, a2, lmbda, w3, z3, w, dd, inv, l1, l2, z,
                                  nodata, ranging, lo_v, hi_v)
                _whittaker_stats(w, cnt, first_w, last_w, m)
            if ranging:
                finish_bounds(lo, hi, m, margin, lo_decl, hi_decl, lo_v, hi_v)
            elif bounding:
                lo[:m] = lo_decl
                hi[:m] = hi_decl
            _whittaker_forward(l1, l2, z, m)
            _whittaker_back(inv, l1, l2, z, m)
            first[:m] = first_w[:m]  # the weights' statistics; ``_whittaker_special`` adjusts this copy
            last[:m] = last_w[:m]
            _whittaker_special(values, 0, y0, extrapolate, z, cnt, first, last, zf, zl, m)
            if acted is None:
                _whittaker_out(values, valid, 0, bv, y0, r, keep_observed, out_b, z, first, last, zf, zl, r_buf,
                               nodata, bounding, lo, hi, None)
            else:
                _whittaker_out(values, valid, 0, bv, y0, r, keep_observed, out_b, z, first, last, zf, zl, r_buf,
                               nodata, bounding, lo, hi, acted[b])
    return outs


def whittaker_rows(bands: tuple[np.ndarray, ...], valid: np.ndarray, a0p: np.ndarray, a1: np.ndarray, a2: np.ndarray,
                   lmbda: float, extrapolate: int, keep_observed: bool, outs: tuple[np.ndarray, ...],
                   nodata: float | None = None, bound: Bound | None = None,
                   acted: tuple[np.ndarray, ...] | None = None) -> None:
    """Whittaker filling of a block given as the band views of :func:`band_views`, without copying it,
    into ``outs`` (:func:`band_outputs`).

    ``extrapolate``: 0 = hold the smoothed value at the first/last clear date, 1 = the
    smoother's own linear extrapolation, 2 = NaN; ``a0p, a1, a2``: penalty bands (3 dates or more);
    ``nodata``: the value that marks a missing observation (besides NaN); ``bound``: clip the filled
    values (:class:`eocube.fill._bound.Bound`); ``acted``: bool views like ``outs``, True where it did.
    """
    margin, lo, hi = (bound.margin, bound.lo, bound.hi) if bound is not None else (-1.0, -np.inf, np.inf)
    _whittaker_rows(bands, valid.view(np.uint8), np.ascontiguousarray(a0p, dtype=np.float64),
                    np.ascontiguousarray(a1, dtype=np.float64), np.ascontiguousarray(a2, dtype=np.float64),
                    float(lmbda), int(extrapolate), bool(keep_observed), outs,
                    tile_rows(bands[0].shape, WHITTAKER_TILE), kernel_nodata(bands[0].dtype, nodata),
                    bound is not None, float(margin), float(lo), float(hi),
                    None if acted is None else tuple(a.view(np.uint8) for a in acted))


@numba.jit(**_opts)
def whittaker_2d(values, valid, days, a0p, a1, a2, lmbda, extrapolate, keep_observed):  # pragma: no cover
    # extrapolate: 0 = nearest (hold), 1 = linear (the smoother's own), 2 = none (NaN)
    t, n = values.shape
    out = np.empty((t, n), dtype=values.dtype)
    dd = np.empty((t, BLOCK))
    l1 = np.zeros((t, BLOCK))
    l2 = np.zeros((t, BLOCK))
    z = np.empty((t, BLOCK))
    okb = np.empty((t, BLOCK), dtype=np.bool_)
    for s in range(0, n, BLOCK):
        e = min(s + BLOCK, n)
        m = e - s
        first = np.full(m, -1)
        last = np.full(m, -1)
        count = np.zeros(m, dtype=np.int64)
        for i in range(t):
            for j in range(m):
                v = values[i, s + j]
                ok = valid[i, s + j] and np.isfinite(v)
                okb[i, j] = ok
                w = 1.0 if ok else 0.0
                z[i, j] = v if ok else 0.0
                sdiag = w + lmbda * a0p[i] + 1e-9 * lmbda
                if i >= 1:
                    sdiag -= l1[i, j] ** 2 * dd[i - 1, j]
                if i >= 2:
                    sdiag -= l2[i, j] ** 2 * dd[i - 2, j]
                dd[i, j] = sdiag
                if i + 1 < t:
                    b = lmbda * a1[i]
                    if i >= 1:
                        b -= l1[i, j] * l2[i + 1, j] * dd[i - 1, j]
                    l1[i + 1, j] = b / sdiag
                if i + 2 < t:
                    l2[i + 2, j] = lmbda * a2[i] / sdiag
                if ok:
                    count[j] += 1
                    last[j] = i
                    if first[j] < 0:
                        first[j] = i
        for i in range(1, t):
            for j in range(m):
                z[i, j] -= l1[i, j] * z[i - 1, j]
                if i >= 2:
                    z[i, j] -= l2[i, j] * z[i - 2, j]
        for i in range(t):
            for j in range(m):
                z[i, j] /= dd[i, j]
        for i in range(t - 2, -1, -1):
            for j in range(m):
                z[i, j] -= l1[i + 1, j] * z[i + 1, j]
                if i + 2 < t:
                    z[i, j] -= l2[i + 2, j] * z[i + 2, j]
        for j in range(m):
            c = count[j]
            f = first[j]
            la = last[j]
            for i in range(t):
                if c == 0:
                    r = np.nan
                elif c == 1:
                    r = values[f, s + j] if (extrapolate != 2 or i == f) else np.nan
                elif i < f or i > la:
                    if extrapolate == 0:
                        r = z[f, j] if i < f else z[la, j]
                    elif extrapolate == 1:
                        r = z[i, j]
                    else:
                        r = np.nan
                else:
                    r = z[i, j]
                if keep_observed and okb[i, j]:
                    r = values[i, s + j]
                out[i, s + j] = r
    return out
