"""Nested input sources (and a target) read window by window on the reference grid, for the patch dataset.

:class:`PatchSources` holds one or several cubes whose grids nest (as ``apply_model`` takes them:
pixel sizes integer multiples of the finest, corners on pixel corners). Windows are cut on the
reference (finest) grid and each source is read in its own pixels by a
:class:`~eocube.learn.windows.WindowReader` (batched chunk reads, staged chunks).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from ..cube import select_bands
from ..nodata import cube_nodata
from .errors import LearnError
from .windows import WindowReader, stage_budget, stage_readers

log = logging.getLogger(__name__)


def _check_target_grid(target: xr.DataArray, base: xr.DataArray, reference: str) -> None:
    """Refuse a target of the reference grid's size but in another CRS or at another place or pixel size.

    A label or truth raster of the right size but shifted by a few pixels would otherwise be read as if it
    lay on the reference grid: every patch would pair inputs with the wrong pixels' labels.
    """
    if not {"y", "x"} <= set(target.coords):
        return  # no coordinates: the array is taken as already on the reference grid (said by the shape check)
    tgt_crs, ref_crs = target.rio.crs, base.rio.crs
    if tgt_crs is not None and ref_crs is not None and tgt_crs != ref_crs:
        raise LearnError(
            f"the target is in {tgt_crs} but the reference source ({reference}) in {ref_crs}: reproject the "
            f"target onto the reference grid (target.rio.reproject_match(reference_cube, resampling=nearest))"
        )
    # pixel-centre coordinates, as xarray aligns them (a cached GeoTransform attribute may be stale)
    tol = 1e-6 * min(abs(float(v)) for v in base.rio.resolution())
    for axis in ("y", "x"):
        t, r = np.asarray(target[axis].values, dtype="float64"), np.asarray(base[axis].values, dtype="float64")
        if not np.allclose(t, r, rtol=0.0, atol=tol):
            step = float(t[1] - t[0]) if len(t) > 1 else float("nan")
            ref_step = float(r[1] - r[0]) if len(r) > 1 else float("nan")
            raise LearnError(
                f"the target's {axis} coordinates ({t[0]:g}, step {step:g}) are not the reference source's "
                f"({reference}: {r[0]:g}, step {ref_step:g}): same size but another origin or pixel size, "
                f"so labels would be paired with other pixels; reproject the target onto the reference grid "
                f"(target.rio.reproject_match(reference_cube, resampling=nearest))"
            )


def select_date(cube: xr.DataArray, time: int | str | None) -> xr.DataArray:
    """The ``(band, y, x)`` image of one date (index or date string), or ``(time*band, y, x)`` for ``"all"``.

    Cubes without a time dim are returned as they are.
    """
    if "time" not in cube.dims:
        return cube.transpose("band", "y", "x")
    if time == "all":
        t, b = cube.sizes["time"], cube.sizes["band"]
        flat = cube.transpose("time", "band", "y", "x").data.reshape((t * b, cube.sizes["y"], cube.sizes["x"]))
        names = [f"{str(d)[:10]}:{band}" for d in cube["time"].values for band in cube["band"].values]
        return xr.DataArray(flat, dims=("band", "y", "x"), coords={"band": names, "y": cube["y"], "x": cube["x"]},
                            attrs=cube.attrs)
    if time is None or isinstance(time, (int, np.integer)):
        return cube.isel(time=int(time or 0)).transpose("band", "y", "x")
    return cube.sel(time=str(time), method="nearest").transpose("band", "y", "x")


@dataclass
class SourceInfo:
    """One input source of a :class:`PatchSources`."""

    name: str
    bands: tuple[str, ...]
    ratio: int
    """Pixel size over the reference's."""
    reader: WindowReader
    base_bands: tuple[str, ...] = ()
    """The cube's bands (``bands`` is ``n_dates`` times them, date-major, when dates are stacked)."""
    n_dates: int = 1
    """Dates stacked as channels (``time="all"``), else 1."""


