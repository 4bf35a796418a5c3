"""Scores of a gap fill on held-out observations: RMSE, MAE and bias per band and overall."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .protocol import EvaluateError


def held_out_values(cubes: dict[str, xr.DataArray], held_out: xr.DataArray,
                    bands: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """The ``bands`` of each cube and the held-out mask as ``(time, band, y, x)`` arrays of one shape.

    Parameters
    ----------
    cubes
        Named cubes (the names go into the error message), each with at least ``bands``.
    held_out
        Boolean (time, y, x) or (time, band, y, x).
    bands
        The bands to compare, in order.

    Returns
    -------
    values : list of numpy.ndarray
        float64, one per cube, in the order given.
    mask : numpy.ndarray
        bool.

    Raises
    ------
    EvaluateError
        When the shapes differ.
    """
    mask = held_out.sel(band=bands) if "band" in held_out.dims else held_out.expand_dims(band=bands)
    m = np.asarray(mask.transpose("time", "band", "y", "x").values, dtype=bool)
    values = [np.asarray(c.sel(band=bands).transpose("time", "band", "y", "x").values, dtype="float64")
              for c in cubes.values()]
    if any(v.shape != m.shape for v in values):
        shapes = ", ".join(f"{name} {v.shape}" for name, v in zip(cubes, values))
        raise EvaluateError(f"{shapes} and held-out {m.shape} shapes differ")
    return values, m


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
    (f, t), mask = held_out_values({"filled": filled, "truth": truth}, held_out, bands)
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
