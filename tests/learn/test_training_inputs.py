"""Training inputs that cannot give an honest run are refused before training, with the numbers and the remedy:
a validation set with no labelled pixel (it scored val loss 0.0000 at every epoch and kept epoch 1 as best),
split fractions without a validation part."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from eocube.learn.config import load_config
from eocube.learn.errors import LearnError
from eocube.learn.split import BlockSplit
from eocube.learn.trainer import train

SEG = {"split": {"block_size": 64}, "sampler": {"patch_size": 16}, "network": {"hidden": 8, "depth": 2},
       "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "progress": False, "export": False}}


def _parts():
    return BlockSplit.make((192, 192), block_size=64, seed=0).mask()  # the task's split (buffer does not move blocks)


def test_a_validation_set_without_labelled_pixel_is_refused_with_the_pixels_per_part(tmp_path, synth):
    s10, s20, lab, _ = synth.scene(192)
    parts = _parts()
    values = lab.values.copy()
    values[0, 0][parts == 1] = 0  # the validation block unlabelled (0 is the label cube's nodata)
    lab = lab.copy(data=values)
    labelled = np.isin(values[0, 0], [1, 3, 7])
    n = [int((labelled & (parts == i)).sum()) for i in range(3)]
    assert n[0] > 0 and n[1] == 0 and n[2] > 0
    cfg = load_config(task="segmentation", overrides=SEG)
    with pytest.raises(LearnError) as err:
        train(cfg, source={"s10": s10, "s20": s20}, target=lab, out=tmp_path)
    msg = str(err.value)
    assert "validation window(s) hold no labelled pixels" in msg
    assert f"labelled pixels per split part: train {n[0]:,}, val 0, test {n[2]:,}" in msg
    assert "val loss 0" in msg and "split.fractions [0.7, 0.15, 0.15], split.seed 0" in msg
    assert "label more" in msg and "bigger area" in msg
    assert not (tmp_path / "last.pt").exists()


def test_superres_validation_windows_without_target_value_are_refused(tmp_path, synth):
    s10, s20, _, fine20 = synth.scene(192)
    parts = _parts()
    values = fine20[None].astype("float32").copy()
    values[0][:, parts == 1] = np.nan
    target = xr.DataArray(values, dims=("time", "band", "y", "x"),
                          coords={"time": s10.time, "band": ["B11", "B12"], "y": s10.y, "x": s10.x})
    target = target.rio.write_crs(s10.rio.crs)
    cfg = load_config(task="superres", overrides=SEG)
    with pytest.raises(LearnError, match=r"validation window\(s\) hold no target pixels with a value \(target pixels "
                                         r"with a value per split part: train \d[\d,]*, val 0, test \d"):
        train(cfg, source={"s10": s10, "s20": s20}, target=target, out=tmp_path)


def test_split_fractions_without_validation_name_the_fractions_and_what_is_needed(tmp_path, synth):
    s10, s20, lab, _ = synth.scene(192)
    cfg = load_config(task="segmentation", overrides={**SEG, "split": {"block_size": 64, "fractions": [1, 0, 0]}})
    with pytest.raises(LearnError) as err:
        train(cfg, source={"s10": s10, "s20": s20}, target=lab, out=tmp_path)
    msg = str(err.value)
    assert msg.startswith("split.fractions [1, 0, 0] give no block to validation and none to test")
    assert "non-zero validation and test fractions" in msg and "[0.7, 0.15, 0.15]" in msg
    assert "block_size" not in msg  # not the remedy of a window that does not fit its blocks


def test_split_fractions_without_test_part_train_with_a_warning(tmp_path, synth):
    s10, s20, lab, _ = synth.scene(192)
    cfg = load_config(task="segmentation", overrides={**SEG, "split": {"block_size": 64, "fractions": [0.8, 0.2, 0]}})
    with pytest.warns(UserWarning, match=r"split.fractions \[0.8, 0.2, 0\] give no block to test"):
        result = train(cfg, source={"s10": s10, "s20": s20}, target=lab, out=tmp_path)
    assert result.epochs == 1


def test_gapfill_validation_without_windows_is_refused(tmp_path, sample, tiny_config):
    raw = tiny_config.to_dict()
    cfg = load_config(overrides={**raw, "gaps": {**raw["gaps"], "p_date": 0.0}})  # nothing is ever hidden
    with pytest.raises(LearnError, match=r"the validation set holds no hidden clear observation \(4 window\(s\) of "
                                         r"the validation blocks, train.val_windows=4\): .* val loss 0"):
        train(cfg, source=sample, out=tmp_path)
    assert not (tmp_path / "last.pt").exists()