class PatchSources:
    """Nested input sources (and an optional target) read window by window on the reference grid.

    Parameters
    ----------
    sources
        ``{name: cube}`` in the model's argument order; cubes ``(time, band, y, x)`` or ``(band, y, x)``.
    bands
        ``{name: band list}``; a source missing here feeds all its bands.
    target
        A cube on the reference grid (labels or values), or None.
    target_bands
        Bands of the target (default: all).
    time
        Date of per-date cubes (index, date string, or ``"all"`` to stack dates as channels).
    reference
        Source whose grid windows are cut on (default: the finest).
    cache_chunks
        Chunks kept in the LRU cache per source and per process, or ``"auto"`` (from the memory
        available and the chunk size, see :class:`~eocube.learn.windows.WindowReader`).
    """

    def __init__(
        self,
        sources: Mapping[str, xr.DataArray],
        *,
        bands: Mapping[str, Sequence[str]] | None = None,
        target: xr.DataArray | None = None,
        target_bands: Sequence[str] | None = None,
        time: int | str | None = 0,
        reference: str | None = None,
        cache_chunks: int | str = "auto",
    ) -> None:
        from ..models.shared import nest_grids

        if not sources:
            raise LearnError("no input source: give data.sources (name -> cube)")
        names = list(sources)
        cubes, base, dates = [], [], []
        for n in names:
            c = sources[n]
            want = (bands or {}).get(n)
            if want:
                c = select_bands(c, list(want))
            base.append(tuple(str(b) for b in c["band"].values))
            dates.append(c.sizes["time"] if time == "all" and "time" in c.dims else 1)
            cubes.append(_float_nan(select_date(c, time), _nodata(c)))
        ref = names.index(reference) if reference is not None else None
        nesting, cubes = nest_grids(cubes, names, ref)
        self.shape: tuple[int, int] = tuple(nesting.shape)  # type: ignore[assignment]
        self.reference = names[nesting.base]
        self.sources = [
            SourceInfo(n, tuple(str(b) for b in c["band"].values), int(r), WindowReader(c, cache_chunks), bb, nd)
            for n, c, r, bb, nd in zip(names, cubes, nesting.ratios, base, dates)
        ]
        self.multiple = math.lcm(*[s.ratio for s in self.sources])
        self.target: WindowReader | None = None
        self.target_bands: tuple[str, ...] = ()
        self.target_nodata: float | None = None
        """The target's ``rio.nodata`` (a values target is invalid there; labels map it to -1)."""
        if target is not None:
            t = select_bands(target, list(target_bands)) if target_bands else target
            single = "time" not in t.dims or t.sizes["time"] == 1
            t = select_date(t, 0 if (time == "all" or single) else time)
            if (t.sizes["y"], t.sizes["x"]) != self.shape:
                raise LearnError(
                    f"the target is {t.sizes['y']} x {t.sizes['x']} px but the reference grid "
                    f"({self.reference}) is {self.shape[0]} x {self.shape[1]} px: put the target on the finest grid"
                )
            _check_target_grid(t, cubes[nesting.base], self.reference)
            self.target = WindowReader(t, cache_chunks)
            self.target_bands = tuple(str(b) for b in t["band"].values)
            self.target_nodata = _nodata(target)

    def read(self, y0: int, x0: int, size: int) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Raw float32 inputs (one ``(C, size/r, size/r)`` per source) and the raw target window."""
        xs, tgt = self.read_many([(y0, x0)], size)
        return [x[0] for x in xs], None if tgt is None else tgt[0]

    def _boxes(self, corners: Sequence[tuple[int, int]], size: int) -> list[tuple[WindowReader, list]]:
        """Each reader with the windows of ``corners`` in its own pixels."""
        out = [(s.reader, [(slice(y0 // s.ratio, (y0 + size) // s.ratio), slice(x0 // s.ratio, (x0 + size) // s.ratio))
                           for y0, x0 in corners]) for s in self.sources]
        if self.target is not None:
            out.append((self.target, [(slice(y0, y0 + size), slice(x0, x0 + size)) for y0, x0 in corners]))
        return out

    def read_many(self, corners: Sequence[tuple[int, int]], size: int, *,
                  target: bool = True) -> tuple[list[list[np.ndarray]], list[np.ndarray] | None]:
        """:meth:`read` of many windows: per source the list of windows, and the target windows (or None).

        The chunks the windows touch that are not in memory are computed in one go per source;
        ``target=False`` leaves the target unread (None).
        """
        corners = [(int(y0), int(x0)) for y0, x0 in corners]
        plan = self._boxes(corners, size)
        with_target = self.target is not None and target
        got = [reader.read_many(boxes) for reader, boxes in (plan if with_target else plan[:len(self.sources)])]
        return (got[:-1], got[-1]) if with_target else (got, None)

    def stage(self, windows: np.ndarray, size: int, *, budget: int | None = None) -> str:
        """Keep the chunks the windows touch in memory for good when they fit; says what was chosen and why.

        Parameters
        ----------
        windows
            ``(n, 2)`` window corners (the training and validation windows).
        size
            Window edge in reference pixels.
        budget
            Bytes the staged chunks may take; default :func:`~eocube.learn.windows.stage_budget`
            (a quarter of the memory available now).

        Returns
        -------
        str
            What was chosen (logged at INFO level): staged, not staged (over the budget or over
            ``cache_chunks``), or nothing to stage (in-memory sources).
        """
        plan = [(r, boxes, r.keys(boxes)) for r, boxes in self._boxes([tuple(w) for w in np.asarray(windows)], size)]
        plan = [(r, boxes, keys) for r, boxes, keys in plan if r.lazy]
        if not plan:
            return "nothing to stage: the sources are in memory"
        need = sum(len(keys) * r.chunk_bytes() for r, _, keys in plan)
        budget = stage_budget() if budget is None else int(budget)
        mib = 2 ** 20
        lru = ", ".join(str(r.cache_chunks) for r, _, _ in plan)
        if need > budget:
            why = f"{need / mib:.0f} MiB of chunks over the staging budget of {budget / mib:.0f} MiB"
        elif any(len(keys) > r.cache_chunks and not r.auto for r, _, keys in plan):
            why = f"more chunks than data.cache_chunks ({lru} per source)"
        else:
            stage_readers([(r, boxes) for r, boxes, _ in plan])  # one compute for every source and the target
            msg = (f"staged {sum(len(k) for _, _, k in plan)} chunks ({need / mib:.1f} MiB) of {len(windows)} windows "
                   f"in memory (within the budget of {budget / mib:.0f} MiB): epochs compute no chunk")
            log.info(msg)
            return msg
        msg = (f"not staged ({why}): windows are read in batches, one compute per batch and source, with an LRU "
               f"cache of {lru} chunks per source and worker")
        log.info(msg)
        return msg


def _nodata(cube: xr.DataArray) -> float | None:
    """The cube's nodata other than NaN (encoded nodata first, as the engine reads it), else None."""
    value = cube_nodata(cube)
    return None if value is None else float(value)


def _float_nan(cube: xr.DataArray, nodata: float | None) -> xr.DataArray:
    """float32 values with ``nodata`` as NaN (lazy for dask), as ``apply_model`` treats an input's nodata."""
    out = cube.astype("float32")
    return out if nodata is None else out.where(cube != nodata)


__all__ = ["PatchSources", "SourceInfo", "select_date"]
