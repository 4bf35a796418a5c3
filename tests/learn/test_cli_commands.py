"""`eocube train`, then `eocube gapfill --method model` and `eocube evaluate --model`, end to end."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import yaml

import eocube

from .conftest import TINY


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "eocube", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_train_then_fill_and_evaluate_with_the_model(tmp_path, sample):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "export": True}}))
    run("train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert all((tmp_path / "run" / f).exists() for f in ("last.pt", "best.pt", "model.pt2", "model.json"))

    out = tmp_path / "filled.zarr"
    proc = run("gapfill", "--method", "model", "--model", str(tmp_path / "run"), "--out", str(out),
               "--workers", "1", "--threads", "1", "--no-progress")
    assert "quicklook:" in proc.stdout
    filled = eocube.open_zarr(out)
    assert filled.attrs["eocube_provenance"]["method"] == "model"
    clear = ((sample.sel(band="CLM") == 0) & (sample.sel(band="IS_DATA") == 1)).values
    values = filled.sel(band="NDVI").values
    np.testing.assert_allclose(values[clear], sample.sel(band="NDVI").values[clear])  # clear kept
    assert np.isfinite(values).all()

    proc = run("evaluate", "--methods", "linear", "--model", str(tmp_path / "run"), "--quicklook", "")
    rows = {line.split("|")[1].strip() for line in proc.stdout.splitlines() if line.startswith("| ")}
    assert {"model", "linear"} <= rows


def test_model_method_needs_a_model(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "eocube", "gapfill", "--method", "model", "--out",
                           str(tmp_path / "x.zarr")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--method model needs --model PATH" in proc.stderr
    assert not (tmp_path / "x.zarr").exists()


def test_a_bad_training_config_is_one_line_and_exit_2(tmp_path):
    """The README's promise for input errors holds for `eocube train` too (not click's exit 1)."""
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"no_such_key": 1}))
    proc = subprocess.run([sys.executable, "-m", "eocube", "train", "--config", str(config), "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no_such_key" in errors[0] and "Traceback" not in proc.stderr
