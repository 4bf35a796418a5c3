"""`eocube train` refuses a config value that cannot work before reading any data (issue 21 item 9).

Each bad value gives exit status 2 and ONE line ``error: config <key>: <value> ... give <accepted values>``,
without a traceback, before the source is opened: the runs below point ``--source`` (gap filling) or
``data.sources`` (segmentation, super-resolution) at a store that does not exist, so a check made after
reading data would report the missing store instead. On f16d111 these values trained silently
(``epochs: 0``: exit 0, nothing written; ``gaps.p_date: 1.5``, ``data.bands: [NDVI, NDVI]``), gave a
traceback (``batch_size: 0``, ``lr: nan``, ``hidden: -1``, ``kernel_t: 4``, a missing band), or a wrong
message (``device: tpu``: "train.device is 'cuda'").
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from eocube.cli.train import train_command

TINY = {"sampler": {"patch_size": 12, "min_clear_fraction": 0.3}, "network": {"hidden": 8, "depth": 2, "kernel_t": 3},
        "train": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "val_windows": 2, "num_workers": 0,
                  "progress": False, "lr": 0.01}}
"""The gap-filling config of the audit (fields every eocube since f16d111 knows)."""

MISSING = "/nonexistent/eocube-test/no-such-store.zarr"
SEG = {"task": "segmentation",
       "data": {"sources": {"s10": {"path": MISSING, "bands": ["B02", "B03"]}}, "target": {"path": MISSING}},
       "split": {"block_size": 64}, "sampler": {"patch_size": 16},
       "train": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "num_workers": 0, "progress": False}}
SUPERRES = {**SEG, "task": "superres"}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _nested(key: str, value: object) -> dict:
    section, name = key.split(".")
    return {section: {name: value}}


def _train(tmp_path: Path, config: dict, *extra: str) -> tuple[int, str, BaseException | None]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(train_command, ["--config", str(path), "--out", str(tmp_path / "run"), *extra])
    return result.exit_code, result.stderr, result.exception


def _one_line(code: int, stderr: str, exc: BaseException | None, key: str, value_text: str) -> str:
    assert code == 2 and (exc is None or isinstance(exc, SystemExit)), (code, stderr, exc)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith(f"error: config {key}: "), line
    assert value_text in line and "give " in line, line
    return line


GAPFILL_CASES = [
    ("train.epochs", 0, "0"),  # f16d111: exit 0, prints nothing, writes no checkpoint
    ("train.epochs", -1, "-1"),
    ("train.epochs", 2.5, "2.5"),  # f16d111: trained 2 epochs
    ("train.steps_per_epoch", 0, "0"),
    ("train.batch_size", 0, "0"),  # f16d111: traceback from torch's DataLoader
    ("train.batch_size", -4, "-4"),
    ("train.lr", float("nan"), "nan"),  # f16d111: traceback 'Invalid learning rate: nan'
    ("train.lr", -1, "-1"),
    ("train.lr", 0, "0"),
    ("train.lr", "fast", "'fast'"),
    ("train.weight_decay", -0.1, "-0.1"),
    ("train.num_workers", -1, "-1"),
    ("train.device", "tpu", "'tpu'"),  # f16d111: traceback saying "train.device is 'cuda'"
    ("train.val_windows", -2, "-2"),
    ("train.threads", 0, "0"),
    ("train.checkpoint_every", -1, "-1"),
    ("train.amp", "yes", "'yes'"),
    ("train.seed", -1, "-1"),
    ("network.hidden", -1, "-1"),  # f16d111: traceback 'negative dimension -1'
    ("network.hidden", 0, "0"),
    ("network.depth", 0, "0"),
    ("network.kernel_t", 4, "4"),  # f16d111: ValueError traceback from GapFillNet
    ("gaps.p_date", 1.5, "1.5"),  # f16d111: accepted
    ("gaps.p_date", -0.1, "-0.1"),
    ("gaps.min_cloud_fraction", 2, "2"),
    ("data.bands", ["NDVI", "NDVI"], "NDVI given more than once"),  # f16d111: accepted, NDVI fed twice
    ("data.bands", [], "[]"),
    ("data.bands", "NDVI", "'NDVI'"),  # f16d111: read as bands N, D, V, I (BandError traceback)
    ("sampler.patch_size", 2.5, "2.5"),  # refused on f16d111 too, in another wording
    ("sampler.min_clear_fraction", 2, "2"),  # refused on f16d111 too (after reading the data)
]


@pytest.mark.parametrize("key, value, text", GAPFILL_CASES, ids=[f"{k}={v!r}" for k, v, _ in GAPFILL_CASES])
def test_gapfill_config_value_is_one_line_before_reading_data(key, value, text, tmp_path):
    code, err, exc = _train(tmp_path, _merge(TINY, _nested(key, value)), "--source", MISSING)
    _one_line(code, err, exc, key, text)
    assert not (tmp_path / "run").exists()


PATCH_CASES = [
    # keys of the split and sampler that the gap-filling config of f16d111 did not have: tried on segmentation,
    # whose config had them
    ("segmentation", "split.block_size", 0, "0"),  # f16d111: traceback or message without the value
    ("segmentation", "split.block_size", -64, "-64"),
    ("segmentation", "split.buffer", -1, "-1"),
    ("segmentation", "split.buffer", "wide", "'wide'"),
    ("segmentation", "split.fractions", [0.7, 0.2, 0.2], "sum 1.1"),  # f16d111: normalised silently
    ("segmentation", "split.fractions", [1.2, -0.1, -0.1], "-0.1"),
    ("segmentation", "split.fractions", [0.5, 0.5], "[0.5, 0.5]"),
    ("segmentation", "sampler.stride", 0, "0"),
    ("segmentation", "sampler.norm_windows", 0, "0"),
    ("segmentation", "sampler.augment", "yes", "'yes'"),
    ("segmentation", "sampler.balance", "no", "'no'"),
    ("segmentation", "loss.dice", -1, "-1"),
    ("segmentation", "train.num_workers", -2, "-2"),
    ("segmentation", "train.steps_per_epoch", 0, "0"),
    ("superres", "loss.l1", 0, "0"),
    ("superres", "metrics.data_range", -1, "-1"),
]


@pytest.mark.parametrize("task, key, value, text", PATCH_CASES, ids=[f"{t}:{k}={v!r}" for t, k, v, _ in PATCH_CASES])
def test_segmentation_and_superres_config_value_is_one_line_before_reading_data(task, key, value, text, tmp_path):
    base = SEG if task == "segmentation" else SUPERRES
    code, err, exc = _train(tmp_path, _merge(base, _nested(key, value)))
    _one_line(code, err, exc, key, text)


def test_duplicate_bands_of_a_source_are_refused(tmp_path):
    config = _merge(SEG, {"data": {"sources": {"s10": {"path": MISSING, "bands": ["B02", "B02"]}}}})
    _one_line(*_train(tmp_path, config), "data.sources", "'B02', 'B02'")


@pytest.mark.parametrize("key, value", [("data.bands", ["NDVIX"]), ("data.cloud_band", "CLMX"), ("data.data_band", "DATA")])
def test_a_band_the_source_lacks_is_one_line_naming_the_key_and_the_bands_it_has(key, value, tmp_path):
    """The band list is the cube's metadata: checked when the (lazy) source is opened, before windows are read.

    f16d111: a BandError traceback, exit 1.
    """
    code, err, exc = _train(tmp_path, _merge(TINY, _nested(key, value)))
    line = _one_line(code, err, exc, key, repr(value))
    assert "NDVI" in line and "CLM" in line  # the bands the bundled sample holds


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_cuda_device_is_one_line(tmp_path):
    """f16d111: a RuntimeError traceback."""
    code, err, exc = _train(tmp_path, _merge(TINY, {"train": {"device": "cuda"}}), "--source", MISSING)
    _one_line(code, err, exc, "train.device", "'cuda'")


@pytest.mark.parametrize("key", ["data.train_region", "data.val_region", "data.test_region"])
def test_pixel_box_regions_are_refused_with_the_block_split_remedy(key, tmp_path):
    """f16d111 trained on a train_region overlapping the test box (exit 0; the audit's 'overlapping regions').

    The pixel boxes are gone (gap filling splits into blocks like the other tasks): any region key is refused,
    naming it and the split keys to use instead.
    """
    code, err, exc = _train(tmp_path, _merge(TINY, _nested(key, {"y": [0, 76], "x": [0, 100]})), "--source", MISSING)
    assert code == 2 and (exc is None or isinstance(exc, SystemExit)), (code, err, exc)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and key in lines[0] and "split.block_size" in lines[0], err


def test_valid_numbers_in_yaml_forms_are_accepted():
    """YAML reads ``1e-3`` as a string and ``5.0`` as a float: both were accepted before and still are."""
    from eocube.learn.config import load_config

    cfg = load_config(overrides={"train": {"lr": "1e-3", "epochs": 5.0}, "split": {"fractions": [0.7, 0.15, 0.15]}})
    assert math.isclose(float(cfg.train["lr"]), 1e-3) and int(cfg.train["epochs"]) == 5


def test_eocube_train_command_exits_2_with_one_line(tmp_path):
    """The installed entry point (python -m eocube train), not only the click command."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_merge(TINY, {"train": {"epochs": 0}})))
    proc = subprocess.run([sys.executable, "-m", "eocube", "train", "--config", str(path), "--out", str(tmp_path / "run"),
                           "--source", MISSING], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: config train.epochs: 0 "), proc.stderr


AUDIT_CASES = [
    ("train.epochs", 0, "0"),  # f16d111: exit 0, prints nothing, writes no checkpoint
    ("gaps.p_date", 1.5, "1.5"),  # f16d111: trained, exit 0
    ("data.bands", ["NDVI", "NDVI"], "NDVI given more than once"),  # f16d111: trained on NDVI twice, exit 0
    ("train.batch_size", 0, "0"),  # f16d111: traceback from torch's DataLoader
    ("train.device", "tpu", "'tpu'"),  # f16d111: traceback "train.device is 'cuda'"
]


@pytest.mark.parametrize("key, value, text", AUDIT_CASES, ids=[f"{k}={v!r}" for k, v, _ in AUDIT_CASES])
def test_audit_cases_on_the_bundled_sample_are_refused(key, value, text, tmp_path):
    """The audit's runs as a user types them (the bundled sample as source), not only against a missing store."""
    code, err, exc = _train(tmp_path, _merge(TINY, _nested(key, value)))
    _one_line(code, err, exc, key, text)
