"""The ``superres`` task: the bands of one coarse source predicted on the reference grid.

:class:`SuperresTask` trains a :class:`~eocube.learn.networks.SuperResNet` with L1 and scores RMSE,
PSNR, SSIM, SAM, and the PSNR of bicubic upsampling for comparison.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from .errors import LearnError
from .metrics import psnr, regression_scores
from .task_base import PatchTask


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


__all__ = ["SuperresTask"]
