"""Runs made before a configuration key existed still resume: a key absent from their checkpoint counts as equal
when this run's value does what eocube did before the key (``network.quantiles: null``: no interval head), and any
other value is refused in one line naming the key and the value to set.

An old run is made honestly: a real checkpoint is written by the current code with the key at its old behaviour,
then the key is taken out of what the checkpoint stores exactly where an eocube of that time left it out (the
config, the per-leaf fingerprint; the network's config never held it at that value).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import xarray as xr

from eocube.learn import identity
from eocube.learn.checkpoint import load_checkpoint
from eocube.learn.config import load_config
from eocube.learn.errors import LearnError
from eocube.learn.identity import MAY_CHANGE_ON_RESUME, check_resume, digest, run_fingerprint
from eocube.learn.trainer import train

SEG = {"split": {"block_size": 64}, "sampler": {"patch_size": 16}, "network": {"hidden": 8, "depth": 2},
       "train": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "progress": False, "lr": 0.01, "export": False}}


def _cfg(task: str, base: dict | None = None, **sections):
    base = copy.deepcopy(base or {})
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    return load_config(task=task, overrides=base)


def _gap(tiny, **sections):
    raw = tiny.to_dict()
    return load_config(overrides={**raw, **{k: {**raw[k], **v} for k, v in sections.items()}})


def _as_made_before(folder, *keys: str) -> None:
    """Take ``keys`` out of the run's checkpoints as an eocube without them wrote them."""
    for name in ("last.pt", "best.pt"):
        path = folder / name
        if not path.exists():
            continue
        ckpt = torch.load(path, weights_only=True)
        for key in keys:
            section, leaf = key.split(".")
            del ckpt["config"][section][leaf]
            del ckpt["fingerprint"]["fields"][key]
            assert leaf not in ckpt["network"]  # at the old value the network's config never holds it
        assert "interval" not in ckpt["meta"]
        torch.save(ckpt, path)


def _superres_target(s10, fine20):
    target = xr.DataArray(fine20[None].astype("float32"), dims=("time", "band", "y", "x"),
                          coords={"time": s10.time, "band": ["B11", "B12"], "y": s10.y, "x": s10.x})
    return target.rio.write_crs(s10.rio.crs)


# --- the comparison itself, on fingerprints as the old code computed them (the leaves of a config without the key)

CASES = {  # key -> (task, a value that differs from the old behaviour)
    "sampler.halo": ("gapfill", "context"),
    "network.quantiles": ("gapfill", [0.1, 0.9]),
    "network.prior": ("superres", "guided"),
    "network.clip": ("superres", 4.0),
    "network.fallback": ("superres", True),
    "loss.label_smoothing": ("segmentation", 0.1),
    "train.ensemble": ("segmentation", 3),
}


def test_every_fingerprinted_added_key_has_a_case():
    added = identity.ADDED_KEYS
    compared = {k for k, a in added.items() if k not in MAY_CHANGE_ON_RESUME and a.before is not identity.ANY}
    assert compared == set(CASES)


@pytest.mark.parametrize("key", sorted(CASES))
def test_a_key_missing_from_an_old_run_is_equal_at_its_old_value_only(key):
    task, other = CASES[key]
    section, leaf = key.split(".")
    new = load_config(task=task).to_dict()
    old = copy.deepcopy(new)
    del old[section][leaf]
    recorded = run_fingerprint(old, {})  # what the old code stored: no field for the key
    assert key not in recorded["fields"]
    new[section][leaf] = identity.ADDED_KEYS[key].before
    check_resume("run/last.pt", recorded, run_fingerprint(new, {}), old, new)  # resumes
    new[section][leaf] = other
    with pytest.raises(LearnError) as err:
        check_resume("run/last.pt", recorded, run_fingerprint(new, {}), old, new)
    msg = str(err.value)
    assert f"made before {identity.ADDED_KEYS[key].what}" in msg and "\n" not in msg
    assert f"set {key}: " in msg and "to resume this run" in msg


def test_the_message_says_the_values_in_yaml_and_names_other_differences_too():
    new = load_config(task="superres").to_dict()
    old = copy.deepcopy(new)
    for leaf in ("prior", "window", "clip"):
        del old["network"][leaf]
    recorded = run_fingerprint(old, {})
    new["network"].update(prior="guided", window=5, clip=4.0)
    with pytest.raises(LearnError) as err:
        check_resume("run/last.pt", recorded, run_fingerprint(new, {}), old, new)
    msg = str(err.value)
    assert 'set network.clip: null and network.prior: "bicubic" to resume this run' in msg
    assert "network.window" not in msg  # only the guided prior reads it
    new["network"].update(prior="bicubic", clip=None)
    new["split"]["seed"] = 3
    with pytest.raises(LearnError, match=r"differs from the training that wrote it in split\.seed \(0 -> 3\)"):
        check_resume("run/last.pt", recorded, run_fingerprint(new, {}), old, new)
    new["network"]["clip"] = 4.0
    with pytest.raises(LearnError, match=r"network\.clip \(not in the checkpoint, made before input clipping: set "
                                         r"network\.clip: null\), split\.seed \(0 -> 3\)"):
        check_resume("run/last.pt", recorded, run_fingerprint(new, {}), old, new)


