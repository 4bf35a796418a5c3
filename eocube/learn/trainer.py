"""The training loop: self-supervised gap filling, validation, checkpoints, resume, DDP.

One function, :func:`train`, runs alone or as one rank of a multi-process job
(torchrun, or Slurm with one task per GPU; gloo on CPU, NCCL on GPU). Rank 0
validates, writes checkpoints (``last.pt`` each epoch, ``best.pt`` at the best
validation loss) and shows a progress bar with the running loss.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import xarray as xr
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from . import distributed
from .checkpoint import LAST, load_checkpoint, save_checkpoint
from .config import TrainConfig, load_config
from .data import build_training_data, open_source
from .errors import LearnError
from .network import GapFillNet, NetworkConfig

log = logging.getLogger(__name__)
BEST = "best.pt"


@dataclass
class TrainResult:
    """What a training run did."""

    out: Path
    """Output folder (``last.pt``, ``best.pt``)."""
    start_epoch: int
    """Epoch the run started from (0, or the resumed checkpoint's)."""
    epochs: int
    """Completed epochs at the end."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``seconds``."""
    seconds: float = 0.0
    """Wall time of this run."""
    world_size: int = 1
    """Training processes."""
    device: str = "cpu"
    """Device of this process."""
    rank: int = 0
    """Rank of this process (rank 0 holds the history and writes checkpoints)."""


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden clear observations only."""
    m = mask.to(pred.dtype)
    return ((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


def _lr(base: float, step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def resume_state(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> tuple[int, list]:
    """Load ``out/last.pt`` into the model and optimiser.

    Returns
    -------
    tuple
        ``(completed epochs, history)``.
    """
    ckpt = load_checkpoint(out / LAST, map_location=device)
    net = model.module if hasattr(model, "module") else model
    if ckpt["network"] != net.config.to_dict():
        raise LearnError(
            f"{out / LAST} was trained with network {ckpt['network']}, the config asks for "
            f"{net.config.to_dict()}: resume with the same network settings or use a new --out"
        )
    net.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return int(ckpt["epoch"]), list(ckpt["history"])


def _validate(model: GapFillNet, loader: DataLoader, device: torch.device) -> float:
    model.eval()
    total, count = 0.0, 0.0
    with torch.no_grad():
        for b in loader:
            b = {k: v.to(device) for k, v in b.items()}
            pred = model(b["values"], b["valid"], b["days"])
            m = b["target_mask"].to(pred.dtype)
            total += float(((pred - b["values"]) ** 2 * m).sum())
            count += float(m.sum())
    model.train()
    return total / max(count, 1.0)


def train(
    config: TrainConfig | str | os.PathLike[str] | None = None,
    *,
    source: str | os.PathLike[str] | xr.DataArray | None = None,
    out: str | os.PathLike[str] = "eocube-train",
    resume: bool = False,
    until_epoch: int | None = None,
) -> TrainResult:
    """Train a gap-filling network on a cube.

    Parameters
    ----------
    config
        A :class:`TrainConfig`, a YAML path, or None for the defaults.
    source
        The cube: None for the bundled Sentinel-2 sample, a Zarr path, or a cube.
    out
        Output folder for checkpoints.
    resume
        Continue from ``out/last.pt`` (epoch, model, optimiser); starts afresh
        when there is none yet.
    until_epoch
        Stop after this epoch (e.g. to fit a job's time limit), continue later
        with ``resume=True``; the learning-rate schedule still spans ``train.epochs``.

    Returns
    -------
    TrainResult
        On every rank (history is complete on rank 0).

    Raises
    ------
    LearnError
        ``out`` already holds a checkpoint and ``resume`` is False, or a bad config.
    """
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    t_cfg = cfg.train
    out = Path(out)
    env = distributed.detect()
    device = distributed.pick_device(str(t_cfg.get("device", "auto")), env)
    if t_cfg.get("threads"):
        torch.set_num_threads(int(t_cfg["threads"]))
    if (out / LAST).exists() and not resume:
        raise LearnError(f"{out / LAST} exists: pass --resume to continue that run, or choose another --out")
    distributed.init(env, device)
    try:
        return _run(cfg, source, out, resume, env, device, until_epoch)
    finally:
        distributed.shutdown(env)


def _run(
    cfg: TrainConfig, source: Any, out: Path, resume: bool, env: distributed.DistEnv, device: torch.device,
    until_epoch: int | None,
) -> TrainResult:
    t_cfg = cfg.train
    started = time.perf_counter()
    data = build_training_data(open_source(source), cfg, world_size=env.world_size)
    torch.manual_seed(int(t_cfg["seed"]))
    net = GapFillNet(NetworkConfig(n_bands=len(cfg.data["bands"]), **cfg.network)).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=float(t_cfg["lr"]), weight_decay=float(t_cfg["weight_decay"]))
    start_epoch, history = 0, []
    if resume and (out / LAST).exists():
        start_epoch, history = resume_state(out, net, optimizer, device)
        log.info("resuming from %s at epoch %d", out / LAST, start_epoch)
    model: torch.nn.Module = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) if env.distributed else net
    sampler = DistributedSampler(data.train, env.world_size, env.rank, shuffle=False) if env.distributed else None
    workers = int(t_cfg.get("num_workers", 0))
    loader = DataLoader(data.train, batch_size=int(t_cfg["batch_size"]), sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda")
    val_loader = DataLoader(data.val, batch_size=int(t_cfg["batch_size"]), num_workers=0)
    epochs, steps = int(t_cfg["epochs"]), len(loader)
    total, warmup = epochs * steps, max(1, min(50, epochs * steps // 10))
    best = min((h["val_loss"] for h in history), default=float("inf"))
    show = env.is_main and bool(t_cfg.get("progress", True))
    stop = epochs if until_epoch is None else min(epochs, int(until_epoch))
    for epoch in range(start_epoch, stop):
        t0 = time.perf_counter()
        data.train.set_epoch(epoch)
        running, seen = 0.0, 0
        bar = _progress(loader, show, f"epoch {epoch + 1}/{epochs}")
        for i, b in enumerate(bar):
            for group in optimizer.param_groups:
                group["lr"] = _lr(float(t_cfg["lr"]), epoch * steps + i, total, warmup)
            b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
            loss = masked_mse(model(b["values"], b["valid"], b["days"]), b["values"], b["target_mask"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            running, seen = running + loss.item(), seen + 1
            if show:
                bar.set_postfix(loss=f"{running / seen:.4f}")
        row = {"epoch": epoch + 1, "train_loss": running / max(seen, 1), "seconds": time.perf_counter() - t0,
               "world_size": env.world_size}
        if env.is_main:
            row["val_loss"] = _validate(net, val_loader, device)
            history.append(row)
            save_checkpoint(out / LAST, model=net, optimizer=optimizer, normaliser=data.normaliser,
                            config=cfg.to_dict(), epoch=epoch + 1, history=history)
            if row["val_loss"] < best:
                best = row["val_loss"]
                save_checkpoint(out / BEST, model=net, normaliser=data.normaliser, config=cfg.to_dict(),
                                epoch=epoch + 1, history=history)
            log.info("epoch %d: train loss %.4f, val loss %.4f", epoch + 1, row["train_loss"], row["val_loss"])
        distributed.barrier(env)
    done = max(start_epoch, stop)
    return TrainResult(out, start_epoch, done, history, time.perf_counter() - started, env.world_size, str(device), env.rank)


def _progress(loader: DataLoader, show: bool, desc: str):
    if not show:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
