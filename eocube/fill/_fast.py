"""Compiled (numba) versions of the hot kernels: linear, Whittaker and harmonic filling.

Why numba: the NumPy kernels make 10-30 passes over the block (index arrays,
gathers, temporaries); these loops make one or two, with the innermost loop over
contiguous pixels so that it vectorises (linear: a forward and a backward pass
over the rows; Whittaker and harmonic: pixel blocks of ``BLOCK`` x all dates
small enough for the CPU cache). They release the GIL, so dask's
threads run them in parallel. Inputs are 2-D ``(time, n)`` C-contiguous arrays;
the NumPy kernels in the sibling modules are the reference they are tested against.
"""

from __future__ import annotations

import numba
import numpy as np

BLOCK = 512
_opts = dict(nopython=True, nogil=True, cache=True, fastmath=False, error_model="numpy")


@numba.jit(**_opts)
def _linear_forward(values, valid, days, prev_val, prev_day):  # pragma: no cover - compiled
    # Row by row (time outer, contiguous pixels inner): carry the last clear value and day.
    t, n = values.shape
    last_val = np.full(n, np.nan, values.dtype)
    last_day = np.full(n, np.nan, np.float32)
    for i in range(t):
        d = np.float32(days[i])
        v_row = values[i]
        ok_row = valid[i]
        pv_row = prev_val[i]
        pd_row = prev_day[i]
        for j in range(n):
            v = v_row[j]
            ok = ok_row[j] & (v - v == 0)  # clear and finite, without a branch
            lv = v if ok else last_val[j]
            ld = d if ok else last_day[j]
            last_val[j] = lv
            last_day[j] = ld
            pv_row[j] = lv
            pd_row[j] = ld


@numba.jit(**_opts)
def _linear_backward(values, valid, days, out, prev_day, extrapolate_nearest):  # pragma: no cover - compiled
    # Backwards, carrying the next clear value and day; ``out`` holds the previous value on entry.
    # A missing neighbour is NaN, so the interpolation is NaN unless both exist (then: nearest or NaN).
    t, n = values.shape
    next_val = np.full(n, np.nan, values.dtype)
    next_day = np.full(n, np.nan, np.float32)
    for i in range(t - 1, -1, -1):
        d = np.float32(days[i])
        v_row = values[i]
        ok_row = valid[i]
        out_row = out[i]
        pd_row = prev_day[i]
        for j in range(n):
            v = v_row[j]
            ok = ok_row[j] & (v - v == 0)
            nv = v if ok else next_val[j]
            nd = d if ok else next_day[j]
            next_val[j] = nv
            next_day[j] = nd
            pv = out_row[j]
            pd_ = pd_row[j]
            span = nd - pd_
            w = (d - pd_) / span if span > 0 else np.float32(0.0)
            r = pv + w * (nv - pv)
            if extrapolate_nearest:
                alt = nv if nv == nv else pv
                r = r if r == r else alt
            out_row[j] = v if ok else r


def linear_2d(values: np.ndarray, valid: np.ndarray, days: np.ndarray, extrapolate_nearest: bool) -> np.ndarray:
    """Linear filling of a C-contiguous (time, n) block in two vectorised passes over the rows.

    Days are carried as float32 offsets from the first date (exact to well under a
    second over decades), which halves the memory traffic of the day arrays.
    """
    out = np.empty_like(values)
    prev_day = np.empty(values.shape, np.float32)
    rel = np.asarray(days, dtype=np.float64) - float(days[0]) if len(days) else np.asarray(days, dtype=np.float64)
    _linear_forward(values, valid, rel, out, prev_day)
    _linear_backward(values, valid, rel, out, prev_day, bool(extrapolate_nearest))
    return out


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
