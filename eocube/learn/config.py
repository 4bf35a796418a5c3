"""Training configuration: one YAML with defaults (``default.yaml``), overridable per key."""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..names import SUPERRES_PRIORS
from ..names import TASKS as TASK_NAMES
from .errors import LearnError

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default.yaml")
TASKS = TASK_NAMES
"""Tasks ``eocube train --task`` knows (:data:`eocube.names.TASKS`)."""
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
    validate_config(cfg)
    return TrainConfig(
        data=cfg["data"], sampler=cfg["sampler"], gaps=cfg.get("gaps", {}), network=cfg["network"],
        train=cfg["train"], raw=copy.deepcopy(cfg), task=task, split=cfg.get("split", {}), loss=cfg.get("loss", {}),
        metrics=cfg.get("metrics", {}),
    )


# ---------------------------------------------------------------- validation of values (before any data is read)

_MISSING = object()


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a number (or a numeric string: YAML reads ``1e-3`` as one); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _integer(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (``5`` or ``5.0``, not ``2.5``, ``True`` or ``"5"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _int_at_least(low: int, *, null: bool = False) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        if v is None:
            return null
        i = _integer(v)
        return i is not None and i >= low

    return ok, f"an integer >= {low}" + (" or null" if null else "")


def _float_in(low: float, high: float = math.inf, *, low_open: bool = False) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        x = _number(v)
        return x is not None and math.isfinite(x) and (x > low if low_open else x >= low) and x <= high

    bounds = (f"> {low:g}" if low_open else f">= {low:g}") + ("" if high == math.inf else f" and <= {high:g}")
    return ok, f"a finite number {bounds}"


def _choice(*values: Any) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: any(v is c or (type(v) is type(c) and v == c) for c in values)), f"one of {list(values)}"


def _bool() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, bool)), "true or false"


def _seed() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _integer(v) is not None and _integer(v) >= 0), "an integer >= 0"


def _band_list() -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        return (isinstance(v, list) and len(v) > 0 and all(isinstance(b, str) and b for b in v)
                and len(set(v)) == len(v))

    return ok, "a non-empty list of distinct band names"


def _band_name(*, null: bool) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: (v is None and null) or (isinstance(v, str) and bool(v))), "a band name" + (" or null" if null else "")


def _buffer() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v == "auto" or (_integer(v) is not None and _integer(v) >= 0)), "an integer >= 0 or auto"


def _fractions() -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        if not isinstance(v, (list, tuple)) or len(v) != 3:
            return False
        xs = [_number(f) for f in v]
        return (all(x is not None and math.isfinite(x) and x >= 0 for x in xs)
                and abs(sum(xs) - 1.0) <= 1e-6)  # type: ignore[arg-type]

    return ok, "three numbers >= 0 (train, val, test) that sum to 1, e.g. [0.7, 0.15, 0.15]"


def _odd_kernel() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _integer(v) is not None and _integer(v) >= 1 and _integer(v) % 2 == 1), "an odd integer >= 1 (3, 5, 7)"


def _quantile_pair() -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        if v is None:
            return True
        xs = [_number(q) for q in v] if isinstance(v, list) and len(v) == 2 else [None]
        return all(x is not None for x in xs) and 0 < xs[0] < 0.5 < xs[1] < 1  # type: ignore[operator]

    return ok, "null or two quantile levels [lo, hi] with 0 < lo < 0.5 < hi < 1, e.g. [0.1, 0.9]"


def _data_range() -> tuple[Callable[[Any], bool], str]:
    pos = _float_in(0.0, low_open=True)[0]
    return ((lambda v: v is None or pos(v) or (isinstance(v, list) and len(v) > 0 and all(pos(x) for x in v))),
            "null, a number > 0, or a list of numbers > 0 (one per band)")


