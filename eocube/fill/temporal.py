"""Temporal gap filling of cubes, lazily and chunk-wise (full time axis per chunk)."""

from __future__ import annotations

import operator
from typing import Callable

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.core import flatten
from dask.highlevelgraph import HighLevelGraph

from ..cube import select_bands, validate_cube
from ..masks import align_mask
from ._bound import resolve_bound
from ._errors import FillError
from ._grid import TimeGrid, days_since, target_times
from ._harmonic import harmonic_fill
from ._linear import linear_fill
from ._neighbours import nearest_fill, next_fill, previous_fill
from ._nodata import cube_nodata, with_nan_nodata
from ._savgol import savgol_fill
from ._whittaker import whittaker_fill

Kernel = Callable[..., np.ndarray]

METHODS: dict[str, Kernel] = {
    "linear": linear_fill,
    "nearest": nearest_fill,
    "previous": previous_fill,
    "next": next_fill,
    "whittaker": whittaker_fill,
    "harmonic": harmonic_fill,
    "savgol": savgol_fill,
}
"""Gap-filling kernels by name: ``kernel(values, valid, days, **options) -> filled``.

``values`` is a NumPy block (time, ...), ``valid`` a boolean block broadcastable to it,
``days`` the float acquisition days (time,). Every kernel takes ``nodata`` (the value that marks
a missing observation besides NaN; ``fill_gaps`` passes the cube's) and ``engine``. Options per
method: ``linear``, ``nearest``, ``previous``, ``next``: ``extrapolate``; ``whittaker``: ``lmbda``,
``extrapolate``, ``keep_observed``; ``harmonic``: ``harmonics``, ``period``, ``trend``,
``min_obs``, ``keep_observed``; ``savgol``: ``window`` (days), ``order``, ``keep_observed``; the
smoothers (:data:`BOUNDED`) also ``bound``, ``margin``, ``valid_range`` (see :func:`fill_gaps`).
"""

BOUNDED = frozenset({"whittaker", "harmonic", "savgol"})
"""Methods whose output can leave the observed range (smoothers, regressions) and is therefore
bounded by default (option ``bound``); the others only repeat or interpolate clear observations."""

INTERNAL_OPTIONS = frozenset({"nodata", "return_bounded"})
"""Kernel parameters that ``fill_gaps`` sets itself (from the cube, from ``return_bounded``)."""


SHARED_WORK = frozenset({"whittaker", "harmonic"})
"""Methods whose kernels share work between bands with the same usable observations (one
factorisation, one set of normal equations). When the mask is shared by the bands, ``fill_gaps``
hands each of their tasks every band of a pixel block, as the list of the band blocks (not
concatenated: that copy cost about 1.3x a memory pass on the gap-fill benchmark)."""

BLOCK_BUDGET = 256 * 2**20
"""Largest block (bytes) that ``fill_gaps`` makes when it rechunks."""


