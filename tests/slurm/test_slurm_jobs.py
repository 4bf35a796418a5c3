"""Gap filling through real Slurm jobs: same result as local, survives scancel and walltime.

Each test submits real worker jobs to the single-node Slurm of ``conftest.slurm``
(1 core, 1 GB each); the Dask scheduler stays on 127.0.0.1 (``--interface lo``) and,
as by default, speaks TLS with certificates made for the run. Worker jobs get names
of this test session (``conftest.job_name``), and nothing is counted while a job of
the run may still write: the tests wait for the jobs and their processes to be gone,
and check invariants rather than one exact timing-dependent split.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed.comm import connect as comm_connect
from distributed.security import Security

from eocube.cluster import ClusterConfigError, close, connect
from eocube.io._ledger import done_chunks

from .conftest import (
    SqueueLog,
    assert_same_as_reference,
    cli,
    cli_popen,
    gapfill_args,
    job_name,
    queued,
    slurm_args,
    wait_until_gone,
    worker_registered,
)

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
    name = job_name("equal")
    env = _env(EOCUBE__CLUSTER__SLURM__JOB_NAME=name, EOCUBE__CLUSTER__SLURM__TLS_DIRECTORY=str(tmp_path / "tls"))
    with SqueueLog(tmp_path / "squeue.log") as squeue:
        done = cli([*gapfill_args(out), *slurm_args(slurm.partition, jobs=2)], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dask cluster tls://127.0.0.1:" in done.stdout and "Slurm worker jobs" in done.stdout
    assert squeue.running(name), f"no worker job {name} was seen running in squeue"
    assert _report(done.stdout) == (CHUNKS, 0)
    assert list((tmp_path / "tls").iterdir()) == [], "the run's certificate folder was left behind"
    assert_same_as_reference(out, reference)


def _connect(address: str, security: Security | None = None) -> None:
    """Open and close one comm to ``address`` (a failed distributed.Client would stay the default client)."""

    async def attempt() -> None:
        args = security.get_connection_args("client") if security else {}
        comm = await comm_connect(address, timeout=10, **args)
        await comm.close()

    asyncio.run(attempt())


def _refuses_plain_clients(address: str) -> None:
    """A client without the run's certificates cannot talk to the scheduler at ``address``."""
    with pytest.raises(OSError):  # plain TCP to the TLS port
        _connect(address.replace("tls://", "tcp://"))
    with pytest.raises(TypeError, match="TLS expects a `ssl_context`"):  # TLS without a certificate
        _connect(address)
    with pytest.raises(OSError, match="certificate"):  # a certificate of another authority
        _connect(address, Security.temporary())


