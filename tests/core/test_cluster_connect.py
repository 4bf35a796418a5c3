"""A local cluster sized to the machine by default; an existing scheduler by address."""

from __future__ import annotations

import pytest
from distributed import LocalCluster

import eocube
from eocube.cluster import close, connect, describe, dry_run
from eocube.cluster.local import machine_size


def test_local_cluster_is_sized_to_the_machine_and_on_loopback():
    client = connect("local", dashboard_address=":0", processes=False)
    try:
        cores, memory = machine_size()
        info = client.scheduler_info()["workers"]
        threads = sum(w["nthreads"] for w in info.values())
        assert len(info) == max(1, cores // 2)  # one worker per two cores
        assert threads == cores if cores % 2 == 0 else 1 <= threads <= cores  # every core used once
        assert all(0 < w["memory_limit"] <= memory for w in info.values())
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        text = describe(client)
        assert "dashboard http://" in text and "workers" in text
    finally:
        close(client)


def test_an_existing_scheduler_is_joined_by_address():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, host="127.0.0.1", protocol="tcp://",
                      dashboard_address=":0") as cluster:
        client = connect(cluster.scheduler_address)
        try:
            assert client.scheduler.address == cluster.scheduler_address
            assert client.submit(sum, [1, 2, 3]).result() == 6
        finally:
            client.close()


def test_an_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(eocube.EOCubeError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9.*--cluster local"):
        connect("tcp://127.0.0.1:9", timeout=2)


QUIET_SCRIPT = '''
import dask.array as da
from eocube.cluster import connect
from eocube.errors import StoreError

def damaged(block):
    raise StoreError("input store X.zarr is damaged")

def plain(block):
    raise ZeroDivisionError("a bug")

if __name__ == "__main__":
    client = connect(n_workers=1, threads_per_worker=1, dashboard_address=":0", processes=True)
    for func, kind in ((damaged, StoreError), (plain, ZeroDivisionError)):
        try:
            da.ones(4, chunks=2).map_blocks(func, dtype=float).compute()
        except kind as exc:
            print("caught", type(exc).__name__, flush=True)
    client.close()
'''


def test_workers_do_not_repeat_eocube_errors_on_the_terminal(tmp_path):
    """An eocube error reaches the caller as one line; the local workers' 'Compute Failed'
    tracebacks of it are dropped, those of other errors (bugs) are kept."""
    import subprocess
    import sys

    script = tmp_path / "quiet.py"
    script.write_text(QUIET_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["caught", "StoreError", "caught", "ZeroDivisionError"]
    assert "StoreError" not in proc.stderr and "X.zarr" not in proc.stderr
    assert "Compute Failed" in proc.stderr and "ZeroDivisionError" in proc.stderr


def test_hpc_options_reach_the_job_script_and_gpu_defaults_are_said(tmp_path):
    """--qos, --constraint, repeatable --job-directive; --gpus alone gets cores and memory per GPU."""
    from click.testing import CliRunner

    from eocube.cli import main

    result = CliRunner().invoke(main, ["gapfill", "--out", str(tmp_path / "x.zarr"), "--cluster", "slurm", "--gpus", "2",
                                       "--qos", "qos_gpu-t3", "--constraint", "v100-32g",
                                       "--job-directive=--hint=nomultithread", "--job-directive", "#SBATCH --exclusive",
                                       "--dry-run"])
    assert result.exit_code == 0, result.output
    script = result.output
    for line in ("#SBATCH --qos=qos_gpu-t3", "#SBATCH --constraint=v100-32g", "#SBATCH --hint=nomultithread",
                 "#SBATCH --exclusive", "#SBATCH --gres=gpu:2", "#SBATCH --cpus-per-task=16"):
        assert line in script, script
    assert "chosen from --gpus: cores 16 = 2 GPUs x 8" in script
    assert "chosen from --gpus: memory 32GB = 2 GPUs x 16GB" in script
    assert not (tmp_path / "x.zarr").exists()


def test_explicit_cores_win_over_the_gpu_default_and_a_bad_directive_is_named():
    from eocube.cluster import ClusterConfigError, dry_run

    script = dry_run("slurm", gpus=2, cores=4, memory="20GB")
    assert "#SBATCH --cpus-per-task=4" in script and "chosen from --gpus: cores" not in script
    assert "chosen from --gpus" not in script
    assert "#SBATCH --cpus-per-task=1" in dry_run("slurm")  # no GPU: 1 core, 4GB as before
    with pytest.raises(ClusterConfigError, match="--job-directive.*not an sbatch option"):
        dry_run("slurm", job_extra_directives=["hint=nomultithread"])


def test_a_dry_run_without_cluster_says_small_jobs_run_on_threads(tmp_path):
    from click.testing import CliRunner

    from eocube.cli import main

    result = CliRunner().invoke(main, ["gapfill", "--out", str(tmp_path / "x.zarr"), "--dry-run"])
    assert result.exit_code == 0 and "runs on" in result.output and "dask threads in this process" in result.output
    assert "a larger one starts: local Dask cluster" in result.output


def test_local_workers_get_the_measured_malloc_settings_unless_configured():
    import os

    from eocube.cluster.local import MALLOC_ENVIRON

    saved = dict(os.environ)  # distributed's nannies leave pre-spawn variables in this process's environment
    try:
        for name in MALLOC_ENVIRON:
            os.environ.pop(name, None)
        client = connect("local", n_workers=1, threads_per_worker=1, dashboard_address=None, processes=True)
        try:
            seen = next(iter(client.run(lambda: {k: os.environ.get(k) for k in MALLOC_ENVIRON}).values()))
            assert seen == {k: None if v is None else str(v) for k, v in MALLOC_ENVIRON.items()}
            assert seen["MALLOC_TRIM_THRESHOLD_"] is None  # not distributed's 65536
        finally:
            close(client)
        for name in MALLOC_ENVIRON:
            os.environ.pop(name, None)
        _configured_malloc_wins()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _configured_malloc_wins():
    import os

    import dask

    from eocube.cluster.local import MALLOC_ENVIRON

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 1024}):
        client = connect("local", n_workers=1, threads_per_worker=1, dashboard_address=None, processes=True)
        try:
            seen = next(iter(client.run(lambda: {k: os.environ.get(k) for k in MALLOC_ENVIRON}).values()))
            assert seen == {"MALLOC_TRIM_THRESHOLD_": "1024"}
        finally:
            close(client)


