"""One patch dataset for every task: lazy windows of nested sources plus a target.

* :class:`WindowReader` reads ``(..., y, x)`` windows of a (lazy) array, computing only the
  dask chunks a window touches and keeping the last few in a small LRU cache (per process: a
  DataLoader worker gets an empty cache of its own).
* :class:`PatchSources` holds one or several cubes whose grids nest (as ``apply_model`` takes
  them: pixel sizes integer multiples of the finest, corners on pixel corners). Windows are
  cut on the reference (finest) grid and each source is read in its own pixels.
* :class:`PatchDataset` turns windows into examples: normalised inputs (z-score, nodata and NaN -> 0, as
  the model card's ``value_scaling`` and ``fill_value`` do at inference), and a target: class
  indices from a label cube (nodata -> -1), or normalised values of another band set (nodata invalid).
  Example ``i`` of epoch ``e`` depends on ``(seed, e, i)`` only, so runs, resumed runs and DDP
  ranks see reproducible data; class-balanced sampling draws windows with weights.
* :func:`band_statistics` and :func:`class_balance_weights` compute normalisation statistics
  and sampling weights from the **training windows only**.

* The ``gaps`` target (gap filling, self-supervised): the source's dates stacked as channels,
  cloudy observations NaN; clear observations hidden under real cloud masks become the target
  (:class:`~eocube.learn.gaps.GapTarget`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from ..cube import select_bands
from ..nodata import cube_nodata
from .errors import LearnError
from .gaps import GapTarget
from .normalisation import Normaliser


class WindowReader:
    """Lazy ``(..., y, x)`` windows of an array with a small LRU cache of chunks.

    Parameters
    ----------
    array
        A DataArray (or array) whose last two dims are ``y, x``; dask-backed arrays are read
        chunk by chunk, in-memory ones sliced directly.
    cache_chunks
        Chunks kept in memory per process.
    """

    def __init__(self, array: xr.DataArray | np.ndarray, cache_chunks: int = 16) -> None:
        data = array.data if isinstance(array, xr.DataArray) else array
        self.data = data
        self.shape = tuple(data.shape)
        self.cache_chunks = int(cache_chunks)
        chunks = getattr(data, "chunks", None)
        self.lazy = chunks is not None and not isinstance(data, np.ndarray)
        if self.lazy:
            self._bounds = [np.concatenate([[0], np.cumsum(c)]) for c in data.chunks[-2:]]
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.reads = 0
        """Chunks computed by this process (a test counts them)."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # each worker process starts with an empty cache
        return state

    def _chunk(self, iy: int, ix: int) -> np.ndarray:
        key = (iy, ix)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        by, bx = self._bounds
        lead = (slice(None),) * (len(self.shape) - 2)
        block = np.asarray(self.data[lead + (slice(by[iy], by[iy + 1]), slice(bx[ix], bx[ix + 1]))]
                           .compute(scheduler="synchronous"))
        self.reads += 1
        self._cache[key] = block
        while len(self._cache) > self.cache_chunks:
            self._cache.popitem(last=False)
        return block

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        """The window ``[..., ys, xs]`` as a NumPy array (only its chunks are computed)."""
        if not self.lazy:
            return np.asarray(self.data[..., ys, xs])
        by, bx = self._bounds
        out = None
        iy0, iy1 = np.searchsorted(by, ys.start, "right") - 1, np.searchsorted(by, ys.stop, "left")
        ix0, ix1 = np.searchsorted(bx, xs.start, "right") - 1, np.searchsorted(bx, xs.stop, "left")
        for iy in range(iy0, iy1):
            for ix in range(ix0, ix1):
                block = self._chunk(iy, ix)
                y0, y1 = max(ys.start, by[iy]), min(ys.stop, by[iy + 1])
                x0, x1 = max(xs.start, bx[ix]), min(xs.stop, bx[ix + 1])
                if out is None:
                    out = np.empty(self.shape[:-2] + (ys.stop - ys.start, xs.stop - xs.start), dtype=block.dtype)
                out[..., y0 - ys.start:y1 - ys.start, x0 - xs.start:x1 - xs.start] = \
                    block[..., y0 - by[iy]:y1 - by[iy], x0 - bx[ix]:x1 - bx[ix]]
        if out is None:
            raise LearnError(f"window y={ys}, x={xs} is outside the {self.shape[-2:]} px array")
        return out


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
        Chunks kept per source and per process.
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
        cache_chunks: int = 16,
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
            self.target = WindowReader(t, cache_chunks)
            self.target_bands = tuple(str(b) for b in t["band"].values)
            self.target_nodata = _nodata(target)

    def read(self, y0: int, x0: int, size: int) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Raw float32 inputs (one ``(C, size/r, size/r)`` per source) and the raw target window."""
        xs = []
        for s in self.sources:
            r = s.ratio
            xs.append(s.reader.read(slice(y0 // r, (y0 + size) // r), slice(x0 // r, (x0 + size) // r)))
        tgt = self.target.read(slice(y0, y0 + size), slice(x0, x0 + size)) if self.target is not None else None
        return xs, tgt


def _nodata(cube: xr.DataArray) -> float | None:
    """The cube's nodata other than NaN (encoded nodata first, as the engine reads it), else None."""
    value = cube_nodata(cube)
    return None if value is None else float(value)