def test_gpu_jobs_one_worker_per_gpu(slurm, tmp_path: Path) -> None:
    """--gres=gpu:2 on the fake GPUs: two workers, each its own CUDA_VISIBLE_DEVICES and GPU=1; TLS throughout."""
    client = connect("slurm", queue=slurm.partition, interface="lo", cores=2, memory="1GB", gpus=2,
                     walltime="00:05:00", log_directory=str(tmp_path), dashboard_address=":0",
                     job_name=job_name("gpu"), tls_directory=str(tmp_path / "tls"))
    try:
        address = client.scheduler.address
        client.wait_for_workers(2, timeout=300)
        devices = sorted(client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES")).values())
        resources = [w.get("resources") for w in client.scheduler_info()["workers"].values()]
        workers = list(client.scheduler_info()["workers"])
        gres = subprocess.run(["squeue", "-h", "-n", job_name("gpu"), "-o", "%b"], capture_output=True, text=True).stdout
        _refuses_plain_clients(address)
    finally:
        close(client)
    assert address.startswith("tls://127.0.0.1:")
    assert all(w.startswith("tls://") for w in workers)
    assert devices == ["0", "1"]
    assert resources == [{"GPU": 1}, {"GPU": 1}]
    assert "gpu:2" in gres
    assert list((tmp_path / "tls").iterdir()) == []


def test_scancel_of_a_worker_job_midrun(slurm, reference, tmp_path: Path) -> None:
    out = tmp_path / "cancel.zarr"
    name = job_name("cancel")
    env = _env(EOCUBE__TESTING__CHUNK_DELAY="1.5", DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT="2s",
               EOCUBE__CLUSTER__SLURM__JOB_NAME=name)

    def joined() -> list[str]:  # running jobs whose worker has joined the scheduler
        return [job for job in squeue.now_running(name) if worker_registered(job, tmp_path)]

    with SqueueLog(tmp_path / "squeue.log") as squeue:
        proc = cli_popen([*gapfill_args(out), *slurm_args(slurm.partition, jobs=2)], tmp_path, env)
        try:
            # A victim whose worker has joined (cancelling a job whose worker never joined goes
            # unnoticed by the scheduler), once the run is under way.
            _wait(lambda: joined() and len(done_chunks(out, "sentinel2")) >= 2, 300,
                  "a worker job that joined the scheduler and two chunks written", proc)
            before = set(queued(name)) | set(squeue.seen(name))
            victim = joined()[0]
            subprocess.run(["scancel", victim], check=True)
            rc = proc.wait(timeout=400)
        finally:
            if proc.poll() is None:
                proc.kill()
    log = (tmp_path / "cli.log").read_text()
    assert rc == 0, log
    assert victim not in squeue.now_running(name)
    replacements = [job for job in squeue.seen(name) if job not in before and job != victim]
    assert replacements, f"no worker job was submitted to replace the cancelled job {victim}"
    assert_same_as_reference(out, reference)


def test_walltime_kill_then_rerun(slurm, reference, tmp_path: Path) -> None:
    """The whole run (driver and workers) in jobs of 1 minute, killed mid-way; the same command finishes it."""
    out = tmp_path / "walltime.zarr"
    name = job_name("walltime")
    args = [*gapfill_args(out), *slurm_args(slurm.partition, jobs=1, walltime="00:01:00")]
    command = " ".join(["python", "-c", "'from eocube.cli import main; main()'", *args])
    run_env = {"EOCUBE__CLUSTER__SLURM__JOB_NAME": name, "EOCUBE__CLUSTER__SLURM__TLS_DIRECTORY": str(tmp_path / "tls")}
    env = _env(EOCUBE__TESTING__CHUNK_DELAY="8", **run_env)  # 16 chunks x 8 s > 1 minute
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    submit = subprocess.run(
        ["sbatch", "--parsable", "-J", f"{name}-driver", "-p", slurm.partition, "-t", "1", "-c", "1", "--mem=1500M",
         f"--chdir={tmp_path}", "-o", str(tmp_path / "driver.out"), "--wrap", command],
        env=env, capture_output=True, text=True, check=True,
    )
    driver = submit.stdout.strip().split(";")[0]

    def state() -> str:
        shown = subprocess.run(["scontrol", "show", "job", driver], capture_output=True, text=True)
        m = re.search(r"JobState=(\w+)", shown.stdout)
        if m:
            return m.group(1)
        return "GONE" if "Invalid job id" in shown.stderr else "UNKNOWN"  # UNKNOWN: slurmctld busy, ask again

    ended: list[str] = []

    def driver_ended() -> bool:
        now = state()
        if now not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "UNKNOWN"):
            ended.append(now)
        return bool(ended)

    with SqueueLog(tmp_path / "squeue.log") as squeue:
        _wait(driver_ended, 400, "the walltime kill of the driver job")
        # Its worker jobs outlive it and may still write a chunk: count once they and
        # every process of the run (all in tmp_path) are gone.
        wait_until_gone(name, tmp_path, 300)
    assert ended[0] == "TIMEOUT", f"driver job ended {ended[0]}:\n{(tmp_path / 'driver.out').read_text()}"
    assert squeue.running(name), f"no worker job {name} was seen running in squeue"
    written = len(done_chunks(out, "sentinel2"))
    assert 0 < written < CHUNKS, f"{written} chunks were written before the kill"

    left = [p.name for p in (tmp_path / "tls").iterdir()]
    assert len(left) <= 1, f"the killed driver left {left} (at most its one certificate folder expected)"
    done = cli(args, cwd=tmp_path, env=_env(**run_env))  # the same command, no delay
    assert done.returncode == 0, done.stdout + done.stderr
    computed, skipped = _report(done.stdout)
    assert computed + skipped == CHUNKS, done.stdout
    assert skipped >= written, f"{written} chunks were done before the rerun, it skipped only {skipped}"
    assert list((tmp_path / "tls").iterdir()) == [], "the killed run's certificate folder was not cleaned up"
    assert_same_as_reference(out, reference)


def test_unknown_partition_is_named(slurm) -> None:
    with pytest.raises(ClusterConfigError, match=r"--partition.*'nosuch'.*partitions: eocube"):
        connect("slurm", queue="nosuch", memory="1GB")


def test_cli_reports_unknown_partition(slurm, tmp_path: Path) -> None:
    done = cli([*gapfill_args(tmp_path / "x.zarr"), "--cluster", "slurm", "--partition", "nosuch"], cwd=tmp_path)
    assert done.returncode == 2
    assert "--partition" in done.stderr and "nosuch" in done.stderr
    assert not (tmp_path / "x.zarr").exists()
