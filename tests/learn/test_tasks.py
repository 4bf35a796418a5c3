"""Segmentation and super-resolution through the one trainer: exact resume mid-epoch, export, apply, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

import eocube
from eocube.cli.train import train_command
from eocube.learn import trainer as trainer_module
from eocube.learn.checkpoint import load_checkpoint
from eocube.learn.config import load_config
from eocube.learn.trainer import train
from eocube.models.card import load_card

SEG = {"split": {"block_size": 64}, "sampler": {"patch_size": 16},
       "network": {"hidden": 8, "depth": 2},
       "train": {"epochs": 2, "steps_per_epoch": 4, "batch_size": 4, "progress": False, "lr": 0.01}}


class Killed(Exception):
    """Stands for a SIGKILL in the middle of an epoch."""


def test_segmentation_killed_mid_epoch_and_resumed_ends_with_the_same_weights(tmp_path, synth, monkeypatch):
    s10, s20, lab, _ = synth.scene(192)
    src = {"s10": s10, "s20": s20}
    cfg = load_config(task="segmentation", overrides={**SEG, "train": {**SEG["train"], "checkpoint_every": 2,
                                                                        "export": False}})
    straight = train(cfg, source=src, target=lab, out=tmp_path / "a")

    def kill_at_step_7(step):  # epoch 2, after its 3rd step: last.pt holds epoch 1 + 2 steps
        if step == 7:
            raise Killed

    monkeypatch.setattr(trainer_module, "_after_step", kill_at_step_7)
    with pytest.raises(Killed):
        train(cfg, source=src, target=lab, out=tmp_path / "b")
    mid = load_checkpoint(tmp_path / "b")
    assert mid["epoch"] == 1 and mid["meta"]["position"]["step"] == 2
    monkeypatch.undo()
    resumed = train(cfg, source=src, target=lab, out=tmp_path / "b", resume=True)
    assert resumed.start_epoch == 1 and [h["epoch"] for h in resumed.history] == [1, 2]
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert resumed.history[-1]["train_loss"] == pytest.approx(straight.history[-1]["train_loss"], rel=1e-6)
    assert resumed.history[-1]["macro_f1"] == pytest.approx(straight.history[-1]["macro_f1"])
    lines = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss") and "macro_f1" in lines[0] and len(lines) == 3
    assert (tmp_path / "b" / "confusion_last.csv").read_text().startswith("truth\\predicted,forest,water,farm")


def test_trained_segmentation_model_runs_through_apply_model_with_no_other_argument(tmp_path, synth):
    s10, s20, lab, _ = synth.scene(192)
    cfg = load_config(task="segmentation", overrides=SEG)
    result = train(cfg, source={"s10": s10, "s20": s20}, target=lab, out=tmp_path)
    assert (tmp_path / "model.pt2").exists() and (tmp_path / "model.json").exists()
    spec = load_card(tmp_path / "model.json")
    assert [s.name for s in spec.sources] == ["s10", "s20"]
    assert spec.sources[1].bands == ("B11", "B12")
    ckpt = load_checkpoint(tmp_path / "best.pt")
    norm = ckpt["meta"]["normalisers"]["s10"]
    assert [s.type for s in spec.sources[0].scaling] == ["z-score"] * 4
    assert [s.mean for s in spec.sources[0].scaling] == pytest.approx(norm["mean"])
    assert [c.value for c in spec.output.classes] == synth.CLASS_VALUES
    assert spec.output.classes[0].color == "1b7837" and spec.halo == ckpt["meta"]["halo"] > 0
    classes = eocube.apply_model({"s10": s10, "s20": s20}, tmp_path / "model.pt2")
    assert classes.attrs["class_values"] == synth.CLASS_VALUES
    assert classes.attrs["class_names"] == synth.CLASS_NAMES
    values = classes.values
    assert classes.dtype == np.uint8 and values.shape == (1, 1, 192, 192)
    assert set(np.unique(values)) <= set(synth.CLASS_VALUES)
    assert result.history[-1]["oa"] > 0


def test_superres_trains_scores_and_exports_bands_in_their_units(tmp_path, synth):
    s10, s20, _, fine20 = synth.scene(192)
    import xarray as xr

    target = xr.DataArray(fine20[None].astype("float32"), dims=("time", "band", "y", "x"),
                          coords={"time": s10.time, "band": ["B11", "B12"], "y": s10.y, "x": s10.x})
    target = target.rio.write_crs(s10.rio.crs)
    cfg = load_config(task="superres", overrides={**SEG, "train": {**SEG["train"], "epochs": 3}})
    result = train(cfg, source={"s10": s10, "s20": s20}, target=target, out=tmp_path)
    last = result.history[-1]
    assert {"rmse", "psnr", "ssim", "sam", "psnr_bicubic"} <= set(last)
    spec = load_card(tmp_path / "model.json")
    assert spec.output.bands == ("B11", "B12")
    sharp = eocube.apply_model({"s10": s10, "s20": s20}, tmp_path / "model.pt2")
    assert sharp.sizes["y"] == 192 and list(sharp.band.values) == ["B11", "B12"]
    err = float(np.sqrt(np.nanmean((sharp.values[0] - fine20) ** 2)))
    assert err < 0.2  # in reflectance units, not normalised ones


def test_cli_task_option_and_positional_config(tmp_path, synth):
    s10, _, lab, _ = synth.scene(192)
    from eocube.io import to_zarr

    to_zarr(s10, tmp_path / "s10.zarr")
    to_zarr(lab, tmp_path / "lab.zarr")
    cfg = {**SEG, "data": {"sources": {"s10": {"path": str(tmp_path / "s10.zarr"), "bands": ["B02", "B03", "B04", "B08"]}},
                           "target": {"path": str(tmp_path / "lab.zarr")}},
           "train": {**SEG["train"], "epochs": 1, "export": False}}
    (tmp_path / "seg.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(train_command, ["--task", "segmentation", str(tmp_path / "seg.yaml"), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "macro_f1" in r.output and load_checkpoint(tmp_path / "run")["task"] == "segmentation"
    bad = CliRunner().invoke(train_command, ["--task", "superres", str(tmp_path / "seg.yaml"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and bad.output.startswith("error: no coarse source holds every target band")


def test_a_monitor_that_is_no_score_is_refused_before_training(tmp_path, synth):
    """A misspelt train.monitor used to fall back to val_loss silently, with the direction of the misspelt name
    (``macro_F1``: higher is better), so best.pt kept the epoch with the *highest* validation loss."""
    from eocube.learn.errors import LearnError

    s10, s20, lab, _ = synth.scene(192)
    cfg = load_config(task="segmentation", overrides={**SEG, "train": {**SEG["train"], "monitor": "macro_F1"}})
    with pytest.raises(LearnError, match=r"train.monitor='macro_F1' is not a score .*'macro_f1'"):
        train(cfg, source={"s10": s10, "s20": s20}, target=lab, out=tmp_path)
    assert not (tmp_path / "last.pt").exists()
