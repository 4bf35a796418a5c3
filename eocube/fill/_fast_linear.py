"""Compiled (numba) linear filling kernels; see :mod:`eocube.fill._fast_common` for the design and pitfalls."""

from __future__ import annotations

import numba
import numpy as np

from ._fast_common import (
    LINEAR_TILE,
    _flat_at,
    _opts,
    _prefetch_rows,
    _row,
    is_data,
    kernel_nodata,
    result_dtype,
    tile_rows,
)

LINEAR, PREVIOUS, NEXT, NEAREST = 0, 1, 2, 3
RULES = {"linear": LINEAR, "previous": PREVIOUS, "next": NEXT, "nearest": NEAREST}
"""What ``linear_rows`` puts in a gap: the interpolation, or one neighbour's value."""


@numba.jit(**_opts)
def _linear_forward(values, valid, days, k0, m, v_buf, ok_buf, prev_val, prev_day):  # pragma: no cover
    # Columns k0:k0+m of the (time, n) block, dates in order: copy the tile into the contiguous
    # buffers (so that the backward pass runs in cache) and carry the last clear value and day.
    t = values.shape[0]
    last_val = np.full(m, np.nan, prev_val.dtype)
    last_day = np.full(m, np.nan, np.float32)
    for i in range(t):
        d = np.float32(days[i])
        v_row = values[i][k0:k0 + m]
        ok_row = valid[i][k0:k0 + m]
        vb_row = v_buf[i]
        okb_row = ok_buf[i]
        pv_row = prev_val[i]
        pd_row = prev_day[i]
        for j in range(m):
            v = v_row[j]
            ok = ok_row[j] & (v - v == 0)  # clear and finite, without a branch
            vb_row[j] = v
            okb_row[j] = ok
            lv = v if ok else last_val[j]
            ld = d if ok else last_day[j]
            last_val[j] = lv
            last_day[j] = ld
            pv_row[j] = lv
            pd_row[j] = ld


@numba.jit(**_opts)
def _linear_backward(v_buf, ok_buf, days, m, prev_val, prev_day, extrapolate_nearest):  # pragma: no cover
    # Backwards over the tile buffers, carrying the next clear value and day; ``prev_val`` holds the
    # previous value on entry and the result on exit. A missing neighbour is NaN, so the
    # interpolation is NaN unless both exist (then: nearest or NaN).
    t = v_buf.shape[0]
    next_val = np.full(m, np.nan, prev_val.dtype)
    next_day = np.full(m, np.nan, np.float32)
    for i in range(t - 1, -1, -1):
        d = np.float32(days[i])
        v_row = v_buf[i]
        ok_row = ok_buf[i]
        pv_row = prev_val[i]
        pd_row = prev_day[i]
        for j in range(m):
            v = v_row[j]
            ok = ok_row[j]
            nv = v if ok else next_val[j]
            nd = d if ok else next_day[j]
            next_val[j] = nv
            next_day[j] = nd
            pv = pv_row[j]
            pd_ = pd_row[j]
            span = nd - pd_
            w = (d - pd_) / span if span > 0 else np.float32(0.0)
            r = pv + w * (nv - pv)
            if extrapolate_nearest:
                alt = nv if nv == nv else pv
                r = r if r == r else alt
            pv_row[j] = v if ok else r


@numba.jit(**_opts)
def _put_tile(out, tile, k0, m):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        o_row = out[i][k0:k0 + m]
        s_row = tile[i]
        for j in range(m):
            o_row[j] = s_row[j]


@numba.jit(**_opts)
def _linear_tiles(values, valid, days, out, extrapolate_nearest):  # pragma: no cover - compiled
    # Tiles of LINEAR_TILE columns x all dates (~0.6 MB: stays in the core's cache), so that the
    # block is read once from memory and the result written once. Gotchas met on the way (each
    # made a loop ~15x slower by stopping vectorisation): indexing a row with an offset
    # (``row[k0 + j]``), and a loop reading and writing slices of caller arrays; hence the
    # slice views ``values[i][k0:k0 + m]`` read in the forward pass, in-cache buffers elsewhere.
    t, n = values.shape
    tile = min(LINEAR_TILE, n)
    v_buf = np.empty((t, tile), out.dtype)
    ok_buf = np.empty((t, tile), np.bool_)
    prev_val = np.empty((t, tile), out.dtype)
    prev_day = np.empty((t, tile), np.float32)
    for k0 in range(0, n, tile):
        m = min(tile, n - k0)
        _linear_forward(values, valid, days, k0, m, v_buf, ok_buf, prev_val, prev_day)
        _linear_backward(v_buf, ok_buf, days, m, prev_val, prev_day, extrapolate_nearest)
        _put_tile(out, prev_val, k0, m)
    return out




