"""One patch dataset for every task: lazy windows of nested sources plus a target.

* :class:`~eocube.learn.windows.WindowReader` reads ``(..., y, x)`` windows of a (lazy) array,
  computing only the dask chunks a batch of windows touches (one compute) and keeping them in a
  small LRU cache; :meth:`~eocube.learn.sources.PatchSources.stage` keeps the chunks of the training and validation
  windows in memory for good when they fit (what the tasks do before training).
* :class:`~eocube.learn.sources.PatchSources` holds one or several cubes whose grids nest (as
  ``apply_model`` takes them: pixel sizes integer multiples of the finest, corners on pixel
  corners). Windows are cut on the reference (finest) grid and each source is read in its own pixels.
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

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import LearnError
from .gaps import GapTarget
from .normalisation import Normaliser
from .sources import PatchSources, SourceInfo, select_date
from .windows import WindowReader

_BATCH = 64
"""Windows read together (one compute per source for their chunks not in memory) by the statistics."""


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
    for start in range(0, len(pick), _BATCH):  # one compute per batch of windows and source when not staged
        batch, _ = sources.read_many(pick[start:start + _BATCH].tolist(), size, target=False)
        for acc, x in ((acc, x) for acc, xs in zip(sums, batch) for x in xs):
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
    for start in range(0, len(windows), _BATCH):
        boxes = [(slice(int(y0), int(y0) + size), slice(int(x0), int(x0) + size))
                 for y0, x0 in windows[start:start + _BATCH]]
        for i, t in enumerate(sources.target.read_many(boxes), start):
            idx = _class_index(t[0], lut)
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
    if lab.dtype == np.uint8:  # every value is a valid index of the 256-entry table
        return lut[lab]
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
        self._cdf = None
        if self.weights is not None:
            if self.weights.shape != (len(self.windows),) or not np.isfinite(self.weights).all() or \
                    (self.weights < 0).any() or self.weights.sum() <= 0:
                raise LearnError(f"weights: give one finite, non-negative weight per window ({len(self.windows)}) "
                                 "with a positive sum")
            cdf = self.weights.cumsum()  # what Generator.choice(p=weights) computes on every call
            self._cdf = cdf / cdf[-1]
        self._scale = {n: (np.asarray(v.mean, "float32")[:, None, None], np.asarray(v.std, "float32")[:, None, None])
                       for n, v in self.normalisers.items()}
        self.augment, self.seed = bool(augment), int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's examples (call before iterating; workers get a copy)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.windows) if self.length is None else self.length

    def window(self, i: int) -> tuple[int, int, np.random.Generator]:
        """Corner of example ``i`` of the current epoch and its random generator.

        The draw is that of ``rng.choice(len(windows), p=weights)`` (the same window for the same
        ``(seed, epoch, i)``), from cumulative weights computed once.
        """
        if self.length is None:
            rng = np.random.default_rng([self.seed, 0, int(i)])
            y0, x0 = self.windows[int(i)]
            return int(y0), int(x0), rng
        rng = np.random.default_rng([self.seed, self.epoch + 1, int(i)])
        k = (int(self._cdf.searchsorted(rng.random(), "right")) if self._cdf is not None
             else int(rng.integers(len(self.windows))))
        y0, x0 = self.windows[k]
        return int(y0), int(x0), rng

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Examples of many indices (a DataLoader batch), the same as ``[self[i] for i in indices]``.

        The windows' chunks are read in one go per source, and the batch is normalised (and its
        labels looked up) at once.
        """
        picks = [self.window(i) for i in indices]
        corners = np.array([(y0, x0) for y0, x0, _ in picks], dtype="int64").reshape(-1, 2)
        raws, tgts = self.sources.read_many(corners.tolist(), self.size)
        stacks = [np.stack(r) for r in raws]
        inputs = [_zscore(x, *self._scale[s.name], ~np.isfinite(x)) for s, x in zip(self.sources.sources, stacks)]
        extra: dict[str, np.ndarray] = {}
        if self.target == "labels":
            extra["target"] = _class_index(np.stack([t[0] for t in tgts]), self._lut)
        elif self.target == "values":
            tgt = np.stack(tgts)
            ok = np.isfinite(tgt)
            if self.sources.target_nodata is not None:
                ok &= tgt != self.sources.target_nodata
            tn = self.target_normaliser
            extra["target"] = _zscore(tgt, np.asarray(tn.mean, "float32")[:, None, None],
                                      np.asarray(tn.std, "float32")[:, None, None], ~ok)
            extra["target_valid"] = ok
        corner = torch.from_numpy(corners)
        out = []
        for j, (_, _, rng) in enumerate(picks):
            xs = [x[j] for x in inputs]
            more = {k: v[j] for k, v in extra.items()}
            if self.target == "gaps":
                more = self.gaps.example(raws[0][j], xs.pop(0), rng)
                days = more.pop("days")
            if self.augment:
                k, flip = int(rng.integers(4)), bool(rng.integers(2))
                xs = [_aug(x, k, flip) for x in xs]
                more = {key: _aug(v, k, flip) for key, v in more.items()}
            result = {f"x{i}": torch.from_numpy(np.ascontiguousarray(x)) for i, x in enumerate(xs)}
            result.update({key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in more.items()})
            if self.target == "gaps":
                result["days"] = torch.from_numpy(days)
            result["corner"] = corner[j]
            out.append(result)
        return out


def _zscore(x: np.ndarray, mean: np.ndarray, std: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` in float32 (as :meth:`Normaliser.normalise`), 0 where ``bad``; one pass, no temporaries."""
    out = np.subtract(x, mean, dtype="float32")
    out /= std
    np.copyto(out, 0.0, where=bad)
    return out


def _aug(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """``np.rot90(a, k, axes=(-2, -1))``, then flipped along x when ``flip`` (views, without rot90's overhead)."""
    if k == 1:
        a = a[..., ::-1].swapaxes(-2, -1)
    elif k == 2:
        a = a[..., ::-1, ::-1]
    elif k == 3:
        a = a[..., ::-1, :].swapaxes(-2, -1)
    return a[..., ::-1] if flip else a


__all__ = ["PatchDataset", "PatchSources", "SourceInfo", "WindowReader", "band_statistics",
           "class_balance_weights", "label_histograms", "select_date"]
