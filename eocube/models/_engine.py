"""What one chunk task does: fill nodata, cut tiles with their halo, batch, run the model, stitch.

:func:`run_block` receives one block of each overlapped source (its own pixels plus the halo
of each neighbour, in the source's own pixels; nothing beyond the image border) and returns
the output block for the block's own pixels. Tiles are cut on the base (finest) grid: their
origins, sizes and the halo are multiples of the alignment (:mod:`._tiling`), so each tile's
window in a coarser source covers exactly its base footprint and its output pixels start on
an output pixel corner. A tile on the image's edge or a short last tile gets a window slid
inward to the common length (:mod:`._tile_windows`), so that all tiles of a chunk have one
shape; they are stacked with the dates (layout ``"band"``) into as few batches of at most
``batch_size`` samples as there can be, of near-equal sizes (no batch of one beside larger ones:
PyTorch's CPU convolutions round a batch of one differently), fed to the device
(:mod:`._feed`), and each output tile's own pixels are written into the chunk's output (a chunk
made of one tile and one batch returns a view of the model's output: no copy at all). Since
every output pixel sees either its full halo or the true image border, the result equals one
forward pass over the whole image whenever ``halo`` covers the receptive field.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import torch

from ._device import (
    autocast_context,
    device_lock,
    matched_torch_threads,
    resolve_device,
)
from ._errors import ModelIdentityError, ModelRuntimeError, OutputShapeError
from ._feed import Feeder, to_numpy
from ._identity import callable_identity, unreadable_message
from ._layout import Layout, OutputKind, canonical, postprocess
from ._loading import ModelSource, get_model, model_token
from ._scaling import apply_scaling
from ._spec import OutputSpec, RunOptions, Scaling
from ._tile_windows import tile_windows
from ._tiling import SAME_GRID, OutScale, round_up, scale_mask, source_window

log = logging.getLogger("eocube.models")


@dataclass(frozen=True, eq=False)
class Postprocess:
    """A post-processing callable with the identity of its code (what a plan holds for a callable).

    Dask names the model's blocks by tokenizing the plan, which would name a function by its
    module and name only; this names it by its code (:func:`._identity.callable_identity`) or by
    the ``model_version`` given, so an edited function is a different computation.
    """

    fn: Callable[[torch.Tensor], torch.Tensor]
    token: str
    unreadable: tuple[str, ...] = ()

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.fn(y)

    def __dask_tokenize__(self) -> tuple[str, str]:
        if self.unreadable and dask.config.get("tokenize.ensure-deterministic", False):
            raise ModelIdentityError(unreadable_message("the postprocess callable", self.unreadable))
        return ("eocube-postprocess", self.token)


def identified(post: Any, version: str | None) -> Any:
    """``postprocess`` as a plan holds it: names unchanged, a callable wrapped with its code's identity."""
    if post is None or isinstance(post, (str, Postprocess)) or not callable(post):
        return post
    code = callable_identity(post)
    name = f"{getattr(post, '__module__', '')}.{getattr(post, '__qualname__', type(post).__qualname__)}"
    return Postprocess(fn=post, token=model_token("postprocess", code, version, name),
                       unreadable=code.unreadable if version is None else ())


@dataclass(frozen=True, eq=False)
class SourcePlan:
    """One source as a chunk task sees it (small, picklable)."""

    layout: Layout
    ratio: int
    """Base pixels per pixel of this source."""
    halo: int
    """Overlap depth in this source's pixels (the base halo / ratio)."""
    nodata: float | int | None
    """Input nodata value other than NaN (NaN is always nodata for floats)."""
    fill_value: float
    time_features: np.ndarray | None
    """Per-date features along this source's (block) time axis."""
    chunks: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    """This source's chunks along time, y and x (before overlap)."""
    scaling: tuple[Scaling, ...] = ()


