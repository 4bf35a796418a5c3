"""The identity of a training run: what ``--resume`` must find unchanged.

A checkpoint records a fingerprint of the run, one sha256 digest per field, so that a resume of
another training (another split seed, labels, loss, data...) is refused naming what differs,
instead of silently mixing two trainings (a block trained on in epoch 1 becoming a test block).
The fields are:

* every leaf of the configuration (``split.seed``, ``loss.dice``, ``data.sources.s10.bands``,
  ``network.hidden``, ``sampler.patch_size``, ``train.lr``, ...), except those in
  :data:`MAY_CHANGE_ON_RESUME`;
* ``content of <input>``: the identity of each input cube's values and grid (the gap-filling
  source; each of ``data.sources``; ``data.target``, the labels or target bands). For a
  dask-backed cube it is its dask name, which is content-based for eocube's Zarr and STAC readers
  and for :func:`eocube.labels.burn_polygons` (a hash of the polygons and their classes); for a cube
  in memory, a hash of its values. Coordinates, band names, CRS and nodata are included;
* what the run derives from them: ``normalisation`` (the statistics of the training windows,
  to 6 significant digits), ``split blocks`` (which block is train, validation or test) and
  ``classes`` (segmentation).

Fields that may differ on resume (:data:`MAY_CHANGE_ON_RESUME`) change how or how long the run
trains, not what it learns from: ``train.epochs`` (to train longer; the learning-rate schedule
then spans the new count), ``train.num_workers``, ``train.threads``, ``train.device``,
``train.amp``, ``train.progress``, ``train.checkpoint_every``, ``train.export``,
``data.cache_chunks``.

A key added to the configuration after fingerprints existed (:data:`ADDED_KEYS`) is absent from the
checkpoints of the runs made before it. Such a run resumes when this run's value of the key is the one
that reproduces what eocube did before the key existed (``network.quantiles: null``: no interval head);
another value is refused naming the key and the value to set.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import xarray as xr

from .errors import LearnError

VERSION = 1
"""Version of the fingerprint scheme (a checkpoint with another version is not resumed)."""
MAY_CHANGE_ON_RESUME = frozenset({
    "train.epochs", "train.num_workers", "train.threads", "train.device", "train.amp", "train.progress",
    "train.checkpoint_every", "train.export", "train.keep", "train.tta", "data.cache_chunks",
})
"""Configuration keys a resumed run may change (they do not change what is trained)."""

_DERIVED = ("normalisation", "split blocks", "classes")
"""Fingerprint fields the run derives from its settings and inputs."""
ANY = object()
""":attr:`AddedKey.before` of a key that had no effect in the runs made before it (any value resumes them)."""


@dataclass(frozen=True)
class AddedKey:
    """A configuration key added after run fingerprints existed (the checkpoints of older runs lack it)."""

    before: Any
    """The value that reproduces what eocube did before the key existed (:data:`ANY`: every value does)."""
    what: str
    """What the key brought, for the message (``the interval head``)."""
    commit: str
    """The commit that added it (where its earlier behaviour can be read)."""


ADDED_KEYS: dict[str, AddedKey] = {
    # gap filling: windows inside their block, read alone (the halo rule before the key; tasks read "inside")
    "sampler.halo": AddedKey("inside", "sampler.halo (edge and context windows)", "5a7fcd0"),
    # gap filling: GapFillNet had no interval head (and its NetConfig has no quantiles without one)
    "network.quantiles": AddedKey(None, "the interval head", "db1a168"),
    # super-resolution: the residual was added to the bicubic upsampling, the layers' inputs unclipped
    "network.prior": AddedKey("bicubic", "the guided prior", "5993d62"),
    "network.window": AddedKey(ANY, "the guided prior's window", "5993d62"),  # read by the guided prior only
    "network.clip": AddedKey(None, "input clipping", "5993d62"),
    "network.fallback": AddedKey(False, "the fallback to the prior out of range", "4cc87e4"),
    # segmentation: plain cross-entropy
    "loss.label_smoothing": AddedKey(0.0, "label smoothing", "5993d62"),
    # the export took best.pt, without test-time augmentation (both may change on resume anyway)
    "train.keep": AddedKey("best", "train.keep", "5993d62"),
    "train.tta": AddedKey(False, "test-time augmentation", "5993d62"),
    # one network per run (a member of an ensemble is trained with train.ensemble 1 into OUT/member-K)
    "train.ensemble": AddedKey(1, "the seed ensemble (train.ensemble)", "0d3d7e5"),
}
"""Keys added to the configuration after fingerprints existed -> the value of the runs made before them."""


def _plain(value: Any) -> Any:
    """A JSON-able value where equal settings look equal (``1`` and ``1.0``, tuples and lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def digest(value: Any) -> str:
    """sha256 of a plain value (its sorted JSON)."""
    return hashlib.sha256(json.dumps(_plain(value), sort_keys=True, default=str).encode()).hexdigest()


def config_leaves(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of every leaf of a nested config (a list is one leaf)."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(config_leaves(value, name + "."))
        else:
            out[name] = value
    return out


def cube_identity(cube: xr.DataArray) -> str:
    """Digest of a cube's values (dask name, or a hash of the values in memory) and of its grid.

    Parameters
    ----------
    cube
        Any DataArray.

    Returns
    -------
    str
        sha256 hex digest.
    """
    from ..io.shared import computation_token

    h = hashlib.sha256(computation_token(cube).encode())
    for dim in cube.dims:
        if dim in cube.coords:
            h.update(f"|{dim}:".encode())
            values = np.asarray(cube[dim].values)
            h.update(values.astype(str).tobytes() if values.dtype.kind in "OUS" else np.ascontiguousarray(values).tobytes())
    h.update(str(cube.dims).encode() + str(cube.dtype).encode())
    try:
        crs, nodata = cube.rio.crs, cube.rio.nodata
    except Exception:  # noqa: BLE001 - a cube without rioxarray metadata: its grid is its coordinates
        crs, nodata = None, None
    h.update(str(crs.to_wkt() if crs is not None else None).encode() + repr(_plain(nodata)).encode())
    return h.hexdigest()


def _rounded(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def run_fingerprint(
    config: Mapping[str, Any], inputs: Mapping[str, xr.DataArray], derived: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The fingerprint of a run, as stored in its checkpoints.

    Parameters
    ----------
    config
        The whole configuration (``TrainConfig.to_dict()``).
    inputs
        Input name (``data.sources.s10``, ``data.target``, ``source``) -> cube as read.
    derived
        What the run computed from them: ``normalisation``, ``split blocks``, ``classes`` (plain values).

    Returns
    -------
    dict
        ``{"version": VERSION, "fields": {field: sha256}}``.
    """
    fields = {k: digest(v) for k, v in config_leaves(config).items() if k not in MAY_CHANGE_ON_RESUME}
    fields.update({f"content of {name}": cube_identity(cube) for name, cube in inputs.items()})
    for name, value in (derived or {}).items():
        fields[name] = digest(_rounded(value) if name == "normalisation" else value)
    return {"version": VERSION, "fields": fields}


def _show(value: Any) -> str:
    text = json.dumps(_plain(value), default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def check_resume(
    path: Any, recorded: Mapping[str, Any] | None, current: Mapping[str, Any],
    old_config: Mapping[str, Any] | None, new_config: Mapping[str, Any],
    inputs: Mapping[str, xr.DataArray] | None = None,
) -> None:
    """Refuse to resume a checkpoint written by another training.

    Parameters
    ----------
    path
        The checkpoint (for the message).
    recorded
        Its ``fingerprint`` (None for a checkpoint written before fingerprints existed).
    current
        :func:`run_fingerprint` of this run.
    old_config, new_config
        The checkpoint's and this run's configuration (to show old -> new values).
    inputs
        This run's input cubes (to explain a content that differs because a dask name is random).

    Raises
    ------
    LearnError
        Naming each differing field and what to do.
    """
    allowed = ", ".join(sorted(MAY_CHANGE_ON_RESUME))
    if not isinstance(recorded, Mapping) or recorded.get("version") != VERSION:
        raise LearnError(
            f"cannot resume {path}: it was written without a run fingerprint (by an older eocube), so nothing shows "
            "that this is the same training (data, labels, split, loss...); train into a new --out instead"
        )
    old, new = dict(recorded.get("fields") or {}), dict(current["fields"])
    old_leaves, new_leaves = config_leaves(old_config or {}), config_leaves(new_config)
    differ, older, follow = [], [], []
    for name in sorted(set(old) | set(new), key=lambda n: (n.startswith(("content of", *_DERIVED)), n)):
        if old.get(name) == new.get(name):
            continue
        if name.startswith(_DERIVED):
            follow.append(name)
        if name not in old and name in ADDED_KEYS and name in new_leaves and name not in old_leaves:
            added = ADDED_KEYS[name]
            if added.before is ANY or _plain(new_leaves[name]) == _plain(added.before):
                continue  # a run made before the key, resumed with the value that does what it did
            older.append((name, added))
            differ.append(f"{name} (not in the checkpoint, made before {added.what}: set {name}: "
                          f"{json.dumps(added.before)})")
        elif name not in old:
            differ.append(f"{name} (not in the checkpoint)")
        elif name not in new:
            differ.append(f"{name} (not in this config)")
        elif name in new_leaves and name in old_leaves:
            differ.append(f"{name} ({_show(old_leaves[name])} -> {_show(new_leaves[name])})")
        else:
            differ.append(name)
    if not differ:
        return
    why = ""
    from ..io.shared import nondeterminism

    for name, cube in (inputs or {}).items():
        if f"content of {name}" in old and old.get(f"content of {name}") != new.get(f"content of {name}"):
            reason = nondeterminism(cube)
            if reason:
                why = f" ({name} has no deterministic dask name: {reason})"
                break
    if older and len(older) + len(follow) == len(differ):  # what the run derives follows from its settings
        sets = " and ".join(f"{name}: {json.dumps(added.before)}" for name, added in older)
        also = f" ({' and '.join(follow)} follow from it)" if follow else ""
        raise LearnError(
            f"cannot resume {path}: it was made before {', '.join(a.what for _, a in older)} "
            f"({', '.join(n for n, _ in older)} not in the checkpoint){also}; set {sets} to resume this run as it "
            "was trained, or train into a new --out to start another run"
        )
    raise LearnError(
        f"cannot resume {path}: this run differs from the training that wrote it in {', '.join(differ)}{why}; "
        f"a resume continues the same training (only {allowed} may change): put the settings and data back to "
        "continue it, or train into a new --out to start another run"
    )


__all__ = ["ADDED_KEYS", "ANY", "MAY_CHANGE_ON_RESUME", "VERSION", "AddedKey", "check_resume", "config_leaves",
           "cube_identity", "digest", "run_fingerprint"]
