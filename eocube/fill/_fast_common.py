"""Shared pieces of the compiled (numba) gap-filling kernels: options, tile sizes, row views.

Why numba: the NumPy kernels make 10-30 passes over the block (index arrays,
gathers, temporaries); these loops make a few, with the innermost loop over
contiguous pixels so that it vectorises. They release the GIL, so dask's threads
run them in parallel. The NumPy kernels in the sibling modules are the reference
they are tested against.

Main path (``*_rows``): the (time, band, y, x) block exactly as dask hands it over
(usually a strided view of a bigger array: no copy), one or a few image rows x all
dates at a time, small enough for the core's cache, so the block is read from
memory once and the result written once. Fallback (``*_2d``): a C-contiguous
(time, n) copy, for other shapes or dtypes.

Vectorisation pitfalls met here (each made a loop 5-15x slower; check with
``inspect_asm`` when changing a loop): an array numba types as "A" (any strided
view: runtime strides; ``_row`` below re-types a contiguous image row as "C");
an offset index ``row[k0 + j]`` (wrap-around check per element: slice the row
instead); a conditional load ``a if c else arr[j]`` (load ``arr[j]`` first); a loop
reading and writing many arrays (LLVM gives up its run-time overlap checks: split it);
a bool mask array (pass ``mask.view(np.uint8)`` and test ``!= 0``); a float sum
(its order is fixed without fastmath: count in integers where a count will do).
In the Whittaker kernels a pixel loop made its own small compiled function (rows as
arguments) ran 2-5x faster than the same loop inline in a big function; this did not
carry over to the linear and harmonic kernels (measured slower there), so measure.
Calls have a price too: each call of a compiled function with array arguments, and each
slice of a buffer with its own reference count, costs about 70 ns, so a call per short
row segment (64 pixels x date) made the linear kernel 3-5x slower; call per tile and date,
and take buffer rows with ``_flat_at``. Indexing a flat view with computed offsets
(``flat[base + j]``) was not vectorised at all (10x slower). The Whittaker stages see their
buffers through ``_unowned`` (row views without reference counting): 10 % faster there; the
same change in the harmonic kernel measured 5-10 % slower, so it stays out of it.

Shared by the bands: when a band's usable observations equal the weights of the band
processed before it in the same tile (one cloud mask for all bands), the Whittaker
factorisation and the harmonic normal matrices are reused (``weighted_if_same``). These two
kernels take a block band by band (``band_views``, ``band_outputs``): ``fill_gaps`` hands them
a pixel block's band blocks as a list and gets one result block per band block back, so no
band is copied into a merged block, and each result block stays small (see ``band_outputs``).

BLAS inside dask tasks: avoid it for the small per-tile products. The harmonic kernel once
called BLAS there; products wider than about 262144 multiply-adds made OpenBLAS start threads
of its own inside every dask thread, 2.2x slower (distributed's nannies set
``OPENBLAS_NUM_THREADS=1``; the threaded scheduler does not). Its products are now compiled
loops (``_small_matmul``), faster than BLAS at these sizes.

Prefetching: a sweep over dates reads rows that lie one date (often MiBs) apart, a pattern the
hardware prefetcher does not follow. The linear kernel asks for the next date's rows while the
current ones are processed (``_prefetch_rows``, 10 % faster), the harmonic kernel for the next
tile's input (``prefetch_tile``, 6 %); measured no gain or noise-level in the others, so they do
without.

Missing values: an observation is usable where the mask says clear, the value is finite and
it is not the cube's nodata value (``is_data``; integer digital numbers often mark nodata with
0). The kernels take ``nodata`` as a scalar of the block's dtype, or None: None compiles the test
away, so float cubes whose nodata is NaN run exactly the loops they ran before.

Bounds (the smoothers' output step, ``bounded_or``): a filled value is clipped into its pixel's
bounds (the pixel's clear range widened by a margin, and/or a declared valid range: counted as
the rows are loaded, ``range_row``, in the Whittaker kernel; in a pass over the in-cache weights,
``observed_bounds``, in the harmonic and Savitzky-Golay ones); kept observations are never
changed. ``acted`` (optional, uint8 like the output) records where the clip changed a value;
None compiles that store away. Cost on four 48 x 256 x 256 float32 band blocks (one task's):
Whittaker 21.1 -> 24.2 ms (+15 %; a separate pass over the weights was +18 %), harmonic
22.8 -> 25.4 ms (+11 %); ``bound=None`` runs the unbounded loops.

Numba's on-disk cache (``cache=True``) is checked against each function's own source file only:
after editing a helper here, delete ``eocube/fill/__pycache__/*.nbi`` and ``*.nbc``, or the
kernels in the other modules keep running the helper's old code (met here: a faster
``_small_matmul`` showed no gain until then). A fresh checkout or install is not affected.
"""

