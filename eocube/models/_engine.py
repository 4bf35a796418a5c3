"""What one chunk task does: fill nodata, cut tiles with their halo, batch, run the model, stitch.

:func:`run_block` receives one block of the overlapped cube (its own pixels plus ``halo``
pixels of each neighbour; nothing beyond the image border) and returns the block of the
output cube for the block's own pixels. Inside the block the pixels are cut into tiles of
``tile_size`` (plus the halo, clipped at the image border only), tiles of equal shape are
stacked with the dates (layout ``"band"``) into batches of ``batch_size`` samples, and each
output tile is cropped back to its own pixels. Since every output pixel sees either its full
halo or the true image border, the result equals one forward pass over the whole image
whenever ``halo`` covers the receptive field.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ._device import autocast_context, device_lock, matched_torch_threads, resolve_device
from ._errors import ModelRuntimeError, OutputShapeError
from ._layout import Layout, OutputKind, canonical, postprocess
from ._loading import ModelSource, get_model


@dataclass(frozen=True, eq=False)
class BlockPlan:
    """Everything a chunk task needs besides its pixels and the model (small, picklable)."""

    layout: Layout
    out_kind: OutputKind
    n_out: int
    """Model output channels per date (K)."""
    n_final: int
    """Output channels after ``postprocess``."""
    halo: int
    tile_size: int | None
    batch_size: int
    device: str
    autocast: str | None
    torch_threads: int | None
    nodata: float | int | None
    """Input nodata value other than NaN (NaN is always nodata for floats)."""
    fill_value: float
    mask_output: str | None
    postprocess: str | Callable[[torch.Tensor], torch.Tensor] | None
    out_dtype: str
    out_nodata: float | int | None
    time_features: np.ndarray | None
    dates: np.ndarray
    """The cube's dates (for error messages)."""
    chunks: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    """Input chunks along time, y and x (before overlap)."""
    multiple: int = 1
    """Tiles are padded (reflect) to a multiple of this size before the model."""