@numba.jit(**_opts)
def _linear_forward_tile(values, valid, days, b, bv, y0, r, pv_buf, pd_buf, nan_v, nan_d, nodata):  # pragma: no cover
    # Image rows y0:y0+r of band ``b`` (all dates) of a 4-D block as dask hands it over, forwards
    # in time: date i's rows of the flat (time, r * x) buffers get the last clear value and its day
    # (date i - 1's rows are the carried state, so nothing is stored twice, and no store is masked).
    # The next date's rows are prefetched: the loads hop 1 date (often MiBs) apart, which the
    # hardware prefetcher does not follow (10 % faster here).
    t = values.shape[0]
    nx = values.shape[3]
    n = r * nx
    for i in range(t):
        if i + 1 < t:
            _prefetch_rows(values, i + 1, b, y0, r)
            _prefetch_rows(valid, i + 1, bv, y0, r)
        d = np.float32(days[i])
        last_v = _flat_at(pv_buf, (i - 1) * n, n) if i > 0 else nan_v
        last_d = _flat_at(pd_buf, (i - 1) * n, n) if i > 0 else nan_d
        pv_i = _flat_at(pv_buf, i * n, n)
        pd_i = _flat_at(pd_buf, i * n, n)
        for k in range(r):
            v_row = _row(values, i, b, y0 + k)
            ok_row = _row(valid, i, bv, y0 + k)
            s = k * nx
            lv = last_v[s:s + nx]
            ld = last_d[s:s + nx]
            pv = pv_i[s:s + nx]
            pd_ = pd_i[s:s + nx]
            for j in range(nx):
                v = v_row[j]
                ok = (ok_row[j] != 0) & is_data(v, nodata)  # clear, finite, not nodata; no branch
                a = lv[j]
                c = ld[j]
                pv[j] = v if ok else a
                pd_[j] = d if ok else c


@numba.jit(**_opts)
def _backward_tile(out, days, b, y0, r, pv_buf, pd_buf, nv_buf, nd_buf, rule, extrapolate_nearest):  # pragma: no cover
    # Backwards over the buffers of ``_linear_forward_tile``, carrying the next clear value and day
    # (two alternating rows of ``nv_buf``/``nd_buf``), and writing the result straight into ``out``.
    # A date was clear exactly when its carried day is its own day. LINEAR: a missing neighbour
    # is NaN, so the interpolation is NaN unless both exist (then: nearest or NaN); on a clear date
    # both neighbours are the observation itself and the formula returns it unchanged. PREVIOUS /
    # NEXT / NEAREST (ties to the previous): that neighbour's value, the other one where it is
    # missing, chosen without a branch. ``extrapolate_nearest`` False: NaN unless both exist.
    # The rule test is loop-invariant: LLVM makes one loop per rule.
    t = out.shape[0]
    nx = out.shape[3]
    n = r * nx
    linear = rule == LINEAR
    is_prev = rule == PREVIOUS
    is_next = rule == NEXT
    is_near = rule == NEAREST
    nv_buf[:n] = np.nan
    nd_buf[:n] = np.nan
    cur = 0
    for i in range(t - 1, -1, -1):
        d = np.float32(days[i])
        nxt = n - cur
        nv_in = _flat_at(nv_buf, cur, n)
        nd_in = _flat_at(nd_buf, cur, n)
        nv_out = _flat_at(nv_buf, nxt, n)
        nd_out = _flat_at(nd_buf, nxt, n)
        pv_i = _flat_at(pv_buf, i * n, n)
        pd_i = _flat_at(pd_buf, i * n, n)
        for k in range(r):
            o_row = _row(out, i, b, y0 + k)
            s = k * nx
            for j in range(nx):
                pv = pv_i[s + j]
                pd_ = pd_i[s + j]
                ok = pd_ == d
                a = nv_in[s + j]
                c = nd_in[s + j]
                nv = pv if ok else a
                nd = d if ok else c
                nv_out[s + j] = nv
                nd_out[s + j] = nd
                if linear:
                    span = nd - pd_
                    w = (d - pd_) / span if span > 0 else np.float32(0.0)
                    res = pv + w * (nv - pv)
                    if extrapolate_nearest:
                        alt = nv if nv == nv else pv
                        res = res if res == res else alt
                else:
                    has_prev = pd_ == pd_
                    has_next = nd == nd
                    closer = (d - pd_) <= (nd - d)
                    use_prev = ((is_prev & has_prev) | (is_next & ~has_next)
                                | (is_near & has_prev & (~has_next | closer)))
                    res = pv if use_prev else nv
                    res = res if (extrapolate_nearest | (has_prev & has_next)) else np.nan
                o_row[j] = res
        cur = nxt