def fill_gaps(
    cube: xr.DataArray,
    clear: xr.DataArray | None = None,
    *,
    method: str = "linear",
    bands: str | list[str] | None = None,
    time_grid: TimeGrid = None,
    rechunk: bool = True,
    return_bounded: bool = False,
    **options: object,
) -> xr.DataArray | tuple[xr.DataArray, xr.DataArray]:
    """Fill cloudy or missing observations along ``time``, per pixel and band.

    Lazy: builds a dask graph, one task per chunk. Each pixel needs its whole
    series, so the time axis must be one chunk: it is rechunked when needed
    (``rechunk=True``), otherwise a chunked time axis is an error.

    Missing observations: where ``clear`` is False, where a value is NaN, and where it equals
    the cube's nodata value (``cube.rio.encoded_nodata`` where set, else ``cube.rio.nodata``;
    e.g. 0 for uint16 digital numbers, or -9999.0), whatever the dtype. Such values are never
    used, and are filled like cloudy ones. Integer cubes are converted to float on load.

    Bounds: the smoothers (``whittaker``, ``harmonic``, ``savgol``) can overshoot across long
    gaps (a Whittaker fit through three NDVI observations once reached -2.1 and 3.6). By default
    (``bound="observed"``) each filled value is clipped into its pixel's clear range widened by
    ``margin`` (10 %) of that range's width on each side, and into the band's valid range where
    one is declared (option ``valid_range=(lo, hi)``, else the cube's ``valid_range`` or
    ``valid_min``/``valid_max`` attributes). ``bound="valid_range"`` clips into the declared
    range only; ``bound=None`` turns bounding off. Kept clear observations are never changed.

    Parameters
    ----------
    cube
        The cube to fill (time strictly increasing).
    clear
        Boolean mask, True where an observation is clear, dims ``(time, y, x)`` or
        ``(time, band, y, x)`` on the cube's coordinates. None: only NaN values are gaps.
    method
        A key of :data:`METHODS`.
    bands
        Bands to fill (others are dropped); all by default.
    time_grid
        None: fill on the observed dates. A pandas frequency (``"10D"``, ``"MS"``,
        ``"monthly"``) or a list of dates: the result holds those dates instead
        (values interpolated/modelled there from the clear observations).
    rechunk
        Bring a chunked time axis into one chunk (True) or raise :class:`FillError` (False).
        ``whittaker`` and ``harmonic`` under a mask shared by the bands take every band of a
        pixel block in one task (all bands of a block up to 256 MiB): they factorise once per pixel
        for all bands. The result keeps the input's chunks.
    return_bounded
        Also return where the bound acted: a lazy boolean cube like the result (named
        ``bounded``), True where a filled value was clipped. It comes from the same tasks as
        the filled values: compute or write both together (``dask.compute(filled, bounded)``)
        so that the fill runs once. All False for the methods outside :data:`BOUNDED`, or
        with ``bound=None``.
    **options
        Passed to the kernel (see :data:`METHODS`), e.g. ``extrapolate="none"``
        for linear filling or ``lmbda=100`` for Whittaker; for the smoothers also
        ``bound`` (``"observed"``, ``"valid_range"`` or None), ``margin`` (0.1) and
        ``valid_range`` (``(lo, hi)``).

    Returns
    -------
    xarray.DataArray, or (xarray.DataArray, xarray.DataArray) with ``return_bounded``
        Filled cube (float, nodata NaN: the input's nodata attributes are dropped), same grid,
        CRS and other attributes (``eocube_fill`` names the method); clear observations
        unchanged (unless ``keep_observed=False``). Policy for a pixel with no usable
        observation at all: NaN on every date (see :func:`eocube.fill.days_to_clear` for the
        quality band, NaN there too).

    Raises
    ------
    FillError
        Unknown method or option, chunked time axis with ``rechunk=False``, bad time grid.
    CubeError, MaskError
        A cube that breaks the conventions (unsorted or duplicate dates), a mask that does not fit.
    """
    validate_cube(cube)  # the time axis included
    if method not in METHODS:
        raise FillError(f"unknown gap-filling method {method!r}; choose one of {sorted(METHODS)}")
    _check_options(method, options)
    _check_values(cube)
    cube = select_bands(cube, bands)
    nodata = cube_nodata(cube)
    kernel_options = dict(options, nodata=nodata)
    if method in BOUNDED:
        if options.get("bound", "observed") is not None and "valid_range" not in options:
            kernel_options["valid_range"] = declared_range(cube)
        kernel_options["return_bounded"] = bool(return_bounded)
        try:  # now, not when the first task runs
            resolve_bound(kernel_options.get("bound", "observed"), kernel_options.get("margin", 0.1),
                          kernel_options.get("valid_range"))
        except ValueError as exc:
            raise FillError(str(exc)) from None
    _try_options(method, kernel_options)
    if clear is not None:
        clear = align_mask(clear, cube)
    times = pd.DatetimeIndex(cube["time"].values)
    target = target_times(times, time_grid)
    work, work_clear = cube, clear
    if target is not None:
        union = times.union(target)
        work = cube.reindex(time=union)
        if clear is not None:
            work_clear = clear.reindex(time=union, fill_value=False)
    shared_mask = work_clear is None or work_clear.ndim == 3
    data = _time_contiguous(work, rechunk)
    valid = _valid_array(work, work_clear, data.chunks)
    days = days_since(pd.DatetimeIndex(work["time"].values), times[0])
    out_dtype = np.result_type(cube.dtype, np.float32)
    name = f"eocube-fill-{method}-" + da.core.tokenize(data, valid, days, method, sorted(kernel_options.items()))
    kwargs = dict(kernel=METHODS[method], days=days, options=kernel_options)
    pairs = return_bounded and method in BOUNDED
    if method in SHARED_WORK and shared_mask and _all_bands_fit(data, out_dtype):
        filled, bounded = _band_groups(data, valid, out_dtype, name, kwargs, pairs)
    elif pairs:
        both = da.map_blocks(_fill_block, data, valid, dtype=object, meta=np.empty((0, 0, 0, 0), object),
                             name=f"{name}-pairs", **kwargs)
        filled, bounded = (_pick_blocks(both, data.chunks, dtype, f"{name}-{part}", part)
                           for part, dtype in ((0, out_dtype), (1, np.dtype(bool))))
    else:
        filled = da.map_blocks(_fill_block, data, valid, dtype=out_dtype, meta=np.empty((0,) * 4, out_dtype), name=name,
                               **kwargs)
        bounded = None
    result = work.copy(data=filled)
    if target is not None:
        result = result.sel(time=target)
    result.attrs = dict(cube.attrs)
    result.attrs["eocube_fill"] = method
    if options:
        result.attrs["eocube_fill_options"] = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    result = with_nan_nodata(result)
    if not return_bounded:
        return result
    if bounded is None:
        bounded = da.zeros(data.shape, dtype=bool, chunks=data.chunks)
    flags = work.copy(data=bounded)
    if target is not None:
        flags = flags.sel(time=target)
    flags.name = "bounded"
    flags.attrs = {"long_name": "filled value clipped into its bound", "eocube_fill": method}
    flags.encoding = {}
    return result, flags


