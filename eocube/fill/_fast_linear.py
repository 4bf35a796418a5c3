"""Compiled (numba) linear filling kernels; see :mod:`eocube.fill._fast_common` for the design and pitfalls."""

from __future__ import annotations

import numba
import numpy as np

from ._fast_common import LINEAR_TILE, _opts, _row


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
def _linear_forward_rows(values, valid, days, b, bv, y0, r, v_buf, ok_buf, prev_val, prev_day):  # pragma: no cover
    # Image rows y0:y0+r (all dates) of a 4-D block into the (time, rows, x) buffers: like
    # ``_linear_forward`` for a tile. Several rows per date: longer runs for the prefetcher.
    t = values.shape[0]
    nx = values.shape[3]
    last_val = np.full((r, nx), np.nan, prev_val.dtype)
    last_day = np.full((r, nx), np.nan, np.float32)
    for i in range(t):
        d = np.float32(days[i])
        for k in range(r):
            v_row = _row(values, i, b, y0 + k)
            ok_row = _row(valid, i, bv, y0 + k)
            vb_row = v_buf[i, k]
            okb_row = ok_buf[i, k]
            pv_row = prev_val[i, k]
            pd_row = prev_day[i, k]
            lv_row = last_val[k]
            ld_row = last_day[k]
            for j in range(nx):
                v = v_row[j]
                ok = ok_row[j] & (v - v == 0)
                vb_row[j] = v
                okb_row[j] = ok
                lv = v if ok else lv_row[j]
                ld = d if ok else ld_row[j]
                lv_row[j] = lv
                ld_row[j] = ld
                pv_row[j] = lv
                pd_row[j] = ld


@numba.jit(**_opts)
def _put_rows(out, tile, b, y0, r):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        for k in range(r):
            o_row = out[i, b, y0 + k]
            s_row = tile[i, k]
            for j in range(o_row.shape[0]):
                o_row[j] = s_row[j]


@numba.jit(**_opts)
def _linear_rows(values, valid, days, out, extrapolate_nearest, rows):  # pragma: no cover - compiled
    # A (time, band, y, x) block as it comes from dask (no copy), ``rows`` image rows at a time;
    # ``valid`` is (time, 1 or band, y, x).
    t, nb, ny, nx = values.shape
    v_buf = np.empty((t, rows, nx), out.dtype)
    ok_buf = np.empty((t, rows, nx), np.bool_)
    prev_val = np.empty((t, rows, nx), out.dtype)
    prev_day = np.empty((t, rows, nx), np.float32)
    v2 = v_buf.reshape((t, rows * nx))
    ok2 = ok_buf.reshape((t, rows * nx))
    pv2 = prev_val.reshape((t, rows * nx))
    pd2 = prev_day.reshape((t, rows * nx))
    vbands = valid.shape[1]
    for b in range(nb):
        bv = b if vbands > 1 else 0
        for y0 in range(0, ny, rows):
            r = min(rows, ny - y0)
            _linear_forward_rows(values, valid, days, b, bv, y0, r, v_buf, ok_buf, prev_val, prev_day)
            _linear_backward(v2, ok2, days, r * nx, pv2, pd2, extrapolate_nearest)
            _put_rows(out, prev_val, b, y0, r)
    return out


def linear_rows(values: np.ndarray, valid: np.ndarray, days: np.ndarray, extrapolate_nearest: bool) -> np.ndarray:
    """Linear filling of a 4-D block accepted by :func:`rows_contiguous`, without copying it first."""
    out = np.empty(values.shape, values.dtype)
    rel = np.asarray(days, dtype=np.float64) - float(days[0])
    rows = max(1, min(values.shape[2], LINEAR_TILE // max(values.shape[3], 1)))
    return _linear_rows(values, valid, rel, out, bool(extrapolate_nearest), rows)


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