@numba.jit(**_opts)
def _linear_rows(values, valid, days, out, extrapolate_nearest, rows, rule, nodata):  # pragma: no cover - compiled
    # A (time, band, y, x) block as it comes from dask (no copy), ``rows`` image rows at a time;
    # ``valid`` is (time, 1 or band, y, x) uint8. Two sweeps per tile of rows: forwards from the
    # block into in-cache buffers, backwards from the buffers into ``out`` (no third copy pass).
    # ``rule``: LINEAR interpolates, PREVIOUS / NEXT / NEAREST take a neighbour's value.
    t, nb, ny, nx = values.shape
    n = rows * nx
    pv_buf = np.empty(t * n, out.dtype)
    pd_buf = np.empty(t * n, np.float32)
    nan_v = np.full(n, np.nan, out.dtype)
    nan_d = np.full(n, np.nan, np.float32)
    nv_buf = np.empty(2 * n, out.dtype)
    nd_buf = np.empty(2 * n, np.float32)
    vbands = valid.shape[1]
    for b in range(nb):
        bv = b if vbands > 1 else 0
        for y0 in range(0, ny, rows):
            r = min(rows, ny - y0)
            _linear_forward_tile(values, valid, days, b, bv, y0, r, pv_buf, pd_buf, nan_v, nan_d, nodata)
            _backward_tile(out, days, b, y0, r, pv_buf, pd_buf, nv_buf, nd_buf, rule, extrapolate_nearest)
    return out


@numba.jit(**_opts)
def _distance_rows(valid, days, out, rows):  # pragma: no cover - compiled
    # Days to the nearest clear date, per pixel of a (time, band, y, x) uint8 mask with contiguous
    # rows, into ``out`` (float32, same shape): the day sweeps of ``_linear_rows`` without values.
    # Forwards: the day of the last clear date into a buffer; backwards: the next one carried, and
    # the smaller distance written (NaN where the pixel has no clear date at all).
    t, nb, ny, nx = valid.shape
    n = rows * nx
    pd_buf = np.empty(t * n, np.float32)
    nd_buf = np.empty(n, np.float32)
    nan_d = np.full(n, np.nan, np.float32)  # the carried day before the first date: none
    inf = np.float32(np.inf)
    for b in range(nb):
        for y0 in range(0, ny, rows):
            r = min(rows, ny - y0)
            m = r * nx
            for i in range(t):
                if i + 1 < t:
                    _prefetch_rows(valid, i + 1, b, y0, r)
                d = np.float32(days[i])
                last_d = _flat_at(pd_buf, (i - 1) * n, m) if i > 0 else nan_d
                pd_i = _flat_at(pd_buf, i * n, m)
                for k in range(r):
                    ok_row = _row(valid, i, b, y0 + k)
                    ld = last_d[k * nx:(k + 1) * nx]
                    pd_ = pd_i[k * nx:(k + 1) * nx]
                    for j in range(nx):
                        c = ld[j]
                        pd_[j] = d if ok_row[j] != 0 else c
            nd_buf[:m] = np.nan
            for i in range(t - 1, -1, -1):
                d = np.float32(days[i])
                pd_i = _flat_at(pd_buf, i * n, m)
                for k in range(r):
                    o_row = _row(out, i, b, y0 + k)
                    s = k * nx
                    for j in range(nx):
                        pd_ = pd_i[s + j]
                        c = nd_buf[s + j]
                        nd = d if pd_ == d else c
                        nd_buf[s + j] = nd
                        before = d - pd_
                        after = nd - d
                        before = before if before == before else inf
                        after = after if after == after else inf
                        dist = min(before, after)
                        o_row[j] = dist if dist < inf else np.float32(np.nan)
    return out


def distance_rows(valid: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Days to the nearest clear date of a (time, band, y, x) bool block with contiguous rows (float32)."""
    out = np.empty(valid.shape, np.float32)
    rel = np.asarray(days, dtype=np.float64) - float(days[0])
    rows = tile_rows(valid.shape, LINEAR_TILE)
    return _distance_rows(valid.view(np.uint8), rel, out, rows)


def linear_rows(values: np.ndarray, valid: np.ndarray, days: np.ndarray, extrapolate_nearest: bool,
                rule: str = "linear", nodata: float | None = None) -> np.ndarray:
    """Linear (or previous / next / nearest, ``rule``) filling of a 4-D block accepted by
    :func:`rows_contiguous`, without copying it first; values equal to ``nodata`` are missing."""
    out = np.empty(values.shape, result_dtype(values))
    rel = np.asarray(days, dtype=np.float64) - float(days[0])
    rows = tile_rows(values.shape, LINEAR_TILE)
    return _linear_rows(values, valid.view(np.uint8), rel, out, bool(extrapolate_nearest), rows, RULES[rule],
                        kernel_nodata(values.dtype, nodata))


def linear_2d(values: np.ndarray, valid: np.ndarray, days: np.ndarray, extrapolate_nearest: bool) -> np.ndarray:
    """Linear filling of a C-contiguous (time, n) block, tile by tile in cache.

    Days are carried as float32 offsets from the first date (exact to well under a
    second over decades), which halves the memory traffic of the day arrays.
    """
    out = np.empty_like(values)
    if values.size == 0:
        return out
    rel = np.asarray(days, dtype=np.float64) - float(days[0])
    return _linear_tiles(values, valid, rel, out, bool(extrapolate_nearest))
