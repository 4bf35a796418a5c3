"""Gap filling through real Slurm jobs: same result as local, survives scancel and walltime.

Each test submits real worker jobs to the single-node Slurm of ``conftest.slurm``
(1 core, 1 GB each); the Dask scheduler stays on 127.0.0.1 (``--interface lo``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eocube.cluster import ClusterConfigError, close, connect
from eocube.io._ledger import done_chunks

from .conftest import SqueueLog, assert_same_as_reference, cli, cli_popen, gapfill_args, slurm_args

CHUNKS = 16  # the sample's data band in 32-px tiles: 4 x 4 chunks
pytestmark = pytest.mark.timeout(600)


def _env(**dask: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({f"DASK_{k}": v for k, v in dask.items()})
    return env


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _report(stdout: str) -> tuple[int, int]:
    """(computed, skipped) chunks from the CLI's 'wrote ...' line."""
    m = re.search(r"(\d+) of (\d+) chunks computed(?:, (\d+) already done)?", stdout)
    assert m, stdout
    return int(m.group(1)), int(m.group(3) or 0)


def test_gapfill_on_slurm_equals_local(slurm, reference, tmp_path: Path) -> None:
    out = tmp_path / "slurm.zarr"
    with SqueueLog(tmp_path / "squeue.log") as squeue:
        done = cli([*gapfill_args(out), *slurm_args(slurm.partition, jobs=2)], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Slurm worker jobs" in done.stdout
    assert len(squeue.running()) >= 1, "no eocube worker job was seen running in squeue"
    assert _report(done.stdout) == (CHUNKS, 0)
    assert_same_as_reference(out, reference)


def test_gpu_jobs_one_worker_per_gpu(slurm, tmp_path: Path) -> None:
    """--gres=gpu:2 on the fake GPUs: two workers, each its own CUDA_VISIBLE_DEVICES and GPU=1."""
    client = connect("slurm", queue=slurm.partition, interface="lo", cores=2, memory="1GB", gpus=2,
                     walltime="00:05:00", log_directory=str(tmp_path), dashboard_address=":0")
    try:
        client.wait_for_workers(2, timeout=120)
        devices = sorted(client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES")).values())
        resources = [w.get("resources") for w in client.scheduler_info()["workers"].values()]
        gres = subprocess.run(["squeue", "-h", "-o", "%b"], capture_output=True, text=True).stdout
    finally:
        close(client)
    assert devices == ["0", "1"]
    assert resources == [{"GPU": 1}, {"GPU": 1}]
    assert "gpu:2" in gres


def test_scancel_of_a_worker_job_midrun(slurm, reference, tmp_path: Path) -> None:
    out = tmp_path / "cancel.zarr"
    env = _env(EOCUBE__TESTING__CHUNK_DELAY="1.0", DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT="2s")
    with SqueueLog(tmp_path / "squeue.log") as squeue:
        proc = cli_popen([*gapfill_args(out), *slurm_args(slurm.partition, jobs=2)], tmp_path, env)
        try:
            _wait(lambda: len(squeue.now_running()) == 2 and len(done_chunks(out, "sentinel2")) >= 2,
                  120, "two running worker jobs and two chunks written", proc)
            first = squeue.now_running()
            victim = first[0]
            subprocess.run(["scancel", victim], check=True)
            rc = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    log = (tmp_path / "cli.log").read_text()
    assert rc == 0, log
    assert victim not in squeue.now_running()
    replacements = [job for job in squeue.running() if job not in first]
    assert replacements, f"no worker job replaced the cancelled job {victim}"
    assert_same_as_reference(out, reference)


def test_walltime_kill_then_rerun(slurm, reference, tmp_path: Path) -> None:
    """The whole run (driver and workers) in jobs of 1 minute, killed mid-way; the same command finishes it."""
    out = tmp_path / "walltime.zarr"
    args = [*gapfill_args(out), *slurm_args(slurm.partition, jobs=1, walltime="00:01:00")]
    command = " ".join(["python", "-c", "'from eocube.cli import main; main()'", *args])
    env = _env(EOCUBE__TESTING__CHUNK_DELAY="8")  # 16 chunks x 8 s > the 1-minute walltime
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    submit = subprocess.run(
        ["sbatch", "--parsable", "-J", "eocube-driver", "-p", slurm.partition, "-t", "1", "-c", "1", "--mem=1500M",
         f"--chdir={tmp_path}", "-o", str(tmp_path / "driver.out"), "--wrap", command],
        env=env, capture_output=True, text=True, check=True,
    )
    driver = submit.stdout.strip().split(";")[0]

    def state() -> str:
        shown = subprocess.run(["scontrol", "show", "job", driver], capture_output=True, text=True).stdout
        m = re.search(r"JobState=(\w+)", shown)
        return m.group(1) if m else "GONE"

    with SqueueLog(tmp_path / "squeue.log") as squeue:
        _wait(lambda: state() not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"), 240, "the walltime kill")
    final = state()
    assert final == "TIMEOUT", f"driver job ended {final}:\n{(tmp_path / 'driver.out').read_text()}"
    assert squeue.running(), "no eocube worker job was seen running in squeue"
    written = len(done_chunks(out, "sentinel2"))
    assert 0 < written < CHUNKS, f"{written} chunks were written before the kill"

    done = cli(args, cwd=tmp_path)  # the same command, no delay
    assert done.returncode == 0, done.stdout + done.stderr
    assert _report(done.stdout) == (CHUNKS - written, written)
    assert_same_as_reference(out, reference)


def test_unknown_partition_is_named(slurm) -> None:
    with pytest.raises(ClusterConfigError, match=r"--partition.*'nosuch'.*partitions: eocube"):
        connect("slurm", queue="nosuch", memory="1GB")


def test_cli_reports_unknown_partition(slurm, tmp_path: Path) -> None:
    done = cli([*gapfill_args(tmp_path / "x.zarr"), "--cluster", "slurm", "--partition", "nosuch"], cwd=tmp_path)
    assert done.returncode == 2
    assert "--partition" in done.stderr and "nosuch" in done.stderr
    assert not (tmp_path / "x.zarr").exists()
