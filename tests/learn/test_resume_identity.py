"""``--resume`` continues the same training only: a checkpoint records the run's fingerprint per field, and a
resume with another split, labels, loss, data or settings is refused naming what differs (both training paths:
segmentation/super-resolution patches, and gap filling)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from eocube.cli.train import train_command
from eocube.learn.checkpoint import load_checkpoint
from eocube.learn.config import load_config
from eocube.learn.errors import LearnError
from eocube.learn.trainer import train

SEG = {"split": {"block_size": 64}, "sampler": {"patch_size": 16}, "network": {"hidden": 8, "depth": 2},
       "train": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "progress": False, "lr": 0.01, "export": False}}


def _seg(**sections):
    over = {k: {**SEG.get(k, {}), **v} for k, v in sections.items()}
    return load_config(task="segmentation", overrides={**SEG, **over})


def _differing(message: str) -> list[str]:
    """The fields a refusal names."""
    return message.split("wrote it in ", 1)[1].split(";", 1)[0].split(", ")


def _first_epoch_then(tmp_path, cfg, src, lab):
    """Train epoch 1 of 2 (as a job cut by its time limit); return the checkpoint's bytes."""
    first = train(cfg, source=src, target=lab, out=tmp_path, until_epoch=1)
    assert first.epochs == 1
    return (tmp_path / "last.pt").read_bytes()


def test_resume_after_changing_the_split_seed_is_refused_naming_it(tmp_path, synth):
    s10, s20, lab, _ = synth.scene(192)
    src = {"s10": s10, "s20": s20}
    before = _first_epoch_then(tmp_path, _seg(), src, lab)
    with pytest.raises(LearnError, match=r"cannot resume .*last\.pt: .* in split\.seed \(0 -> 1\)") as err:
        train(_seg(split={"seed": 1}), source=src, target=lab, out=tmp_path, resume=True)
    msg = str(err.value)
    assert "split blocks" in msg  # the blocks it assigns differ too
    assert "new --out" in msg and "\n" not in msg
    assert (tmp_path / "last.pt").read_bytes() == before  # nothing trained, nothing written


def test_resume_after_changing_the_loss_is_refused_naming_it(tmp_path, synth):
    s10, s20, lab, _ = synth.scene(192)
    src = {"s10": s10, "s20": s20}
    _first_epoch_then(tmp_path, _seg(), src, lab)
    with pytest.raises(LearnError, match=r"in loss\.dice \(0 -> 0\.5\)"):
        train(_seg(loss={"dice": 0.5}), source=src, target=lab, out=tmp_path, resume=True)


def test_same_training_resumes_and_may_train_longer_or_with_other_workers(tmp_path, synth):
    s10, s20, lab, _ = synth.scene(192)
    src = {"s10": s10, "s20": s20}
    _first_epoch_then(tmp_path, _seg(), src, lab)
    with pytest.raises(LearnError) as err:  # what an epoch is made of may not change
        train(_seg(train={"steps_per_epoch": 3, "batch_size": 2, "monitor": "oa"}), source=src, target=lab,
              out=tmp_path, resume=True)
    assert _differing(str(err.value)) == ["train.batch_size (4 -> 2)", "train.monitor (\"macro_f1\" -> \"oa\")",
                                          "train.steps_per_epoch (2 -> 3)"]
    again = train(_seg(), source=src, target=lab, out=tmp_path, resume=True, until_epoch=2)
    assert again.start_epoch == 1 and [h["epoch"] for h in again.history] == [1, 2]
    longer = train(_seg(train={"epochs": 3, "num_workers": 1, "checkpoint_every": 1}), source=src, target=lab,
                   out=tmp_path, resume=True)
    assert longer.start_epoch == 2 and [h["epoch"] for h in longer.history] == [1, 2, 3]
    assert load_checkpoint(tmp_path)["epoch"] == 3


