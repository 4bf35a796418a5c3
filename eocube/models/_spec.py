"""What describes a model (:class:`ModelSpec`) apart from how to run it (:class:`RunOptions`).

A :class:`ModelSpec` says how a model consumes and produces data: its sources (each with its
bands, layout, validity and time inputs, normalisation and nodata handling), its output
(bands, classes, kind, post-processing, scale against the reference grid), its halo and size
multiple, and how dates of several per-date sources are paired. It is what a model card
(:mod:`eocube.models.card`, a STAC MLM item beside the model file) loads, so that
``apply_model(cube, "model.pt2")`` needs no other argument.

:class:`RunOptions` says how to run it on this machine: tiles, batches, chunks, device,
precision, threads, dask resources. None of it changes the result beyond float rounding.

Both are frozen dataclasses of plain values (hashable, tokenizable by dask, printable).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal

from ..names import Autocast, LayoutName, MaskOutput, OutputKind, Pairing, ValidInput
from ._errors import UnknownSourceError

ScalingType = Literal["z-score", "min-max", "offset", "scale", "clip", "clip-min", "clip-max"]


@dataclass(frozen=True)
class Scaling:
    """One band's value scaling before the model (the STAC MLM ``value_scaling`` object).

    ``z-score``: ``(x - mean) / stddev``; ``min-max``: ``(x - minimum) / (maximum - minimum)``;
    ``offset``: ``x - value``; ``scale``: ``x / value``; ``clip``: to ``[minimum, maximum]``;
    ``clip-min`` / ``clip-max``: to ``minimum`` / ``maximum`` only.
    """

    type: ScalingType
    mean: float | None = None
    stddev: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    value: float | None = None


@dataclass(frozen=True)
class ClassInfo:
    """One class of a classification output (``mlm:output`` ``classification:classes``)."""

    value: int
    name: str
    color: str | None = None
    """``RRGGBB`` hex colour, as the STAC classification extension writes it."""
    description: str | None = None


@dataclass(frozen=True)
class SourceSpec:
    """One input of the model: which cube feeds which argument, and how.

    With several sources the model is called as ``model(x_1, [valid_1], [time_1], x_2, ...)``:
    each source's tensor followed by its own optional validity and time arguments, sources in
    the spec's order.
    """

    name: str = "input"
    """Key of the cube in ``apply_model``'s ``sources`` mapping (and the card's ``mlm:input`` name)."""
    bands: tuple[str, ...] | None = None
    """Bands fed, in channel order; None: every band of the cube, in its order."""
    layout: LayoutName = "band"
    """``"band"`` (N, F, H, W) per date; ``"time_band"`` (N, T*F, H, W); ``"sequence"`` (N, T, F, H, W)."""
    valid_input: ValidInput | None = None
    """How the model learns where the input was nodata (a channel after each date's bands, or an argument)."""
    time_input: str | None = None
    """Per-date features passed after ``x`` (and ``valid``): ``"days"`` or ``"doy"``; None: none."""
    fill_value: float = 0.0
    """Value given to the model where the input is nodata (after scaling)."""
    scaling: tuple[Scaling, ...] = ()
    """Per-band value scaling, one per band in ``bands`` order (or one for all); empty: none."""
    resolution: tuple[float, float] | None = None
    """Expected (x, y) pixel size in CRS units, checked against the cube when given (cards)."""


@dataclass(frozen=True)
class OutputSpec:
    """What the model returns and how it becomes a cube."""

    bands: tuple[str, ...] | Literal["input"] | None = None
    """Output band names; ``"input"``: the (single) source's band names; None: ``out_0``, ... (``class``)."""
    kind: OutputKind = "auto"
    """``"per_date"``, ``"map"`` (one date) or ``"auto"`` (from the layout and the output's rank)."""
    time: Any = None
    """Date of a ``"map"`` output (default: the reference source's last date)."""
    postprocess: str | None = None
    """``"argmax"``, ``"softmax"``, ``"sigmoid"`` or None (a callable is accepted by the Python API)."""
    dtype: str | None = None
    """Output dtype (default float32; uint8 for argmax)."""
    nodata: float | int | None = None
    """Output nodata (default NaN for floats, the largest value for unsigned, -1 for signed)."""
    mask: MaskOutput | None = "any"
    """Where the output is set to nodata: any / all inputs reaching it were nodata; None: never."""
    classes: tuple[ClassInfo, ...] = ()
    """Class values, names and colours of a class map (travel to the output's attributes)."""
    scale: Fraction | Literal["probe"] = "probe"
    """Output pixels per reference pixel along each axis: 4 for x4 super-resolution, 1/4 for a
    stride-4 classifier, 1 for the same grid; ``"probe"``: found from the model (output size / input size)."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything that describes how a model consumes and produces data (what a card holds)."""

    sources: tuple[SourceSpec, ...] = (SourceSpec(),)
    """The model's inputs, in argument order."""
    output: OutputSpec = field(default_factory=OutputSpec)
    reference: str | None = None
    """Source whose grid tiles are cut on and the output scale refers to; None: the finest."""
    halo: int | Literal["auto", "probe"] = "auto"
    """Context around a tile, in reference pixels; ``"auto"``: the module's ``halo`` attribute or probed."""
    size_multiple: int = 1
    """Tiles are padded to a multiple of this size (reference pixels) before the model."""
    pairing: Pairing = "same"
    """Per-date layouts with several sources: how the other sources' dates meet the reference's:
    the same date, the nearest within ``tolerance``, or the latest on or before it (within ``tolerance``)."""
    tolerance: str | None = None
    """Largest date gap for ``"nearest"`` / ``"previous"`` pairing, a pandas Timedelta string (``"3D"``)."""
    name: str | None = None
    """The model's name (``mlm:name``), for messages and provenance."""
    version: str | None = None
    """The version of the model's Python code (``model_version=``), for a model given as a module or a
    factory: it stands for the source of its classes and functions in the model's identity, which
    decides whether a store may be resumed or reused (change it whenever the code changes). Needed
    when the source cannot be read (a class defined by ``exec`` or in a plain interactive session);
    a model file's identity is its content, whatever the version."""

    def source(self, name: str) -> SourceSpec:
        """The source called ``name`` (an :class:`UnknownSourceError`, a ``KeyError``, listing the names otherwise)."""
        for src in self.sources:
            if src.name == name:
                return src
        raise UnknownSourceError(f"the model has no source {name!r}; its sources are {[s.name for s in self.sources]}")

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class RunOptions:
    """How to run a model here; none of it changes the result beyond float rounding."""

    tile_size: int | None = 256
    """Edge of the tiles cut inside each chunk, in reference pixels (without halo); None: one per chunk."""
    batch_size: int = 8
    """Samples per forward pass."""
    chunks: dict[str, int] | None = None
    """Rechunk the reference source first (``{"y": 1024, "x": 1024}``)."""
    device: str = "auto"
    """``"auto"`` (CUDA when torch sees it in the worker), ``"cpu"``, ``"cuda"``, ``"cuda:N"``."""
    autocast: Autocast | None = None
    """Mixed precision (mainly for GPUs)."""
    torch_threads: int | None = None
    """Torch threads per task on the CPU; None: the process's cores divided by its dask threads."""
    resources: dict[str, float] | Literal["auto"] | None = "auto"
    """Dask resources of the model tasks; ``"auto"``: ``{"GPU": 1}`` on GPU clusters."""
    prefetch: bool = True
    """On CUDA, copy the next batch to the device while the current one runs."""
    name: str | None = None
    """Name of the output DataArray (default ``"prediction"``)."""