def _float_nan(cube: xr.DataArray, nodata: float | None) -> xr.DataArray:
    """float32 values with ``nodata`` as NaN (lazy for dask), as ``apply_model`` treats an input's nodata."""
    out = cube.astype("float32")
    return out if nodata is None else out.where(cube != nodata)


def band_statistics(sources: PatchSources, windows: np.ndarray, size: int, *, max_windows: int = 256,
                    seed: int = 0) -> dict[str, Normaliser]:
    """Per-band mean and standard deviation of each source over (a seeded sample of) training windows.

    Parameters
    ----------
    sources
        The inputs.
    windows
        ``(n, 2)`` training window corners (from the training blocks only).
    size
        Window edge.
    max_windows
        At most this many windows are read (a seeded sample).
    seed
        Seed of the sample.

    Returns
    -------
    dict
        ``{source name: Normaliser}``.
    """
    if len(windows) == 0:
        raise LearnError("no training window: enlarge the training area, or lower sampler.patch_size or split.buffer")
    rng = np.random.default_rng([int(seed), 77])
    pick = windows if len(windows) <= max_windows else windows[np.sort(rng.choice(len(windows), max_windows, replace=False))]
    sums = [np.zeros((len(s.bands), 3)) for s in sources.sources]
    for y0, x0 in pick:
        xs, _ = sources.read(int(y0), int(x0), size)
        for acc, x in zip(sums, xs):
            flat = x.reshape(x.shape[0], -1).astype("float64")
            ok = np.isfinite(flat)
            v = np.where(ok, flat, 0.0)
            acc[:, 0] += ok.sum(1)
            acc[:, 1] += v.sum(1)
            acc[:, 2] += (v * v).sum(1)
    out = {}
    for s, acc in zip(sources.sources, sums):
        if s.n_dates > 1:  # one statistic per band, pooled over the stacked dates
            acc = np.tile(acc.reshape(s.n_dates, -1, 3).sum(0), (s.n_dates, 1))
        n = np.maximum(acc[:, 0], 1)
        mean = acc[:, 1] / n
        std = np.sqrt(np.maximum(acc[:, 2] / n - mean**2, 0.0))
        if (acc[:, 0] == 0).any() or not (std > 0).all():
            raise LearnError(f"cannot normalise source {s.name!r}: a band has no or constant values in the training "
                             f"windows (std {std.tolist()}); check its nodata and the split")
        out[s.name] = Normaliser(s.bands, tuple(float(m) for m in mean), tuple(float(v) for v in std))
    return out


def label_histograms(sources: PatchSources, windows: np.ndarray, size: int, class_values: Sequence[int]) -> np.ndarray:
    """``(n_windows, n_classes)`` labelled pixels of each class in each window."""
    lut = _lookup(class_values)
    out = np.zeros((len(windows), len(class_values)), dtype="int64")
    for i, (y0, x0) in enumerate(windows):
        idx = _class_index(sources.target.read(slice(int(y0), int(y0) + size), slice(int(x0), int(x0) + size))[0], lut)
        out[i] = np.bincount(idx[idx >= 0], minlength=len(class_values))
    return out


