"""Chunk planning of a whole pipeline: load (time=1) -> gap fill (time=-1) -> model -> sharded Zarr.

:func:`plan_chunks` chooses nested spatial block sizes (the model block, the
gap-fill and load block a multiple of it, the shard a multiple of that), so no
stage splits another's blocks (a rechunk only gathers or groups whole blocks):

* **load**: all dates of one band of a gap-fill block per task (one task reads the block's
  window of each date's file: the gap fill needs no rechunk, and a tile-year has thousands of
  load tasks, not hundreds of thousands; a load task holds less than the fill task after it);
* **gap fill**: the whole time series of one band of the block (``time=-1, band=1``);
* **model**: the whole time series of the bands the model takes, with its halo;
* **write**: one shard per block and output band (``time=-1, band=1``), written whole by one task.

The model block is the largest multiple of 64 pixels whose gap-fill and model
tasks fit a worker thread's memory (with dask's 60 % target before spilling);
fill blocks and shards grow by multiples while their tasks fit and shards stay
within the shard size. When not even a ``min_side`` block of
full time series fits, :class:`ChunkPlanError` says what does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import EOCubeError
from .io.shared import SHARD_BYTES, inner_chunks, parse_bytes

TARGET = 0.6
"""Share of a worker thread's memory a task may use (dask's ``distributed.worker.memory.target``)."""

FILL_FACTOR = 6
"""Working memory of a gap-fill task, in copies of its float32 input block (values, mask, output, temporaries)."""

MODEL_FACTOR = 8
"""Working memory of a model task, in copies of its float32 input tile (input, activations, output)."""


class ChunkPlanError(EOCubeError, ValueError):
    """No block of the cube's full time series fits a worker's memory, or an argument of
    :func:`plan_chunks` is out of range (the message names it and the accepted values)."""


_AXES = ("time (dates)", "band", "y", "x")


def _refuse(name: str, value: Any, accepted: str) -> ChunkPlanError:
    return ChunkPlanError(f"plan_chunks: {name}={value!r} is not accepted: {accepted}")


def _whole(name: str, value: Any, minimum: int, accepted: str, *, optional: bool = False) -> int | None:
    """``value`` as an int >= ``minimum`` (None where ``optional``), else a ChunkPlanError."""
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise _refuse(name, value, accepted)
    if isinstance(value, (float, np.floating)) and (not math.isfinite(value) or value != int(value)):
        raise _refuse(name, value, accepted)
    if int(value) < minimum:
        raise _refuse(name, value, accepted)
    return int(value)


def _factor(name: str, value: Any) -> float:
    """A working-memory factor: a finite number > 0."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:
        raise _refuse(name, value, "give a finite number > 0 (working memory of a task in copies of its input, "
                                   f"default {FILL_FACTOR if name == 'fill_factor' else MODEL_FACTOR})")
    return float(value)


def _bytes(name: str, value: Any, *, optional: bool = False) -> int | None:
    """Bytes > 0 from an int or a size string (``"16GB"``); None where ``optional``."""
    accepted = ("give bytes > 0: a whole number or a size such as '16GB' or '4GiB'"
                + (", or None for the default" if optional else ""))
    if value is None and optional:
        return None
    if isinstance(value, str):
        try:
            parsed = parse_bytes(value)
        except (ValueError, TypeError):
            raise _refuse(name, value, accepted) from None
    else:
        parsed = _whole(name, value, 1, accepted)
    if parsed is None or parsed <= 0:
        raise _refuse(name, value, accepted)
    return int(parsed)


def _check_shape(shape: Any) -> tuple[int, int, int, int]:
    accepted = "shape is (time, band, y, x) of the loaded cube: 4 whole numbers, each >= 1"
    try:
        values = tuple(shape)
    except TypeError:
        raise _refuse("shape", shape, accepted) from None
    if isinstance(shape, str) or len(values) != 4:
        raise _refuse("shape", shape, f"it has {len(values)} axes; {accepted}" if not isinstance(shape, str)
                      else accepted)
    out = []
    for axis, value in zip(_AXES, values):
        try:
            out.append(_whole("shape", value, 1, accepted))
        except ChunkPlanError:
            raise _refuse("shape", shape, f"its {axis} size is {value!r}; {accepted}") from None
    return out[0], out[1], out[2], out[3]


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