@dataclass(frozen=True, eq=False)
class BlockPlan:
    """Everything a chunk task needs besides its pixels and the model (small, picklable)."""

    sources: tuple[SourcePlan, ...]
    reference: int
    """Index of the source whose dates, layout and nodata define the output."""
    base: int
    """Index of the source on the base (finest) grid: tiles are cut on it."""
    n_out: int
    """Model output channels per date (K)."""
    n_final: int
    """Output channels after ``postprocess``."""
    halo: int
    """Base pixels of context on each side of a tile (a multiple of the alignment)."""
    run: RunOptions
    """How to run the model (batch size, device, precision, threads, prefetch), ``tile_size`` in base
    pixels (a multiple of the alignment); ``chunks``, ``resources`` and ``name`` are not a task's business."""
    output: OutputSpec
    """The output spec resolved: the probed ``kind`` (``"per_date"`` or ``"map"``), band names, ``dtype``
    and ``nodata`` given, ``postprocess`` a name or a :class:`Postprocess`, ``scale`` per reference pixel."""
    dates: np.ndarray
    """The reference's dates (for error messages)."""
    scale: OutScale = SAME_GRID
    """Output pixels per base pixel."""
    ref_scale: OutScale = SAME_GRID
    """Output pixels per reference pixel (for the nodata mask)."""
    multiple: int = 1
    """Tiles are padded (reflect) to a multiple of this many base pixels before the model."""
    paired: np.ndarray | None = None
    """Layout ``"band"`` with several sources: whether each reference date has a partner in every source."""
    prefetch: bool = True
    run_name: str = ""
    """Name of the output array: the key under which NaN the model returned are counted (:func:`nan_counts`)."""

    @property
    def chunks(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Base chunks along time, y and x."""
        return self.sources[self.base].chunks


def prepare(xb: np.ndarray, nodata: float | None, fill: float,
            scaling: Sequence[Scaling] = ()) -> tuple[np.ndarray, np.ndarray | None]:
    """Float32 values (scaled) with nodata filled, and the nodata mask (None where nothing is nodata)."""
    x = np.asarray(xb).astype(np.float32, copy=False)
    invalid = np.isnan(x) if np.issubdtype(np.asarray(xb).dtype, np.floating) else None
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        eq = np.asarray(xb) == nodata
        invalid = eq if invalid is None else (invalid | eq)
    x = apply_scaling(x, scaling)
    if invalid is None or not invalid.any():
        return x, None
    return np.where(invalid, np.float32(fill), x), invalid


def pad_to(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pad (reflect) the last two axes at the bottom/right to ``size``."""
    if a.ndim < 4:
        return a
    h, w = a.shape[-2:]
    ph, pw = size[0] - h, size[1] - w
    if not (ph > 0 or pw > 0):
        return a
    mode = "reflect" if min(h, w) > 1 and ph < h and pw < w else "edge"
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, max(ph, 0)), (0, max(pw, 0))], mode=mode)


def forward_canonical(
    model: torch.nn.Module,
    args: list[torch.Tensor],
    layout: Layout,
    out_kind: OutputKind,
    n_out: int,
    post: str | Callable[[torch.Tensor], torch.Tensor] | None,
) -> torch.Tensor:
    """Run the model and bring its output to ``(N, t_out, K', H', W')`` after ``post`` (``postprocess``).

    ``layout`` is the reference source's; ``H', W'`` are the model's (the output scale is checked
    by the caller).
    """
    return postprocess(canonical_output(model, args, layout, out_kind, n_out), post)


def canonical_output(
    model: torch.nn.Module, args: list[torch.Tensor], layout: Layout, out_kind: OutputKind, n_out: int,
) -> torch.Tensor:
    """Run the model and bring its output to ``(N, t_out, K, H', W')`` (before ``postprocess``)."""
    y = model(*args)
    if not isinstance(y, torch.Tensor):
        raise OutputShapeError(
            f"the model returned a {type(y).__name__}, not a tensor: wrap it so that forward returns one tensor"
        )
    x = args[0]
    n = x.shape[0]
    if y.ndim < 3 or y.shape[0] != n:
        raise OutputShapeError(
            f"the model returned shape {tuple(y.shape)} for an input of shape {tuple(x.shape)}: the engine needs "
            f"the same batch size ({n}) back"
        )
    h, w = y.shape[-2], y.shape[-1]
    expected = n * (layout.n_time if out_kind == "per_date" and layout.temporal else 1) * n_out * h * w
    if y.numel() != expected:
        raise OutputShapeError(
            f"the model returned shape {tuple(y.shape)} but {n_out} channel(s) "
            f"{'per date' if out_kind == 'per_date' else 'in one map'} were probed: a model must return the "
            "same channel count for every input"
        )
    return canonical(y, layout, out_kind, n_out)


