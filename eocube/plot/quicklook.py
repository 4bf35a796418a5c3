"""Quicklook of a gap fill: one cloudy date before/after, and a few pixels' time series."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the CLI runs on clusters without a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr


def pick_cloudy_date(clear: np.ndarray) -> int:
    """Index of the date whose clear fraction is closest to one half (partly cloudy)."""
    fraction = clear.reshape(clear.shape[0], -1).mean(axis=1)
    return int(np.argmin(np.abs(fraction - 0.5)))


def pick_pixels(clear: np.ndarray, n: int = 3, seed: int = 0) -> list[tuple[int, int]]:
    """A few pixels with both clear and cloudy observations, spread over the image."""
    rng = np.random.default_rng(seed)
    cloudy_share = 1 - clear.mean(axis=0)
    candidates = np.argwhere((cloudy_share > 0.2) & (cloudy_share < 0.8))
    if len(candidates) == 0:
        candidates = np.argwhere(np.ones_like(cloudy_share, dtype=bool))
    chosen = rng.choice(len(candidates), size=min(n, len(candidates)), replace=False)
    return [tuple(int(v) for v in candidates[i]) for i in sorted(chosen)]


def gapfill_quicklook(
    observed: xr.DataArray,
    clear: xr.DataArray,
    filled: xr.DataArray,
    path: str | os.PathLike[str],
    *,
    band: str | None = None,
    date_index: int | None = None,
    n_pixels: int = 3,
) -> Path:
    """Save a PNG: a cloudy date before and after filling, and pixel time series.

    The filled cube may hold other dates than the observed one (a time grid): the
    "after" map is then the grid date nearest to the cloudy observed date, and the
    series draw the filled values on the grid dates.

    Parameters
    ----------
    observed
        The input cube (lazy is fine: only one date and a few pixels are read).
    clear
        Clear mask (time, y, x) on the observed dates, True = clear.
    filled
        The filled cube, on the observed dates or on a time grid.
    path
        Where to write the PNG.
    band
        Band to show (the first band of ``filled`` by default).
    date_index
        Observed date to show; by default the partly cloudy date closest to half clear.
    n_pixels
        Number of pixel time series.

    Returns
    -------
    pathlib.Path
        The PNG written.
    """
    band = band or str(filled["band"].values[0])
    clear_np = np.asarray(clear.transpose("time", "y", "x").values, dtype=bool)
    t = pick_cloudy_date(clear_np) if date_index is None else date_index
    pixels = pick_pixels(clear_np, n_pixels)
    times = pd.DatetimeIndex(observed["time"].values)
    filled_times = pd.DatetimeIndex(filled["time"].values)
    on_grid = not filled_times.equals(times)
    when = times[t]
    t_after = int(filled_times.get_indexer([when], method="nearest")[0])
    when_after = filled_times[t_after]
    before = observed.sel(band=band).isel(time=t).values
    after = filled.sel(band=band).isel(time=t_after).values
    vmin, vmax = _colour_range(before[clear_np[t]], after)

    fig = plt.figure(figsize=(13, 7.5), layout="constrained")
    grid = fig.add_gridspec(2, 3, height_ratios=[1.1, 1])
    ax_before, ax_after = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    shown = np.where(clear_np[t], before, np.nan)
    cmap = plt.get_cmap("RdYlGn").copy()
    cmap.set_bad("0.75")
    ax_before.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax)
    ax_before.set_title(f"{band} {when:%Y-%m-%d}, observed\n(grey: cloud, {100 * (1 - clear_np[t].mean()):.0f}% of pixels)")
    im = ax_after.imshow(after, cmap=cmap, vmin=vmin, vmax=vmax)
    grid_note = f"\n(time-grid date nearest to {when:%Y-%m-%d})" if on_grid else ""
    ax_after.set_title(f"{band} {when_after:%Y-%m-%d}, gap filled{grid_note}")
    fig.colorbar(im, ax=[ax_before, ax_after], shrink=0.8, label=band)
    ax_map = fig.add_subplot(grid[0, 2])
    ax_map.imshow(clear_np.mean(axis=0), cmap="Blues", vmin=0, vmax=1)
    ax_map.set_title("share of clear dates per pixel")
    for k, (row, col) in enumerate(pixels):
        for ax in (ax_before, ax_after, ax_map):
            ax.plot(col, row, marker="o", mfc="none", mec=f"C{k}", ms=10, mew=2)
    for ax in (ax_before, ax_after, ax_map):
        ax.set_xticks([])
        ax.set_yticks([])

    ax_ts = fig.add_subplot(grid[1, :])
    for k, (row, col) in enumerate(pixels):
        obs = observed.sel(band=band).isel(y=row, x=col).values
        fil = filled.sel(band=band).isel(y=row, x=col).values
        ok = clear_np[:, row, col]
        ax_ts.plot(filled_times, fil, color=f"C{k}", lw=1.2, marker="." if on_grid else None,
                   label=f"pixel (row {row}, col {col}) filled" + (" on the time grid" if on_grid else ""))
        ax_ts.plot(times[ok], obs[ok], "o", color=f"C{k}", ms=5, label="clear observation" if k == 0 else None)
        ax_ts.plot(times[~ok], obs[~ok], "x", color=f"C{k}", ms=6, alpha=0.6,
                   label="cloudy observation (discarded)" if k == 0 else None)
    ax_ts.axvline(when, color="0.5", ls="--", lw=1)
    ax_ts.set_ylabel(band)
    ax_ts.legend(loc="upper left", fontsize=8, ncols=2)
    ax_ts.set_title("time series: clear (dots), cloudy (crosses), filled (lines"
                    + (", small dots on the time-grid dates)" if on_grid else ")"))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _colour_range(*arrays: np.ndarray) -> tuple[float, float]:
    """2nd and 98th percentiles of the finite values (0..1 when there is none)."""
    values = np.concatenate([np.ravel(a) for a in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [2, 98])
    return float(low), float(high)
