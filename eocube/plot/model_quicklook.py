"""Quicklook of a model's output: the input (RGB when it has red, green and blue) beside the result.

A class map is drawn with one colour per class (the card's ``color_hint`` colours, else a
qualitative colour map) and a legend of the class names; any other output (regression,
super-resolution, ...) shows its first band with a colour bar. Panels share the map
coordinates, so inputs and outputs on different grids line up.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the CLI runs on clusters without a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.patches import Patch

from ..grid import Grid
from ..nodata import cube_nodata

RGB_NAMES = (("B04", "B03", "B02"), ("red", "green", "blue"), ("R", "G", "B"))
"""Band names taken as red, green, blue (first match wins)."""


def _step(cube: xr.DataArray, max_pixels: int) -> int:
    return max(1, math.ceil(max(cube.sizes["y"], cube.sizes["x"]) / max_pixels))


def _extent(cube: xr.DataArray) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) of the cube's grid."""
    return Grid.of(cube).extent


def _image(cube: xr.DataArray, when: pd.Timestamp, bands: Sequence[str], max_pixels: int) -> np.ndarray:
    """The bands at the date nearest ``when``, decimated to at most ``max_pixels`` per side, as float."""
    times = pd.DatetimeIndex(cube["time"].values)
    t = int(times.get_indexer([when], method="nearest")[0]) if len(times) > 1 else 0
    step = _step(cube, max_pixels)
    part = cube.isel(time=t, y=slice(None, None, step), x=slice(None, None, step)).sel(band=list(bands))
    values = np.asarray(part.values, dtype="float64")
    nodata = cube_nodata(cube)
    if nodata is not None:
        values[values == nodata] = np.nan
    return values


