"""Model cards: how a model consumes and produces data, in a STAC item beside the model file.

A card is a STAC item with the Machine Learning Model (MLM) extension
(https://github.com/stac-extensions/mlm, v1.4): ``mlm:input`` describes each source
(bands, dimension order, value scaling), ``mlm:output`` the result (shape, classes), and
fields prefixed ``eocube:`` hold what MLM has no field for (output scale, validity and time
inputs, nodata fill, halo, size multiple, pairing of dates). :func:`load_card` turns a card
into a :class:`~eocube.models._spec.ModelSpec`; :func:`write_card` writes one, and the two
round-trip. A model published as an MLM item loads as is: missing ``eocube:`` fields take
their defaults.

Card file names, beside ``model.pt2`` (the first that exists wins):

1. ``model.pt2.json``: the card of this one file (when several artifacts share a folder);
2. ``model.card.json``;
3. ``model.json``: the primary name, written by :func:`write_card`; taken only when it looks
   like a STAC MLM item (so an unrelated JSON file named like the model is not mistaken for
   a card), or when it is not valid JSON (so that the error is reported).

:func:`export_model` exports a module as a ``torch.export`` program with dynamic batch and
spatial sizes, saves it as ``.pt2`` and writes its card. :func:`scale_values` applies the
cards' value scaling to NumPy arrays and torch tensors.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np

from ..names import CARD_NAME_PATTERNS, LAYOUTS, MASK_OUTPUTS, OUTPUT_KINDS, PAIRINGS, POSTPROCESS_NAMES, VALID_INPUTS
from ._errors import ExportError, ModelLoadError, OptionError
from ._spec import ClassInfo, ModelSpec, OutputSpec, Scaling, SourceSpec

__all__ = [
    "MLM_SCHEMA",
    "CardError",
    "artifact_type",
    "card_candidates",
    "card_dict",
    "card_model_path",
    "export_model",
    "find_card",
    "load_card",
    "scale_values",
    "scaling_problem",
    "spec_from_card",
    "write_card",
]

MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json"
"""The MLM extension version cards are written with."""

_DIMS = {
    "batch": {"batch", "b", "n", "samples"},
    "channel": {"channel", "channels", "band", "bands", "c"},
    "class": {"class", "classes", "score", "scores", "logits", "probability", "probabilities"},
    "time": {"time", "t", "date", "dates", "timestep", "timesteps"},
    "height": {"height", "h", "y", "row", "rows"},
    "width": {"width", "w", "x", "col", "cols", "column", "columns"},
}
_POSTPROCESS = {
    "argmax": "argmax", "torch.argmax": "argmax", "numpy.argmax": "argmax", "np.argmax": "argmax",
    "softmax": "softmax", "torch.softmax": "softmax", "torch.nn.functional.softmax": "softmax",
    "sigmoid": "sigmoid", "torch.sigmoid": "sigmoid",
}
_ARTIFACTS = {"torch.export": "torch.export.save", "torchscript": "torch.jit.save", "torch.save": "torch.save"}
_MEDIA_TYPE = "application/octet-stream; framework=pytorch"
ArrayT = TypeVar("ArrayT")


class CardError(ModelLoadError):
    """A model card is missing, not valid JSON, or has a field eocube cannot use; names the file and field."""


def _fail(card: str, field: str, problem: str) -> CardError:
    return CardError(f"model card {card}: {field}: {problem}")


# --------------------------------------------------------------------------- value scaling

REQUIRED: dict[str, tuple[str, ...]] = {
    "z-score": ("mean", "stddev"),
    "min-max": ("minimum", "maximum"),
    "clip": ("minimum", "maximum"),
    "clip-min": ("minimum",),
    "clip-max": ("maximum",),
    "offset": ("value",),
    "scale": ("value",),
}
"""The parameters each scaling type needs (as in the MLM specification)."""


def scaling_problem(scaling: Scaling) -> str | None:
    """Why a scaling cannot be applied (unknown type, missing or degenerate parameter); None if it can.

    Parameters
    ----------
    scaling
        One band's scaling.

    Returns
    -------
    str or None
        A short reason, e.g. ``"z-score needs stddev"``.
    """
    if scaling.type not in REQUIRED:
        return f"unknown scaling type {scaling.type!r} (expected one of {sorted(REQUIRED)})"
    missing = [name for name in REQUIRED[scaling.type] if getattr(scaling, name) is None]
    if missing:
        return f"{scaling.type} needs {' and '.join(missing)}"
    if scaling.type == "z-score" and scaling.stddev == 0:
        return "z-score needs a non-zero stddev"
    if scaling.type == "min-max" and scaling.maximum == scaling.minimum:
        return "min-max needs maximum != minimum"
    if scaling.type == "scale" and scaling.value == 0:
        return "scale needs a non-zero value"
    return None


def _scale_one(x: Any, s: Scaling) -> Any:
    """One band (a NumPy array or a torch tensor) scaled by ``s``."""
    if s.type == "z-score":
        return (x - s.mean) / s.stddev
    if s.type == "min-max":
        return (x - s.minimum) / (s.maximum - s.minimum)
    if s.type == "offset":
        return x - s.value
    if s.type == "scale":
        return x / s.value
    if s.type == "clip":
        return x.clip(s.minimum, s.maximum)
    if s.type == "clip-min":
        return x.clip(min=s.minimum)
    return x.clip(max=s.maximum)  # clip-max


def _as_float(values: Any) -> Any:
    """A float copy of ``values`` (float32 for integer input), of the same kind (NumPy or torch)."""
    if isinstance(values, np.ndarray):
        return values.astype(values.dtype if values.dtype.kind == "f" else np.float32, copy=True)
    import torch

    if isinstance(values, torch.Tensor):
        return values.clone() if values.is_floating_point() else values.to(torch.float32)
    raise TypeError(f"scale_values takes a NumPy array or a torch tensor, got {type(values).__name__}")


def scale_values(values: ArrayT, scalings: Sequence[Scaling], *, axis: int = -3) -> ArrayT:
    """Apply per-band value scaling (z-score, min-max, offset, scale, clip, clip-min, clip-max).

    Parameters
    ----------
    values
        A NumPy array or a torch tensor with a band axis, e.g. ``(N, F, H, W)``,
        ``(N, T, F, H, W)`` or ``(F, H, W)`` (band axis -3, the default).
    scalings
        One :class:`~eocube.models._spec.Scaling` per band, in band order, or a single one
        applied to every band; empty: ``values`` returned unchanged.
    axis
        The band axis.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        A new float array of the same kind and shape (float32 for integer input; the input
        is never modified); NaN stays NaN.

    Raises
    ------
    ValueError
        A scaling that cannot be applied, or a count that is neither 1 nor the band count.
    """
    scalings = tuple(scalings)
    if not scalings:
        return values
    for i, s in enumerate(scalings):
        problem = scaling_problem(s)
        if problem:
            raise OptionError(f"value scaling {i}: {problem}")
    out = _as_float(values)
    if len(scalings) == 1:
        return _scale_one(out, scalings[0])
    ndim = out.ndim
    ax = axis % ndim if -ndim <= axis < ndim else None
    if ax is None or out.shape[ax] != len(scalings):
        size = "no such axis" if ax is None else f"{out.shape[ax]} bands"
        raise OptionError(
            f"{len(scalings)} value scalings for an array of shape {tuple(out.shape)} (axis {axis}: {size}): "
            "give one scaling per band, or a single one for all bands"
        )
    for i, s in enumerate(scalings):
        index = (slice(None),) * ax + (i,)
        out[index] = _scale_one(out[index], s)
    return out


# --------------------------------------------------------------------------- finding cards


def card_candidates(model_path: str | os.PathLike[str]) -> list[Path]:
    """The card file names looked for beside a model file, in order of precedence.

    Parameters
    ----------
    model_path
        The model file, e.g. ``model.pt2``.

    Returns
    -------
    list of Path
        ``model.pt2.json``, ``model.card.json``, ``model.json``.
    """
    p = Path(model_path)
    return [p.with_name(pattern.format(name=p.name, stem=p.stem)) for pattern in CARD_NAME_PATTERNS]


def _looks_like_card(path: Path) -> bool:
    """Whether a ``model.json`` is a STAC MLM item (or broken JSON, reported by :func:`load_card`)."""
    try:
        item = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        return True
    if not isinstance(item, dict):
        return False
    props = item.get("properties")
    extensions = item.get("stac_extensions") or []
    return (isinstance(props, dict) and any(str(k).startswith("mlm:") for k in props)) or any(
        "/mlm/" in str(e) for e in extensions if isinstance(e, str)
    )


def find_card(model_path: str | os.PathLike[str]) -> Path | None:
    """The card beside a model file, or None.

    Parameters
    ----------
    model_path
        The model file, e.g. ``model.pt2``.

    Returns
    -------
    Path or None
        The first of :func:`card_candidates` that exists (``model.json`` only when it looks
        like a STAC MLM item or is not valid JSON).
    """
    *explicit, primary = card_candidates(model_path)
    for path in explicit:
        if path.is_file():
            return path
    return primary if primary.is_file() and _looks_like_card(primary) else None


def card_model_path(card_path: str | os.PathLike[str]) -> Path | None:
    """The local model file a card describes (its asset with the ``mlm:model`` role), or None.

    Parameters
    ----------
    card_path
        A card file.

    Returns
    -------
    Path or None
        The asset's ``href`` resolved against the card's folder (a ``file://`` URI, as
        :func:`write_card` writes for a model on another drive, as its path); None when the card
        has no model asset or its ``href`` is another URL.
    """
    path = Path(card_path)
    item = _read_json(path)
    for asset in (item.get("assets") or {}).values():
        if isinstance(asset, dict) and "mlm:model" in (asset.get("roles") or []):
            href = str(asset.get("href", ""))
            if href.startswith("file://"):
                return Path(url2pathname(urlparse(href).path)).resolve()
            if not href or "://" in href:
                return None
            return (path.parent / href).resolve()
    return None


# --------------------------------------------------------------------------- reading cards


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CardError(f"model card {path}: the file does not exist")
    try:
        item = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CardError(f"model card {path}: not valid JSON ({exc})") from None
    if not isinstance(item, dict):
        raise CardError(f"model card {path}: expected a JSON object (a STAC item), got {type(item).__name__}")
    return item


def load_card(path: str | os.PathLike[str]) -> ModelSpec:
    """Read a model card (a STAC MLM item) into a :class:`~eocube.models._spec.ModelSpec`.

    Parameters
    ----------
    path
        The card file (see :func:`find_card` for the names looked for beside a model).

    Returns
    -------
    ModelSpec

    Raises
    ------
    CardError
        Missing file, invalid JSON, or a field eocube cannot use; the message names the card
        file and the field (e.g. ``mlm:input[0].input.shape``).
    """
    p = Path(path)
    return spec_from_card(_read_json(p), card=str(p))


def spec_from_card(item: Mapping[str, Any], *, card: str = "<dict>") -> ModelSpec:
    """A :class:`~eocube.models._spec.ModelSpec` from a card already parsed from JSON.

    Parameters
    ----------
    item
        The STAC item (a mapping with ``properties``).
    card
        Name of the card in error messages.

    Returns
    -------
    ModelSpec
    """
    r = _Reader(card)
    props = r.obj(item.get("properties"), "properties")
    inputs = r.list(props.get("mlm:input"), "mlm:input", required=True)
    if not inputs:
        raise _fail(card, "mlm:input", "lists no input")
    sources = tuple(_source(r, r.obj(inp, f"mlm:input[{i}]"), f"mlm:input[{i}]") for i, inp in enumerate(inputs))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise _fail(card, "mlm:input", f"input names must be unique, got {names}")
    outputs = r.list(props.get("mlm:output"), "mlm:output") or []
    if len(outputs) > 1:
        raise _fail(card, "mlm:output", f"eocube runs models with one output; the card lists {len(outputs)}")
    output = _output(r, r.obj(outputs[0], "mlm:output[0]"), "mlm:output[0]") if outputs else OutputSpec()
    reference = r.opt_str(props, "eocube:reference")
    if reference is not None and reference not in names:
        raise _fail(card, "eocube:reference", f"{reference!r} is not one of the inputs {names}")
    return ModelSpec(
        sources=sources,
        output=output,
        reference=reference,
        halo=_halo(r, props.get("eocube:halo", "auto")),
        size_multiple=r.positive_int(props.get("eocube:size_multiple", 1), "eocube:size_multiple"),
        pairing=r.choice(props.get("eocube:pairing", "same"), "eocube:pairing", PAIRINGS),
        tolerance=_tolerance(r, props.get("eocube:tolerance")),
        name=r.opt_str(props, "mlm:name"),
    )


class _Reader:
    """Typed access to card fields, with errors that name the card and the field."""

    def __init__(self, card: str) -> None:
        self.card = card

    def fail(self, field: str, problem: str) -> CardError:
        return _fail(self.card, field, problem)

    def _type(self, value: Any, field: str, expected: str) -> CardError:
        return self.fail(field, f"expected {expected}, got {json.dumps(value)[:80]} ({type(value).__name__})")

    def obj(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self._type(value, field, "an object")
        return value

    def list(self, value: Any, field: str, required: bool = False) -> list[Any] | None:
        if value is None and not required:
            return None
        if not isinstance(value, list):
            raise self._type(value, field, "a list")
        return value

    def opt_str(self, obj: Mapping[str, Any], key: str, field: str | None = None) -> str | None:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise self._type(value, field or key, "a string")
        return value

    def number(self, value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._type(value, field, "a number")
        return value

    def positive_int(self, value: Any, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self._type(value, field, "a positive integer")
        return value

    def choice(self, value: Any, field: str, allowed: Sequence[Any]) -> Any:
        if value not in allowed:
            shown = ", ".join("null" if a is None else repr(a) for a in allowed)
            raise self.fail(field, f"unknown value {json.dumps(value)} (expected one of {shown})")
        return value

    def int_list(self, value: Any, field: str) -> list[int]:
        items = self.list(value, field, required=True) or []
        if not all(isinstance(v, int) and not isinstance(v, bool) and (v > 0 or v == -1) for v in items):
            raise self._type(value, field, "a list of sizes (integers > 0, or -1 for a variable size)")
        return items

    def str_list(self, value: Any, field: str) -> list[str]:
        items = self.list(value, field, required=True) or []
        if not all(isinstance(v, str) for v in items):
            raise self._type(value, field, "a list of strings")
        return items


def _dim_kind(name: str) -> str:
    low = name.strip().lower()
    return next((kind for kind, names in _DIMS.items() if low in names), low)


def _structure(r: _Reader, obj: dict[str, Any], field: str) -> tuple[list[int], list[str]]:
    """``shape`` and normalised ``dim_order`` of an input/result structure, checked against each other."""
    shape = r.int_list(obj.get("shape"), f"{field}.shape")
    dims = [_dim_kind(d) for d in r.str_list(obj.get("dim_order"), f"{field}.dim_order")]
    if len(shape) != len(dims):
        raise r.fail(field, f"shape {shape} has {len(shape)} dims but dim_order {obj['dim_order']} names {len(dims)}")
    data_type = obj.get("data_type")
    if data_type is not None and not isinstance(data_type, str):
        raise r._type(data_type, f"{field}.data_type", "a data type name such as \"float32\"")
    return shape, dims


def _layout(r: _Reader, dims: list[str], declared: Any, field: str) -> str:
    """The eocube layout of an input from its dimension order (and ``eocube:layout`` when given)."""
    core = [d for d in dims if d != "batch"]
    found = {("channel", "height", "width"): "band", ("time", "channel", "height", "width"): "sequence"}.get(
        tuple(core)
    )
    if declared is not None:
        layout = r.choice(declared, f"{field}.eocube:layout", LAYOUTS)
        expected = "sequence" if layout == "sequence" else "band"
        if found != expected:
            raise r.fail(
                f"{field}.input.dim_order",
                f"{dims} does not fit eocube:layout {layout!r} (expected "
                f"{'[batch, time, channel, height, width]' if layout == 'sequence' else '[batch, channel, height, width]'})",
            )
        return layout
    if found is None:
        raise r.fail(
            f"{field}.input.dim_order",
            f"eocube feeds channels-first tensors: [batch, channel, height, width] (layout 'band', or 'time_band' "
            f"with eocube:layout) or [batch, time, channel, height, width] (layout 'sequence'); got {dims}",
        )
    return found


def _bands(r: _Reader, value: Any, field: str) -> tuple[str, ...] | None:
    items = r.list(value, field) or []
    names = []
    for i, band in enumerate(items):
        if isinstance(band, str):
            names.append(band)
            continue
        b = r.obj(band, f"{field}[{i}]")
        if not isinstance(b.get("name"), str):
            raise r._type(b.get("name"), f"{field}[{i}].name", "a band name")
        if b.get("expression") is not None:
            raise r.fail(
                f"{field}[{i}].expression",
                "eocube does not compute bands from expressions: add the band to the cube "
                "(e.g. with xarray) and list it by name",
            )
        names.append(b["name"])
    return tuple(names) or None


def _scaling(r: _Reader, value: Any, field: str) -> Scaling:
    obj = r.obj(value, field)
    kind = obj.get("type")
    if kind is None:  # MLM: no scaling for this band
        return Scaling(type="offset", value=0.0)
    if kind == "processing":
        raise r.fail(
            f"{field}.type",
            "eocube does not run 'processing' expressions: use z-score, min-max, offset, scale or clip, "
            "or do the processing inside the model",
        )
    r.choice(kind, f"{field}.type", tuple(REQUIRED))
    params = {k: r.number(obj[k], f"{field}.{k}") for k in ("mean", "stddev", "minimum", "maximum", "value")
              if obj.get(k) is not None}
    scaling = Scaling(type=kind, **params)
    problem = scaling_problem(scaling)
    if problem:
        raise r.fail(field, problem)
    return scaling


def _scalings(r: _Reader, value: Any, field: str) -> tuple[Scaling, ...]:
    """``value_scaling``: a list (MLM), or one object for all bands (as pystac 1.15 writes it)."""
    if isinstance(value, dict):
        return (_scaling(r, value, field),)
    return tuple(_scaling(r, s, f"{field}[{i}]") for i, s in enumerate(r.list(value, field) or []))


def _source(r: _Reader, obj: dict[str, Any], field: str) -> SourceSpec:
    name = r.opt_str(obj, "name", f"{field}.name")
    if not name:
        raise r.fail(f"{field}.name", "every input needs a name (the source it is fed from)")
    bands = _bands(r, obj.get("bands"), f"{field}.bands")
    shape, dims = _structure(r, r.obj(obj.get("input"), f"{field}.input"), f"{field}.input")
    layout = _layout(r, dims, obj.get("eocube:layout"), field)
    valid = r.choice(obj.get("eocube:valid_input"), f"{field}.eocube:valid_input", (None, *VALID_INPUTS))
    _check_channels(r, shape[dims.index("channel")], bands, layout, valid, f"{field}.input.shape")
    scalings = _scalings(r, obj.get("value_scaling"), f"{field}.value_scaling")
    if bands and len(scalings) not in (0, 1, len(bands)):
        raise r.fail(f"{field}.value_scaling",
                     f"{len(scalings)} scalings for {len(bands)} bands: give one per band, or a single one for all")
    if obj.get("pre_processing_function") is not None:
        warnings.warn(f"model card {r.card}: {field}.pre_processing_function is not run by eocube "
                      "(only value_scaling is applied)", UserWarning, stacklevel=4)
    return SourceSpec(
        name=name, bands=bands, layout=layout, valid_input=valid,
        time_input=r.choice(obj.get("eocube:time_input"), f"{field}.eocube:time_input", (None, "days", "doy")),
        fill_value=float(r.number(obj.get("eocube:fill_value", 0.0), f"{field}.eocube:fill_value")),
        scaling=scalings, resolution=_resolution(r, obj.get("eocube:resolution"), f"{field}.eocube:resolution"),
    )


def _check_channels(r: _Reader, channels: int, bands: tuple[str, ...] | None, layout: str,
                    valid: str | None, field: str) -> None:
    """The channel size of the shape agrees with the bands (plus the validity channel)."""
    if channels == -1 or bands is None:
        return
    per_date = len(bands) + (valid == "channel")
    ok = channels % per_date == 0 if layout == "time_band" else channels == per_date
    if not ok:
        extra = " plus 1 validity channel" if valid == "channel" else ""
        what = "a multiple of " if layout == "time_band" else ""
        raise r.fail(field, f"the channel size {channels} does not match the bands: {len(bands)} bands{extra} "
                            f"make {what}{per_date} channels")


def _resolution(r: _Reader, value: Any, field: str) -> tuple[float, float] | None:
    if value is None:
        return None
    items = r.list(value, field) or []
    if len(items) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in items):
        raise r._type(value, field, "[x, y] pixel sizes > 0")
    return (float(items[0]), float(items[1]))


def _classes(r: _Reader, value: Any, field: str) -> tuple[tuple[ClassInfo, ...], int | None]:
    """Classes of the output, and the value of a class marked ``nodata`` (None if there is none)."""
    classes, nodata = [], None
    for i, c in enumerate(r.list(value, field) or []):
        obj = r.obj(c, f"{field}[{i}]")
        value_ = obj.get("value")
        if isinstance(value_, bool) or not isinstance(value_, int):
            raise r._type(value_, f"{field}[{i}].value", "an integer class value")
        name = obj.get("name", obj.get("title", str(value_)))
        if not isinstance(name, str):
            raise r._type(name, f"{field}[{i}].name", "a string")
        color = r.opt_str(obj, "color_hint", f"{field}[{i}].color_hint")
        if obj.get("nodata") is True:
            nodata = value_
        classes.append(ClassInfo(value=value_, name=name, color=color,
                                 description=r.opt_str(obj, "description", f"{field}[{i}].description")))
    return tuple(classes), nodata


def _postprocess(r: _Reader, obj: dict[str, Any], field: str, classes: tuple[ClassInfo, ...],
                 channels: int | None) -> str | None:
    """``eocube:postprocess``, else a known ``post_processing_function``, else argmax for class scores."""
    if "eocube:postprocess" in obj:
        return r.choice(obj["eocube:postprocess"], f"{field}.eocube:postprocess", (None, *POSTPROCESS_NAMES))
    func = obj.get("post_processing_function")
    if func is not None:
        expr = r.obj(func, f"{field}.post_processing_function").get("expression")
        key = str(expr).replace(":", ".") if isinstance(expr, str) else None
        if key in _POSTPROCESS:
            return _POSTPROCESS[key]
        warnings.warn(f"model card {r.card}: {field}.post_processing_function {json.dumps(func)[:80]} is not run "
                      "by eocube", UserWarning, stacklevel=4)
    return "argmax" if classes and channels != 1 else None


def _output(r: _Reader, obj: dict[str, Any], field: str) -> OutputSpec:
    tasks = obj.get("tasks")
    if tasks is not None:
        r.str_list(tasks, f"{field}.tasks")
    shape, dims = _structure(r, r.obj(obj.get("result"), f"{field}.result"), f"{field}.result")
    channel_dim = next((i for i, d in enumerate(dims) if d in ("channel", "class")), None)
    channels = shape[channel_dim] if channel_dim is not None else 1
    classes, class_nodata = _classes(r, obj.get("classification:classes", obj.get("classification_classes")),
                                     f"{field}.classification:classes")
    postprocess = _postprocess(r, obj, field, classes, channels)
    bands = _output_bands(r, obj, field)
    if isinstance(bands, tuple) and postprocess != "argmax" and channels not in (-1, len(bands)):
        raise r.fail(f"{field}.result.shape", f"the channel size {channels} does not match the {len(bands)} "
                                              f"output bands {list(bands)}")
    kind_default = "per_date" if "time" in dims else "auto"
    nodata = obj.get("eocube:nodata", class_nodata)
    return OutputSpec(
        bands=bands,
        kind=r.choice(obj.get("eocube:kind", kind_default), f"{field}.eocube:kind", OUTPUT_KINDS),
        time=_time(r, obj.get("eocube:time"), f"{field}.eocube:time"),
        postprocess=postprocess,
        dtype=r.opt_str(obj, "eocube:dtype", f"{field}.eocube:dtype"),
        nodata=None if nodata is None else _nodata(r, nodata, f"{field}.eocube:nodata"),
        mask=r.choice(obj.get("eocube:mask", "any"), f"{field}.eocube:mask", (*MASK_OUTPUTS, None)),
        classes=classes,
        scale=_scale(r, obj.get("eocube:scale", "probe"), f"{field}.eocube:scale"),
    )


def _output_bands(r: _Reader, obj: dict[str, Any], field: str) -> tuple[str, ...] | str | None:
    if "eocube:bands" in obj:
        value = obj["eocube:bands"]
        if value is None or value == "input":
            return value
        return tuple(r.str_list(value, f"{field}.eocube:bands"))
    names = _bands(r, obj.get("bands"), f"{field}.bands")  # MLM >= 1.5 output bands
    return names


def _nodata(r: _Reader, value: Any, field: str) -> float | int:
    if isinstance(value, str) and value.lower() == "nan":
        return math.nan
    return r.number(value, field)


def _time(r: _Reader, value: Any, field: str) -> Any:
    if value is None:
        return None
    import pandas as pd

    try:
        return pd.Timestamp(value)
    except (TypeError, ValueError):
        raise r._type(value, field, "a date (ISO 8601 string)") from None


def _scale(r: _Reader, value: Any, field: str) -> Fraction | str:
    """``eocube:scale``: ``"probe"``, an integer n, ``"1/n"`` (or a number equal to one of them)."""
    if value == "probe":
        return "probe"
    expected = "\"probe\", an integer n or a string \"1/n\""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise r._type(value, field, expected)
    try:
        scale = Fraction(value) if not isinstance(value, float) else Fraction(value).limit_denominator(1024)
    except (ValueError, ZeroDivisionError):
        raise r._type(value, field, expected) from None
    inexact = isinstance(value, float) and abs(float(scale) - value) > 1e-9 * abs(value)
    if scale <= 0 or inexact or (scale.numerator != 1 and scale.denominator != 1):
        raise r.fail(field, f"{json.dumps(value)} is not an integer ratio: output pixels per reference pixel "
                            "must be n (n times finer) or \"1/n\" (n times coarser)")
    return scale


def _halo(r: _Reader, value: Any) -> int | str:
    if value in ("auto", "probe"):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise r._type(value, "eocube:halo", "\"auto\", \"probe\" or an integer >= 0")
    return value


def _tolerance(r: _Reader, value: Any) -> str | None:
    if value is None:
        return None
    import pandas as pd

    expected = "a pandas Timedelta string such as \"3D\""
    if not isinstance(value, str):
        raise r._type(value, "eocube:tolerance", expected)
    try:
        pd.Timedelta(value)
    except ValueError:
        raise r._type(value, "eocube:tolerance", expected) from None
    return value


# --------------------------------------------------------------------------- writing cards


def artifact_type(path: str | os.PathLike[str]) -> str | None:
    """The ``mlm:artifact_type`` of a model file, from its content.

    Parameters
    ----------
    path
        A model file.

    Returns
    -------
    str or None
        ``"torch.export.save"`` (``.pt2``), ``"torch.jit.save"`` (TorchScript), ``"torch.save"``
        (weights) or None (unknown or missing).
    """
    from ._loading import model_file_format

    return _ARTIFACTS.get(model_file_format(path)) if Path(path).is_file() else None


def _dims(layout: str) -> list[str]:
    return ["batch", "time", "channel", "height", "width"] if layout == "sequence" else ["batch", "channel", "height", "width"]


def _scaling_dict(s: Scaling) -> dict[str, Any]:
    return {"type": s.type, **{k: getattr(s, k) for k in ("minimum", "maximum", "mean", "stddev", "value")
                               if getattr(s, k) is not None}}


def _input_dict(src: SourceSpec) -> dict[str, Any]:
    per_date = len(src.bands) + (src.valid_input == "channel") if src.bands else -1
    channels = per_date if src.layout != "time_band" else -1
    shape = [-1, -1, channels, -1, -1] if src.layout == "sequence" else [-1, channels, -1, -1]
    return {
        "name": src.name,
        "bands": list(src.bands or []),
        "input": {"shape": shape, "dim_order": _dims(src.layout), "data_type": "float32"},
        "value_scaling": [_scaling_dict(s) for s in src.scaling] or None,
        "resize_type": None,
        "pre_processing_function": None,
        "eocube:layout": src.layout,
        "eocube:valid_input": src.valid_input,
        "eocube:time_input": src.time_input,
        "eocube:fill_value": src.fill_value,
        "eocube:resolution": list(src.resolution) if src.resolution else None,
    }


def _json_scale(scale: Any) -> Any:
    if scale == "probe":
        return "probe"
    f = Fraction(scale)
    return f.numerator if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def _class_dict(c: ClassInfo) -> dict[str, Any]:
    d: dict[str, Any] = {"value": c.value, "name": c.name}
    if c.description is not None:
        d["description"] = c.description
    if c.color is not None:
        d["color_hint"] = c.color
    return d


def _tasks(spec: ModelSpec) -> list[str]:
    out = spec.output
    if out.classes or out.postprocess == "argmax":
        return ["semantic-segmentation"]
    if out.scale != "probe" and Fraction(out.scale) > 1:
        return ["super-resolution"]
    return ["regression"]


def _output_dict(spec: ModelSpec, tasks: list[str]) -> dict[str, Any]:
    out = spec.output
    if out.postprocess == "argmax":
        channels = len(out.classes) if out.classes else -1
    else:
        channels = len(out.bands) if isinstance(out.bands, tuple) else -1
    per_date_sequence = out.kind == "per_date" and spec.sources[0].layout == "sequence"
    layout = "sequence" if per_date_sequence else "band"
    shape = [-1, -1, channels, -1, -1] if per_date_sequence else [-1, channels, -1, -1]
    nodata = out.nodata
    if isinstance(nodata, float) and math.isnan(nodata):
        nodata = "nan"
    d: dict[str, Any] = {
        "name": "output",
        "tasks": tasks,
        "result": {"shape": shape, "dim_order": _dims(layout), "data_type": "float32"},
        "post_processing_function": None,
        "eocube:bands": list(out.bands) if isinstance(out.bands, tuple) else out.bands,
        "eocube:kind": out.kind,
        "eocube:time": None if out.time is None else _iso(out.time),
        "eocube:postprocess": out.postprocess,
        "eocube:dtype": out.dtype,
        "eocube:nodata": nodata,
        "eocube:mask": out.mask,
        "eocube:scale": _json_scale(out.scale),
    }
    if out.classes:
        d["classification:classes"] = [_class_dict(c) for c in out.classes]
    return d


def _iso(time: Any) -> str:
    import pandas as pd

    return pd.Timestamp(time).isoformat()


def card_dict(
    spec: ModelSpec,
    model_path: str | os.PathLike[str] | None = None,
    *,
    card_path: str | os.PathLike[str] | None = None,
    architecture: str | None = None,
    tasks: Sequence[str] | None = None,
    description: str | None = None,
    bbox: Sequence[float] | None = None,
    properties: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of a model as a JSON-ready STAC MLM item (see :func:`write_card`)."""
    if spec.output.postprocess is not None and not isinstance(spec.output.postprocess, str):
        raise OptionError("a card cannot hold a postprocess callable: use 'argmax', 'softmax', 'sigmoid' or None")
    name = spec.name or (Path(model_path).stem if model_path else "model")
    task_list = list(tasks or _tasks(spec))
    props: dict[str, Any] = {
        "description": description or f"eocube model card of {name}",
        "datetime": None,
        "start_datetime": "1900-01-01T00:00:00Z",
        "end_datetime": "9999-12-31T23:59:59Z",
        "mlm:name": name,
        "mlm:architecture": architecture or name,
        "mlm:tasks": task_list,
        "mlm:framework": "PyTorch",
        "mlm:framework_version": _torch_version(),
        "mlm:input": [_input_dict(s) for s in spec.sources],
        "mlm:output": [_output_dict(spec, task_list)],
        "eocube:reference": spec.reference,
        "eocube:halo": spec.halo,
        "eocube:size_multiple": spec.size_multiple,
        "eocube:pairing": spec.pairing,
        "eocube:tolerance": spec.tolerance,
        **dict(properties or {}),
    }
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [MLM_SCHEMA],
        "id": name,
        "geometry": _polygon(bbox) if bbox else None,
        **({"bbox": list(bbox)} if bbox else {}),
        "properties": props,
        "links": [],
        "assets": {"model": _model_asset(model_path, card_path)} if model_path else {},
    }
    return item


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def _polygon(bbox: Sequence[float]) -> dict[str, Any]:
    w, s, e, n = bbox
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _model_asset(model_path: str | os.PathLike[str], card_path: str | os.PathLike[str] | None) -> dict[str, Any]:
    model = Path(model_path)
    base = Path(card_path).parent if card_path else model.parent
    try:
        href = "./" + Path(os.path.relpath(model.resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        href = model.resolve().as_uri()
    kind = artifact_type(model)
    roles = ["mlm:model", "data"] + (["mlm:weights"] if kind == "torch.save" else ["mlm:compiled"] if kind else [])
    asset: dict[str, Any] = {"href": href, "type": _MEDIA_TYPE, "title": model.name, "roles": roles}
    if kind:
        asset["mlm:artifact_type"] = kind
    return asset


def write_card(
    spec: ModelSpec,
    model_path: str | os.PathLike[str],
    *,
    path: str | os.PathLike[str] | None = None,
    architecture: str | None = None,
    tasks: Sequence[str] | None = None,
    description: str | None = None,
    bbox: Sequence[float] | None = None,
    properties: Mapping[str, Any] | None = None,
) -> Path:
    """Write the card of a model beside its file, as a STAC item with the MLM extension.

    Parameters
    ----------
    spec
        What the model consumes and produces.
    model_path
        The model file; the card's ``model`` asset points to it (relative href), with its
        ``mlm:artifact_type`` (``torch.export.save``, ``torch.jit.save`` or ``torch.save``).
    path
        The card file; default: the primary name, ``model.json`` beside ``model.pt2``.
    architecture
        ``mlm:architecture`` (default: the model's name).
    tasks
        ``mlm:tasks`` (default: ``semantic-segmentation`` for class outputs, ``super-resolution``
        for a declared scale > 1, ``regression`` otherwise).
    description
        The item's description.
    bbox
        Area the model is meant for (``[west, south, east, north]`` in degrees); default: none
        (the item's geometry is null).
    properties
        More item properties (e.g. ``mlm:total_parameters``, ``mlm:pretrained``).

    Returns
    -------
    Path
        The card file. ``load_card`` of it gives back ``spec`` (``output.time`` as a
        ``pandas.Timestamp``; a ``name`` of None comes back as the model file's stem, since
        ``mlm:name`` is required).
    """
    card = Path(path) if path is not None else card_candidates(model_path)[-1]
    item = card_dict(spec, model_path, card_path=card, architecture=architecture, tasks=tasks,
                     description=description, bbox=bbox, properties=properties)
    tmp = card.with_name(card.name + ".tmp")
    tmp.write_text(json.dumps(item, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, card)
    return card


# --------------------------------------------------------------------------- exporting models


def _dynamic_shapes(inputs: tuple[Any, ...], spatial: bool, time: bool) -> tuple[Any, ...]:
    """``dynamic_shapes`` for torch.export: batch, and height/width (and time) of every tensor input."""
    import torch

    dyn = torch.export.Dim.DYNAMIC
    shapes: list[Any] = []
    for x in inputs:
        if not isinstance(x, torch.Tensor) or x.ndim == 0:
            shapes.append(None)
            continue
        dims = {0: dyn}
        if spatial and x.ndim >= 3:
            dims.update({x.ndim - 2: dyn, x.ndim - 1: dyn})
        if time and (x.ndim == 5 or x.ndim == 2):
            dims[1] = dyn
        shapes.append(dims)
    return tuple(shapes)


def _check_example(inputs: tuple[Any, ...], spatial: bool) -> None:
    import torch

    for i, x in enumerate(inputs):
        if isinstance(x, torch.Tensor) and x.ndim and (x.shape[0] < 2 or (spatial and x.ndim >= 3 and min(x.shape[-2:]) < 2)):
            raise ExportError(
                f"example input {i} has shape {tuple(x.shape)}: use a batch of at least 2 and height/width of at "
                "least 2 (torch.export specialises sizes of 1 to constants), e.g. torch.zeros(2, C, 64, 64)"
            )


def export_model(
    module: Any,
    example_inputs: Any,
    path: str | os.PathLike[str],
    *,
    spec: ModelSpec | None = None,
    dynamic_spatial: bool = True,
    dynamic_time: bool = False,
    dynamic_shapes: Any = None,
    strict: bool = False,
    check: bool = True,
    atol: float = 1e-5,
    **card_fields: Any,
) -> Path:
    """Export a module as a ``torch.export`` program with dynamic sizes, save it as ``.pt2``, write its card.

    Parameters
    ----------
    module
        A ``torch.nn.Module``; exported in eval mode (its mode is restored afterwards).
    example_inputs
        A tensor or a tuple of tensors (one per argument), e.g. ``torch.zeros(2, 12, 64, 64)``:
        a batch of 2 (a size of 1 is specialised to a constant).
    path
        The ``.pt2`` file to write.
    spec
        What the model consumes and produces; when given, its card is written beside the file
        (:func:`write_card`, primary name ``model.json``).
    dynamic_spatial
        Height and width (the last two dims of every input of 3 or more dims) are dynamic.
    dynamic_time
        The time dim (dim 1 of 5-d and 2-d inputs, as in the ``sequence`` layout) is dynamic too.
    dynamic_shapes
        torch.export's own ``dynamic_shapes``, to replace the ones built here (e.g. with
        ``torch.export.Dim("H", min=32, max=4096)`` or a size multiple ``32 * Dim("h")``).
    strict
        ``torch.export.export``'s ``strict`` (tracing with TorchDynamo).
    check
        Load the saved program with :func:`eocube.models.from_exported` (no pickle, dynamic
        sizes) and compare it with the module on the example inputs.
    atol
        Largest absolute difference accepted by ``check``.
    **card_fields
        Passed to :func:`write_card` (``architecture``, ``tasks``, ``description``, ``bbox``,
        ``properties``); ``architecture`` defaults to the module's class name.

    Returns
    -------
    Path
        The ``.pt2`` file.

    Raises
    ------
    ValueError
        An example input of size 1, a failed export (the cause is chained), or a program that
        does not reproduce the module.
    """
    import torch

    from ._loading import from_exported

    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    if dynamic_shapes is None:
        _check_example(args, dynamic_spatial)
        dynamic_shapes = _dynamic_shapes(args, dynamic_spatial, dynamic_time)
    program = _export(module, args, dynamic_shapes, strict)
    out = Path(path)
    torch.export.save(program, str(out))
    if check:
        _check_program(module, from_exported(out).build(), args, atol)
    if spec is not None:
        card_fields.setdefault("architecture", type(module).__qualname__)
        write_card(spec, out, **card_fields)
    return out


def _export(module: Any, args: tuple[Any, ...], dynamic_shapes: Any, strict: bool) -> Any:
    """``torch.export.export`` in eval mode, the module's mode restored; failures explained."""
    import torch

    training = module.training
    module.eval()
    try:
        return torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=strict)
    except Exception as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ExportError(
            f"torch.export could not export {type(module).__qualname__} with dynamic sizes ({type(exc).__name__}: "
            f"{first}); if the model only accepts some sizes (e.g. multiples of 32), pass dynamic_shapes with "
            "torch.export.Dim (e.g. {2: 32 * Dim('h'), 3: 32 * Dim('w')}), or make the code size-agnostic"
        ) from exc
    finally:
        module.train(training)


def _check_program(module: Any, program: Any, args: tuple[Any, ...], atol: float) -> None:
    """The saved program gives the module's result on the example inputs."""
    import torch

    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            expected, got = module(*args), program(*args)
    finally:
        module.train(training)
    if isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor):
        diff = (expected.float() - got.float()).abs().max().item() if expected.numel() else 0.0
        if expected.shape != got.shape or not diff <= atol:
            raise ExportError(
                f"the exported program of {type(module).__qualname__} does not reproduce the module on the example "
                f"inputs (shape {tuple(got.shape)} vs {tuple(expected.shape)}, max abs difference {diff:.3g})"
            )
