"""What differs between training tasks: data, network, loss, validation scores, export.

The trainer (:mod:`eocube.learn.trainer`) runs one loop for every task; a task builds the
training and validation datasets, the network, the loss of a batch, the validation scores of
an epoch, the task's part of the checkpoint and the exported model.

* ``gapfill``: self-supervised gap filling, the ``gaps`` target of the same patch dataset
  (:class:`~eocube.learn.networks.GapFillNet`, masked MSE on hidden clear observations).
* ``segmentation``: class maps from a label cube (:class:`~eocube.learn.networks.SegNet`,
  cross-entropy + optional Dice; OA, macro-F1, mIoU, per-class F1, confusion matrix).
* ``superres``: bands of one source predicted on the reference grid
  (:class:`~eocube.learn.networks.SuperResNet`, L1; RMSE, PSNR, SSIM, SAM, and PSNR of bicubic
  upsampling for comparison).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Mapping

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from ..errors import BandError
from ..nodata import cube_nodata
from .config import TrainConfig
from .errors import LearnError
from .gaps import GapTarget, bank_from_blocks, days_since_epoch
from .metrics import classification_scores, confusion_matrix, psnr, regression_scores
from .normalisation import Normaliser
from .patches import PatchDataset, PatchSources, band_statistics, class_balance_weights, label_histograms
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
    """Base of the tasks (see the module docstring)."""

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


class GapfillTask(PatchTask):
    """Self-supervised gap filling: clear observations hidden under real cloud masks are the target.

    The source cube's measurement bands (``data.bands``) are read with every date as channels
    and their cloudy observations (:func:`eocube.masks.clear_from_cloud_band` with
    ``data.cloud_band`` and ``data.data_band``) as NaN; windows whose clear fraction is below
    ``sampler.min_clear_fraction`` are left out; the cloud masks that make the artificial gaps
    come from the training blocks only (:class:`~eocube.learn.gaps.GapTarget`).
    """

    name = "gapfill"
    target_what = "hidden clear observations"

    def _sources(self, source: Any, target: Any) -> tuple[dict[str, xr.DataArray], dict[str, list], Any, list | None]:
        from ..cube import select_bands, validate_cube
        from ..masks import clear_from_cloud_band

        d = self.cfg.data
        if d.get("cloud_band") is None:
            raise LearnError("data.cloud_band is null: artificial gaps are made of real cloud masks, so the training "
                             "cube needs a cloud mask band (1 = cloud)")
        if source is None or (isinstance(source, str) and source == "sample"):
            from ..datasets import sentinel2_sample

            source = sentinel2_sample()
        cube = validate_cube(open_cube(source), name="source")
        available = [str(b) for b in cube["band"].values]
        for key in ("bands", "cloud_band", "data_band"):
            wanted = d.get(key)
            missing = [b for b in ([wanted] if isinstance(wanted, str) else wanted or []) if b not in available]
            if missing:
                raise LearnError(f"config data.{key}: {wanted!r} names band(s) {missing} that the source does not "
                                 f"hold: give band(s) of {available} (case-sensitive)")
        self.cube = cube
        self.inputs = {"source": cube}
        values = select_bands(cube, list(d["bands"])).astype("float32")
        clear = clear_from_cloud_band(cube, d["cloud_band"], data_band=d.get("data_band"))
        return {"input": values.where(clear)}, {}, None, None

    def build(self, source: Any, target: Any, world_size: int) -> None:
        super().build(source, target, world_size)
        self.inputs = {"source": self.cube}
        n = len(self.cfg.data["bands"])
        norm = self.normalisers["input"]
        self.normaliser = Normaliser(tuple(self.cfg.data["bands"]), norm.mean[:n], norm.std[:n])
        self._check_val()

    def _time(self) -> str:
        return "all"

    def _prepare_target(self, tcube: xr.DataArray) -> None:
        self._gaps: GapTarget | None = None

    def _keep(self, windows: np.ndarray, size: int, part: str) -> np.ndarray:
        low = float(self.cfg.sampler.get("min_clear_fraction", 0.0))
        frac = np.array([np.isfinite(self.ps.read(int(y0), int(x0), size)[0][0]).mean() for y0, x0 in windows])
        kept = windows[frac >= low] if len(windows) else windows
        if len(kept) == 0:
            raise LearnError(
                f"no {part} window of {size} px has a clear fraction >= sampler.min_clear_fraction={low} (best "
                f"{frac.max() if len(frac) else 0:.2f} of {len(windows)} window(s)): lower sampler.min_clear_fraction, "
                "or change the split (split.block_size, split.seed) or the area"
            )
        return kept

    def _check_targets(self, train_w: np.ndarray, val_w: np.ndarray, size: int) -> None:
        """Windows are checked by :meth:`_keep`, the hidden observations of validation by :meth:`_check_val`."""

    def _target_kwargs(self) -> dict[str, Any]:
        if self._gaps is None:
            d, g = self.cfg.data, self.cfg.gaps
            from ..cube import select_bands

            cloud = select_bands(self.cube, d["cloud_band"]).isel(band=0).values
            bank = bank_from_blocks(cloud, self.split.blocks("train"), min_fraction=float(g["min_cloud_fraction"]))
            self._gaps = GapTarget(bank, float(g["p_date"]), days_since_epoch(self.cube["time"].values),
                                   margin=self.context)
        return {"target": "gaps", "gaps": self._gaps}

    def _check_val(self) -> None:
        """Refuse a validation set with nothing to score (val loss 0 at every epoch, best.pt kept at epoch 1)."""
        hidden = sum(int(self.val[i]["target_mask"].sum()) for i in range(len(self.val)))
        if hidden == 0:
            raise LearnError(
                f"the validation set holds no hidden clear observation ({len(self.val)} window(s) of the validation "
                f"blocks, train.val_windows={self.cfg.train.get('val_windows')}): every epoch would score val loss 0 "
                "and best.pt would stay at epoch 1; give train.val_windows >= 1, a larger split.block_size or "
                "validation fraction, or a lower sampler.min_clear_fraction"
            )

    def sources_meta(self) -> list[dict[str, Any]]:
        return [{"name": "input", "bands": list(self.cfg.data["bands"]), "channels": len(self.cfg.data["bands"]),
                 "ratio": 1, "layout": "sequence"}]

    def _target_meta(self) -> dict[str, Any]:
        return {"normaliser": self.normaliser.to_dict(), "bands": list(self.cfg.data["bands"])}

    def network(self) -> nn.Module:
        from .networks import GapFillNet

        return GapFillNet(n_bands=len(self.cfg.data["bands"]), **self.cfg.network)

    def _quantiles(self) -> tuple[float, float] | None:
        from .networks import check_quantiles

        return check_quantiles(self.cfg.network.get("quantiles"))

    def loss(self, model: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
        q = self._quantiles()
        if q is None:
            return masked_mse(model(b["values"], b["valid"], b["days"]), b["values"], b["target_mask"])
        from .interval import pinball_loss

        fill, lower, upper = model(b["values"], b["valid"], b["days"], with_interval=True)
        m = b["target_mask"]
        return (masked_mse(fill, b["values"], m) + pinball_loss(lower, b["values"], m, q[0])
                + pinball_loss(upper, b["values"], m, q[1]))

    def loss_count(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        return b["target_mask"].sum(dtype=torch.float64)

    def validate(self, net: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, Any]:
        """``val_loss`` (MSE of the hidden observations); with an interval head also its conformal calibration.

        The calibration of the epoch's weights (:func:`eocube.learn.interval.calibration`, on the
        validation blocks' hidden observations) goes to the checkpoint written after it
        (``meta["interval"]``); ``val_coverage`` is the uncalibrated interval's coverage.
        """
        q = self._quantiles()
        total, count = 0.0, 0.0
        parts: list[tuple[np.ndarray, ...]] = []
        from .interval import hidden_rows, interval_difficulty

        with torch.no_grad():
            for b in loader:
                b = {k: v.to(device) for k, v in b.items()}
                out = net(b["values"], b["valid"], b["days"], with_interval=q is not None)
                pred = out[0] if q is not None else out
                m = b["target_mask"].to(pred.dtype)
                total += float(((pred - b["values"]) ** 2 * m).sum())
                count += float(m.sum())
                if q is not None:
                    scale = interval_difficulty(b["values"], b["valid"], b["days"], *out)
                    parts.append(hidden_rows(b["target_mask"], b["values"], out[0], out[1], out[2], scale))
        row = {"val_loss": total / max(count, 1.0)}
        if q is not None:
            from .interval import calibration

            truth, fill, lower, upper, scale = (np.concatenate([p[i] for p in parts]) for i in range(5))
            self.interval = calibration(lower, upper, truth, q, self.normaliser.std, fill=fill, scale=scale)
            row["val_coverage"] = float(np.average(self.interval["raw_coverage"], weights=self.interval["n"]))
        return row

    def checkpoint(self) -> dict[str, Any]:
        part = super().checkpoint()
        if getattr(self, "interval", None) is not None:
            part["meta"]["interval"] = self.interval
        return part


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden clear observations only."""
    m = mask.to(pred.dtype)
    return ((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


class SegmentationTask(PatchTask):
    """Class maps from a label cube."""

    name = "segmentation"
    target_kind = "labels"
    score_names = ("val_loss", "oa", "macro_f1", "miou")

    def scores(self) -> tuple[str, ...]:
        return self.score_names + tuple(f"f1_{c['name']}" for c in self.classes)

    def _prepare_target(self, tcube: xr.DataArray) -> None:
        self._hists: dict[int, np.ndarray] = {}
        attrs = dict(tcube.attrs)
        nodata = cube_nodata(tcube)
        values = attrs.get("class_values")
        if values is None:
            u = np.unique(np.asarray(self.ps.target.read(slice(0, self.ps.shape[0]), slice(0, self.ps.shape[1]))))
            values = [int(v) for v in u if np.isfinite(v) and (nodata is None or v != nodata)]
        values = [int(v) for v in np.atleast_1d(values)]
        if not values or max(values) > 254 or min(values) < 0:
            raise LearnError(f"label values must be 0..254 (255 is the class map's nodata), got {values}")
        names = list(np.atleast_1d(attrs.get("class_names", [str(v) for v in values])))
        colors = attrs.get("class_colors")
        colors = [str(c).lstrip("#") for c in np.atleast_1d(colors)] if colors is not None else [None] * len(values)
        self.classes = [{"value": v, "name": str(n), "color": c} for v, n, c in zip(values, names, colors)]

    def _target_kwargs(self) -> dict[str, Any]:
        return {"target": "labels", "class_values": [c["value"] for c in self.classes]}

    def _target_meta(self) -> dict[str, Any]:
        return {"classes": self.classes, "class_frequency": [float(f) for f in self.freq]}

    target_what = "labelled pixels"

    def _target_total(self, windows: np.ndarray, size: int, *, until_one: bool = False) -> int:
        hist = label_histograms(self.ps, windows, size, [c["value"] for c in self.classes])
        self._hists[id(windows)] = hist  # the training windows' histograms give the sampling weights
        return int(hist.sum())

    def _valid_target(self, tgt: np.ndarray) -> np.ndarray:
        from .patches import _class_index, _lookup

        return _class_index(tgt[0], _lookup([c["value"] for c in self.classes])) >= 0

    def derived(self) -> dict[str, Any]:
        return {**super().derived(), "classes": self.classes}

    def _weights(self, windows: np.ndarray, size: int) -> np.ndarray | None:
        hist = self._hists.pop(id(windows), None)
        self._hists.clear()
        if hist is None:
            hist = label_histograms(self.ps, windows, size, [c["value"] for c in self.classes])
        weights, self.freq = class_balance_weights(hist)
        return weights if self.cfg.sampler.get("balance", True) else None

    def network(self) -> nn.Module:
        from .networks import SegNet

        return SegNet([len(s.bands) for s in self.ps.sources], len(self.classes), [s.ratio for s in self.ps.sources],
                      **self.cfg.network)

    def _ce_weight(self, device: torch.device) -> torch.Tensor | None:
        if not self.cfg.loss.get("class_weights"):
            return None
        f = torch.as_tensor(self.freq, dtype=torch.float32, device=device)
        w = torch.where(f > 0, 1.0 / f.clamp_min(1e-6), torch.zeros_like(f))
        return w / w[f > 0].mean()

    def loss(self, model: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(*self._xs(b)).float()
        y = b["target"].long()
        if not (y >= 0).any():
            return logits.sum() * 0.0
        loss = F.cross_entropy(logits, y, weight=self._ce_weight(logits.device), ignore_index=-1,
                               label_smoothing=float(self.cfg.loss.get("label_smoothing", 0.0)))
        dice = float(self.cfg.loss.get("dice", 0.0))
        if dice:
            loss = loss + dice * soft_dice_loss(logits, y)
        return loss

    def loss_count(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Labelled pixels (their class weights with ``loss.class_weights``); the Dice term is per process."""
        y = b["target"].long()
        w = self._ce_weight(y.device)
        return (y >= 0).sum(dtype=torch.float64) if w is None else w[y[y >= 0]].sum(dtype=torch.float64)

    def validate(self, net: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, Any]:
        k = len(self.classes)
        cm = np.zeros((k, k), dtype="int64")
        total = count = 0.0
        with torch.no_grad():
            for b in loader:
                b = {key: v.to(device) for key, v in b.items()}
                logits = net(*self._xs(b)).float()
                y = b["target"].long()
                n = float((y >= 0).sum())
                if n:
                    total += float(F.cross_entropy(logits, y, ignore_index=-1, reduction="sum"))
                    count += n
                cm += confusion_matrix(y, logits.argmax(1), k)
        sc = classification_scores(cm, [c["name"] for c in self.classes])
        row: dict[str, Any] = {"val_loss": total / max(count, 1.0), "oa": sc["oa"], "macro_f1": sc["macro_f1"],
                               "miou": sc["miou"]}
        row.update({f"f1_{c['name']}": f for c, f in zip(self.classes, sc["f1"])})
        row["confusion"] = cm.tolist()
        return row


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the classes present, on labelled pixels (target >= 0)."""
    k = logits.shape[1]
    ok = (target >= 0).unsqueeze(1).to(logits.dtype)
    prob = logits.softmax(1) * ok
    onehot = F.one_hot(target.clamp_min(0), k).permute(0, 3, 1, 2).to(logits.dtype) * ok
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return 1.0 - dice[present].mean() if present.any() else logits.sum() * 0.0


class SuperresTask(PatchTask):
    """Bands of one (coarse) source predicted on the reference grid."""

    name = "superres"
    score_names = ("val_loss", "rmse", "psnr", "ssim", "sam", "psnr_bicubic")

    def _prepare_target(self, tcube: xr.DataArray) -> None:
        tb = self.ps.target_bands
        low = [i for i, s in enumerate(self.ps.sources) if set(tb) <= set(s.bands) and s.ratio > 1]
        if not low:
            raise LearnError(f"no coarse source holds every target band {list(tb)}: super-resolution predicts the "
                             "bands of one coarser source (give it the same band names)")
        self.low = low[0]
        src = self.ps.sources[self.low]
        if tuple(src.bands) != tuple(tb):
            raise LearnError(f"the target bands {list(tb)} must be those of source {src.name!r} in its order "
                             f"{list(src.bands)}")

    def build(self, source: Any, target: Any, world_size: int) -> None:
        super().build(source, target, world_size)
        self.target_normaliser = self.normalisers[self.ps.sources[self.low].name]
        for ds in (self.train, self.val):
            ds.target_normaliser = self.target_normaliser

    def _target_kwargs(self) -> dict[str, Any]:
        return {"target": "values"}

    def _target_meta(self) -> dict[str, Any]:
        return {"target_bands": list(self.ps.target_bands), "target_normaliser": self.target_normaliser.to_dict(),
                "low": self.low}

    def network(self) -> nn.Module:
        from .networks import SuperResNet

        return SuperResNet([len(s.bands) for s in self.ps.sources], self.low, [s.ratio for s in self.ps.sources],
                           **self.cfg.network)

    def loss(self, model: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
        pred = model(*self._xs(b)).float()
        m = b["target_valid"].to(pred.dtype)
        return float(self.cfg.loss.get("l1", 1.0)) * ((pred - b["target"]).abs() * m).sum() / m.sum().clamp_min(1.0)

    def loss_count(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        return b["target_valid"].sum(dtype=torch.float64)

    def validate(self, net: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, Any]:
        preds, truths, cubic, total, count = [], [], [], 0.0, 0.0
        tn = self.target_normaliser
        with torch.no_grad():
            for b in loader:
                b = {key: v.to(device) for key, v in b.items()}
                xs = self._xs(b)
                pred = net(*xs).float()
                m = b["target_valid"].to(pred.dtype)
                total += float(((pred - b["target"]).abs() * m).sum())
                count += float(m.sum())
                up = F.interpolate(xs[self.low], size=pred.shape[-2:], mode="bicubic", align_corners=False)
                ok = b["target_valid"].cpu().numpy()
                preds.append(np.where(ok, tn.denormalise(pred.cpu().numpy()), np.nan))
                truths.append(np.where(ok, tn.denormalise(b["target"].cpu().numpy()), np.nan))
                cubic.append(np.where(ok, tn.denormalise(up.float().cpu().numpy()), np.nan))
        p, t, c = (np.concatenate(a) for a in (preds, truths, cubic))
        rng = self.cfg.metrics.get("data_range")
        row: dict[str, Any] = {"val_loss": total / max(count, 1.0), **regression_scores(p, t, rng)}
        row["psnr_bicubic"] = psnr(c, t, rng)
        return row


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


TASK_CLASSES: dict[str, type[Task]] = {"gapfill": GapfillTask, "segmentation": SegmentationTask, "superres": SuperresTask}


def make_task(cfg: TrainConfig) -> Task:
    """The task object of a configuration."""
    return TASK_CLASSES[cfg.task](cfg)


__all__ = ["GapfillTask", "HALO_MODES", "PatchTask", "masked_mse", "SegmentationTask", "SuperresTask", "TASK_CLASSES",
           "Task", "make_task", "open_cube", "soft_dice_loss", "window_halo"]