def test_resume_after_the_labels_file_changed_is_refused(tmp_path, synth):
    """Labels burnt from a GeoJSON: one polygon's class edited in the file between the two runs."""
    import shapely

    from eocube.labels import burn_polygons

    s10, s20, _, _ = synth.scene(192)
    x0, y1 = float(s10.x[0]) - 5, float(s10.y[0]) + 5
    cells = [shapely.box(x0 + i * 320, y1 - (j + 1) * 320, x0 + (i + 1) * 320, y1 - j * 320)
             for i in range(6) for j in range(6)]
    path = tmp_path / "labels.geojson"

    def write(classes):
        feats = [{"type": "Feature", "geometry": shapely.geometry.mapping(g), "properties": {"class": c}}
                 for g, c in zip(cells, classes)]
        path.write_text(json.dumps({"type": "FeatureCollection", "features": feats,
                                    "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}}))

    classes = ["forest", "water", "farm"] * 12
    write(classes)
    src = {"s10": s10, "s20": s20}
    run = tmp_path / "run"
    _first_epoch_then(run, _seg(), src, burn_polygons(path, s10, field="class"))
    write(["water"] + classes[1:])  # one cell relabelled
    with pytest.raises(LearnError, match=r"in content of data\.target"):
        train(_seg(), source=src, target=burn_polygons(path, s10, field="class"), out=run, resume=True)
    write(classes)  # put back: resumes
    assert train(_seg(), source=src, target=burn_polygons(path, s10, field="class"), out=run,
                 resume=True).start_epoch == 1


def test_cli_resume_after_the_label_store_was_rewritten_is_one_line_naming_the_target(tmp_path, synth):
    from eocube.io import to_zarr

    s10, _, lab, _ = synth.scene(192)
    to_zarr(s10, tmp_path / "s10.zarr")
    to_zarr(lab, tmp_path / "lab.zarr")
    cfg = {**SEG, "data": {"sources": {"s10": {"path": str(tmp_path / "s10.zarr")}},
                           "target": {"path": str(tmp_path / "lab.zarr")}},
           "train": {**SEG["train"], "epochs": 1}}
    (tmp_path / "seg.yaml").write_text(yaml.safe_dump(cfg))
    args = ["--task", "segmentation", str(tmp_path / "seg.yaml"), "--out", str(tmp_path / "run")]
    assert CliRunner().invoke(train_command, args).exit_code == 0
    changed = lab.copy(data=np.where(lab.values == 3, 7, lab.values).astype("uint8"))  # water relabelled farm
    to_zarr(changed, tmp_path / "lab.zarr", mode="overwrite")
    cfg["train"]["epochs"] = 2
    (tmp_path / "seg.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(train_command, [*args, "--resume"])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: cannot resume") and r.output.count("\n") == 1
    assert _differing(r.output) == ["content of data.target"]  # the sources are the same; epochs may change
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1


def test_a_checkpoint_without_fingerprint_is_not_resumed(tmp_path, synth):
    s10, s20, lab, _ = synth.scene(192)
    src = {"s10": s10, "s20": s20}
    _first_epoch_then(tmp_path, _seg(), src, lab)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    del ckpt["fingerprint"]  # as written by eocube before this check
    torch.save(ckpt, tmp_path / "last.pt")
    with pytest.raises(LearnError, match=r"written without a run fingerprint .* new --out"):
        train(_seg(), source=src, target=lab, out=tmp_path, resume=True)


def test_a_mid_epoch_checkpoint_resumes_only_with_as_many_processes(tmp_path, synth):
    s10, s20, lab, _ = synth.scene(192)
    src = {"s10": s10, "s20": s20}
    cfg = _seg(train={"checkpoint_every": 1})
    _first_epoch_then(tmp_path, cfg, src, lab)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    ckpt["meta"]["position"], ckpt["world_size"] = {"step": 1, "running": 0.5, "seen": 1}, 2
    torch.save(ckpt, tmp_path / "last.pt")
    with pytest.raises(LearnError, match=r"middle of an epoch with 1 process\(es\): it was written by 2"):
        train(cfg, source=src, target=lab, out=tmp_path, resume=True)


# --- gap filling (the gaps target of the same patch dataset)

def _gap(tiny, **sections):
    raw = tiny.to_dict()
    return load_config(overrides={**raw, **{k: {**raw[k], **v} for k, v in sections.items()}})


def test_gapfill_resume_with_other_gaps_or_split_is_refused_naming_them(tmp_path, sample, tiny_config):
    train(tiny_config, source=sample, out=tmp_path, until_epoch=1)
    with pytest.raises(LearnError, match=r"in gaps\.p_date \(0\.35 -> 0\.5\)"):
        train(_gap(tiny_config, gaps={"p_date": 0.5}), source=sample, out=tmp_path, resume=True)
    moved = _gap(tiny_config, split={"seed": 3})
    with pytest.raises(LearnError, match=r"split\.seed \(0 -> 3\).*split blocks"):
        train(moved, source=sample, out=tmp_path, resume=True)


def test_gapfill_resume_on_other_data_is_refused_and_same_run_trains_longer(tmp_path, sample, tiny_config):
    train(tiny_config, source=sample, out=tmp_path, until_epoch=1)
    edited = sample.copy(data=sample.values.copy())
    edited[3, 0, 10, 10] += 0.01  # one value of one date
    with pytest.raises(LearnError, match=r"in content of source") as err:
        train(tiny_config, source=edited, out=tmp_path, resume=True)
    assert set(_differing(str(err.value))) <= {"content of source", "normalisation"}  # no setting
    longer = train(_gap(tiny_config, train={"epochs": 3, "num_workers": 0, "progress": False}), source=sample,
                   out=tmp_path, resume=True)
    assert longer.start_epoch == 1 and [h["epoch"] for h in longer.history] == [1, 2, 3]