def _sources() -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        if v is None:
            return True
        if not isinstance(v, dict) or not v:
            return False
        for item in v.values():
            if not isinstance(item, dict):
                continue  # a path, a sample name (or, from Python, a cube)
            bands = item.get("bands")
            if bands is not None and not _band_list()[0](bands):
                return False
        return True

    return ok, ("null or {name: PATH or {path: PATH, bands: [distinct band names]}} (a non-empty mapping)")


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.bands": _band_list(),
    "data.cloud_band": _band_name(null=True),
    "data.data_band": _band_name(null=True),
    "data.cache_chunks": ((lambda v: v == "auto" or (_integer(v) is not None and _integer(v) >= 1)),
                          "an integer >= 1 or auto"),
    "data.sources": _sources(),
    "split.block_size": _int_at_least(1),
    "split.fractions": _fractions(),
    "split.buffer": _buffer(),
    "split.seed": _seed(),
    "sampler.patch_size": _int_at_least(4),
    "sampler.stride": _int_at_least(1, null=True),
    "sampler.val_stride": _int_at_least(1, null=True),
    "sampler.min_clear_fraction": _float_in(0.0, 1.0),
    "sampler.augment": _bool(),
    "sampler.balance": _bool(),
    "sampler.norm_windows": _int_at_least(1),
    "sampler.halo": _choice("edge", "inside", "context"),
    "gaps.p_date": _float_in(0.0, 1.0),
    "gaps.min_cloud_fraction": _float_in(0.0, 1.0),
    "network.hidden": _int_at_least(1),
    "network.depth": _int_at_least(1),
    "network.kernel_t": _odd_kernel(),
    "network.quantiles": _quantile_pair(),
    "network.prior": _choice(*SUPERRES_PRIORS),
    "network.window": _odd_kernel(),
    "network.clip": ((lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0)),
                     "a number > 0 or null"),
    "network.fallback": _bool(),
    "loss.dice": _float_in(0.0),
    "loss.class_weights": _bool(),
    "loss.label_smoothing": _float_in(0.0, 1.0),
    "loss.l1": _float_in(0.0, low_open=True),
    "metrics.data_range": _data_range(),
    "train.epochs": _int_at_least(1),
    "train.steps_per_epoch": _int_at_least(1),
    "train.batch_size": _int_at_least(1),
    "train.val_windows": _int_at_least(1, null=True),
    "train.lr": _float_in(0.0, low_open=True),
    "train.weight_decay": _float_in(0.0),
    "train.num_workers": _int_at_least(0),
    "train.seed": _seed(),
    "train.threads": _int_at_least(1, null=True),
    "train.device": _choice("auto", "cpu", "cuda"),
    "train.progress": _bool(),
    "train.amp": _choice("auto", True, False),
    "train.checkpoint_every": _int_at_least(0),
    "train.monitor": ((lambda v: isinstance(v, str) and bool(v)), "the name of a validation score or train_loss"),
    "train.export": _bool(),
    "train.keep": _choice("best", "last"),
    "train.tta": _bool(),
    "train.ensemble": _int_at_least(1),
}
"""Accepted values of each config key (checked wherever the key is present)."""


def validate_config(cfg: dict[str, Any]) -> None:
    """Refuse a config value that cannot work, before any data is read or a network is built.

    Parameters
    ----------
    cfg
        A complete nested config (after the defaults and overrides are merged).

    Raises
    ------
    LearnError
        One line naming the first bad key, its value and the accepted values.
    """
    for key, (ok, accepted) in _RULES.items():
        section, name = key.split(".")
        part = cfg.get(section)
        value = part.get(name, _MISSING) if isinstance(part, dict) else _MISSING
        if value is _MISSING or ok(value):
            continue
        why = ""
        if key in ("data.bands",) and isinstance(value, list) and len(set(map(str, value))) < len(value):
            twice = sorted({str(b) for b in value if list(map(str, value)).count(str(b)) > 1})
            why = f" ({', '.join(twice)} given more than once)"
        if key == "split.fractions" and isinstance(value, (list, tuple)) and len(value) == 3:
            xs = [_number(f) for f in value]
            if all(x is not None for x in xs):
                why = f" (sum {sum(xs):g})"  # type: ignore[arg-type]
        raise LearnError(f"config {key}: {value!r} is not accepted{why}: give {accepted}")