from __future__ import annotations

from typing import Sequence

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._common import kernel_nodata  # noqa: F401 - numba-free, re-exported for the kernels

BLOCK = 512  # pixels per block of the 2-D fallback kernels
WHITTAKER_TILE = 512  # pixels per Whittaker tile (whole image rows): best of 256/512/1024/2048 here
_opts = dict(nopython=True, nogil=True, cache=True, fastmath=False, error_model="numpy")
LINEAR_TILE = 2048  # pixels per linear tile (whole image rows; 0.8 MB of buffers for 48 dates): 1024-8192 within noise here
HARMONIC_TILE = 256  # pixels per harmonic tile (rows x a column segment): best of 128-1024 here
SAVGOL_TILE = 1024  # pixels per Savitzky-Golay tile (whole image rows)


@intrinsic
def _elem_ptr(typingctx, arr_t, offset_t):  # pragma: no cover - compiled
    # Pointer to element ``offset`` (counted in items from the array's data pointer).
    sig = types.CPointer(arr_t.dtype)(arr_t, offset_t)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.gep(ary.data, [args[1]])

    return sig, codegen


@numba.jit(**_opts)
def _row(arr, i, b, y):  # pragma: no cover - compiled
    # ``arr[i, b, y, :]`` typed as a C-contiguous 1-D array. A dask block is a strided view of a
    # bigger array (numba types it "A": runtime strides, which stops vectorisation, ~15x slower);
    # its rows are contiguous all the same (checked by the caller), and this says so to numba.
    off = (i * arr.strides[0] + b * arr.strides[1] + y * arr.strides[2]) // arr.itemsize
    return numba.carray(_elem_ptr(arr, off), arr.shape[3])



@numba.jit(**_opts)
def _flat_at(arr, offset, n):  # pragma: no cover - compiled
    # Items offset:offset+n of a flat C-contiguous buffer, as a 1-D C array without its own
    # reference count (slicing a buffer per date and tile costs reference counting calls).
    return numba.carray(_elem_ptr(arr, offset), n)



@numba.jit(**_opts)
def _unowned(arr):  # pragma: no cover - compiled
    # A C-contiguous array seen without its reference count: its rows and slices then cost no
    # atomic reference counting (about 30 ns per view, paid per row call in the kernels). Only
    # for an argument of the calling function, which keeps the memory alive during the call.
    return numba.carray(_elem_ptr(arr, 0), arr.shape)

@intrinsic
def _prefetch(typingctx, arr_t, offset_t):  # pragma: no cover - compiled
    # A hint to fetch the cache line holding item ``offset`` of ``arr`` (``llvm.prefetch``: read,
    # keep in all cache levels). No effect on results.
    sig = types.void(arr_t, offset_t)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@numba.jit(**_opts)
