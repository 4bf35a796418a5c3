"""The ``gapfill`` task: self-supervised gap filling of a cube's clear observations hidden under real cloud masks.

:class:`GapfillTask` trains a :class:`~eocube.learn.networks.GapFillNet` with :func:`masked_mse` (plus
the pinball loss of an interval head) on the ``gaps`` target of the patch dataset
(:class:`~eocube.learn.gaps.GapTarget`), and calibrates the interval on the validation blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.utils.data import DataLoader

from .errors import LearnError
from .gaps import GapTarget, bank_from_blocks, days_since_epoch
from .normalisation import Normaliser
from .task_base import PatchTask, open_cube


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


__all__ = ["GapfillTask", "masked_mse"]