def _location(
    plan: BlockPlan, block_id: tuple[int, ...], t0: int, t1: int, rows: tuple[int, int], cols: tuple[int, int]
) -> str:
    d0, d1 = (str(np.datetime_as_string(plan.dates[min(i, len(plan.dates) - 1)], unit="D")) for i in (t0, t1 - 1))
    grid = " of the cube" if len(plan.sources) == 1 else " of the base grid"
    return (
        f"chunk {tuple(block_id)} (dates {d0}..{d1}, rows {rows[0]}..{rows[1] - 1}, "
        f"cols {cols[0]}..{cols[1] - 1}{grid})"
    )


@dataclass(frozen=True)
class _Geometry:
    """Where a block's own pixels lie inside it, in base pixels."""

    top: int
    left: int
    rows: int
    cols: int


def run_block(
    *blocks: np.ndarray, source: ModelSource, plan: BlockPlan, block_id: tuple[int, ...] | None = None
) -> np.ndarray:
    """Apply the model to one overlapped block of each source and return the output block (module docstring)."""
    assert block_id is not None
    it, _, iy, ix = block_id
    _, y_chunks, x_chunks = plan.chunks
    h = plan.halo
    geo = _Geometry(h if iy > 0 else 0, h if ix > 0 else 0, y_chunks[iy], x_chunks[ix])
    for xb, sp in zip(blocks, plan.sources, strict=True):
        hs, ys, xs = sp.halo, sp.chunks[1], sp.chunks[2]
        assert xb.shape[-2] == ys[iy] + (hs if iy > 0 else 0) + (hs if iy < len(ys) - 1 else 0), "overlap mismatch"
        assert xb.shape[-1] == xs[ix] + (hs if ix > 0 else 0) + (hs if ix < len(xs) - 1 else 0), "overlap mismatch"
    ref = plan.sources[plan.reference]
    t0 = sum(ref.chunks[0][:it])
    tb = blocks[plan.reference].shape[0]
    row0, col0 = sum(y_chunks[:iy]), sum(x_chunks[:ix])
    where = _location(plan, block_id, t0, t0 + tb, (row0, row0 + geo.rows), (col0, col0 + geo.cols))

    device = resolve_device(plan.run.device)
    threads = matched_torch_threads(plan.run.torch_threads) if device.type == "cpu" else contextlib.nullcontext()
    with threads:
        return _run(list(blocks), get_model(source, device), device, plan, (iy, ix), where, t0, geo)


