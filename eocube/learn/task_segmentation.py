"""The ``segmentation`` task: class maps from a label cube.

:class:`SegmentationTask` trains a :class:`~eocube.learn.networks.SegNet` with cross-entropy and an
optional :func:`soft_dice_loss`, samples windows by class balance, and scores OA, macro-F1, mIoU,
per-class F1 and the confusion matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from ..nodata import cube_nodata
from .errors import LearnError
from .metrics import classification_scores, confusion_matrix
from .patches import class_balance_weights, label_histograms
from .task_base import PatchTask


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


__all__ = ["SegmentationTask", "soft_dice_loss"]