def declared_range(cube: xr.DataArray) -> tuple[float, float] | None:
    """The valid range the cube declares in its attributes (``valid_range``, or ``valid_min`` /
    ``valid_max``, one side may be missing), in the units of its values, or None.

    Per CF the attributes are in the stored (packed) units: where the cube was decoded (its
    encoding holds ``scale_factor`` / ``add_offset``), they are scaled like the values.
    """
    attrs = cube.attrs
    lo, hi = -np.inf, np.inf
    if "valid_range" in attrs:
        try:
            lo, hi = (float(v) for v in np.asarray(attrs["valid_range"]).ravel()[:2])
        except (TypeError, ValueError):
            return None
    elif "valid_min" in attrs or "valid_max" in attrs:
        lo = float(attrs.get("valid_min", -np.inf))
        hi = float(attrs.get("valid_max", np.inf))
    else:
        return None
    scale = float(cube.encoding.get("scale_factor", 1.0))
    offset = float(cube.encoding.get("add_offset", 0.0))
    lo, hi = sorted((lo * scale + offset, hi * scale + offset))
    return (lo, hi) if lo <= hi else None


def _check_options(method: str, options: dict) -> None:
    import inspect

    params = inspect.signature(METHODS[method]).parameters
    accepted = [name for name in list(params)[3:] if name not in INTERNAL_OPTIONS]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise FillError(f"method {method!r} has no option(s) {unknown}; its options are {accepted}")


def _check_values(cube: xr.DataArray) -> None:
    """Refuse a cube gap filling cannot work on: no dates, or values that are not real numbers."""
    if cube.sizes["time"] == 0:
        raise FillError("the cube has no dates (its time axis is empty): gap filling needs at least one "
                        "observation per pixel; check the selection or search that made it")
    if not (np.issubdtype(cube.dtype, np.number) or cube.dtype == bool) or np.issubdtype(cube.dtype, np.complexfloating):
        raise FillError(f"the cube holds {cube.dtype} values: gap filling works on real numbers; fill the real "
                        "and imaginary parts (or the amplitude, abs(cube)) as separate cubes")


def _try_options(method: str, options: dict) -> None:
    """Run the method's kernel once on a tiny series (NumPy engine), so that a bad option value is a
    :class:`FillError` now rather than an error inside the first task."""
    from ._common import check_engine

    try:
        check_engine(options.get("engine", "numba"))
        METHODS[method](np.array([1.0, np.nan, 3.0], "float32").reshape(3, 1, 1, 1), np.ones((3, 1, 1, 1), bool),
                        np.array([0.0, 10.0, 20.0]), **{**options, "engine": "numpy"})
    except (ValueError, TypeError) as exc:
        raise FillError(f"method {method!r}: {exc}") from None


def _time_contiguous(cube: xr.DataArray, rechunk: bool) -> da.Array:
    """The cube's data as a dask array with the whole time axis in each chunk."""
    if cube.chunks is None:
        return da.from_array(cube.values, chunks=(-1, 1, "auto", "auto"))
    data = cube.data
    if len(data.chunks[0]) == 1:
        return data
    if not rechunk:
        raise FillError(
            f"the cube's time axis is split into {len(data.chunks[0])} chunks but gap filling needs each "
            "pixel's whole series in one chunk: rechunk with cube.chunk({'time': -1}) (and smaller y/x "
            "chunks), or pass rechunk=True"
        )
    keep = data.shape[0] * max(data.chunks[1]) * max(data.chunks[2]) * max(data.chunks[3]) * data.dtype.itemsize
    spatial = (data.chunks[2], data.chunks[3]) if keep <= BLOCK_BUDGET else ("auto", "auto")
    return data.rechunk({0: -1, 1: data.chunks[1], 2: spatial[0], 3: spatial[1]})


