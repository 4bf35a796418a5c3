"""Bar chart of the evaluation table (RMSE and MAE per method)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def plot_scores(table: pd.DataFrame, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Save a PNG with RMSE and MAE per method (overall and per band), best method first.

    Parameters
    ----------
    table
        Output of :func:`eocube.evaluate.evaluate_methods` (or concatenated :func:`score` tables).
    path
        PNG to write.
    title
        Figure title (default: the protocol settings from ``table.attrs``).

    Returns
    -------
    pathlib.Path
        The PNG written.
    """
    bands = list(dict.fromkeys(table["band"]))
    overall = table[table["band"] == "all"].sort_values("rmse")
    order = list(overall["method"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    width = 0.8 / len(bands)
    x = np.arange(len(order))
    for ax, metric in zip(axes, ("rmse", "mae")):
        for k, band in enumerate(bands):
            part = table[table["band"] == band].set_index("method").reindex(order)
            ax.bar(x + (k - (len(bands) - 1) / 2) * width, part[metric], width, label=band)
        ax.set_xticks(x, order, rotation=30, ha="right")
        ax.set_ylabel(metric.upper())
        ax.set_title(f"{metric.upper()} on held-out clear observations (lower is better)")
    axes[0].legend(title="band", fontsize=8)
    attrs = table.attrs
    fig.suptitle(title or (f"artificial gaps: {attrs.get('held_out', '?')} held-out observations, "
                           f"fraction {attrs.get('fraction', '?')}, donor {attrs.get('donor', '?')}, "
                           f"seed {attrs.get('seed', '?')}"))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