def _profile_ms(client) -> list[float]:
    """Milliseconds between the workers' profile samples (a lambda: sent by value to worker processes)."""
    return list(client.run(lambda dask_worker: getattr(dask_worker.periodic_callbacks.get("profile"),
                                                       "callback_time", 0.0)).values())


def test_a_single_local_worker_runs_as_threads_of_this_process_with_a_sparser_profiler():
    """One worker (the default up to 3 cores): its threads run in this process (no worker process to
    start and import eocube again); the dashboard profiler samples every 100 ms, not 10 ms."""
    import os

    client = connect("local", n_workers=1, threads_per_worker=1, dashboard_address=None)
    try:
        assert list(client.run(os.getpid).values()) == [os.getpid()]
        assert _profile_ms(client) == [100.0]
    finally:
        close(client)
    assert "1 workers x 1 threads" in dry_run("local", n_workers=1, threads_per_worker=1)
    assert "worker threads in this process" in dry_run("local", n_workers=1)
    assert "worker processes" in dry_run("local", n_workers=2)
    assert "worker processes" in dry_run("local", n_workers=1, processes=True)


def test_asked_for_worker_processes_and_a_configured_profiler_are_kept():
    import os

    import dask

    with dask.config.set({"distributed.worker.profile.interval": "20ms"}):
        client = connect("local", n_workers=1, threads_per_worker=1, dashboard_address=None, processes=True)
    try:
        assert list(client.run(os.getpid).values()) != [os.getpid()]
        assert _profile_ms(client) == [20.0]
    finally:
        close(client)
