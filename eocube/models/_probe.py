"""Probing a model once on the client: channel count, output shape and kind, halo."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from ._engine import forward_canonical
from ._errors import ChannelMismatchError, HaloError, ModelRuntimeError, OutputShapeError
from ._halo import probe_halo
from ._layout import Layout, OutputKind, resolve_output


def _expected_channels(module: torch.nn.Module) -> tuple[str, int] | None:
    """Name and ``in_channels`` of the first convolution of the module, if it has one."""
    for name, sub in module.named_modules():
        channels = getattr(sub, "in_channels", None)
        if isinstance(channels, int):
            return name or type(sub).__name__, channels
    return None


def args_builder(lay: Layout, tfeat: np.ndarray | None) -> Callable[[np.ndarray], list[np.ndarray]]:
    """Window ``(t, C, h, w)`` of valid values -> model argument arrays (as the engine builds them)."""

    def build(window: np.ndarray) -> list[np.ndarray]:
        t = window.shape[0]
        if lay.flag:
            window = np.concatenate([window, np.ones((t, 1) + window.shape[2:], np.float32)], axis=1)
        return lay.model_args(window, None, None if tfeat is None else tfeat[:t])

    return build


def probe_output(
    module: torch.nn.Module,
    lay: Layout,
    build: Callable[[np.ndarray], list[np.ndarray]],
    probe_t: int,
    size_multiple: int,
    output: str,
    out_bands: Any,
    postprocess: Any,
) -> tuple[OutputKind, int, int]:
    """One small forward pass: channel check, output kind, channels before and after ``postprocess``."""
    size = max(16, size_multiple) + (-max(16, size_multiple) % size_multiple)
    window = np.random.default_rng(0).standard_normal((probe_t, len(lay.bands), size, size)).astype("float32")
    args = [torch.from_numpy(np.ascontiguousarray(a)) for a in build(window)]
    try:
        with torch.inference_mode():
            y = module(*args)
    except Exception as exc:
        expected = _expected_channels(module)
        if expected is not None and expected[1] != lay.in_channels:
            raise ChannelMismatchError(
                f"the model expects {expected[1]} input channels (first layer {expected[0]!r}) but got "
                f"{lay.in_channels} from {lay.describe()}: select the bands the model was trained on with "
                "bands=[...], or change layout / valid_input"
            ) from exc
        raise ModelRuntimeError(
            f"the model raised {type(exc).__name__} on a probe input ({lay.describe()}, model called with "
            f"{len(args)} argument(s) of shapes {[tuple(a.shape) for a in args]}): {exc}"
        ) from exc
    if not isinstance(y, torch.Tensor):
        raise OutputShapeError(f"the model returned a {type(y).__name__}, not a tensor: forward must return one tensor")
    n_names = None if out_bands is None or out_bands == "input" else 1 if isinstance(out_bands, str) else len(out_bands)
    kind, k = resolve_output(lay, y.shape, output, n_names)
    with torch.inference_mode():
        final = forward_canonical(module, args, lay, kind, k, postprocess)
    return kind, k, int(final.shape[2])


def resolve_halo(
    halo: Any,
    module: torch.nn.Module,
    build: Callable[[np.ndarray], list[np.ndarray]],
    forward: Callable[[Sequence[torch.Tensor]], torch.Tensor],
    probe_t: int,
    channels: int,
    size_multiple: int,
) -> int:
    """The halo in pixels: given, declared by the module (``halo`` attribute), or probed."""
    if halo in ("auto", "probe"):
        attr = getattr(module, "halo", None) if halo == "auto" else None
        if isinstance(attr, int) and not isinstance(attr, bool) and attr >= 0:
            return attr
        return probe_halo(build, forward, probe_t, channels, multiple=size_multiple)
    if isinstance(halo, (int, np.integer)) and not isinstance(halo, bool) and halo >= 0:
        return int(halo)
    raise HaloError(f"halo must be a non-negative int, 'auto' or 'probe', got {halo!r}")
