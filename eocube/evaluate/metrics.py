"""Scores of a gap fill on held-out observations: RMSE, MAE and bias per band and overall."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .protocol import EvaluateError


def score(filled: xr.DataArray, truth: xr.DataArray, held_out: xr.DataArray, *, method: str = "") -> pd.DataFrame:
    """Compare filled values with the truth on the held-out observations.

    Parameters
    ----------
    filled
        Filled cube (time, band, y, x).
    truth
        The original cube (same grid, at least the same bands).
    held_out
        Boolean (time, y, x) or (time, band, y, x): the hidden clear observations.
    method
        Name to put in the ``method`` column.

    Returns
    -------
    pandas.DataFrame
        One row per band and one ``all`` row (all bands pooled), columns ``method``,
        ``band``, ``n`` (held-out values scored), ``unfilled`` (held-out values left
        NaN by the method), ``rmse``, ``mae``, ``bias`` (mean of filled - truth).
    """
    bands = [str(b) for b in filled["band"].values]
    truth = truth.sel(band=bands)
    mask = held_out if "band" in held_out.dims else held_out.expand_dims(band=bands)
    mask = mask.transpose("time", "band", "y", "x").values.astype(bool)
    f = np.asarray(filled.transpose("time", "band", "y", "x").values, dtype="float64")
    t = np.asarray(truth.transpose("time", "band", "y", "x").values, dtype="float64")
    if f.shape != t.shape or f.shape != mask.shape:
        raise EvaluateError(f"filled {f.shape}, truth {t.shape} and held-out {mask.shape} shapes differ")
    rows = []
    for k, name in enumerate(bands + ["all"]):
        sel = mask[:, k] if name != "all" else mask
        ff = f[:, k][sel] if name != "all" else f[sel]
        tt = t[:, k][sel] if name != "all" else t[sel]
        use = np.isfinite(ff) & np.isfinite(tt)
        err = ff[use] - tt[use]
        rows.append({
            "method": method, "band": name, "n": int(use.sum()), "unfilled": int((~np.isfinite(ff)).sum()),
            "rmse": float(np.sqrt(np.mean(err ** 2))) if err.size else np.nan,
            "mae": float(np.mean(np.abs(err))) if err.size else np.nan,
            "bias": float(np.mean(err)) if err.size else np.nan,
        })
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame, *, digits: int = 4) -> str:
    """The score table as Markdown-like text (one line per method and band)."""
    cols = ["method", "band", "n", "unfilled", "rmse", "mae", "bias"]
    head = "| " + " | ".join(cols) + " |"
    rule = "|" + "|".join("---" for _ in cols) + "|"
    lines = [head, rule]
    for _, r in table[cols].iterrows():
        cells = [str(r["method"]), str(r["band"]), str(r["n"]), str(r["unfilled"])]
        cells += [f"{r[c]:.{digits}f}" for c in ("rmse", "mae", "bias")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
