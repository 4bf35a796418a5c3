"""Probing a model once on the client: channel count, output shape and kind, output scale, halo.

Every probe is a forward pass on small random tensors built by the engine's own input path
(:func:`make_builder`), one window per source at its own resolution; nothing of the cubes is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from ._engine import forward_canonical
from ._errors import (
    ChannelMismatchError,
    HaloError,
    ModelRuntimeError,
    OutputShapeError,
)
from ._halo import ArgsBuilder, probe_halo
from ._layout import Layout, OutputKind, resolve_output
from ._sources import as_fraction, lcm
from ._spec import OutputSpec
from ._tiling import OutScale, round_up


def _expected_channels(module: torch.nn.Module) -> tuple[str, int] | None:
    """Name and input channels of the first layer of the module that declares them, if one does.

    A convolution's ``in_channels``; a per-pixel layer's ``in_features`` (``nn.Linear`` on the band
    axis) or ``input_size`` (``nn.LSTM``/``nn.GRU`` over the bands of each date); a norm's
    ``normalized_shape``/``num_features`` is not taken (it may follow any layer).
    """
    for name, sub in module.named_modules():
        for attr in ("in_channels", "in_features", "input_size"):
            channels = getattr(sub, attr, None)
            if isinstance(channels, int) and not isinstance(channels, bool):
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


def make_builder(layouts: Sequence[Layout], tfeats: Sequence[np.ndarray | None]) -> ArgsBuilder:
    """One window per source -> each source's argument arrays."""
    builders = [args_builder(lay, tf) for lay, tf in zip(layouts, tfeats, strict=True)]
    return lambda windows: [b(w) for b, w in zip(builders, windows, strict=True)]


def _flat(per_source: Sequence[Sequence[Any]]) -> list[Any]:
    return [a for arrays in per_source for a in arrays]


@dataclass(frozen=True)
class ProbeInputs:
    """The model's arguments as the engine feeds them, for probe windows of any size."""

    layouts: tuple[Layout, ...]
    """Each source's layout."""
    build: ArgsBuilder
    """One window per source -> each source's argument arrays (:func:`make_builder`)."""
    shapes: tuple[tuple[int, int], ...]
    """``(dates, channels)`` of each source's probe window."""
    ratios: tuple[int, ...]
    """Each source's pixel size in base pixels."""
    reference: int
    """Index of the reference source (the output scale is an integer ratio of its grid)."""
    multiple: int = 1
    """In base pixels: the probe windows are padded to it as the engine pads its tiles."""


def declared_scale(output: OutputSpec) -> Fraction | None:
    """The output scale the spec declares (per reference pixel), or None for ``"probe"``."""
    return None if output.scale == "probe" or output.scale is None else as_fraction(output.scale)


@dataclass(frozen=True)
class Probe:
    """What one probe found out about the model's output."""

    kind: OutputKind
    n_out: int
    """Channels per date before ``postprocess`` (K)."""
    n_final: int
    """Channels after ``postprocess``."""
    scale: OutScale
    """Output pixels per base pixel."""