def _run(
    blocks: list[np.ndarray],
    model: torch.nn.Module,
    device: torch.device,
    plan: BlockPlan,
    block_yx: tuple[int, int],
    where: str,
    t0: int,
    geo: _Geometry,
) -> np.ndarray:
    ref = plan.sources[plan.reference]
    layout = ref.layout
    tb = blocks[plan.reference].shape[0]
    scale = plan.scale
    out_h, out_w = scale.length(geo.rows), scale.length(geo.cols)
    t_out = tb if not layout.temporal else (layout.n_time if plan.output.kind == "per_date" else 1)
    shape = (t_out, plan.n_final, out_h, out_w)

    # dates run through the model (layout "band" with several sources: those with a partner in each)
    dates = np.arange(tb)
    if plan.paired is not None and not layout.temporal:
        dates = np.flatnonzero(plan.paired[t0:t0 + tb])

    xs: list[np.ndarray] = []
    invalids: list[np.ndarray | None] = []
    tfs: list[np.ndarray | None] = []
    for xb, sp in zip(blocks, plan.sources):
        if not layout.temporal and len(dates) < tb:
            xb = xb[dates]
        x, invalid = prepare(xb, sp.nodata, sp.fill_value, sp.scaling)
        if sp.layout.flag:
            t, _, hb, wb = x.shape
            flag = np.ones((t, 1, hb, wb), np.float32) if invalid is None else (
                ~invalid.any(axis=1, keepdims=True)).astype(np.float32)
            x = np.concatenate([x, flag], axis=1)
        xs.append(x)
        invalids.append(invalid)
        tf = sp.time_features
        if tf is not None and not sp.layout.temporal:
            tf = tf[t0:t0 + tb][dates]
        tfs.append(tf)

    # output pixels where the model returned NaN (any channel, before postprocess); None: nowhere
    nan: np.ndarray | None = None
    if len(dates):
        out, nan = _forward_tiles(xs, invalids, tfs, model, device, plan, where, geo, shape, dates,
                                  blocks, whole=layout.temporal or len(dates) == tb)
    else:
        out = np.empty(shape, dtype=plan.output.dtype)
    if not layout.temporal and len(dates) < tb:
        out[np.setdiff1d(np.arange(tb), dates)] = plan.output.nodata
    nan_rows = None if nan is None else (nan if layout.temporal or len(dates) == tb else nan[dates])

    invalid = invalids[plan.reference]
    if plan.output.mask and invalid is not None:
        reduce: Any = np.any if plan.output.mask == "any" else np.all
        r = ref.ratio
        rt, rl = geo.top // r, geo.left // r
        iy, ix = block_yx
        core = invalid[:, :, rt:rt + ref.chunks[1][iy], rl:rl + ref.chunks[2][ix]]
        # "any": the bands of the output's own date (every date for a map); "all": every input value
        # that reaches the output (all dates too for the temporal layouts: a never-observed pixel)
        whole_series = plan.output.kind == "map" or (layout.temporal and plan.output.mask == "all")
        mask = reduce(core, axis=(0, 1))[None] if whole_series else reduce(core, axis=1)
        mask = scale_mask(mask, plan.ref_scale, (out_h, out_w), plan.output.mask)
        target = out if layout.temporal or len(dates) == tb else out[dates]
        target[np.broadcast_to(mask[:, None], target.shape)] = plan.output.nodata
        if target is not out:
            out[dates] = target
        if nan_rows is not None:  # nodata input there: not the model's doing
            nan_rows = nan_rows & ~np.broadcast_to(mask, nan_rows.shape)
    if len(dates):
        total = (out_h * out_w * (t_out if layout.temporal else len(dates)))
        _count_nan(plan, where, 0 if nan_rows is None else int(nan_rows.sum()), total)
    return out


_NAN_COUNTS: OrderedDict[str, list[int]] = OrderedDict()
"""Per run (output array name): NaN pixels the model returned from finite inputs, pixels computed, reported."""
_NAN_LOCK = threading.Lock()


def _count_nan(plan: BlockPlan, where: str, nan: int, total: int) -> None:
    """Count one block's NaN from finite inputs; log a WARNING for the first such block of a run in this process."""
    with _NAN_LOCK:
        entry = _NAN_COUNTS.setdefault(plan.run_name, [0, 0, 0])
        _NAN_COUNTS.move_to_end(plan.run_name)
        while len(_NAN_COUNTS) > 64:
            _NAN_COUNTS.popitem(last=False)
        entry[0] += nan
        entry[1] += total
        first = nan > 0 and not entry[2]
        if first:
            entry[2] = 1
    if first:
        post = plan.output.postprocess
        written = "NaN" if post is None else f"what postprocess {post if isinstance(post, str) else 'callable'} made of NaN"
        log.warning(
            "the model returned NaN from finite inputs on %.1f%% of the output pixels of %s (%d of %d); they are "
            "written as returned (%s). Further chunks of this run are counted, not reported here (eocube apply "
            "prints the share of the whole run): check the model and its input scaling (bands, value scaling of "
            "its card)", 100 * nan / max(total, 1), where, nan, total, written,
        )


def nan_counts(run_name: str) -> tuple[int, int, int]:
    """NaN pixels the model returned from finite inputs in this process, for one run.

    Parameters
    ----------
    run_name
        The output array's dask name (``result.data.name`` of :func:`eocube.apply_model`).

    Returns
    -------
    tuple
        ``(process id, NaN pixels, pixels computed)``; on a distributed cluster call it on the
        workers (``client.run(nan_counts, name)``) and add the counts of distinct processes.
    """
    with _NAN_LOCK:
        nan, total, _ = _NAN_COUNTS.get(run_name, (0, 0, 0))
    return (socket.gethostname(), os.getpid()), nan, total


