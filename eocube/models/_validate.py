"""The values a :class:`ModelSpec` and :class:`RunOptions` may take, checked once before the graph is built.

The names (layouts, output kinds, masks, pairings) are :mod:`eocube.names`; each refusal is an
:class:`OptionError` that names the field, the value given and what it takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..names import LAYOUTS, MASK_OUTPUTS, OUTPUT_KINDS, PAIRINGS, VALID_INPUTS
from ._device import check_autocast, check_device_early
from ._errors import OptionError
from ._sources import as_fraction
from ._spec import ModelSpec, OutputSpec, RunOptions


def check_spec(spec: ModelSpec, run: RunOptions) -> None:
    """Values the spec and the run options may take (clear errors before anything else).

    Raises
    ------
    OptionError
        A field out of range, named with the value it takes (a layout, output kind, mask, pairing
        not among :mod:`eocube.names`; a count not a whole number >= 1; chunks, dtype, nodata,
        scale, fill value, threads, autocast or device of the wrong kind).
    """
    for src in spec.sources:
        if src.layout not in LAYOUTS:
            raise OptionError(f"layout must be one of {LAYOUTS}, got {src.layout!r}")
        if src.valid_input not in (None, *VALID_INPUTS):
            raise OptionError(f"valid_input must be None or one of {VALID_INPUTS}, got {src.valid_input!r}")
    out = spec.output
    if out.mask not in (None, *MASK_OUTPUTS):
        raise OptionError(f"mask_output must be None or one of {MASK_OUTPUTS}, got {out.mask!r}")
    if out.kind not in OUTPUT_KINDS:
        raise OptionError(f"output must be one of {OUTPUT_KINDS}, got {out.kind!r}")
    _check_counts(run, spec)
    _check_chunks(run.chunks)
    _check_output(out)
    for src in spec.sources:
        try:
            float(src.fill_value)
        except (TypeError, ValueError):
            raise OptionError(f"fill_value={src.fill_value!r} (source {src.name!r}) is not a number: give the value "
                              "fed to the model where the input is nodata, e.g. 0") from None
    if run.torch_threads is not None and (not _whole(run.torch_threads) or run.torch_threads < 1):
        raise OptionError(f"torch_threads={run.torch_threads!r}: give a whole number >= 1, or None (the process's "
                          "cores divided by its dask threads)")
    if spec.pairing not in PAIRINGS:
        raise OptionError(f"pairing must be one of {PAIRINGS}, got {spec.pairing!r}")
    temporal = {src.layout != "band" for src in spec.sources}
    if len(temporal) > 1:
        raise OptionError(
            "the sources mix the per-date layout 'band' with temporal layouts: use 'band' for every source (dates "
            "paired across sources) or a temporal layout ('time_band', 'sequence') for every source"
        )
    check_autocast(run.autocast)
    check_device_early(run.device)


def _whole(value: Any) -> bool:
    """A whole number (not a bool, not a float such as 2.5)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_counts(run: RunOptions, spec: ModelSpec) -> None:
    """``batch_size``, ``tile_size`` and ``size_multiple``: whole numbers >= 1 (``tile_size`` may be None)."""
    for name, value, none in (("batch_size", run.batch_size, ""), ("size_multiple", spec.size_multiple, ""),
                              ("tile_size", run.tile_size, " (or None: one tile per chunk)")):
        if value is None and none:
            continue
        if not _whole(value) or value < 1:
            raise OptionError(f"{name}={value!r}: give a whole number >= 1{none}")


def _check_output(out: OutputSpec) -> None:
    """``out_dtype`` a numeric type, ``out_nodata`` a value it holds, ``scale`` a positive ratio."""
    if out.dtype is not None:
        try:
            dtype = np.dtype(out.dtype)
        except TypeError:
            raise OptionError(f"out_dtype={out.dtype!r} is not a numpy dtype: give one such as 'float32' or "
                              "'uint8'") from None
        if dtype.kind not in "biuf":
            raise OptionError(f"out_dtype={out.dtype!r}: the output holds numbers; give a numeric dtype such as "
                              f"'float32' or 'uint8', not {dtype}")
    if out.nodata is not None:
        dtype = np.dtype(out.dtype) if out.dtype is not None else None
        try:
            value = float(out.nodata)
        except (TypeError, ValueError):
            raise OptionError(f"out_nodata={out.nodata!r} is not a number: give the output's nodata value, e.g. "
                              "NaN for floats or 255 for uint8") from None
        if dtype is not None and dtype.kind in "iu" and not (
                value.is_integer() and np.iinfo(dtype).min <= value <= np.iinfo(dtype).max):
            info = np.iinfo(dtype)
            raise OptionError(f"out_nodata={out.nodata!r} cannot be held by out_dtype {dtype} (whole numbers "
                              f"{info.min}..{info.max}): give a value in that range")
    if out.scale not in ("probe", None):
        ratio = as_fraction(out.scale)  # OptionError when it is not a ratio
        if ratio <= 0:
            raise OptionError(f"scale={out.scale!r}: output pixels per reference pixel must be > 0 (4 for x4 "
                              "super-resolution, '1/4' for a stride-4 model)")


def _check_chunks(chunks: Any) -> None:
    """``chunks``: a dict of time, y and x to whole numbers >= 1 (or -1 / None: the whole axis)."""
    if chunks is None:
        return
    if not isinstance(chunks, Mapping):
        raise OptionError(f"chunks={chunks!r}: give a dict such as {{'y': 1024, 'x': 1024}}")
    unknown = sorted(str(d) for d in chunks if d not in ("time", "band", "y", "x"))
    if unknown:
        raise OptionError(f"chunks={dict(chunks)!r}: unknown dim(s) {unknown}; chunks takes time, y and x")
    for dim, value in chunks.items():
        if value is None or (_whole(value) and (value >= 1 or value == -1)):
            continue
        raise OptionError(f"chunks={dict(chunks)!r}: {dim} must be a whole number >= 1 (or -1 for the whole axis), "
                          f"got {value!r}")