def _windows(n: int, lead: int, trail_total: int, halo: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """Tiles along one axis: (core start, core stop) in output coords, (window start, stop) in block coords."""
    for start in range(0, n, tile):
        stop = min(start + tile, n)
        yield start, stop, max(0, lead + start - halo), min(trail_total, lead + stop + halo)


def prepare(xb: np.ndarray, nodata: float | int | None, fill: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Float32 values with nodata filled, and the nodata mask (None where nothing is nodata)."""
    x = np.asarray(xb).astype(np.float32, copy=False)
    invalid = np.isnan(x) if np.issubdtype(np.asarray(xb).dtype, np.floating) else None
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        eq = np.asarray(xb) == nodata
        invalid = eq if invalid is None else (invalid | eq)
    if invalid is None or not invalid.any():
        return x, None
    return np.where(invalid, np.float32(fill), x), invalid


def _pad(a: np.ndarray, multiple: int) -> np.ndarray:
    if multiple <= 1 or a.ndim < 4:
        return a
    h, w = a.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return a
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)], mode="reflect" if min(h, w) > 1 else "edge")


def _to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _to_numpy(y: torch.Tensor) -> np.ndarray:
    if y.dtype in (torch.bfloat16, torch.float16):
        y = y.float()
    if y.device.type == "cuda":
        host = torch.empty(y.shape, dtype=y.dtype, pin_memory=True)
        host.copy_(y, non_blocking=True)
        torch.cuda.current_stream(y.device).synchronize()
        return host.numpy()
    return y.cpu().numpy()


def forward_canonical(
    model: torch.nn.Module,
    args: list[torch.Tensor],
    layout: Layout,
    out_kind: OutputKind,
    n_out: int,
    post: str | Callable[[torch.Tensor], torch.Tensor] | None,
) -> torch.Tensor:
    """Run the model and bring its output to ``(N, t_out, K', H, W)`` after ``post`` (``postprocess``)."""
    y = model(*args)
    if not isinstance(y, torch.Tensor):
        raise OutputShapeError(
            f"the model returned a {type(y).__name__}, not a tensor: wrap it so that forward returns one tensor"
        )
    x = args[0]
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    if y.shape[0] != n or tuple(y.shape[-2:]) != (h, w):
        raise OutputShapeError(
            f"the model returned shape {tuple(y.shape)} for an input of shape {tuple(x.shape)}: the engine needs "
            f"the same batch size ({n}) and spatial size ({h} x {w}) back; models that downsample or crop "
            "must upsample/pad inside forward"
        )
    expected = n * (layout.n_time if out_kind == "per_date" and layout.temporal else 1) * n_out * h * w
    if y.numel() != expected:
        raise OutputShapeError(
            f"the model returned shape {tuple(y.shape)} but {n_out} channel(s) "
            f"{'per date' if out_kind == 'per_date' else 'in one map'} were probed: a model must return the "
            "same channel count for every input"
        )
    return postprocess(canonical(y, layout, out_kind, n_out), post)


def _location(
    plan: BlockPlan, block_id: tuple[int, ...], t0: int, t1: int, rows: tuple[int, int], cols: tuple[int, int]
) -> str:
    d0, d1 = (str(np.datetime_as_string(plan.dates[i], unit="D")) for i in (t0, t1 - 1))
    return (
        f"chunk {tuple(block_id)} (dates {d0}..{d1}, rows {rows[0]}..{rows[1] - 1}, "
        f"cols {cols[0]}..{cols[1] - 1} of the cube)"
    )


def run_block(
    xb: np.ndarray, *, source: ModelSource, plan: BlockPlan, block_id: tuple[int, ...] | None = None
) -> np.ndarray:
    """Apply the model to one overlapped block and return the output block (see the module docstring)."""
    assert block_id is not None
    it, _, iy, ix = block_id
    t_chunks, y_chunks, x_chunks = plan.chunks
    h = plan.halo
    top = h if iy > 0 else 0
    left = h if ix > 0 else 0
    hc, wc = y_chunks[iy], x_chunks[ix]
    hb, wb = xb.shape[-2:]
    assert hb == hc + top + (h if iy < len(y_chunks) - 1 else 0), "overlap depth does not match the plan"
    assert wb == wc + left + (h if ix < len(x_chunks) - 1 else 0), "overlap depth does not match the plan"
    t0 = sum(t_chunks[:it])
    tb = xb.shape[0]
    row0, col0 = sum(y_chunks[:iy]), sum(x_chunks[:ix])
    where = _location(plan, block_id, t0, t0 + tb, (row0, row0 + hc), (col0, col0 + wc))

    device = resolve_device(plan.device)
    threads = matched_torch_threads(plan.torch_threads) if device.type == "cpu" else contextlib.nullcontext()
    with threads:
        return _run(xb, get_model(source, device), device, plan, block_id, where, t0, (top, left, hc, wc))


def _run(
    xb: np.ndarray,
    model: torch.nn.Module,
    device: torch.device,
    plan: BlockPlan,
    block_id: tuple[int, ...],
    where: str,
    t0: int,
    geometry: tuple[int, int, int, int],
) -> np.ndarray:
    top, left, hc, wc = geometry
    halo = plan.halo
    tb = xb.shape[0]
    hb, wb = xb.shape[-2:]

    layout = plan.layout
    x, invalid = prepare(xb, plan.nodata, plan.fill_value)
    if layout.flag:
        if invalid is None:
            flag = np.ones((tb, 1, hb, wb), np.float32)
        else:
            flag = (~invalid.any(axis=1, keepdims=True)).astype(np.float32)
        x = np.concatenate([x, flag], axis=1)
    tf = None if plan.time_features is None else plan.time_features[t0:t0 + tb]

    t_out = tb if not layout.temporal else (layout.n_time if plan.out_kind == "per_date" else 1)
    out = np.empty((t_out, plan.n_final, hc, wc), dtype=plan.out_dtype)
    tile = plan.tile_size or max(hc, wc)

    # tiles grouped by window shape, so that equal shapes share batches
    groups: dict[tuple[int, int], list[tuple[int, int, int, int, int, int, int, int]]] = {}
    for (ra, rb, wr0, wr1), (ca, cb, wc0, wc1) in itertools.product(
        _windows(hc, top, hb, halo, tile), _windows(wc, left, wb, halo, tile)
    ):
        groups.setdefault((wr1 - wr0, wc1 - wc0), []).append((ra, rb, wr0, wr1, ca, cb, wc0, wc1))

    per_window = tb if not layout.temporal else 1
    with torch.inference_mode():
        for tiles in groups.values():
            parts = [
                layout.model_args(
                    x[:, :, wr0:wr1, wc0:wc1],
                    None if invalid is None else invalid[:, :, wr0:wr1, wc0:wc1],
                    tf,
                )
                for (_, _, wr0, wr1, _, _, wc0, wc1) in tiles
            ]
            args = [
                _pad(a[0] if len(tiles) == 1 else np.concatenate(a, axis=0), plan.multiple)
                for a in zip(*parts, strict=True)
            ]
            n = args[0].shape[0]
            for s0 in range(0, n, plan.batch_size):
                s1 = min(n, s0 + plan.batch_size)
                try:
                    batch = [_to_device(a[s0:s1], device) for a in args]
                    with device_lock(device), autocast_context(device, plan.autocast):
                        y = _to_numpy(
                            forward_canonical(model, batch, layout, plan.out_kind, plan.n_out, plan.postprocess)
                        )
                except OutputShapeError as exc:
                    raise OutputShapeError(f"{exc} [{where}]") from None
                except Exception as exc:
                    raise ModelRuntimeError(
                        f"the model raised {type(exc).__name__} on {where}, batch of {s1 - s0} sample(s) of shape "
                        f"{tuple(args[0][s0:s1].shape)} on {device}: {exc}"
                    ) from exc
                for s in range(s0, s1):
                    ra, rb, wr0, _, ca, cb, wc0, _ = tiles[s // per_window]
                    r_off, c_off = top + ra - wr0, left + ca - wc0
                    piece = y[s - s0, :, :, r_off:r_off + rb - ra, c_off:c_off + cb - ca]
                    if layout.temporal:
                        out[:, :, ra:rb, ca:cb] = piece
                    else:
                        out[s % per_window, :, ra:rb, ca:cb] = piece[0]

    if plan.mask_output and invalid is not None:
        reduce: Any = np.any if plan.mask_output == "any" else np.all
        core = invalid[:, :, top:top + hc, left:left + wc]
        # "any": the bands of the output's own date (every date for a map); "all": every input value
        # that reaches the output (all dates too for the temporal layouts: a never-observed pixel)
        whole_series = plan.out_kind == "map" or (layout.temporal and plan.mask_output == "all")
        mask = reduce(core, axis=(0, 1))[None] if whole_series else reduce(core, axis=1)
        out[np.broadcast_to(mask[:, None], out.shape)] = plan.out_nodata
    return out