def _band_groups(data: da.Array, valid: da.Array, dtype: np.dtype, name: str, kwargs: dict, pairs: bool = False
                 ) -> tuple[da.Array, da.Array | None]:
    """Fill with every band of a pixel block in one task: the task takes the list of the band
    blocks and returns the list of their results (no concatenation copy either way), and one
    light task per band block picks its result out, so the result has the input's chunks.
    With ``pairs`` the task returns (results, bound flags) and the flags come out likewise."""
    groups = da.blockwise(
        _fill_band_blocks, "tyx", data, "tcyx", valid, "tvyx", concatenate=False, dtype=object,
        meta=np.empty((0, 0, 0), object), name=f"{name}-groups", **kwargs,
    )
    parts = ((name, None, dtype),) if not pairs else ((name, 0, dtype), (f"{name}-bounded", 1, np.dtype(bool)))
    out = []
    for part_name, part, part_dtype in parts:
        layer = {
            (part_name, 0, c, i, j): ((operator.getitem, (groups.name, 0, i, j), c) if part is None
                                      else (_pick_band, (groups.name, 0, i, j), part, c))
            for c in range(len(data.chunks[1])) for i in range(len(data.chunks[2])) for j in range(len(data.chunks[3]))
        }
        graph = HighLevelGraph.from_collections(part_name, layer, dependencies=[groups])
        out.append(da.Array(graph, part_name, chunks=data.chunks, dtype=part_dtype,
                            meta=np.empty((0, 0, 0, 0), part_dtype)))
    return (out[0], out[1]) if pairs else (out[0], None)


def _pick_band(result: tuple, part: int, band_block: int) -> np.ndarray:
    return result[part][band_block]


def _pick_blocks(pairs: da.Array, chunks: tuple, dtype: np.dtype, name: str, part: int) -> da.Array:
    """Part ``part`` of each block of ``pairs`` (blocks that are tuples), as an array with ``chunks``."""
    layer = {(name,) + key[1:]: (operator.getitem, key, part) for key in flatten(pairs.__dask_keys__())}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[pairs])
    return da.Array(graph, name, chunks=chunks, dtype=dtype, meta=np.empty((0,) * len(chunks), dtype))


def _all_bands_fit(data: da.Array, dtype: np.dtype) -> bool:
    """True when the results of every band of a pixel block (one task's) stay within :data:`BLOCK_BUDGET`."""
    t, nb = data.shape[:2]
    return t * nb * max(data.chunks[2]) * max(data.chunks[3]) * np.dtype(dtype).itemsize <= BLOCK_BUDGET


def _fill_block(values: np.ndarray, valid: np.ndarray, *, kernel: Kernel, days: np.ndarray, options: dict) -> np.ndarray:
    return kernel(values, valid, days, **options)


def _fill_band_blocks(values: list[np.ndarray], valid: list[np.ndarray], *, kernel: Kernel, days: np.ndarray,
                      options: dict) -> list[np.ndarray] | tuple[list[np.ndarray], list[np.ndarray]]:
    # One pixel block: its band blocks as a list (the kernels in SHARED_WORK take it as it is) and
    # the mask shared by the bands (one block); the results as a list of blocks, band for band
    # (views of one array where a kernel's fallback path returned one); with ``return_bounded``,
    # the pair (results, bound flags), each such a list.
    result = kernel(values, valid[0], days, **options)
    edges = np.cumsum([0] + [block.shape[1] for block in values])

    def split(array: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
        return array if isinstance(array, list) else [array[:, a:b] for a, b in zip(edges[:-1], edges[1:])]

    if isinstance(result, tuple):
        return split(result[0]), split(result[1])
    return split(result)


def _days(cube: xr.DataArray) -> np.ndarray:
    times = pd.DatetimeIndex(cube["time"].values)
    return days_since(times, times[0])


def _valid_array(cube: xr.DataArray, clear: xr.DataArray | None, chunks: tuple) -> da.Array:
    """The clear mask as a dask array aligned with the cube's chunks (time, band, y, x)."""
    if clear is None:
        # Real blocks, not dask's broadcast ones (zero strides), which the compiled row kernels
        # cannot take: without this a cube whose gaps are NaN ran the slow fallbacks (linear
        # 7.8x instead of 4.1x the memory pass, nearest 85x instead of 4.3x).
        ones = da.ones((cube.sizes["time"], 1, cube.sizes["y"], cube.sizes["x"]), dtype=bool,
                       chunks=(chunks[0], 1, chunks[2], chunks[3]))
        return ones.map_blocks(np.ascontiguousarray, dtype=bool, meta=np.empty((0,) * 4, bool))
    if clear.ndim == 3:
        clear = clear.expand_dims(band=1).transpose("time", "band", "y", "x")
        band_chunks: tuple = (1,)
    else:
        band_chunks = chunks[1]
    data = clear.data if isinstance(clear.data, da.Array) else da.from_array(clear.values)
    return data.rechunk((chunks[0], band_chunks, chunks[2], chunks[3]))
