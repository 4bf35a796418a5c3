"""Compiled (numba) composite kernels: one statistic of the clear observations per period.

Each period is a run of consecutive dates. Per tile of image rows and per period, the clear
values are gathered into a (dates, pixels) buffer and reduced with loops over the pixels
(vectorised). The median needs no sort: each value's rank among the period's clear values is
counted with pairwise comparisons (period length squared, vectorised over the pixels), and the
middle ranks are picked; this beats a per-pixel sort while periods are short, and longer periods
(above ``MAX_RANK_PERIOD`` dates) go to NumPy's ``nanmedian``.
"""

from __future__ import annotations

import numba
import numpy as np

from ._fast_common import _opts, _row, is_data, kernel_nodata, result_dtype, tile_rows

MEDIAN, MEAN, MAX, MIN = 0, 1, 2, 3
STATS = {"median": MEDIAN, "mean": MEAN, "max": MAX, "min": MIN}
MAX_RANK_PERIOD = 24  # longest period (dates) whose median is counted by ranks (quadratic in it)
TILE = 1024  # pixels per tile (whole image rows)


@numba.jit(**_opts)
def _gather(values, valid, i, b, bv, y0, r, v_row, ok_row_out, nodata):  # pragma: no cover - compiled
    # Date i's rows y0:y0+r as one buffer row: the value where clear, finite and not nodata (else
    # +inf, which sorts last) and the usability flag (1.0 / 0.0).
    nx = values.shape[3]
    for k in range(r):
        src = _row(values, i, b, y0 + k)
        ok_src = _row(valid, i, bv, y0 + k)
        dst = v_row[k * nx:(k + 1) * nx]
        ok_dst = ok_row_out[k * nx:(k + 1) * nx]
        for j in range(nx):
            v = src[j]
            ok = (ok_src[j] != 0) & is_data(v, nodata)
            dst[j] = v if ok else np.inf
            ok_dst[j] = 1.0 if ok else 0.0


@numba.jit(**_opts)
def _median_ranked(vals, oks, g, m, res, upper, rank, count):  # pragma: no cover - compiled
    # Median of the usable values among the g rows of ``vals`` (unusable ones are +inf), NaN where
    # none, as NumPy's nanmedian (the mean of the two middle values for an even count). A value's
    # rank: the values below it, plus equal ones in earlier rows (ties get distinct ranks).
    count[:m] = 0.0
    for a in range(g):
        ok_a = oks[a]
        for j in range(m):
            count[j] += ok_a[j]
    res[:m] = 0.0  # the value of the lower middle rank, summed over rows (one row matches)
    upper[:m] = 0.0  # ... of the upper middle rank
    for a in range(g):
        v_a = vals[a]
        rank[:m] = 0.0
        for c in range(g):
            v_c = vals[c]
            if c < a:
                for j in range(m):
                    rank[j] += 1.0 if v_c[j] <= v_a[j] else 0.0
            elif c > a:
                for j in range(m):
                    rank[j] += 1.0 if v_c[j] < v_a[j] else 0.0
        for j in range(m):
            cnt = count[j]
            rk = rank[j]
            v = v_a[j]
            res[j] += v if rk == np.floor((cnt - 1.0) * 0.5) else 0.0
            upper[j] += v if rk == np.floor(cnt * 0.5) else 0.0
    for j in range(m):
        med = 0.5 * (res[j] + upper[j])
        res[j] = med if count[j] > 0 else np.nan


@numba.jit(**_opts)
def _reduce_simple(vals, oks, g, m, stat, res, count):  # pragma: no cover - compiled
    # Mean, max or min of the usable values among the g rows (unusable ones are +inf), NaN where none.
    count[:m] = 0.0
    acc = np.empty(m)
    if stat == MEAN:
        acc[:] = 0.0
    elif stat == MAX:
        acc[:] = -np.inf
    else:
        acc[:] = np.inf
    for a in range(g):
        v_a = vals[a]
        ok_a = oks[a]
        for j in range(m):
            count[j] += ok_a[j]
        if stat == MEAN:
            for j in range(m):
                acc[j] += v_a[j] if ok_a[j] > 0 else 0.0
        elif stat == MAX:
            for j in range(m):
                v = v_a[j] if ok_a[j] > 0 else -np.inf
                acc[j] = v if v > acc[j] else acc[j]
        else:
            for j in range(m):
                v = v_a[j]
                acc[j] = v if v < acc[j] else acc[j]
    for j in range(m):
        cnt = count[j]
        value = acc[j] / cnt if stat == MEAN else acc[j]
        res[j] = value if cnt > 0 else np.nan


@numba.jit(**_opts)
def _composite_rows(values, valid, starts, stops, stat, out, rows, nodata):  # pragma: no cover - compiled
    t, nb, ny, nx = values.shape
    n = rows * nx
    g_max = 1
    for p in range(starts.shape[0]):
        g_max = max(g_max, stops[p] - starts[p])
    vals_flat = np.empty(g_max * n, out.dtype)
    oks_flat = np.empty(g_max * n, out.dtype)
    res = np.empty(n, out.dtype)
    upper = np.empty(n, out.dtype)
    rank = np.empty(n, out.dtype)
    count = np.empty(n, out.dtype)
    vbands = valid.shape[1]
    for b in range(nb):
        bv = b if vbands > 1 else 0
        for y0 in range(0, ny, rows):
            r = min(rows, ny - y0)
            m = r * nx
            for p in range(starts.shape[0]):
                g = stops[p] - starts[p]
                vals = vals_flat[:max(g, 1) * m].reshape((max(g, 1), m))
                oks = oks_flat[:max(g, 1) * m].reshape((max(g, 1), m))
                for a in range(g):
                    _gather(values, valid, starts[p] + a, b, bv, y0, r, vals[a], oks[a], nodata)
                if g == 0:
                    res[:m] = np.nan
                elif stat == MEDIAN:
                    _median_ranked(vals, oks, g, m, res, upper, rank, count)
                else:
                    _reduce_simple(vals, oks, g, m, stat, res, count)
                for k in range(r):
                    o_row = _row(out, p, b, y0 + k)
                    src = res[k * nx:(k + 1) * nx]
                    for j in range(nx):
                        o_row[j] = src[j]
    return out


def composite_rows(values: np.ndarray, valid: np.ndarray, starts: np.ndarray, stops: np.ndarray,
                   stat: str, nodata: float | None = None) -> np.ndarray:
    """Composites of a 4-D block accepted by :func:`rows_contiguous`: one statistic of the clear
    values of dates ``starts[p]:stops[p]`` per period ``p`` (a (periods, band, y, x) block);
    values equal to ``nodata`` are missing, as NaN are."""
    t, nb, ny, nx = values.shape
    out = np.empty((len(starts), nb, ny, nx), result_dtype(values))
    rows = tile_rows(values.shape, TILE)
    return _composite_rows(values, valid.view(np.uint8), np.asarray(starts, np.int64), np.asarray(stops, np.int64),
                           STATS[stat], out, rows, kernel_nodata(values.dtype, nodata))
