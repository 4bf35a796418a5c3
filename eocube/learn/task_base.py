"""The base of the training tasks: :class:`Task`, what every task does, and :class:`PatchTask`, the patch data path.

:class:`PatchTask` reads the sources and the target, splits the area into blocks, picks the
training and validation windows, checks they hold targets, computes the band statistics and
builds the patch datasets; each task (:mod:`eocube.learn.task_gapfill`,
:mod:`eocube.learn.task_segmentation`, :mod:`eocube.learn.task_superres`) adds its target, network,
loss and scores. :func:`open_cube` opens an input, :func:`window_halo` applies ``sampler.halo``.
The trainer finds a task by name in :mod:`eocube.learn.tasks`.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Mapping

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import BandError
from .config import TrainConfig
from .errors import LearnError
from .patches import PatchDataset, PatchSources, band_statistics
from .split import BlockSplit


def open_cube(spec: str | os.PathLike[str] | xr.DataArray) -> xr.DataArray:
    """A cube from a bundled sample name (``sentinel2_l1c:10m``), a Zarr path, or a cube."""
    if isinstance(spec, xr.DataArray):
        return spec
    from ..datasets import is_sample, open_sample

    if is_sample(str(spec)):
        return open_sample(str(spec))
    from ..io import open_zarr

    return open_zarr(spec)


class Task:
    """Base of the tasks (see :mod:`eocube.learn.tasks`)."""

    name = "task"
    monitor_lower = ("val_loss", "rmse", "sam")
    score_names: tuple[str, ...] = ("val_loss",)
    """Scores :meth:`validate` returns (``train.monitor`` picks one of them, or ``train_loss``)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.train: Dataset
        self.val: Dataset
        self.inputs: dict[str, xr.DataArray] = {}
        """The input cubes as read (name -> cube), whose content identity the run's fingerprint holds."""

    def build(self, source: Any, target: Any, world_size: int) -> None:
        """Build the datasets (and what the network needs to know)."""
        raise NotImplementedError

    def network(self) -> nn.Module:
        """A fresh network (called after seeding torch)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training loss of a batch (already on the device)."""
        raise NotImplementedError

    def loss_count(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What :meth:`loss` is a mean over in ``batch`` (by default its examples); DDP weighs the processes by it."""
        return torch.tensor(float(len(next(iter(batch.values())))))

    def validate(self, net: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, Any]:
        """Scores of the network on a loader; ``val_loss`` among them."""
        raise NotImplementedError

    def checkpoint(self) -> dict[str, Any]:
        """``meta`` of the checkpoint."""
        return {"meta": {}}

    def fingerprint(self) -> dict[str, Any]:
        """The run's identity (:func:`eocube.learn.identity.run_fingerprint`), after :meth:`build`."""
        from .identity import run_fingerprint

        return run_fingerprint(self.cfg.to_dict(), self.inputs, self.derived())

    def derived(self) -> dict[str, Any]:
        """What the run computed from its inputs and config (normalisation, split, classes)."""
        return {}

    def scores(self) -> tuple[str, ...]:
        """Names of the validation scores (after :meth:`build`)."""
        return self.score_names

    def lower_is_better(self, key: str) -> bool:
        """Whether a lower value of ``key`` is better (selects ``best.pt``)."""
        return key in self.monitor_lower or key.endswith("loss")


class PatchTask(Task):
    """Common part of segmentation and super-resolution: sources, split, statistics, datasets."""

    target_kind = "values"

    def _sources(self, source: Any, target: Any) -> tuple[dict[str, xr.DataArray], dict[str, list], Any, list | None]:
        d = self.cfg.data
        conf = dict(d.get("sources") or {})
        if source is None:
            if not conf:
                raise LearnError("no input: give data.sources in the config ({name: {path: ..., bands: [...]}}) "
                                 "or train(source={name: cube})")
            cubes = {n: open_cube(v["path"] if isinstance(v, Mapping) else v) for n, v in conf.items()}
        elif isinstance(source, xr.DataArray):
            cubes = {(list(conf)[0] if len(conf) == 1 else "input"): source}
        else:
            names = list(conf) if set(conf) == set(source) else list(source)
            cubes = {n: open_cube(source[n]) for n in names}
        bands = {n: list(v["bands"]) for n, v in conf.items() if isinstance(v, Mapping) and v.get("bands")}
        tconf = d.get("target") or {}
        if target is None:
            if not tconf.get("path"):
                raise LearnError("no target: give data.target.path in the config or train(target=cube)")
            target = tconf["path"]
        tbands = tconf.get("bands") or tconf.get("band")
        tbands = [tbands] if isinstance(tbands, str) else tbands
        return cubes, bands, open_cube(target), tbands

    def build(self, source: Any, target: Any, world_size: int) -> None:
        d, s, sp, t = self.cfg.data, self.cfg.sampler, self.cfg.split, self.cfg.train
        cubes, bands, tcube, tbands = self._sources(source, target)
        self.inputs = {**{f"data.sources.{n}": c for n, c in cubes.items()}, "data.target": tcube}
        _check_fractions(sp.get("fractions", (0.7, 0.15, 0.15)))
        try:
            self.ps = PatchSources(cubes, bands=bands, target=tcube, target_bands=tbands, time=self._time(),
                                   reference=d.get("reference"), cache_chunks=_cache_chunks(d.get("cache_chunks", "auto")))
        except BandError as exc:
            raise LearnError(f"{exc.args[0]}: fix the bands of data.sources or data.target in the config") from None
        self._prepare_target(tcube)
        self.halo = int(self.network().halo)
        buffer = self.halo if sp.get("buffer", "auto") == "auto" else int(sp["buffer"])
        self.split = BlockSplit.make(self.ps.shape, block_size=int(sp["block_size"]),
                                     fractions=sp.get("fractions", (0.7, 0.15, 0.15)), buffer=buffer,
                                     seed=int(sp.get("seed", 0)))
        size, seed = int(s["patch_size"]), int(t["seed"])
        stride = s.get("stride") or max(1, size // 2)
        self.window_halo = window_halo(s.get("halo", "inside"), self.halo)
        self.context = self.halo if s.get("halo", "inside") == "context" else 0
        size += 2 * self.context  # context: the window is read with its halo; only its core is scored
        self.size = size
        train_w = self.split.windows("train", size, halo=self.window_halo, stride=stride, multiple=self.ps.multiple)
        val_w = self.split.windows("val", size, halo=self.window_halo, stride=s.get("val_stride") or size,
                                   multiple=self.ps.multiple)
        if len(train_w) == 0 or len(val_w) == 0:
            raise LearnError(
                f"no {'training' if len(train_w) == 0 else 'validation'} window of {size} px whose halo "
                f"({self.window_halo} px) and buffer ({buffer} px) stay inside its blocks of {sp['block_size']} px: "
                "enlarge split.block_size or lower sampler.patch_size"
            )
        if t.get("val_windows"):
            val_w = val_w[np.sort(np.random.default_rng([seed, 5]).permutation(len(val_w))[: int(t["val_windows"])])]
        self.staging = self.ps.stage(np.concatenate([train_w, val_w]), size)
        train_w, val_w = self._keep(train_w, size, "training"), self._keep(val_w, size, "validation")
        self._check_targets(train_w, val_w, size)
        self.normalisers = band_statistics(self.ps, train_w, size, max_windows=int(s.get("norm_windows", 256)), seed=seed)
        weights = self._weights(train_w, size)
        per_epoch = int(t["steps_per_epoch"]) * int(t["batch_size"]) * int(world_size)
        self.train = PatchDataset(self.ps, train_w, size, self.normalisers, length=per_epoch, weights=weights,
                                  augment=bool(s.get("augment", True)), seed=seed, **self._target_kwargs())
        self.val = PatchDataset(self.ps, val_w, size, self.normalisers, seed=seed + 1, **self._target_kwargs())
        self.train_windows, self.val_windows = train_w, val_w

    def _prepare_target(self, tcube: xr.DataArray) -> None:
        raise NotImplementedError

    def _time(self) -> int | str | None:
        """Date of per-date source cubes (``data.time``), or ``"all"`` to stack dates as channels."""
        return self.cfg.data.get("time", 0)

    def _keep(self, windows: np.ndarray, size: int, part: str) -> np.ndarray:
        """The windows worth training or validating on (all of them here)."""
        return windows

    target_what = "target pixels with a value"
    """What :meth:`_target_total` counts (for messages)."""

    def _target_total(self, windows: np.ndarray, size: int, *, until_one: bool = False) -> int:
        """Target pixels with a value in the windows (labelled pixels, valid target values).

        ``until_one``: stop at the first window that has one (only whether there is one matters).
        """
        total = 0
        for y0, x0 in windows:
            total += int(self._valid_target(self.ps.target.read(slice(int(y0), int(y0) + size),
                                                                slice(int(x0), int(x0) + size))).sum())
            if until_one and total:
                break
        return total

    def _valid_target(self, tgt: np.ndarray) -> np.ndarray:
        """``(y, x)`` bool: pixels of a raw ``(C, y, x)`` target window with a value."""
        ok = np.isfinite(tgt) if tgt.dtype.kind == "f" else np.ones(tgt.shape, bool)
        if self.ps.target_nodata is not None:
            ok &= tgt != self.ps.target_nodata
        return ok.any(0)

    def _check_targets(self, train_w: np.ndarray, val_w: np.ndarray, size: int) -> None:
        """Refuse training or validation windows without a target pixel, with the pixels of each part and the remedy.

        Without this a validation set with no labelled pixel scores val loss 0 at every epoch and
        keeps epoch 1 as best.pt; training windows without one train on nothing.
        """
        n_val = self._target_total(val_w, size)
        n_train = self._target_total(train_w, size, until_one=True) if n_val else 0
        if n_train and n_val:
            return
        h, w = self.ps.shape
        valid = self._valid_target(self.ps.target.read(slice(0, h), slice(0, w)))
        code = self.split.mask()
        per = ", ".join(f"{p} {int((valid & (code == i)).sum()):,}" for i, p in enumerate(("train", "val", "test")))
        part, n = ("validation", len(val_w)) if not n_val else ("training", len(train_w))
        inside = f"in the validation windows {n_val:,}" if not n_val else "in the training windows 0"
        effect = ("every epoch would score val loss 0 and best.pt would stay at epoch 1" if not n_val
                  else "the network would learn nothing")
        sp = self.cfg.split
        raise LearnError(
            f"the {n} {part} window(s) hold no {self.target_what} ({self.target_what} per split part: {per}; "
            f"{inside}): {effect}; label more of the area "
            "(or check the target's nodata), train on a bigger area, or change the split "
            f"(split.fractions {list(sp.get('fractions', []))}, split.seed {sp.get('seed', 0)}, "
            f"split.block_size {sp.get('block_size')})"
        )

    def derived(self) -> dict[str, Any]:
        return {"normalisation": {k: v.to_dict() for k, v in self.normalisers.items()},
                "split blocks": self.split.assignment.tolist()}

    def _target_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def _weights(self, windows: np.ndarray, size: int) -> np.ndarray | None:
        return None

    def _xs(self, b: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [b[f"x{i}"] for i in range(len(self.ps.sources))]

    def sources_meta(self) -> list[dict[str, Any]]:
        """Names, bands, ratios and layout of the sources (stored in checkpoints, written to cards)."""
        return [{"name": s.name, "bands": list(s.base_bands), "channels": len(s.bands), "ratio": s.ratio,
                 "layout": "time_band" if s.n_dates > 1 else "band"} for s in self.ps.sources]

    def checkpoint(self) -> dict[str, Any]:
        return {"meta": {
            "sources": self.sources_meta(), "reference": self.ps.reference, "multiple": self.ps.multiple,
            "normalisers": {k: v.to_dict() for k, v in self.normalisers.items()},
            "split": self.split.to_dict(), "halo": self.halo, "patch_size": self.size,
            **self._target_meta(),
        }}

    def _target_meta(self) -> dict[str, Any]:
        return {}


HALO_MODES = ("edge", "inside", "context")
"""Values of ``sampler.halo`` (see :func:`window_halo`)."""


def window_halo(mode: str, halo: int) -> int:
    """Context in pixels that a training or validation window must keep inside its block.

    A window is read alone (nothing around it) and the network pads its own borders, so a
    window's edge is to the network what a scene edge is at inference (``apply_model`` reads no
    pixel beyond the scene and the model's own padding applies there).

    Parameters
    ----------
    mode
        ``"edge"``: a window may reach its block's edge; the context beyond it, which is never
        read, is the network's padding, as at a scene edge (0 px kept). ``"inside"``: the
        window grown by the network's halo must stay inside the block (``halo`` px kept; fewer
        windows, less ground covered on small blocks). ``"context"`` (gap filling): the same
        windows, read with their halo, so the network sees real pixels around them where
        ``apply_model`` would; only their core (``sampler.patch_size``) is scored (0 px kept: the
        halo is part of the window read).
    halo
        The network's receptive field beyond a pixel.

    Returns
    -------
    int
        The halo passed to :meth:`~eocube.learn.split.BlockSplit.windows` (the split's buffer
        comes on top in both modes).
    """
    if mode not in HALO_MODES:
        raise LearnError(f"config sampler.halo: {mode!r} is not accepted: give one of {list(HALO_MODES)}")
    return int(halo) if mode == "inside" else 0


def _cache_chunks(value: Any) -> int | str:
    """``data.cache_chunks``: ``"auto"`` or an integer."""
    return value if value == "auto" else int(value)


def _check_fractions(fractions: Any) -> None:
    """Refuse split fractions without a validation part; warn when there is no test part."""
    try:
        fr = [float(f) for f in fractions][:3]
    except (TypeError, ValueError):
        return  # BlockSplit.make says what is wrong with them
    fr += [0.0] * (3 - len(fr))
    if fr[1] <= 0:
        raise LearnError(
            f"split.fractions {list(fractions)} give no block to validation{' and none to test' if fr[2] <= 0 else ''}: "
            "training scores every epoch on the validation blocks (to keep best.pt) and leaves test blocks for "
            "honest scores; give non-zero validation and test fractions (train, val, test), e.g. [0.7, 0.15, 0.15]"
        )
    if fr[2] <= 0:
        warnings.warn(f"split.fractions {list(fractions)} give no block to test: no score of this run is held out "
                      "(fine for a production model trained on everything; e.g. [0.7, 0.15, 0.15] keeps a test part)",
                      stacklevel=3)


__all__ = ["HALO_MODES", "PatchTask", "Task", "open_cube", "window_halo"]
