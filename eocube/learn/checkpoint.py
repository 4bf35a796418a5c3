"""Checkpoints: atomic writes, resume, and safe loading with ``weights_only=True``.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python
values (so it loads with ``torch.load(..., weights_only=True)``, which never
runs code from the file), one format for every task:

* ``format``: ``"eocube.learn/1"``; ``task``: ``gapfill``, ``segmentation`` or ``superres``;
* ``model``: the network's ``state_dict``; ``network``: the :class:`~eocube.learn.networks.NetConfig`
  it was built with (:func:`~eocube.learn.networks.build_network` rebuilds it);
* ``optimizer``: the optimiser's ``state_dict`` (None in exported models);
* ``epoch``: number of completed epochs; ``history``: losses per epoch;
* ``config``: the whole training configuration;
* ``fingerprint``: the run's identity, one digest per field (:mod:`eocube.learn.identity`), which
  ``--resume`` compares field by field; ``world_size``: the processes that wrote it.

* ``meta``: the sources (names, bands, ratios), the per-source ``normalisers``, the split, the
  halo; the task's part (gap filling: the per-band ``normaliser``; segmentation: the classes;
  super-resolution: the target normaliser); and the position inside an epoch (``step``, running
  loss) with the torch RNG state (``rng``), so a run killed mid-epoch resumes exactly.

Gap-filling checkpoints of earlier versions (format ``"eocube.learn.gapfill/1"``, pixel-box
regions) are refused with how to retrain: their split and data path no longer exist.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models import ModelLoadError
from ..models.shared import UnsafeArchiveError, check_archive, safe_cause, weights_only_failure
from .errors import CheckpointError
from .networks import GapFillNet, build_network
from .normalisation import Normaliser

FORMAT = "eocube.learn/1"
"""Format of the checkpoints of every task."""
OLD_GAPFILL_FORMAT = "eocube.learn.gapfill/1"
"""Format of the gap-filling checkpoints before the one training path (refused, with how to retrain)."""
LAST = "last.pt"
"""File name of the latest checkpoint in a training output folder."""


def _bare(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    config: dict[str, Any],
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    history: list[dict[str, float]] | None = None,
    task: str = "gapfill",
    meta: dict[str, Any] | None = None,
    rng: torch.Tensor | None = None,
    fingerprint: dict[str, Any] | None = None,
    world_size: int = 1,
) -> Path:
    """Write a checkpoint atomically (a temporary file renamed into place).

    A crash during the write leaves the previous checkpoint intact.

    Parameters
    ----------
    path
        Destination file.
    model
        The network (a DDP wrapper is unwrapped).
    config
        The training configuration as a plain dict.
    epoch
        Completed epochs.
    optimizer
        The optimiser, for resuming; None to export the model only.
    history
        Per-epoch losses.
    task
        ``gapfill``, ``segmentation`` or ``superres``.
    meta
        Plain values of the task (sources, normalisers, classes, split, position in the epoch).
    rng
        The torch RNG state (``torch.get_rng_state()``).
    fingerprint
        The run's identity (:func:`eocube.learn.identity.run_fingerprint`): a resume of another
        training is refused naming what differs.
    world_size
        Training processes that wrote it (a resume in the middle of an epoch needs as many).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    net = _bare(model)
    if not hasattr(net, "config"):
        raise CheckpointError(f"{type(net).__name__} has no config (the kwargs to rebuild it): cannot checkpoint it")
    _check_plain(config, "config")
    _check_plain(meta or {}, "meta")
    _check_plain(fingerprint or {}, "fingerprint")
    payload = {
        "format": FORMAT,
        "task": task,
        "meta": dict(meta or {}),
        "rng": rng,
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "network": net.config.to_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": int(epoch),
        "history": list(history or []),
        "config": config,
        "fingerprint": fingerprint,
        "world_size": int(world_size),
    }
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _check_plain(value: Any, where: str) -> None:
    """Refuse values that ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{where} has a non-string key {k!r}: checkpoints hold plain values only")
            _check_plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise CheckpointError(
            f"{where} is a {type(value).__name__}: checkpoints hold plain values only (str, numbers, lists, "
            "dicts) so that they load with weights_only=True; convert it first"
        )


class UnsafeCheckpointError(CheckpointError, ModelLoadError):
    """A checkpoint file whose archive torch could read ambiguously or that would run code (:mod:`eocube.models._archive`)."""


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    Parameters
    ----------
    path
        A file written by :func:`save_checkpoint`, or a training output folder
        (its ``last.pt`` is read).
    map_location
        Where tensors go.

    Returns
    -------
    dict
        The checkpoint's content (see the module docstring).

    Raises
    ------
    CheckpointError
        Missing file, unreadable file, or not an eocube gap-filling checkpoint; an archive torch
        could read ambiguously (duplicate or unexpected entries, a damaged or crafted zip) is an
        :class:`UnsafeCheckpointError`, also a :class:`~eocube.models.ModelLoadError`.
    """
    p = Path(path)
    if p.is_dir():
        p = p / LAST
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}: pass a .pt file written by `eocube train` (or its --out folder)")
    try:
        check_archive(p, "torch.save")  # as torch reads it: no duplicate, unexpected or damaged entry
    except UnsafeArchiveError as exc:
        raise UnsafeCheckpointError(
            f"cannot read checkpoint {p} safely with torch.load(weights_only=True): {exc.reason}. Write checkpoints "
            "with `eocube train` / eocube.learn.save_checkpoint (or resume from an intact copy)"
        ) from None
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle errors, truncated files, foreign objects
        raise CheckpointError(
            f"cannot read checkpoint {p} safely with torch.load(weights_only=True) ({weights_only_failure(exc)}): "
            "a checkpoint holds tensors and plain values only, and eocube never unpickles other objects "
            "(that could run any code). Write checkpoints with `eocube train` / eocube.learn.save_checkpoint, "
            "and a model's weights with torch.save(model.state_dict(), path)"
        ) from safe_cause(exc)
    if isinstance(ckpt, dict) and ckpt.get("format") == OLD_GAPFILL_FORMAT:
        raise CheckpointError(
            f"{p} is a gap-filling checkpoint of an earlier eocube (format {OLD_GAPFILL_FORMAT!r}, trained on pixel-box "
            "regions): it cannot be loaded or resumed; retrain with the current version (`eocube train --out NEW_RUN`, "
            "the data.*_region keys of its config replaced by split.*, see eocube/learn/default.yaml), which "
            "also exports model.pt2 for `eocube gapfill --method model`"
        )
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not an eocube training checkpoint (format {FORMAT!r} expected)")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device = "cpu") -> tuple[GapFillNet, Normaliser]:
    """Rebuild the gap-filling network (in eval mode) and its normaliser from a loaded checkpoint."""
    if ckpt["task"] != "gapfill":
        raise CheckpointError(
            f"this is a {ckpt['task']} checkpoint, not a gap-filling one: apply its exported model.pt2 with "
            "`eocube apply` / eocube.apply_model (eocube.learn.export.export_run writes it)"
        )
    net = build_network(ckpt["network"])
    net.load_state_dict(ckpt["model"])
    return net.to(device).eval(), Normaliser.from_dict(ckpt["meta"]["normaliser"])


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[GapFillNet, Normaliser]:
    """Load a trained network and its normaliser from a checkpoint file or folder.

    Parameters
    ----------
    path
        Checkpoint file, or training output folder.
    device
        Where the network goes.

    Returns
    -------
    tuple
        ``(GapFillNet in eval mode, Normaliser)``.
    """
    return model_from_checkpoint(load_checkpoint(path, map_location=device), device)