def class_balance_weights(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Window sampling weights from the class frequencies of the training windows.

    A window's weight is the mean inverse frequency of its labelled pixels, so that rare
    classes are drawn about as often as common ones.

    Parameters
    ----------
    hist
        ``(n_windows, n_classes)`` from :func:`label_histograms`.

    Returns
    -------
    tuple
        ``(weights per window summing to 1, class frequencies)``.
    """
    total = hist.sum(0).astype("float64")
    freq = total / max(total.sum(), 1.0)
    inv = np.where(freq > 0, 1.0 / np.maximum(freq, 1e-12), 0.0)
    labelled = hist.sum(1)
    w = np.where(labelled > 0, (hist * inv).sum(1) / np.maximum(labelled, 1), 0.0)
    if w.sum() <= 0:
        raise LearnError("no labelled pixel in the training windows: check the labels, their nodata and the split")
    return w / w.sum(), freq


def _lookup(class_values: Sequence[int]) -> np.ndarray:
    lut = np.full(256, -1, dtype="int64")
    for i, v in enumerate(class_values):
        lut[int(v)] = i
    return lut


def _class_index(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    lab = np.asarray(labels)
    ok = np.isfinite(lab) if lab.dtype.kind == "f" else np.ones(lab.shape, bool)
    ok &= (lab >= 0) & (lab < 256)
    return np.where(ok, lut[np.where(ok, lab, 0).astype("int64")], -1)


class PatchDataset(Dataset):
    """Examples from windows of :class:`PatchSources`: normalised inputs and a target.

    Parameters
    ----------
    sources
        The inputs (and target).
    windows
        ``(n, 2)`` window corners on the reference grid.
    size
        Window edge in reference pixels.
    normalisers
        ``{source: Normaliser}`` of the inputs.
    target
        ``"labels"`` (class indices, -1 where unlabelled), ``"values"`` (normalised with
        ``target_normaliser``; a ``target_valid`` mask), ``"gaps"`` (``values``, ``valid``,
        ``target_mask``, ``days`` of one source with its dates as channels; see ``gaps``), or None.
    class_values
        Label values of the classes (labels), in class-index order.
    target_normaliser
        Statistics of the target bands (values).
    length
        Examples per epoch (windows are drawn at random); None: every window once, in order
        (validation, test).
    weights
        Drawing probabilities of the windows (class-balanced sampling); None: uniform.
    augment
        Random flips and 90-degree rotations (training).
    seed
        Base seed.
    gaps
        How the ``gaps`` target hides clear observations.
    """

    def __init__(
        self,
        sources: PatchSources,
        windows: np.ndarray,
        size: int,
        normalisers: Mapping[str, Normaliser],
        *,
        target: str | None = None,
        class_values: Sequence[int] = (),
        target_normaliser: Normaliser | None = None,
        length: int | None = None,
        weights: np.ndarray | None = None,
        augment: bool = False,
        seed: int = 0,
        gaps: GapTarget | None = None,
    ) -> None:
        if target == "gaps" and (gaps is None or len(sources.sources) != 1):
            raise LearnError("the gaps target needs one source and a GapTarget (gaps=)")
        self.gaps = gaps
        if len(windows) == 0:
            raise LearnError("a dataset without windows: enlarge the area or lower sampler.patch_size / split.buffer")
        if size % sources.multiple:
            raise LearnError(f"sampler.patch_size={size} must be a multiple of {sources.multiple} (the coarsest "
                             "source's pixel size in reference pixels)")
        self.sources, self.windows, self.size = sources, np.asarray(windows), int(size)
        self.normalisers, self.target = dict(normalisers), target
        self.class_values = tuple(int(v) for v in class_values)
        self._lut = _lookup(self.class_values) if target == "labels" else None
        self.target_normaliser = target_normaliser
        self.length = None if length is None else int(length)
        self.weights = None if weights is None else np.asarray(weights, dtype="float64")
        self.augment, self.seed = bool(augment), int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's examples (call before iterating; workers get a copy)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.windows) if self.length is None else self.length

    def window(self, i: int) -> tuple[int, int, np.random.Generator]:
        """Corner of example ``i`` of the current epoch and its random generator."""
        if self.length is None:
            rng = np.random.default_rng([self.seed, 0, int(i)])
            y0, x0 = self.windows[int(i)]
            return int(y0), int(x0), rng
        rng = np.random.default_rng([self.seed, self.epoch + 1, int(i)])
        k = (int(rng.choice(len(self.windows), p=self.weights)) if self.weights is not None
             else int(rng.integers(len(self.windows))))
        y0, x0 = self.windows[k]
        return int(y0), int(x0), rng

    def __getitem__(self, i: int) -> dict[str, Any]:
        y0, x0, rng = self.window(i)
        raw, tgt = self.sources.read(y0, x0, self.size)
        inputs = []
        for s, x in zip(self.sources.sources, raw):
            norm = self.normalisers[s.name].normalise(np.where(np.isfinite(x), x, 0.0).astype("float32"), band_axis=0)
            inputs.append(np.where(np.isfinite(x), norm, 0.0).astype("float32"))
        out: dict[str, Any] = {}
        if self.target == "labels":
            out["target"] = _class_index(tgt[0], self._lut)
        elif self.target == "gaps":
            out = self.gaps.example(raw[0], inputs.pop(0), rng)
            days = out.pop("days")
        elif self.target == "values":
            ok = np.isfinite(tgt)
            if self.sources.target_nodata is not None:
                ok &= tgt != self.sources.target_nodata
            norm = self.target_normaliser.normalise(np.where(ok, tgt, 0.0).astype("float32"), band_axis=0)
            out["target"] = np.where(ok, norm, 0.0).astype("float32")
            out["target_valid"] = ok
        if self.augment:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            inputs = [_aug(x, k, flip) for x in inputs]
            out = {key: _aug(v, k, flip) for key, v in out.items()}
        result = {f"x{j}": torch.from_numpy(np.ascontiguousarray(x)) for j, x in enumerate(inputs)}
        result.update({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()})
        if self.target == "gaps":
            result["days"] = torch.from_numpy(days)
        result["corner"] = torch.tensor([y0, x0])
        return result


def _aug(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k, axes=(-2, -1))
    return a[..., ::-1] if flip else a


__all__ = ["PatchDataset", "PatchSources", "SourceInfo", "WindowReader", "band_statistics",
           "class_balance_weights", "label_histograms", "select_date"]