@dataclass(frozen=True)
class ChunkPlan:
    """The chunks of each pipeline stage, the store layout, and why."""

    shape: tuple[int, int, int, int]
    side: int
    """Spatial block side (pixels) of the model; the other stages use multiples of it."""
    load: dict[str, int]
    fill: dict[str, int]
    model: dict[str, int]
    write: dict[str, int]
    """Write unit = one shard."""
    zarr_chunks: dict[str, int]
    """Inner chunks of each shard."""
    task_memory: dict[str, int]
    """Estimated peak memory of one task of each stage (bytes)."""
    thread_memory: int
    """Memory of one worker thread (bytes)."""
    tasks: dict[str, int]
    """Number of tasks of each stage."""
    files: int
    """Shards written (one file or object each) plus metadata."""
    reasons: list[str] = field(default_factory=list)

    def to_zarr_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`eocube.to_zarr` for this layout."""
        return {"zarr_format": 3, "shards": dict(self.write), "chunks": dict(self.zarr_chunks)}

    def explain(self) -> str:
        """What was chosen and why, one stage a line."""
        def fmt(d: dict[str, int]) -> str:
            return ", ".join(f"{k}={v}" for k, v in d.items())

        lines = [
            (f"cube {dict(zip(('time', 'band', 'y', 'x'), self.shape))}: model blocks of {self.side} x {self.side} px, "
            f"worker thread memory {_gib(self.thread_memory)} (tasks may use {TARGET:.0%})"),
            f"  load   {fmt(self.load):<40} {self.tasks['load']:>9} tasks, {_gib(self.task_memory['load'])} each",
            f"  fill   {fmt(self.fill):<40} {self.tasks['fill']:>9} tasks, {_gib(self.task_memory['fill'])} each",
            f"  model  {fmt(self.model):<40} {self.tasks['model']:>9} tasks, {_gib(self.task_memory['model'])} each",
            (f"  write  {fmt(self.write):<40} {self.tasks['write']:>9} tasks (one shard each), "
            f"{_gib(self.task_memory['write'])} each"),
            f"  Zarr format 3, shards {fmt(self.write)}, inner chunks {fmt(self.zarr_chunks)}: ~{self.files} files",
        ]
        return "\n".join(lines + [f"  why: {r}" for r in self.reasons])

    __str__ = explain


def plan_chunks(
    shape: tuple[int, int, int, int],
    dtype: Any = "float32",
    *,
    worker_memory: int | str = "4GB",
    threads_per_worker: int = 1,
    shard_bytes: int | str | None = None,
    model_bands: int | None = None,
    out_bands: int | None = None,
    halo: int = 0,
    fill_factor: float = FILL_FACTOR,
    model_factor: float = MODEL_FACTOR,
    min_side: int = 64,
    load_itemsize: int | None = None,
) -> ChunkPlan:
    """Choose the chunks of load -> gap fill -> model -> write for a cube.

    Parameters
    ----------
    shape
        ``(time, band, y, x)`` of the loaded cube.
    dtype
        dtype of the output written (the work is float32): a numeric type (bool, integers,
        floats, complex); object, string and date types are refused.
    worker_memory
        Memory limit of one worker (bytes or ``"16GB"``).
    threads_per_worker
        Threads of a worker (tasks running at once share its memory).
    shard_bytes
        Largest shard (uncompressed); default 512 MiB.
    model_bands
        Bands the model takes at once (default: all).
    out_bands
        Bands written (default: ``model_bands``).
    halo
        Pixels of context the model needs on each side of a block.
    fill_factor, model_factor
        Working memory of a gap-fill / model task in copies of its input.
    min_side
        Smallest block side accepted (smaller blocks make too many tasks).
    load_itemsize
        Bytes per pixel of the files read (2 for Sentinel-2 digital numbers; default 4); a load
        task holds them and their float32 copy.

    Returns
    -------
    ChunkPlan
        Print it (or call :meth:`ChunkPlan.explain`) to see what was chosen and why.

    Raises
    ------
    ChunkPlanError
        A ``min_side`` block of full time series does not fit a worker thread's
        memory; the message gives the largest block that fits. Or an argument is
        out of range (a shape that is not 4 sizes >= 1, memory that is not a size,
        ``threads_per_worker < 1``, a negative ``halo``, a factor that is not a
        finite number > 0, ...): the message names it and the accepted values.
    """
    t, b, ny, nx = _check_shape(shape)
    hint = "give a numpy dtype of the output, such as 'uint16' or 'float32'"
    try:
        kind = np.dtype(dtype)
    except TypeError:
        raise _refuse("dtype", dtype, hint) from None
    if kind.kind not in "biufc":  # object, strings, dates: not pixel values (object was planned at 8 bytes per pixel)
        raise _refuse("dtype", dtype, f"{kind} is not a numeric type of pixel values; {hint}")
    itemsize = kind.itemsize
    threads = _whole("threads_per_worker", threads_per_worker, 1, "give a whole number >= 1 (threads of one worker)")
    per_thread = _bytes("worker_memory", worker_memory) // threads
    budget = per_thread * TARGET
    shard_cap = _bytes("shard_bytes", shard_bytes, optional=True) or SHARD_BYTES
    mb = _whole("model_bands", model_bands, 1, f"give a whole number from 1 to the cube's {b} band(s), or None "
                "(all)", optional=True) or b
    if mb > b:
        raise _refuse("model_bands", model_bands, f"the cube has {b} band(s); give a whole number from 1 to {b}, "
                      "or None (all)")
    ob = _whole("out_bands", out_bands, 1, "give a whole number >= 1, or None (model_bands)", optional=True) or mb
    halo = _whole("halo", halo, 0, "give a whole number of pixels >= 0") or 0
    fill_factor, model_factor = _factor("fill_factor", fill_factor), _factor("model_factor", model_factor)
    min_side = _whole("min_side", min_side, 1, "give a whole number of pixels >= 1") or 1
    load_itemsize = _whole("load_itemsize", load_itemsize, 1, "give a whole number of bytes >= 1 (2 for uint16 "
                           "files), or None (4)", optional=True)

    def fill_mem(s: int) -> float:
        return t * s * s * 4 * fill_factor

    def model_mem(s: int) -> float:
        return t * mb * (s + 2 * halo) ** 2 * 4 * model_factor

    def need(s: int) -> float:
        return max(fill_mem(s), model_mem(s))

    def blocks(s: int) -> int:
        return math.ceil(ny / s) * math.ceil(nx / s)

    limit = max(ny, nx)
    smallest = min(min_side, limit)
    if need(smallest) > budget:
        raise ChunkPlanError(_too_big(t, mb, halo, smallest, need(smallest), budget, per_thread, fill_factor,
                                      model_factor))
    reasons: list[str] = []

    def grow(start: int, step: int, fits: Any) -> int:
        """Largest multiple of ``step`` (from ``start``, at most the grid) for which ``fits`` holds."""
        best, s = start, start
        while s < limit:
            s = min(s + step, limit)
            if not fits(s):
                break
            best = s
        return best

    # the model block: the largest that fits (the model usually needs most memory per pixel)
    side = grow(smallest, 64, lambda s: need(s) <= budget)
    if side < limit:
        nxt = min(side + 64, limit)
        which = "gap fill" if fill_mem(nxt) >= model_mem(nxt) else "model"
        reasons.append(f"model blocks of {side} px: a {nxt} px block would need {_gib(need(nxt))} per {which} "
                       f"task, over {TARGET:.0%} of a thread's {_gib(per_thread)}")
    # gap fill (and load) blocks: multiples of the model block while a fill task fits
    fill_side = grow(side, side, lambda s: fill_mem(s) <= budget and s <= 4096)
    if fill_side > side:
        reasons.append(f"gap-fill and load blocks of {fill_side} px ({fill_side // side}x{fill_side // side} model "
                       "blocks): fewer, larger load tasks, as a fill task needs less memory per pixel than the model")
    # shards: multiples of the fill block (else of the model block) within the shard size and a task's memory
    def shard_fits(s: int) -> bool:
        return t * s * s * itemsize <= shard_cap and 2 * t * s * s * itemsize <= budget

    step = fill_side if shard_fits(fill_side) else side
    shard_side = grow(step, step, shard_fits) if shard_fits(step) else side
    reasons.append(f"shards of {shard_side} px ({_gib(t * shard_side ** 2 * itemsize)} uncompressed, at most "
                   f"{_gib(shard_cap)}), each written whole by one task: one file per shard and band")
    # loading: all dates of one band of a fill block per task (it holds less than the fill task that follows)
    load_item = 8 if load_itemsize is None else int(load_itemsize) + 4
    reasons.append(f"gap filling needs each pixel's whole time series in one task, so time is one chunk from the "
                   f"load on: a load task reads the block's window of all {t} dates of one band "
                   f"({t * b * blocks(fill_side):,} one-date tasks would be {t}x as many, plus a rechunk)")
    if halo:
        reasons.append(f"the model reads {halo} px of halo around each block from its neighbours")

    inner = inner_chunks((t, 1, min(shard_side, ny), min(shard_side, nx)), itemsize)
    return ChunkPlan(
        shape=(t, b, ny, nx), side=side,
        load=_clip({"time": t, "band": 1, "y": fill_side, "x": fill_side}, ny, nx),
        fill=_clip({"time": t, "band": 1, "y": fill_side, "x": fill_side}, ny, nx),
        model=_clip({"time": t, "band": mb, "y": side, "x": side}, ny, nx),
        write=_clip({"time": t, "band": 1, "y": shard_side, "x": shard_side}, ny, nx),
        zarr_chunks=dict(zip(("time", "band", "y", "x"), inner)),
        task_memory={"load": t * fill_side ** 2 * load_item, "fill": int(fill_mem(fill_side)),
                     "model": int(model_mem(side)),
                     "write": int(2 * t * shard_side ** 2 * itemsize)},
        thread_memory=per_thread,
        tasks={"load": b * blocks(fill_side), "fill": b * blocks(fill_side),
               "model": blocks(side) * max(1, b // mb), "write": ob * blocks(shard_side)},
        files=ob * blocks(shard_side) + 8 + 2 * ob, reasons=reasons,
    )


def _clip(chunks: dict[str, int], ny: int, nx: int) -> dict[str, int]:
    return {**chunks, "y": min(chunks["y"], ny), "x": min(chunks["x"], nx)}


def _too_big(t: int, mb: int, halo: int, side: int, needed: float, budget: float, per_thread: int,
             fill_factor: float, model_factor: float) -> str:
    """The error when a ``side`` block of full time series (``needed`` bytes per task) does not fit."""
    per_pixel = max(t * 4 * fill_factor, t * mb * 4 * model_factor)
    largest = math.isqrt(int(budget // per_pixel)) - 2 * halo if per_pixel <= budget else 0
    head = (f"a {side} x {side} px block of the cube's full time series ({t} dates, {mb} model band(s)) needs "
            f"{_gib(needed)} "
            f"per task, more than {TARGET:.0%} of a worker thread's {_gib(per_thread)}")
    if largest >= 1:
        return (f"{head}: the largest block that fits is time={t}, y={largest}, x={largest} "
                f"(pass min_side={largest} to accept it), or give workers more memory or fewer threads")
    dates = int(budget // max(4 * fill_factor, mb * 4 * model_factor * (1 + 2 * halo) ** 2))
    return (f"{head}: not even one pixel's time series fits; the largest block that fits is time={dates}, "
            f"y=1, x=1: split the time axis (e.g. per season) or give workers more memory")