def _stretch(values: np.ndarray) -> np.ndarray:
    """Each band to 0..1 between its 2nd and 98th percentiles (NaN -> 0)."""
    out = np.zeros_like(values)
    for i, band in enumerate(values):
        finite = band[np.isfinite(band)]
        if finite.size == 0:
            continue
        lo, hi = np.percentile(finite, [2, 98])
        out[i] = np.clip((band - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    return np.nan_to_num(out)


def _rgb_bands(cube: xr.DataArray) -> tuple[str, ...] | None:
    have = {str(b) for b in cube["band"].values}
    return next((names for names in RGB_NAMES if set(names) <= have), None)


def _draw_input(ax: Any, sources: Mapping[str, xr.DataArray], when: pd.Timestamp, max_pixels: int) -> None:
    """The RGB of the first source with red, green and blue bands, else the first band of the first source."""
    for name, cube in sources.items():
        bands = _rgb_bands(cube)
        if bands:
            rgb = _stretch(_image(cube, when, bands, max_pixels))
            ax.imshow(np.moveaxis(rgb, 0, -1), extent=_extent(cube), interpolation="nearest")
            ax.set_title(f"input {name}: RGB ({', '.join(bands)})")
            return
    name, cube = next(iter(sources.items()))
    band = str(cube["band"].values[0])
    values = _image(cube, when, [band], max_pixels)[0]
    finite = values[np.isfinite(values)]
    vmin, vmax = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
    im = ax.imshow(values, extent=_extent(cube), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label=band)
    ax.set_title(f"input {name}: {band}")


def _classes(result: xr.DataArray, classes: Sequence[Any]) -> list[tuple[int, str, str | None]]:
    """(value, name, colour or None) of each class: the card's, else the output's attributes."""
    if classes:
        return [(int(c.value), str(c.name), c.color) for c in classes]
    values, names = result.attrs.get("class_values"), result.attrs.get("class_names")
    if values is not None and names is not None:
        return [(int(v), str(n), None) for v, n in zip(values, names)]
    return []


def is_class_map(result: xr.DataArray, classes: Sequence[Any] = ()) -> bool:
    """Whether the output is a class map (integer values with classes, or a ``class`` band)."""
    integer = np.issubdtype(result.dtype, np.integer)
    return integer and (bool(classes) or "class_values" in result.attrs or "class" in map(str, result["band"].values))


def _draw_classes(ax: Any, result: xr.DataArray, values: np.ndarray, classes: Sequence[Any]) -> None:
    table = _classes(result, classes)
    if not table:
        present = np.unique(values[np.isfinite(values)]).astype(int)
        table = [(int(v), str(v), None) for v in present]
    table.sort()
    cycle = plt.get_cmap("tab20")
    colours = [f"#{c.lstrip('#')}" if c else cycle(i % 20) for i, (_, _, c) in enumerate(table)]
    cmap = ListedColormap(colours)
    cmap.set_bad("white")
    bounds = [v - 0.5 for v, _, _ in table] + [table[-1][0] + 0.5]
    norm = BoundaryNorm(bounds, cmap.N)
    ax.imshow(np.ma.masked_invalid(values), extent=_extent(result), cmap=cmap, norm=norm, interpolation="nearest")
    handles = [Patch(facecolor=col, edgecolor="0.3", label=f"{v}: {n}") for (v, n, _), col in zip(table, colours)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="classes")


def _pick_date(result: xr.DataArray, max_pixels: int, candidates: int = 12) -> int:
    """Among a few evenly spread dates, the one whose first band has the most valid (decimated) pixels."""
    n = result.sizes["time"]
    if n == 1:
        return 0
    idx = sorted(set(np.linspace(0, n - 1, min(n, candidates)).round().astype(int)))
    step = _step(result, max_pixels)
    part = result.isel(time=idx, band=0, y=slice(None, None, step), x=slice(None, None, step)).values
    valid = np.isfinite(part.astype("float64"))
    nodata = cube_nodata(result)
    if nodata is not None:
        valid &= part != nodata
    return int(idx[int(np.argmax(valid.reshape(len(idx), -1).mean(axis=1)))])


def model_quicklook(
    result: xr.DataArray,
    path: str | os.PathLike[str],
    *,
    sources: Mapping[str, xr.DataArray] | None = None,
    classes: Sequence[Any] = (),
    date_index: int | None = None,
    max_pixels: int = 1024,
) -> Path:
    """Save a PNG of a model's output, beside its input when given.

    Parameters
    ----------
    result
        The model's output cube (lazy is fine: one date, decimated, is read).
    path
        Where to write the PNG.
    sources
        The model's input cubes by name; the first with red, green and blue bands (``B04, B03,
        B02`` or ``red, green, blue``) is shown as RGB, else the first band of the first one.
    classes
        The output's classes (:class:`eocube.models.ClassInfo`: value, name, colour); default:
        the ``class_values`` / ``class_names`` attributes of ``result``.
    date_index
        Date of ``result`` to show; default: of a few spread dates, the one with the most valid pixels.
    max_pixels
        Longest side drawn (larger images are decimated).

    Returns
    -------
    pathlib.Path
        The PNG written.
    """
    t = _pick_date(result, max_pixels) if date_index is None else date_index
    when = pd.Timestamp(result["time"].values[t])
    panels = 2 if sources else 1
    aspect = result.sizes["y"] / max(1, result.sizes["x"])
    height = min(8.0, max(3.5, 6.5 * aspect + 1.0))
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels + 1.5, height), layout="constrained", squeeze=False)
    if sources:
        _draw_input(axes[0, 0], sources, when, max_pixels)
    ax = axes[0, -1]
    band = str(result["band"].values[0])
    values = _image(result, when, [band], max_pixels)[0]
    if is_class_map(result, classes):
        _draw_classes(ax, result, values, classes)
        ax.set_title(f"output: class map ({band}), {when:%Y-%m-%d}")
    else:
        finite = values[np.isfinite(values)]
        vmin, vmax = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
        im = ax.imshow(values, extent=_extent(result), cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.8, label=band)
        more = f" (1 of {result.sizes['band']} bands)" if result.sizes["band"] > 1 else ""
        ax.set_title(f"output: {band}{more}, {when:%Y-%m-%d}, scale {result.attrs.get('model_scale', '1')}")
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