def _prefetch_rows(arr, i, b, y0, r):  # pragma: no cover - compiled
    # Prefetch image rows y0:y0+r of ``arr[i, b]`` (a 4-D block with contiguous rows), line by line.
    step = max(1, 64 // arr.itemsize)
    for k in range(r):
        off = (i * arr.strides[0] + b * arr.strides[1] + (y0 + k) * arr.strides[2]) // arr.itemsize
        for c in range(0, arr.shape[3], step):
            _prefetch(arr, off + c)


@numba.jit(**_opts)
def prefetch_tile(arr, b, y0, r, x0, nx):  # pragma: no cover - compiled
    # Prefetch rows y0:y0+r, columns x0:x0+nx of band ``b`` of a 4-D block, every date: the next
    # tile's input, asked for while the current tile is computed (its rows lie one date apart, a
    # pattern the hardware prefetcher does not follow).
    step = max(1, 64 // arr.itemsize)
    for i in range(arr.shape[0]):
        for k in range(r):
            off = (i * arr.strides[0] + b * arr.strides[1] + (y0 + k) * arr.strides[2]) // arr.itemsize + x0
            for c in range(0, nx, step):
                _prefetch(arr, off + c)


@numba.jit(**_opts)
def _small_matmul(a_mat, b_mat, out):  # pragma: no cover - compiled
    # out = a_mat @ b_mat for a short, wide product ((q, t) @ (t, n), n pixels of a tile): two rows
    # of ``out`` and four rows of ``b_mat`` per pass over the pixels, so that each loaded row
    # value serves two outputs and each stored output four products (one row and date per pass:
    # 20 % slower). Faster than BLAS at these sizes (right-hand sides 2.5 against 7.3 us per
    # 256-pixel tile), and it never starts threads of its own inside dask's (OpenBLAS does,
    # above about 262144 multiply-adds per product: more dates or wider tiles).
    q, t = a_mat.shape
    n = b_mat.shape[1]
    for a in range(0, q, 2):
        a1 = a + 1 if a + 1 < q else a  # odd q: the last row twice, into a scratch row
        o0 = out[a]
        o1 = out[a1] if a1 != a else np.empty(n, out.dtype)
        o0[:] = 0.0
        o1[:] = 0.0
        i = 0
        while i + 4 <= t:
            x00, x01, x02, x03 = a_mat[a, i], a_mat[a, i + 1], a_mat[a, i + 2], a_mat[a, i + 3]
            x10, x11, x12, x13 = a_mat[a1, i], a_mat[a1, i + 1], a_mat[a1, i + 2], a_mat[a1, i + 3]
            b4 = b_mat[i:i + 4]
            for j in range(n):
                c0 = b4[0, j]
                c1 = b4[1, j]
                c2 = b4[2, j]
                c3 = b4[3, j]
                o0[j] += x00 * c0 + x01 * c1 + x02 * c2 + x03 * c3
                o1[j] += x10 * c0 + x11 * c1 + x12 * c2 + x13 * c3
            i += 4
        while i < t:
            x00 = a_mat[a, i]
            x10 = a_mat[a1, i]
            b_row = b_mat[i]
            for j in range(n):
                c0 = b_row[j]
                o0[j] += x00 * c0
                o1[j] += x10 * c0
            i += 1


ROW_DTYPES = tuple(np.dtype(d) for d in ("float32", "float64", "uint8", "int8", "uint16", "int16", "uint32", "int32"))
"""Value dtypes the row kernels read as they are (integers, e.g. digital numbers straight from a
STAC asset, are converted on load; the result is float, :func:`result_dtype`)."""


def tile_rows(shape: tuple[int, ...], tile: int) -> int:
    """Whole image rows per tile of about ``tile`` pixels for a (..., y, x) block (at least one)."""
    return max(1, min(shape[-2], tile // max(shape[-1], 1)))


def result_dtype(values: np.ndarray) -> np.dtype:
    """The filled block's dtype: float32 for float32 and integers of up to 16 bits, else float64."""
    return np.result_type(values.dtype, np.float32)


def rows_contiguous(values: np.ndarray, valid: np.ndarray) -> bool:
    """True when a block can go to the row kernels as it is: 4-D float or integer (:data:`ROW_DTYPES`),
    mask 4-D bool (band 1 or all), x contiguous."""
    if values.ndim != 4 or not isinstance(valid, np.ndarray) or valid.ndim != 4 or values.size == 0:
        return False
    if values.dtype not in ROW_DTYPES or valid.dtype != np.bool_:
        return False
    t, nb, ny, nx = values.shape
    if valid.shape not in ((t, 1, ny, nx), (t, nb, ny, nx)):
        return False
    return all(a.strides[3] == a.itemsize and all(s % a.itemsize == 0 for s in a.strides) for a in (values, valid))


def band_views(values: np.ndarray | Sequence[np.ndarray], valid: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """One (time, 1, y, x) view per band, for the kernels that take a block band by band.

    ``values`` is a 4-D block, or the list of a block's band blocks as dask hands them over
    (``fill_gaps`` passes them so, not concatenated: that would copy the cube once more). None
    when a view is not accepted by :func:`rows_contiguous` or the views differ in numba type
    (dtype or layout): concatenate the list then and take another path.
    """
    blocks = list(values) if isinstance(values, (list, tuple)) else [values]
    if not blocks or any(not isinstance(block, np.ndarray) or block.ndim != 4 for block in blocks):
        return None
    views = tuple(block[:, b:b + 1] for block in blocks for b in range(block.shape[1]))
    if not isinstance(valid, np.ndarray) or valid.ndim != 4 or valid.shape[1] not in (1, len(views)):
        return None
    shared = valid.shape[1] == 1
    if not all(rows_contiguous(view, valid if shared else valid[:, b:b + 1]) for b, view in enumerate(views)):
        return None
    if len({numba.typeof(view) for view in views}) > 1:
        return None
    return views


def band_outputs(values: np.ndarray | Sequence[np.ndarray], bands: tuple[np.ndarray, ...]
                 ) -> tuple[np.ndarray | list[np.ndarray], tuple[np.ndarray, ...]]:
    """The result of a kernel that fills ``bands`` (:func:`band_views` of ``values``), and its
    (time, 1, y, x) view per band for the kernel to write into.

    The result is shaped as ``values`` is: one array for an array, a list of arrays (one per
    band block, with the same bands) for a list. Separate band blocks also keep each result
    block small: blocks over 32 MiB come as fresh pages from the system on every allocation
    (glibc's largest ``mmap`` threshold), whose page faults cost about a memory pass.
    """
    t, _, ny, nx = bands[0].shape
    dtype = result_dtype(bands[0])
    if isinstance(values, (list, tuple)):
        result = [np.empty((t, block.shape[1], ny, nx), dtype) for block in values]
    else:
        result = np.empty((t, len(bands), ny, nx), dtype)
    blocks = result if isinstance(result, list) else [result]
    return result, tuple(block[:, b:b + 1] for block in blocks for b in range(block.shape[1]))


def is_data(v, nodata):  # pragma: no cover - replaced by the overload below in compiled code
    """True where ``v`` is a real value: finite and not ``nodata`` (None: no nodata value)."""
    return (v - v == 0) & (nodata is None or v != nodata)


@overload(is_data)
def _is_data_compiled(v, nodata):  # pragma: no cover - compiled
    # None (or an omitted argument) compiles the nodata test away: the float path stays as it was.
    if isinstance(nodata, (types.NoneType, types.Omitted)):
        return lambda v, nodata: v - v == 0
    return lambda v, nodata: (v - v == 0) & (v != nodata)


@numba.jit(**_opts)
def weighted_if_same(v_row, ok_row, w_row, z_row, n, nodata):  # pragma: no cover - compiled
    # One image row: z = v where the weight is 1, else 0; returns how many pixels' usability (clear
    # and finite) differs from their weight (an integer count: a float sum would not vectorise).
    # Zero for every row of a tile: the band shares the weights of the band factorised before it
    # (one cloud mask for all bands), whose factorisation (Whittaker) or normal matrices
    # (harmonic) then serve it too.
    differ = 0
    for j in range(n):
        v = v_row[j]
        wj = w_row[j] > 0.5
        z_row[j] = v if wj else 0.0
        differ += np.int64((ok_row[j] != 0) & is_data(v, nodata)) ^ np.int64(wj)
    return differ



@numba.jit(**_opts)
def cholesky_packed(gram, p, m):  # pragma: no cover - compiled
    # Per pixel (column of ``gram``), the Cholesky factor L of a p x p symmetric matrix stored as
    # a packed lower triangle (row a(a+1)/2 + c holds entry (a, c), c <= a), in place and vectorised
    # over the m pixels. The diagonal keeps 1 / L's diagonal (multiplications instead of divisions
    # later); NaN where the matrix is not positive definite (as ``_common.batched_spd_solve``).
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


@numba.jit(**_opts)
def solve_packed(gram, z, p, m):  # pragma: no cover - compiled
    # Solve L L' x = z in place in z (p, m), with the factors of ``cholesky_packed``.
    for r in range(p):  # forward substitution
        z_r = z[r]
        for k in range(r):
            g_rk = gram[r * (r + 1) // 2 + k]
            z_k = z[k]
            for j in range(m):
                z_r[j] -= g_rk[j] * z_k[j]
        g_rr = gram[r * (r + 1) // 2 + r]
        for j in range(m):
            z_r[j] *= g_rr[j]
    for r in range(p - 1, -1, -1):  # back substitution
        z_r = z[r]
        for k in range(r + 1, p):
            g_kr = gram[k * (k + 1) // 2 + r]
            z_k = z[k]
            for j in range(m):
                z_r[j] -= g_kr[j] * z_k[j]
        g_rr = gram[r * (r + 1) // 2 + r]
        for j in range(m):
            z_r[j] *= g_rr[j]

@numba.jit(**_opts)
def weights_tile(values, valid, b, bv, y0, nrows, x0, nx, w, wv, cnt, nodata):  # pragma: no cover - compiled
    # Weights (clear and finite: 1, else 0), weighted values and clear counts of a tile (rows
    # y0:y0+nrows, columns x0:x0+nx of band b), into (time, nrows * nx) buffers: the least-squares
    # kernels' (harmonic, Savitzky-Golay) view of the block.
    t = values.shape[0]
    m = nrows * nx
    cnt[:] = 0.0
    for i in range(t):
        w_row = w[i]
        wv_row = wv[i]
        for k in range(nrows):
            v_row = _row(values, i, b, y0 + k)[x0:x0 + nx]
            ok_row = _row(valid, i, bv, y0 + k)[x0:x0 + nx]
            w_k = w_row[k * nx:(k + 1) * nx]
            wv_k = wv_row[k * nx:(k + 1) * nx]
            for j in range(nx):
                v = v_row[j]
                ok = (ok_row[j] != 0) & is_data(v, nodata)
                w_k[j] = 1.0 if ok else 0.0
                wv_k[j] = v if ok else 0.0
        for j in range(m):
            cnt[j] += w_row[j]


@numba.jit(**_opts)
def observed_or(o_row, v_row, ok_row, r_row, keep_observed, n, nodata):  # pragma: no cover - compiled
    # One output row: the observation where it is usable (and kept), else the filled value.
    for j in range(n):
        v = v_row[j]
        rv = r_row[j]
        keep = keep_observed & (ok_row[j] != 0) & is_data(v, nodata)
        o_row[j] = v if keep else rv


@numba.jit(**_opts)
def bounded_or(o_row, v_row, ok_row, r_row, keep_observed, n, nodata, lo, hi, a_row):  # pragma: no cover
    # ``observed_or`` with the filled value clipped into [lo[j], hi[j]] (NaN stays NaN: the tests
    # are false for it); ``a_row`` (uint8, or None) gets 1 where the clip changed the output.
    for j in range(n):
        v = v_row[j]
        rv = r_row[j]
        lj = lo[j]
        hj = hi[j]
        keep = keep_observed & (ok_row[j] != 0) & is_data(v, nodata)
        c = lj if rv < lj else rv
        c = hj if c > hj else c
        o_row[j] = v if keep else c
        if a_row is not None:
            changed = (c != rv) & (rv == rv)
            a_row[j] = np.uint8(0) if keep else np.uint8(changed)


@numba.jit(**_opts)
def range_row(v_row, ok_row, lo, hi, n, nodata):  # pragma: no cover - compiled
    # lo = min(lo, v), hi = max(hi, v) where an observation is usable (``ok_row`` uint8, finite, not
    # nodata), in the float type of ``lo``/``hi`` (float32 for float32 or 16-bit integer values:
    # twice the lanes of float64), for one image row as it is loaded.
    for j in range(n):
        v = v_row[j]
        use = (ok_row[j] != 0) & is_data(v, nodata)
        x = lo.dtype.type(v)
        a = lo[j]
        b = hi[j]
        a2 = x if x < a else a
        b2 = x if x > b else b
        lo[j] = a2 if use else a
        hi[j] = b2 if use else b


@numba.jit(**_opts)
def finish_bounds(lo, hi, m, margin, lo_decl, hi_decl, lo_in, hi_in):  # pragma: no cover - compiled
    # From each pixel's clear minimum and maximum in ``lo_in``/``hi_in`` (any float dtype): the range
    # widened by ``margin`` times its width on each side, intersected with [lo_decl, hi_decl].
    for j in range(m):
        a = np.float64(lo_in[j])
        b = np.float64(hi_in[j])
        width = margin * (b - a)
        a = a - width
        b = b + width
        lo[j] = lo_decl if a < lo_decl else a
        hi[j] = hi_decl if b > hi_decl else b


@numba.jit(**_opts)
def observed_bounds(w, v, m, margin, lo_decl, hi_decl, lo, hi):  # pragma: no cover - compiled
    # Per pixel (column of the (time, m) weights ``w`` and values ``v``, unusable ones weighted 0):
    # the clear range widened by ``margin`` times its width on each side (margin < 0: no
    # per-pixel bound), intersected with [lo_decl, hi_decl]; into ``lo``/``hi`` (m,).
    t = w.shape[0]
    if margin < 0:
        lo[:m] = lo_decl
        hi[:m] = hi_decl
        return
    lo[:m] = np.inf
    hi[:m] = -np.inf
    for i in range(t):
        w_i = w[i]
        v_i = v[i]
        for j in range(m):
            x = np.float64(v_i[j])
            use = w_i[j] > 0.5
            a = lo[j]
            b = hi[j]
            a2 = x if x < a else a
            b2 = x if x > b else b
            lo[j] = a2 if use else a
            hi[j] = b2 if use else b
    for j in range(m):
        a = lo[j]
        b = hi[j]
        width = margin * (b - a)
        a = a - width
        b = b + width
        lo[j] = lo_decl if a < lo_decl else a
        hi[j] = hi_decl if b > hi_decl else b
