"""Scores of per-pixel intervals on held-out observations: empirical coverage and mean width.

A fill with an uncertainty (``eocube.learn.fill_cube(..., uncertainty=True)``) holds, beside
each band ``B``, bands ``B_lower`` and ``B_upper``; :func:`split_bounds` separates them and
:func:`interval_scores` says which share of the hidden truths fall inside (the coverage, to
compare with the nominal level, e.g. 80 %) and how wide the intervals are.

>>> filled = fill_cube(cube, "run", train_clear, uncertainty=True)
>>> fill, lower, upper = split_bounds(filled)
>>> interval_scores(lower, upper, cube, held_out)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .metrics import held_out_values
from .protocol import EvaluateError

BOUND_SUFFIXES = ("_lower", "_upper")
"""Suffixes of the interval bands of a fill with an uncertainty."""


def split_bounds(filled: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray]:
    """The fill, lower and upper bounds of a cube with ``B``, ``B_lower``, ``B_upper`` bands.

    Parameters
    ----------
    filled
        A cube (time, band, y, x) from ``fill_cube(..., uncertainty=True)``.

    Returns
    -------
    fill, lower, upper
        Three cubes with the same band names ``B`` (lazy if ``filled`` is).

    Raises
    ------
    EvaluateError
        A band without its ``_lower`` or ``_upper`` band.
    """
    names = [str(b) for b in filled["band"].values]
    bands = [b for b in names if not b.endswith(BOUND_SUFFIXES)]
    missing = [b + s for b in bands for s in BOUND_SUFFIXES if b + s not in names]
    if not bands or missing:
        raise EvaluateError(f"the cube's bands {names} lack the interval bands {missing or ['<band>_lower']}: fill with "
                            "eocube.learn.fill_cube(..., uncertainty=True) (a network trained with network.quantiles)")
    parts = [filled.sel(band=[b + s for b in bands]).assign_coords(band=bands) for s in ("", *BOUND_SUFFIXES)]
    return parts[0], parts[1], parts[2]


def interval_scores(lower: xr.DataArray, upper: xr.DataArray, truth: xr.DataArray, held_out: xr.DataArray,
                    *, method: str = "") -> pd.DataFrame:
    """Empirical coverage and mean width of intervals on the held-out observations.

    Parameters
    ----------
    lower, upper
        Bounds (time, band, y, x), the truth's band names (:func:`split_bounds`).
    truth
        The original cube (same grid, at least the same bands).
    held_out
        Boolean (time, y, x) or (time, band, y, x): the hidden clear observations.
    method
        Name to put in the ``method`` column.

    Returns
    -------
    pandas.DataFrame
        One row per band and one ``all`` row: ``method``, ``band``, ``n`` (held-out values
        with a finite truth and both bounds), ``unbounded`` (held-out values without a finite
        interval, left out of the scores), ``coverage`` (share of ``n`` with
        ``lower <= truth <= upper``), ``width`` (mean ``upper - lower``).
    """
    bands = [str(b) for b in lower["band"].values]
    if [str(b) for b in upper["band"].values] != bands:
        raise EvaluateError(f"lower {bands} and upper {[str(b) for b in upper['band'].values]} bands differ")
    (lo, hi, t), m = held_out_values({"lower": lower, "upper": upper, "truth": truth}, held_out, bands)
    rows = []
    for k, name in enumerate(bands + ["all"]):
        sel = m[:, k] if name != "all" else m
        a, b, y = ((x[:, k] if name != "all" else x)[sel] for x in (lo, hi, t))
        use = np.isfinite(a) & np.isfinite(b) & np.isfinite(y)
        inside = (a[use] <= y[use]) & (y[use] <= b[use])
        rows.append({"method": method, "band": name, "n": int(use.sum()),
                     "unbounded": int((np.isfinite(y) & ~(np.isfinite(a) & np.isfinite(b))).sum()),
                     "coverage": float(inside.mean()) if use.any() else np.nan,
                     "width": float(np.mean(b[use] - a[use])) if use.any() else np.nan})
    return pd.DataFrame(rows)


__all__ = ["BOUND_SUFFIXES", "interval_scores", "split_bounds"]
