"""`eocube apply` through real Slurm worker jobs: the same output as a local run; `--dry-run` submits nothing.

A small ``torch.export`` model (``.pt2`` with its card, :func:`eocube.models.card.export_model`)
runs on the bundled sample in 32-px chunks. As in ``test_slurm_jobs``, the worker jobs (1 core,
1 GB) get names of this test session, the scheduler stays on 127.0.0.1 and speaks TLS with
certificates made for the run, and the run's certificate folder must be gone afterwards.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from eocube import open_zarr
from eocube.models import ModelSpec, OutputSpec, SourceSpec
from eocube.models.card import export_model

from .conftest import SqueueLog, cli, job_name, queued, slurm_args

CHUNKS = 16  # the sample (101 x 100 px) in 32-px chunks: 4 x 4
pytestmark = pytest.mark.timeout(600)


def _env(**dask: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({f"DASK_{k}": v for k, v in dask.items()})
    return env


def _report(stdout: str) -> tuple[int, int]:
    """(computed, skipped) chunks from the CLI's 'wrote ...' line."""
    m = re.search(r"(\d+) of (\d+) chunks computed(?:, (\d+) already done)?", stdout)
    assert m, stdout
    return int(m.group(1)), int(m.group(3) or 0)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN on NDVI and CLP as a .pt2 program with its card (smooth.json) beside it."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    spec = ModelSpec(sources=(SourceSpec(name="s2", bands=("NDVI", "CLP")),), output=OutputSpec(bands=("smooth",)))
    return export_model(net, torch.rand(2, 2, 16, 16), tmp_path_factory.mktemp("model") / "smooth.pt2", spec=spec)


def apply_args(model: Path, out: Path) -> list[str]:
    """The apply run of these tests (the bundled sample, 32-px chunks)."""
    return ["apply", str(model), "--source", "sentinel2", "--out", str(out), "--chunk", "32", "--no-progress"]


@pytest.fixture(scope="module")
def local_result(model: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The model's output on a local cluster (what Slurm must match)."""
    folder = tmp_path_factory.mktemp("local")
    out = folder / "local.zarr"
    done = cli([*apply_args(model, out), "--cluster", "local", "--workers", "1", "--threads", "1"], cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return open_zarr(out).values


def test_apply_on_slurm_equals_local(slurm, model: Path, local_result: np.ndarray, tmp_path: Path) -> None:
    out = tmp_path / "slurm.zarr"
    name = job_name("apply")
    env = _env(EOCUBE__CLUSTER__SLURM__JOB_NAME=name, EOCUBE__CLUSTER__SLURM__TLS_DIRECTORY=str(tmp_path / "tls"))
    with SqueueLog(tmp_path / "squeue.log") as squeue:
        done = cli([*apply_args(model, out), *slurm_args(slurm.partition, jobs=1)], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dask cluster tls://127.0.0.1:" in done.stdout and "Slurm worker jobs" in done.stdout
    assert squeue.running(name), f"no worker job {name} was seen running in squeue"
    assert _report(done.stdout) == (CHUNKS, 0)
    assert list((tmp_path / "tls").iterdir()) == [], "the run's certificate folder was left behind"
    result = open_zarr(out)
    assert result.rio.crs.to_epsg() == 32633 and result.attrs["eocube_provenance"]["command"] == "eocube apply"
    np.testing.assert_array_equal(result.values, local_result)
    assert Path(str(out) + ".png").is_file()


def test_apply_dry_run_prints_the_job_script_and_submits_nothing(slurm, model: Path, tmp_path: Path) -> None:
    out = tmp_path / "never.zarr"
    name = job_name("apply-dry")
    env = _env(EOCUBE__CLUSTER__SLURM__JOB_NAME=name)
    done = cli([*apply_args(model, out), *slurm_args(slurm.partition), "--gpus", "1", "--dry-run"], cwd=tmp_path,
               env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"#SBATCH -p {slurm.partition}" in done.stdout and "#SBATCH --gres=gpu:1" in done.stdout
    assert "tls://<scheduler-address>" in done.stdout and "PRIVATE KEY" not in done.stdout  # TLS by default
    assert "source " not in done.stdout  # the command body never ran
    assert not out.exists() and not queued(name)