def test_new_runs_keep_their_fingerprint():
    """The digest of a field is unchanged, so a run made today resumes tomorrow."""
    assert digest([0.1, 0.9]) == "1eb0042fba6c608529ee83210473d9e3ed9149a62b470ce7f35f11aaf5fc4d13"
    fields = run_fingerprint(load_config().to_dict(), {})["fields"]
    assert fields["network.quantiles"] == digest([0.1, 0.9]) and fields["sampler.halo"] == digest("context")


# --- real runs: an old checkpoint resumes, trains, exports; the mismatching case refuses and writes nothing

@pytest.mark.slow
def test_a_gapfill_run_made_before_the_interval_head_resumes_headless_and_exports(tmp_path, sample, tiny_config):
    headless = _gap(tiny_config, network={"quantiles": None}, train={"export": True})
    train(headless, source=sample, out=tmp_path, until_epoch=1)
    _as_made_before(tmp_path, "network.quantiles")
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(LearnError) as err:  # today's default has the head
        train(_gap(tiny_config, train={"export": True}), source=sample, out=tmp_path, resume=True)
    msg = str(err.value)
    assert "made before the interval head" in msg and "set network.quantiles: null to resume this run" in msg
    assert "\n" not in msg and (tmp_path / "last.pt").read_bytes() == before
    result = train(headless, source=sample, out=tmp_path, resume=True)
    assert result.start_epoch == 1 and [h["epoch"] for h in result.history] == [1, 2]
    last = load_checkpoint(tmp_path)
    assert "quantiles" not in last["network"] and last["config"]["network"]["quantiles"] is None
    assert (tmp_path / "model.pt2").exists() and not (tmp_path / "model_interval.pt2").exists()
    assert last["fingerprint"]["fields"]["network.quantiles"] == digest(None)  # today's form from now on


def test_a_segmentation_run_made_before_label_smoothing_resumes_without_it(tmp_path, synth):
    s10, s20, lab, _ = synth.scene(192)
    src = {"s10": s10, "s20": s20}
    train(_cfg("segmentation", SEG), source=src, target=lab, out=tmp_path, until_epoch=1)
    _as_made_before(tmp_path, "loss.label_smoothing")
    with pytest.raises(LearnError, match=r"made before label smoothing .*set loss\.label_smoothing: 0\.0 to resume"):
        train(_cfg("segmentation", SEG, loss={"label_smoothing": 0.1}), source=src, target=lab, out=tmp_path,
              resume=True)
    again = train(_cfg("segmentation", SEG), source=src, target=lab, out=tmp_path, resume=True)
    assert again.start_epoch == 1 and [h["epoch"] for h in again.history] == [1, 2]


def test_a_superres_run_made_before_the_guided_prior_resumes_bicubic_and_exports(tmp_path, synth):
    s10, s20, _, fine20 = synth.scene(192)
    src, target = {"s10": s10, "s20": s20}, _superres_target(s10, fine20)
    train(_cfg("superres", SEG), source=src, target=target, out=tmp_path, until_epoch=1)
    _as_made_before(tmp_path, "network.prior", "network.window", "network.clip", "network.fallback")
    with pytest.raises(LearnError, match=r'set network\.prior: "bicubic" to resume'):
        train(_cfg("superres", SEG, network={"prior": "guided"}), source=src, target=target, out=tmp_path,
              resume=True)
    # the window is read by the guided prior only: any value resumes a bicubic run
    again = train(_cfg("superres", SEG, network={"window": 5}, train={"export": True}), source=src, target=target,
                  out=tmp_path, resume=True)
    assert again.start_epoch == 1 and [h["epoch"] for h in again.history] == [1, 2]
    last = load_checkpoint(tmp_path)
    assert not {"prior", "window", "clip"} & set(last["network"])  # the same network as before
    import eocube

    sharp = eocube.apply_model(src, tmp_path / "model.pt2")
    assert list(sharp.band.values) == ["B11", "B12"] and np.isfinite(sharp.values).all()
