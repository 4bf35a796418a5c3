"""From what the caller passed (a spec, a card, the old keywords) to one :class:`ModelSpec` and one :class:`RunOptions`.

The keywords of the first ``apply_model`` (``layout=``, ``bands=``, ``out_bands=``, ``tile_size=``,
...) are a deprecated shorthand: each one overrides the matching field of the spec (or of the
card found beside the model file) or of the run options, and emits a :class:`DeprecationWarning`
that names the field to set instead (:data:`DEPRECATED`). With several sources, a source keyword
applies to every source, or is a dict ``{source name: value}``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import xarray as xr

from ._errors import SourceError
from ._sources import as_fraction
from ._spec import ModelSpec, RunOptions, SourceSpec
from .card import find_card, load_card

SOURCE_KEYS = {"layout": "layout", "bands": "bands", "valid_input": "valid_input", "time_input": "time_input",
               "fill_value": "fill_value"}
OUTPUT_KEYS = {"out_bands": "bands", "output": "kind", "out_time": "time", "postprocess": "postprocess",
               "out_dtype": "dtype", "out_nodata": "nodata", "mask_output": "mask", "scale": "scale"}
MODEL_KEYS = {"halo": "halo", "size_multiple": "size_multiple", "reference": "reference", "pairing": "pairing",
              "tolerance": "tolerance", "model_version": "version"}
RUN_KEYS = {key: key for key in ("tile_size", "batch_size", "chunks", "device", "autocast", "torch_threads",
                                 "resources", "name", "prefetch")}
KEYWORDS = sorted({*SOURCE_KEYS, *OUTPUT_KEYS, *MODEL_KEYS, *RUN_KEYS})

DEPRECATED: dict[str, str] = {
    **{key: f"ModelSpec(sources=(SourceSpec({fld}=...), ...))" for key, fld in SOURCE_KEYS.items()},
    **{key: f"ModelSpec(output=OutputSpec({fld}=...))" for key, fld in OUTPUT_KEYS.items()},
    **{key: f"ModelSpec({fld}=...)" for key, fld in MODEL_KEYS.items()},
    **{key: f"apply_model(..., run=RunOptions({fld}=...))" for key, fld in RUN_KEYS.items()},
}
"""Each old keyword of ``apply_model`` and the spec field that replaces it (as its warning says)."""

_OWN = ("eocube.models.", "eocube.accessor")
"""Modules whose frames a deprecation warning skips: it points at the code that called ``apply_model``."""


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside the model engine (and the ``.eocube`` accessor)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and str(frame.f_globals.get("__name__", "")).startswith(_OWN):
        frame, level = frame.f_back, level + 1
    return level


def warn_keywords(keywords: Mapping[str, Any]) -> None:
    """One :class:`DeprecationWarning` per old keyword given, naming the spec field to set instead."""
    level = _caller_stacklevel()
    for key in sorted(keywords):
        if key in DEPRECATED:
            warnings.warn(f"apply_model({key}=...) is deprecated; use {DEPRECATED[key]}", DeprecationWarning,
                          stacklevel=level)


def load_spec(spec: Any, model: Any) -> ModelSpec | None:
    """The spec given, the card at a path, the card found beside a model file, or None."""
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return load_card(Path(spec))
    if spec is not None:
        raise TypeError(f"spec must be a ModelSpec, the path of a model card, or None; got {type(spec).__name__}")
    found = find_card(Path(model)) if isinstance(model, (str, os.PathLike)) else None
    return None if found is None else load_card(found)


def _tuple(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return tuple(str(v) for v in value)


def _source_names(sources: Any) -> list[str]:
    if isinstance(sources, Mapping):
        return [str(k) for k in sources]
    if isinstance(sources, (list, tuple)) and not isinstance(sources, xr.DataArray):
        return ["input"] if len(sources) == 1 else [f"input_{i}" for i in range(len(sources))]
    return ["input"]


def resolve(
    sources: Any, model: Any, spec: Any, run: RunOptions | None, keywords: Mapping[str, Any]
) -> tuple[ModelSpec, RunOptions]:
    """One spec and one set of run options from a spec or card, run options and the old keywords.

    Each keyword (the deprecated shorthand) overrides one field and warns (:func:`warn_keywords`).

    Raises
    ------
    TypeError
        An unknown keyword (the message lists the known ones).
    """
    unknown = sorted(set(keywords) - set(KEYWORDS))
    if unknown:
        raise TypeError(f"apply_model() got unexpected keyword(s) {unknown}; the keywords are {KEYWORDS}")
    warn_keywords(keywords)
    loaded = load_spec(spec, model)
    if loaded is None:
        loaded = ModelSpec(sources=tuple(SourceSpec(name=n) for n in _source_names(sources)))
    names = [s.name for s in loaded.sources]

    new_sources = []
    for src in loaded.sources:
        changes = {}
        for key, fld in SOURCE_KEYS.items():
            if key not in keywords:
                continue
            value = keywords[key]
            if isinstance(value, Mapping):
                if src.name not in value:
                    continue
                value = value[src.name]
            changes[fld] = _tuple(value) if fld == "bands" else value
        new_sources.append(replace(src, **changes))
    for key in SOURCE_KEYS:
        if isinstance(keywords.get(key), Mapping):
            extra = sorted(set(keywords[key]) - set(names))
            if extra:
                raise SourceError(f"{key}= names sources {extra} that the model does not take; its sources are {names}")

    out_changes = {fld: keywords[key] for key, fld in OUTPUT_KEYS.items() if key in keywords}
    if "bands" in out_changes:
        out_changes["bands"] = _tuple(out_changes["bands"]) if not isinstance(out_changes["bands"], str) or \
            out_changes["bands"] == "input" else (out_changes["bands"],)
    if "scale" in out_changes and out_changes["scale"] != "probe":
        out_changes["scale"] = as_fraction(out_changes["scale"])
    if isinstance(loaded.output.scale, (int, float, str)) and loaded.output.scale != "probe" and "scale" not in out_changes:
        out_changes["scale"] = as_fraction(loaded.output.scale)
    output = replace(loaded.output, **out_changes) if out_changes else loaded.output
    model_changes = {fld: keywords[key] for key, fld in MODEL_KEYS.items() if key in keywords}
    resolved = replace(loaded, sources=tuple(new_sources), output=output, **model_changes)

    run_changes = {fld: keywords[key] for key, fld in RUN_KEYS.items() if key in keywords}
    options = replace(run or RunOptions(), **run_changes)
    return resolved, options