def run_nan_counts(run_name: str) -> tuple[int, int]:
    """NaN pixels from finite inputs and pixels computed for one run, in this process and on the workers of
    the current distributed client (if any), each process counted once."""
    per_process = {}
    key, nan, total = nan_counts(run_name)  # (host, pid): pids repeat across the hosts of a cluster
    per_process[key] = (nan, total)
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    if client is not None:
        for wkey, wnan, wtotal in client.run(nan_counts, run_name).values():
            per_process[tuple(wkey)] = (wnan, wtotal)
    return sum(n for n, _ in per_process.values()), sum(t for _, t in per_process.values())


def _forward_tiles(
    xs: list[np.ndarray],
    invalids: list[np.ndarray | None],
    tfs: list[np.ndarray | None],
    model: torch.nn.Module,
    device: torch.device,
    plan: BlockPlan,
    where: str,
    geo: _Geometry,
    shape: tuple[int, int, int, int],
    dates: np.ndarray,
    blocks: Sequence[np.ndarray],
    whole: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cut the tiles, batch them, run the model and write each tile's core into the chunk's output.

    Returns the output block of ``shape`` (rows of dates not in ``dates`` left unset unless
    ``whole``) and the map of output pixels where the model returned NaN (None: nowhere).
    """
    ref = plan.sources[plan.reference]
    layout = ref.layout
    base = xs[plan.base]
    hb, wb = base.shape[-2:]
    halo, scale = plan.halo, plan.scale
    tile = plan.run.tile_size or max(geo.rows, geo.cols)
    align = math.lcm(*(sp.ratio for sp in plan.sources), scale.scale.denominator)

    # windows of one shape per axis where the block allows (._tile_windows); tiles grouped by shape
    groups: dict[tuple[int, int], list[tuple[int, int, int, int, int, int, int, int]]] = {}
    for (ra, rb, wr0, wr1), (ca, cb, wc0, wc1) in itertools.product(
        tile_windows(geo.rows, geo.top, hb, halo, tile, align), tile_windows(geo.cols, geo.left, wb, halo, tile, align)
    ):
        groups.setdefault((wr1 - wr0, wc1 - wc0), []).append((ra, rb, wr0, wr1, ca, cb, wc0, wc1))

    per_window = len(dates) if not layout.temporal else 1
    jobs: list[tuple[list[tuple[int, ...]], list[np.ndarray], int, int]] = []
    for (nh, nw), tiles in groups.items():
        padded = (round_up(nh, plan.multiple), round_up(nw, plan.multiple))
        args: list[np.ndarray] = []
        for i, sp in enumerate(plan.sources):
            r = sp.ratio
            parts = []
            for (_, _, wr0, wr1, _, _, wc0, wc1) in tiles:
                y0, y1 = source_window(wr0, wr1, r, xs[i].shape[-2])
                x0, x1 = source_window(wc0, wc1, r, xs[i].shape[-1])
                inv = invalids[i]
                parts.append(sp.layout.model_args(
                    xs[i][:, :, y0:y1, x0:x1], None if inv is None else inv[:, :, y0:y1, x0:x1], tfs[i]))
            size = (padded[0] // r, padded[1] // r)
            args.extend(pad_to(a[0] if len(tiles) == 1 else np.concatenate(a, axis=0), size)
                        for a in zip(*parts, strict=True))
        n = args[0].shape[0]
        nb = -(-n // plan.run.batch_size)
        jobs.extend((tiles, args, i * n // nb, (i + 1) * n // nb) for i in range(nb))

    out: np.ndarray | None = None
    nan: np.ndarray | None = None
    feeder = Feeder(device, plan.run.prefetch)
    with torch.inference_mode():
        staged = feeder.stage([a[jobs[0][2]:jobs[0][3]] for a in jobs[0][1]]) if jobs else None
        for j, (tiles, args, s0, s1) in enumerate(jobs):
            try:
                assert staged is not None
                batch = feeder.ready(staged)
                with device_lock(device), autocast_context(device, plan.run.autocast):
                    raw = canonical_output(model, batch, layout, plan.output.kind, plan.n_out)
                    nan_dev = _nan_map(raw)
                    y_dev = postprocess(raw, plan.output.postprocess)
                if j + 1 < len(jobs):  # stage the next batch while the device computes this one
                    nxt = jobs[j + 1]
                    staged = feeder.stage([a[nxt[2]:nxt[3]] for a in nxt[1]])
                y = to_numpy(y_dev)
                nan_y = None if nan_dev is None else nan_dev.cpu().numpy()
            except OutputShapeError as exc:
                raise OutputShapeError(f"{exc} [{where}]") from None
            except Exception as exc:
                raise ModelRuntimeError(
                    f"the model raised {type(exc).__name__} on {where}, batch of {s1 - s0} sample(s) of shape "
                    f"{tuple(args[0][s0:s1].shape)} on {device}: {exc}"
                ) from exc
            if nan_y is not None and nan is None:
                nan = np.zeros((shape[0], shape[2], shape[3]), dtype=bool)
            for s in range(s0, s1):
                ra, rb, wr0, _, ca, cb, wc0, _ = tiles[s // per_window]
                r_off, c_off = scale.length(geo.top + ra - wr0), scale.length(geo.left + ca - wc0)
                o_ra, o_rb = scale.length(ra), scale.length(rb)
                o_ca, o_cb = scale.length(ca), scale.length(cb)
                if y.shape[-2] < r_off + o_rb - o_ra or y.shape[-1] < c_off + o_cb - o_ca:
                    raise OutputShapeError(
                        f"the model returned {tuple(y.shape[-2:])} px for a tile of {tuple(args[0].shape[-2:])} px "
                        f"but {r_off + o_rb - o_ra} x {c_off + o_cb - o_ca} were expected from the probed scale "
                        f"{scale.scale} [{where}]"
                    )
                rows, cols = slice(r_off, r_off + o_rb - o_ra), slice(c_off, c_off + o_cb - o_ca)
                if out is None and len(jobs) == 1 and len(tiles) == 1 and whole and device.type == "cpu" and \
                        (o_rb - o_ra, o_cb - o_ca) == shape[2:] and y.dtype == np.dtype(plan.output.dtype) and \
                        _owned(y, y_dev, [*blocks, *xs], batch, model):
                    # one tile and one batch make the whole chunk: its output is a view of the model's
                    out = y[0, :, :, rows, cols] if layout.temporal else y[:, 0, :, rows, cols]
                    if nan_y is not None:
                        nan = nan_y[0, :, rows, cols] if layout.temporal else nan_y[:, 0, rows, cols]
                    break
                if out is None:
                    out = np.empty(shape, dtype=plan.output.dtype)
                if layout.temporal:
                    out[:, :, o_ra:o_rb, o_ca:o_cb] = y[s - s0, :, :, rows, cols]
                    if nan_y is not None:
                        nan[:, o_ra:o_rb, o_ca:o_cb] = nan_y[s - s0, :, rows, cols]
                else:
                    out[dates[s % per_window], :, o_ra:o_rb, o_ca:o_cb] = y[s - s0, 0, :, rows, cols]
                    if nan_y is not None:
                        nan[dates[s % per_window], o_ra:o_rb, o_ca:o_cb] = nan_y[s - s0, 0, rows, cols]
    assert out is not None
    return out, nan


def _nan_map(raw: torch.Tensor) -> torch.Tensor | None:
    """Where a canonical output ``(N, t, K, H, W)`` is NaN in any channel; None when it is NaN nowhere.

    One summing pass decides (a sum is NaN whenever a term is; a NaN sum from infinities of both
    signs alone only costs the full map), so the usual all-finite output costs no mask.
    """
    if not raw.is_floating_point() or not bool(torch.isnan(raw.sum())):
        return None
    nan = torch.isnan(raw).any(dim=2)
    return nan if bool(nan.any()) else None


def _owned(y: np.ndarray, y_dev: torch.Tensor, arrays: Sequence[np.ndarray], batch: Sequence[torch.Tensor],
           model: torch.nn.Module) -> bool:
    """Whether the model's output ``y`` (on the CPU) is memory of its own: not an input's, a parameter's or a buffer's.

    Only then may the chunk's output be a view of it: the nodata mask is written into the chunk's
    output, and a dask block must not alias another.
    """
    if not y.flags.writeable or any(np.may_share_memory(y, a) for a in arrays):
        return False
    ptr = y_dev.untyped_storage().data_ptr()
    others = itertools.chain(batch, model.parameters(), model.buffers())
    return all(t.untyped_storage().data_ptr() != ptr for t in others)
