"""Run the artificial-gap protocol for several gap-filling methods on one cube."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import pandas as pd
import xarray as xr

from ..cube import select_bands, validate_cube
from ..fill import METHODS, fill_gaps
from ..names import EVALUATED_METHODS
from .metrics import score
from .protocol import EvaluateError, artificial_gaps

DEFAULT_METHODS: tuple[str, ...] = EVALUATED_METHODS
"""Methods scored by default (``next`` mirrors ``previous``)."""

Filler = Callable[[xr.DataArray, xr.DataArray], xr.DataArray]
"""A gap filler to compare: ``filler(cube, train_clear) -> filled cube`` (e.g. a learned model)."""


def evaluate_methods(
    cube: xr.DataArray,
    clear: xr.DataArray,
    *,
    methods: Sequence[str] | None = None,
    bands: str | list[str] | None = None,
    fraction: float = 0.2,
    seed: int = 0,
    donor: str = "dates",
    options: Mapping[str, dict] | None = None,
    extra: Mapping[str, Filler] | None = None,
    where: xr.DataArray | None = None,
) -> pd.DataFrame:
    """Hide clear observations behind real cloud masks, fill with each method, score.

    Parameters
    ----------
    cube
        The cube (real data).
    clear
        Its boolean clear mask (time, y, x).
    methods
        Keys of :data:`eocube.fill.METHODS`; default :data:`DEFAULT_METHODS`.
    bands
        Bands to fill and score (all by default).
    fraction, seed, donor
        The protocol (see :func:`artificial_gaps`); the same for every method.
    options
        Per-method keyword options for :func:`eocube.fill.fill_gaps`, e.g. ``{"whittaker": {"lmbda": 50}}``.
    extra
        Further fillers by name, e.g. a learned model: ``filler(cube, train_clear) -> filled``.
    where
        Boolean ``(y, x)`` pixels to score (e.g. the part of a cube a network never saw in
        training); None: every pixel. Gaps are hidden over the whole cube as usual, so every
        method keeps the same context around the scored pixels.

    Returns
    -------
    pandas.DataFrame
        :func:`score` rows for every method (bands and ``all``).
    """
    validate_cube(cube)
    cube = select_bands(cube, bands)
    train, held = artificial_gaps(clear, fraction, seed, donor=donor)
    if where is not None:
        if set(where.dims) != {"y", "x"} or where.dtype != bool:
            raise EvaluateError(f"where must be a boolean (y, x) mask, got dims {where.dims} dtype {where.dtype}")
        held = held & where.transpose("y", "x")
        if not bool(held.any()):
            raise EvaluateError("no held-out observation falls where scores are asked for: widen `where` "
                                "or raise the fraction")
    truth = cube.load()
    tables = []
    for name in methods or DEFAULT_METHODS:
        if name not in METHODS:
            from ..fill import FillError

            raise FillError(f"unknown gap-filling method {name!r}; choose from {sorted(METHODS)}")
        filled = fill_gaps(truth, train, method=name, **dict((options or {}).get(name, {})))
        tables.append(score(filled.compute(), truth, held, method=name))
    for name, filler in (extra or {}).items():
        tables.append(score(filler(truth, train).compute(), truth, held, method=name))
    table = pd.concat(tables, ignore_index=True)
    table.attrs = {"fraction": fraction, "seed": seed, "donor": donor, "held_out": int(held.sum()),
                   "where": None if where is None else int(where.sum())}
    return table
