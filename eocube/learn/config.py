"""Training configuration: one YAML with defaults (``default.yaml``), overridable per key."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import LearnError

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default.yaml")
TASKS = ("gapfill", "segmentation", "superres")
"""Tasks ``eocube train --task`` knows."""
TASK_CONFIG_PATHS = {
    "gapfill": DEFAULT_CONFIG_PATH,
    "segmentation": Path(__file__).with_name("segmentation.yaml"),
    "superres": Path(__file__).with_name("superres.yaml"),
}
"""Default configuration file of each task."""
_SECTIONS = {
    "gapfill": ("data", "split", "sampler", "gaps", "network", "train"),
    "segmentation": ("data", "split", "sampler", "network", "loss", "train"),
    "superres": ("data", "split", "sampler", "network", "loss", "train"),
}


def _read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise LearnError(f"no config file at {p}: pass an existing YAML file (see {DEFAULT_CONFIG_PATH})")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise LearnError(f"{p} must hold a mapping of sections (data, split, sampler, network, train, ...)")
    return data


def _merge(base: dict[str, Any], override: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if where + key in _OLD_GAPFILL_KEYS:
            raise LearnError(
                f"config key {where + key!r} is from an earlier eocube: gap filling now splits the cube into blocks "
                "like the other tasks (split.block_size, split.fractions, split.buffer, split.seed) and reads whole "
                f"series; drop data.train_region, data.val_region, data.test_region, data.in_memory and "
                f"sampler.time_size, and start from {DEFAULT_CONFIG_PATH}"
            )
        if key not in base and not (where == "" and key == "task"):
            raise LearnError(
                f"unknown config key {where + key!r}; valid keys here: {sorted(base)} (see {DEFAULT_CONFIG_PATH.name})"
            )
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            out[key] = _merge(base[key], value, where + key + ".")
        else:
            out[key] = value
    return out


_OLD_GAPFILL_KEYS = frozenset({"data.train_region", "data.val_region", "data.test_region", "data.in_memory",
                               "sampler.time_size"})
"""Keys of the gap-filling configs of eocube before the one training path (refused with the remedy)."""


@dataclass(frozen=True)
class TrainConfig:
    """The whole training configuration (sections of ``default.yaml``)."""

    data: dict[str, Any]
    sampler: dict[str, Any]
    gaps: dict[str, Any]
    network: dict[str, Any]
    train: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    task: str = "gapfill"
    """``gapfill``, ``segmentation`` or ``superres``."""
    split: dict[str, Any] = field(default_factory=dict)
    """Spatial block split."""
    loss: dict[str, Any] = field(default_factory=dict)
    """Loss settings (segmentation, superres)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Metric settings (superres: ``data_range``)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (stored in checkpoints, reloads with :func:`load_config`)."""
        return copy.deepcopy(self.raw)


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None, *, task: str | None = None
) -> TrainConfig:
    """Read the task's default configuration, then a user file, then overrides.

    Parameters
    ----------
    path
        A YAML file overriding any subset of the task's defaults (``default.yaml`` for gap
        filling, ``segmentation.yaml``, ``superres.yaml``); None for the defaults.
    overrides
        A nested dict applied last (e.g. ``{"train": {"epochs": 2}}``).
    task
        ``gapfill``, ``segmentation`` or ``superres``; None: the file's (or overrides') ``task``
        key, else ``gapfill``.

    Returns
    -------
    TrainConfig

    Raises
    ------
    LearnError
        Unknown keys, a missing file, or a task that the file contradicts.
    """
    user = _read_yaml(path) if path is not None else {}
    named = [t for t in (task, user.get("task"), (overrides or {}).get("task")) if t is not None]
    chosen = named[0] if named else "gapfill"
    if chosen not in TASKS:
        raise LearnError(f"unknown task {chosen!r}: use one of {list(TASKS)}")
    if any(t != chosen for t in named):
        raise LearnError(f"the task is given as {chosen!r} and as {[t for t in named if t != chosen][0]!r}: "
                         "the --task option and the config's task key must agree")
    cfg = _read_yaml(TASK_CONFIG_PATHS[chosen])
    cfg = _merge(cfg, user)
    if overrides:
        cfg = _merge(cfg, overrides)
    if chosen != "gapfill":
        cfg["task"] = chosen
    return config_from_dict(cfg)


def config_from_dict(cfg: dict[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from a complete nested dict (as stored in a checkpoint)."""
    task = cfg.get("task", "gapfill")
    if task not in TASKS:
        raise LearnError(f"unknown task {task!r}: use one of {list(TASKS)}")
    missing = [s for s in _SECTIONS[task] if s not in cfg]
    if missing:
        raise LearnError(f"config lacks section(s) {missing}: start from {TASK_CONFIG_PATHS[task]}")
    ps = cfg["sampler"]["patch_size"]
    if not isinstance(ps, int) or ps < 4:
        raise LearnError(f"sampler.patch_size must be an integer >= 4, got {ps!r}")
    return TrainConfig(
        data=cfg["data"], sampler=cfg["sampler"], gaps=cfg.get("gaps", {}), network=cfg["network"],
        train=cfg["train"], raw=copy.deepcopy(cfg), task=task, split=cfg.get("split", {}), loss=cfg.get("loss", {}),
        metrics=cfg.get("metrics", {}),
    )
