"""The training loop of every task: validation, checkpoints, resume, DDP, AMP, export.

One function, :func:`train`, runs alone or as one rank of a multi-process job
(torchrun, or Slurm with one task per GPU or per node; gloo on CPU, NCCL on GPU; bf16 autocast on GPU).
N processes with batch B train as one process with batch N x B: each step's loss is the mean
over the global batch (:func:`eocube.learn.distributed.global_batch_loss`).
What depends on the task (data, network, loss, scores, export) is in :mod:`eocube.learn.tasks` (the task
classes by name; their code in ``task_base``, ``task_gapfill``, ``task_segmentation`` and ``task_superres``).
Rank 0 validates every epoch, writes checkpoints (``last.pt`` each epoch, and every
``train.checkpoint_every`` steps with the position in the epoch; ``best.pt`` at the best
``train.monitor`` score), ``metrics.csv`` (and TensorBoard events when installed), and shows a
progress bar with the running loss. Example ``i`` of epoch ``e`` depends on ``(seed, e, i)``
only and the order within an epoch is fixed, so a run killed mid-epoch and resumed ends with
the same weights as an uninterrupted one.
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
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler

from ..names import MODEL_FILE
from . import distributed
from .checkpoint import LAST, load_checkpoint, save_checkpoint
from .config import TrainConfig, load_config
from .errors import LearnError
from .identity import check_resume
from .tasks import make_task

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
    hosts: list[str] = field(default_factory=list)
    """Host name of each process, by rank."""
    members: list[TrainResult] = field(default_factory=list)
    """``train.ensemble`` > 1: each member's run (``OUT/member-K``); history and epochs above are member 0's."""


def _lr(base: float, step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _load_resume(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                 run: Any = None, fingerprint: dict[str, Any] | None = None,
                 world_size: int | None = None) -> dict[str, Any]:
    """Load ``out/last.pt`` into the model and optimiser; with ``run`` (the built task) and its
    ``fingerprint``, refuse a checkpoint of another training (:func:`eocube.learn.identity.check_resume`)."""
    ckpt = load_checkpoint(out / LAST, map_location=device)
    net = model.module if hasattr(model, "module") else model
    if run is not None:  # first: it names the differing keys (and the value of a key added since the run)
        check_resume(out / LAST, ckpt.get("fingerprint"), fingerprint or run.fingerprint(), ckpt.get("config"),
                     run.cfg.to_dict(), run.inputs)
        written = ckpt.get("world_size")
        if (ckpt.get("meta") or {}).get("position") and written is not None and written != world_size:
            raise LearnError(
                f"cannot resume {out / LAST} in the middle of an epoch with {world_size} process(es): it was written "
                f"by {written}, and its position in the epoch counts batches of that many; resume with {written} "
                "process(es) (a checkpoint at the end of an epoch may continue with any number)"
            )
    if ckpt["network"] != net.config.to_dict():
        raise LearnError(
            f"{out / LAST} was trained with network {ckpt['network']}, the config asks for "
            f"{net.config.to_dict()}: resume with the same network settings or use a new --out"
        )
    net.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt


def resume_state(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> tuple[int, list]:
    """Load ``out/last.pt`` into the model and optimiser.

    Returns
    -------
    tuple
        ``(completed epochs, history)``.
    """
    ckpt = _load_resume(out, model, optimizer, device)
    return int(ckpt["epoch"]), list(ckpt["history"])


class EpochSampler(Sampler[int]):
    """Indices ``0..n-1`` of an epoch in order, this rank's share (``rank::world``), from a position on.

    As ``DistributedSampler(shuffle=False)`` (padded to a multiple of the ranks), plus a start
    position so that a run resumed mid-epoch skips the batches already done.
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        per_rank = -(-n // world_size)
        idx = list(range(n)) + list(range(per_rank * world_size - n))
        self.indices = idx[rank::world_size][start:]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _after_step(global_step: int) -> None:
    """Called after every optimiser step (a test replaces it to kill a run mid-epoch)."""


def train(
    config: TrainConfig | str | os.PathLike[str] | None = None,
    *,
    source: Any = None,
    target: Any = None,
    out: str | os.PathLike[str] = "eocube-train",
    resume: bool = False,
    until_epoch: int | None = None,
    task: str | None = None,
) -> TrainResult:
    """Train a network on cubes: gap filling, segmentation or super-resolution.

    Parameters
    ----------
    config
        A :class:`TrainConfig`, a YAML path, or None for the task's defaults.
    source
        Gap filling: the cube (None for the bundled Sentinel-2 sample, a sample name, a Zarr path, or a cube).
        Segmentation, super-resolution: ``{name: cube or path}`` of the input sources (or one
        cube), None for the config's ``data.sources``.
    target
        Segmentation: the label cube; super-resolution: the cube of the bands to predict on the
        reference grid; None for the config's ``data.target``.
    out
        Output folder: ``last.pt``, ``best.pt``, ``metrics.csv`` (and ``model.pt2`` +
        ``model.json`` when ``train.export``).
    resume
        Continue from ``out/last.pt`` (epoch, position in the epoch, model, optimiser, RNG);
        starts afresh when there is none yet. Only the same training is continued: the
        checkpoint's fingerprint (config, input content, normalisation, split; see
        :mod:`eocube.learn.identity`) must match, except for ``train.epochs`` and the other
        settings of :data:`~eocube.learn.identity.MAY_CHANGE_ON_RESUME`.
    until_epoch
        Stop after this epoch (e.g. to fit a job's time limit), continue later
        with ``resume=True``; the learning-rate schedule still spans ``train.epochs``.
    task
        ``gapfill``, ``segmentation`` or ``superres`` when ``config`` is a path or None
        (default: the config's ``task`` key, else ``gapfill``).

    Returns
    -------
    TrainResult
        On every rank (history is complete on rank 0).

    Raises
    ------
    LearnError
        ``out`` already holds a checkpoint and ``resume`` is False; ``resume`` finds a checkpoint of
        another training (the message names the differing fields) or one without a fingerprint; a
        bad config; a validation set with nothing to score, or no validation part in ``split.fractions``.
    """
    cfg = config if isinstance(config, TrainConfig) else load_config(config, task=task)
    if task is not None and cfg.task != task:
        raise LearnError(f"the config is for task {cfg.task!r}, not {task!r}")
    t_cfg = cfg.train
    out = Path(out)
    env = distributed.detect()
    if t_cfg.get("device") == "cuda" and not torch.cuda.is_available():
        raise LearnError("config train.device: 'cuda' but this machine has no CUDA device: give auto or cpu")
    device = distributed.pick_device(str(t_cfg.get("device", "auto")), env)
    if t_cfg.get("threads"):
        torch.set_num_threads(int(t_cfg["threads"]))
    n = int(t_cfg.get("ensemble", 1) or 1)
    first = out / f"member-0/{LAST}" if n > 1 else out / LAST
    if first.exists() and not resume:
        raise LearnError(f"{first} exists: pass --resume to continue that run, or choose another --out")
    distributed.init(env, device)
    try:
        if n > 1:
            return _run_ensemble(cfg, n, source, target, out, resume, env, device, until_epoch)
        return _run(cfg, source, target, out, resume, env, device, until_epoch)
    finally:
        distributed.shutdown(env)


def _run_ensemble(
    cfg: TrainConfig, n: int, source: Any, target: Any, out: Path, resume: bool, env: distributed.DistEnv,
    device: torch.device, until_epoch: int | None,
) -> TrainResult:
    """``train.ensemble`` members one after the other (``train.seed`` + K into ``OUT/member-K``), one export."""
    from .ensemble import export_ensemble, member_runs

    t_cfg, started, results = cfg.train, time.perf_counter(), []
    for k, folder in enumerate(member_runs(out, n)):
        raw = cfg.to_dict()
        raw["train"].update(seed=int(t_cfg["seed"]) + k, ensemble=1, export=False)
        log.info("ensemble member %d of %d (train.seed %d) -> %s", k + 1, n, raw["train"]["seed"], folder)
        results.append(_run(load_config(overrides=raw, task=cfg.task), source, target, folder, resume, env, device,
                            until_epoch))
    done = min(r.epochs for r in results)
    if env.is_main and done >= int(t_cfg["epochs"]) and t_cfg.get("export", False):
        keep = BEST if str(t_cfg.get("keep", "best")) == "best" else LAST
        export_ensemble(member_runs(out, n), out / MODEL_FILE, checkpoint=keep, tta=bool(t_cfg.get("tta", False)))
    distributed.barrier(env)
    m0 = results[0]
    return TrainResult(out, m0.start_epoch, done, m0.history, time.perf_counter() - started, env.world_size,
                       m0.device, env.rank, m0.hosts, members=results)


def _amp(t_cfg: dict[str, Any], device: torch.device) -> bool:
    amp = t_cfg.get("amp", "auto")
    return device.type == "cuda" and (amp == "auto" or amp is True)


def _run(
    cfg: TrainConfig, source: Any, target: Any, out: Path, resume: bool, env: distributed.DistEnv,
    device: torch.device, until_epoch: int | None,
) -> TrainResult:
    t_cfg = cfg.train
    started = time.perf_counter()
    hosts = distributed.hosts(env)
    if env.distributed and env.is_main:
        log.info("%d processes (%s, %s), rendezvous %s:%s: %s", env.world_size, env.launcher,
                 "nccl" if device.type == "cuda" else "gloo", os.environ.get("MASTER_ADDR", "?"),
                 os.environ.get("MASTER_PORT", "?"), ", ".join(f"rank {r} on {h}" for r, h in enumerate(hosts)))
    task = make_task(cfg)
    task.build(source, target, env.world_size)
    monitor = str(t_cfg.get("monitor", "val_loss"))
    if monitor not in ("train_loss", *task.scores()):
        raise LearnError(f"train.monitor={monitor!r} is not a score of task {task.name!r}: use one of "
                         f"{['train_loss', *task.scores()]}")
    torch.manual_seed(int(t_cfg["seed"]))
    net = task.network().to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=float(t_cfg["lr"]), weight_decay=float(t_cfg["weight_decay"]))
    start_epoch, start_step, history, carried = 0, 0, [], (0.0, 0)
    fingerprint = task.fingerprint()
    if resume and (out / LAST).exists():
        ckpt = _load_resume(out, net, optimizer, device, task, fingerprint, env.world_size)
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
        pos = ckpt.get("meta", {}).get("position") or {}
        start_step, carried = int(pos.get("step", 0)), (float(pos.get("running", 0.0)), int(pos.get("seen", 0)))
        if ckpt.get("rng") is not None:
            torch.set_rng_state(ckpt["rng"].cpu())
        log.info("resuming from %s at epoch %d, step %d", out / LAST, start_epoch, start_step)
    model: torch.nn.Module = (
        DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) if env.distributed else net)
    bs, workers = int(t_cfg["batch_size"]), int(t_cfg.get("num_workers", 0))
    val_loader = DataLoader(task.val, batch_size=bs, num_workers=0)
    epochs = int(t_cfg["epochs"])
    steps = max(1, -(-len(EpochSampler(len(task.train), env.rank, env.world_size)) // bs))
    total, warmup = epochs * steps, max(1, min(50, epochs * steps // 10))
    lower = task.lower_is_better(monitor)
    scores = [h[monitor] for h in history if monitor in h]
    best = (min(scores) if lower else max(scores)) if scores else None
    show = env.is_main and bool(t_cfg.get("progress", True))
    every = int(t_cfg.get("checkpoint_every", 0) or 0)
    amp = _amp(t_cfg, device)
    stop = epochs if until_epoch is None else min(epochs, int(until_epoch))

    def save(path: Path, epoch: int, position: dict[str, Any] | None, with_optimizer: bool = True) -> None:
        part = task.checkpoint()
        meta = dict(part["meta"], position=position)
        save_checkpoint(path, model=net, optimizer=optimizer if with_optimizer else None,
                        config=cfg.to_dict(), epoch=epoch, history=history, task=task.name, meta=meta,
                        rng=torch.get_rng_state(), fingerprint=fingerprint, world_size=env.world_size)

    for epoch in range(start_epoch, stop):
        t0 = time.perf_counter()
        task.train.set_epoch(epoch)
        skip = start_step if epoch == start_epoch else 0
        running, seen = carried if skip else (0.0, 0)
        sampler = EpochSampler(len(task.train), env.rank, env.world_size, skip * bs)
        loader = DataLoader(task.train, batch_size=bs, sampler=sampler, num_workers=workers,
                            pin_memory=device.type == "cuda")
        bar = _progress(loader, show, f"epoch {epoch + 1}/{epochs}")
        for i, b in enumerate(bar, start=skip):
            for group in optimizer.param_groups:
                group["lr"] = _lr(float(t_cfg["lr"]), epoch * steps + i, total, warmup)
            b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = task.loss(model, b)
            loss, value = distributed.global_batch_loss(loss, task.loss_count(b), env)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            running, seen = running + value, seen + 1
            if show:
                bar.set_postfix(loss=f"{running / seen:.4f}")
            if every and env.is_main and (i + 1) % every == 0 and i + 1 < steps:
                save(out / LAST, epoch, {"step": i + 1, "running": running, "seen": seen})
            _after_step(epoch * steps + i + 1)
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": running / max(seen, 1),
                               "seconds": time.perf_counter() - t0, "world_size": env.world_size}
        if env.is_main:
            net.eval()
            scores_row = task.validate(net, val_loader, device)
            net.train()
            confusion = scores_row.pop("confusion", None)
            row.update(scores_row)
            history.append(row)
            save(out / LAST, epoch + 1, None)
            value = row[monitor]
            if best is None or (value < best if lower else value > best):
                best = value
                save(out / BEST, epoch + 1, None, with_optimizer=False)
                if confusion is not None:
                    _write_confusion(out / "confusion_best.csv", confusion, task)
            if confusion is not None:
                _write_confusion(out / "confusion_last.csv", confusion, task)
            write_metrics(out, history)
            log.info("epoch %d: train loss %.4f, val loss %.4f%s", epoch + 1, row["train_loss"], row["val_loss"],
                     "" if monitor == "val_loss" else f", {monitor} {value:.4f}")
        distributed.barrier(env)
    done = max(start_epoch, stop)
    if env.is_main and done >= epochs and t_cfg.get("export", False):
        from .export import export_run

        keep = str(t_cfg.get("keep", "best"))
        export_run(out, checkpoint=BEST if keep == "best" else LAST, tta=bool(t_cfg.get("tta", False)))
    distributed.barrier(env)
    return TrainResult(out, start_epoch, done, history, time.perf_counter() - started, env.world_size, str(device), env.rank,
                       hosts)


def write_metrics(out: Path, history: list[dict[str, Any]]) -> Path:
    """Write the per-epoch history to ``out/metrics.csv`` (and TensorBoard events when it is installed)."""
    import csv

    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    path = out / "metrics.csv"
    tmp = path.with_name(".metrics.csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    os.replace(tmp, path)
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional
        return path
    with SummaryWriter(str(out / "tensorboard")) as tb:
        row = history[-1]
        for k, v in row.items():
            if isinstance(v, (int, float)) and k != "epoch":
                tb.add_scalar(k, v, int(row["epoch"]))
    return path


def _write_confusion(path: Path, cm: list[list[int]], task: Any) -> None:
    names = [c["name"] for c in task.classes]
    lines = ["truth\\predicted," + ",".join(names)] + [f"{n}," + ",".join(str(v) for v in r) for n, r in zip(names, cm)]
    path.write_text("\n".join(lines) + "\n")


def _progress(loader: DataLoader, show: bool, desc: str):
    if not show:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