def _windows(shapes: Sequence[tuple[int, int]], ratios: Sequence[int], size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((t, c, -(-size // r), -(-size // r))).astype("float32")
            for (t, c), r in zip(shapes, ratios)]


def _pad(windows: list[np.ndarray], ratios: Sequence[int], multiple: int) -> list[np.ndarray]:
    if multiple <= 1:
        return windows
    n = max(w.shape[-1] * r for w, r in zip(windows, ratios))
    target = round_up(n, multiple)
    out = []
    for w, r in zip(windows, ratios):
        p = target // r - w.shape[-1]
        out.append(np.pad(w, [(0, 0), (0, 0), (0, p), (0, p)], mode="reflect") if p else w)
    return out


def _call(module: torch.nn.Module, tensors: list[torch.Tensor], layouts: Sequence[Layout]) -> Any:
    try:
        with torch.inference_mode():
            return module(*tensors)
    except Exception as exc:
        expected = _expected_channels(module)
        if len(layouts) == 1 and expected is not None and expected[1] != layouts[0].in_channels:
            raise ChannelMismatchError(
                f"the model expects {expected[1]} input channels (first layer {expected[0]!r}) but got "
                f"{layouts[0].in_channels} from {layouts[0].describe()}: select the bands the model was trained on "
                "with bands=[...], or change layout / valid_input"
            ) from exc
        described = "; ".join(lay.describe() for lay in layouts)
        raise ModelRuntimeError(
            f"the model raised {type(exc).__name__} on a probe input ({described}; model called with "
            f"{len(tensors)} argument(s) of shapes {[tuple(a.shape) for a in tensors]}): {exc}"
        ) from exc


def probe_output(module: torch.nn.Module, inputs: ProbeInputs, spec: OutputSpec) -> Probe:
    """Probe forward passes: channel check, output kind, channels, output scale (exact, from two sizes).

    Parameters
    ----------
    module
        The model, on the CPU.
    inputs
        The model's arguments as the engine feeds them.
    spec
        The output the spec describes: its ``kind``, ``bands`` (their count), ``postprocess`` and
        ``scale`` (output pixels per *reference* pixel, or ``"probe"``: probed only).

    Raises
    ------
    OutputShapeError
        The output scale is not an integer ratio of the reference grid, not the same at two sizes or
        along both axes, or not the declared one.
    """
    layouts, build, shapes, ratios = inputs.layouts, inputs.build, inputs.shapes, inputs.ratios
    size_multiple, output, declared = inputs.multiple, spec.kind, declared_scale(spec)
    lay = layouts[inputs.reference]
    unit = lcm(*ratios, size_multiple)
    out_bands = spec.bands
    n_names = None if out_bands is None or out_bands == "input" else 1 if isinstance(out_bands, str) else len(out_bands)

    def forward(size: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        per_source = build(_pad(_windows(shapes, ratios, size), ratios, size_multiple))
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in _flat(per_source)]
        y = _call(module, tensors, layouts)
        if not isinstance(y, torch.Tensor):
            raise OutputShapeError(
                f"the model returned a {type(y).__name__}, not a tensor: forward must return one tensor"
            )
        n = tensors[0].shape[0]
        if y.ndim < 3 or y.shape[0] != n:
            resolve_output(lay, y.shape, output, n_names)  # a clear error for an output of another rank
            raise OutputShapeError(
                f"the model returned shape {tuple(y.shape)} for an input of shape {tuple(tensors[0].shape)}: the "
                f"engine needs the same batch size ({n}) back"
            )
        return y, tensors

    first = lcm(unit, 16)
    y1, t1 = forward(first)
    # sizes for the exact ratio: multiples of 32 (strides up to 32 divide them), or the first one doubled
    base = first if tuple(y1.shape[-2:]) == (first, first) else lcm(unit, 32)
    sizes = (base, 2 * base)
    ys = [y1 if base == first else forward(base)[0], forward(2 * base)[0]]
    ratio_h, ratio_w = (Fraction(int(ys[0].shape[a]), sizes[0]) for a in (-2, -1))
    same = ratio_h == ratio_w and all(Fraction(int(ys[1].shape[a]), sizes[1]) == ratio_h for a in (-2, -1))
    s_ref = ratio_h * ratios[inputs.reference]
    if not same or not (s_ref.numerator == 1 or s_ref.denominator == 1) or s_ref == 0:
        x = t1[0]
        raise OutputShapeError(
            f"the model's output scale is not an integer ratio: it returned shape {tuple(y1.shape)} for an input of "
            f"shape {tuple(x.shape)}, {tuple(ys[0].shape[-2:])} for {sizes[0]} x {sizes[0]} px and "
            f"{tuple(ys[1].shape[-2:])} for {sizes[1]} x {sizes[1]} px; the engine needs the same batch size "
            f"({x.shape[0]}) and spatial size back, or an output k or 1/k times the reference's size (x2, x4, /2, /4, ...) "
            "at every size that is a multiple of the stride: pad or crop inside forward"
        )
    if declared is not None and declared != s_ref:
        raise OutputShapeError(
            f"the model's output scale is {_scale_text(s_ref)} of the reference grid (probed: {tuple(ys[0].shape[-2:])} "
            f"for {sizes[0]} x {sizes[0]} px) but the spec declares {_scale_text(declared)}: fix the card's scale"
        )
    scale = ratio_h
    partial: Any = "ceil"
    if scale.denominator > 1 and size_multiple <= 1:
        odd = round_up(sizes[0], unit) + 1
        per_source = build(_windows(shapes, ratios, odd))
        y3 = _call(module, [torch.from_numpy(np.ascontiguousarray(a)) for a in _flat(per_source)], layouts)
        got, exact = int(y3.shape[-1]), odd * scale
        if got == int(exact):  # floor
            partial = "floor"
        elif got != int(exact) + 1:
            raise OutputShapeError(
                f"the model returned {got} px for {odd} px of input, neither floor nor ceil of {odd} x {scale}: "
                "the model's output scale is not an integer ratio at sizes that are not a multiple of its stride"
            )
    kind, k = resolve_output(lay, y1.shape, output, n_names)
    with torch.inference_mode():
        final = forward_canonical(module, t1, lay, kind, k, spec.postprocess)
    return Probe(kind=kind, n_out=k, n_final=int(final.shape[2]), scale=OutScale(scale, partial))


def _scale_text(s: Fraction) -> str:
    return f"x{s.numerator}" if s.denominator == 1 else f"/{s.denominator}" if s.numerator == 1 else str(s)


def resolve_halo(
    halo: Any,
    module: torch.nn.Module,
    inputs: ProbeInputs,
    forward: Callable[[Sequence[Sequence[torch.Tensor]]], torch.Tensor],
    scale: OutScale,
    unit: int,
) -> int:
    """The halo in base pixels: given (``ModelSpec.halo``, in reference pixels), declared by the module
    (``halo`` attribute), or probed on windows of ``unit`` base pixels."""
    reference_ratio = inputs.ratios[inputs.reference]
    if halo in ("auto", "probe"):
        attr = getattr(module, "halo", None) if halo == "auto" else None
        if isinstance(attr, int) and not isinstance(attr, bool) and attr >= 0:
            return attr * reference_ratio
        return probe_halo(inputs.build, forward, inputs.shapes, inputs.ratios, scale, unit=unit)
    if isinstance(halo, (int, np.integer)) and not isinstance(halo, bool) and halo >= 0:
        return int(halo) * reference_ratio
    raise HaloError(f"halo must be a non-negative int, 'auto' or 'probe', got {halo!r}")
