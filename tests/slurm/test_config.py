"""Cluster settings and job scripts: pure logic, no Slurm daemons needed."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import dask
import pytest
from click.testing import CliRunner

from eocube.cli import main
from eocube.cluster import ClusterConfigError, connect, dry_run
from eocube.cluster.config import resolve
from eocube.cluster.slurm import job_script
from eocube.errors import ClusterError


def _script(**settings) -> str:
    _, s = resolve("slurm", settings)
    return job_script(s, address="tcp://127.0.0.1:8786")


def test_defaults_come_from_eocube_yaml() -> None:
    kind, s = resolve()
    assert kind == "local" and s["processes"] is None  # threads for one worker, else processes
    kind, s = resolve("slurm")
    assert (s["walltime"], s["cores"], s["memory"], s["processes"], s["gpus"]) == ("01:00:00", 1, "4GB", 1, 0)
    assert (s["adapt_min"], s["adapt_max"]) == (1, 1)


def test_environment_overrides_defaults_and_keywords_override_environment(monkeypatch) -> None:
    monkeypatch.setenv("DASK_EOCUBE__CLUSTER__SLURM__QUEUE", "gpu")
    monkeypatch.setenv("DASK_EOCUBE__CLUSTER__SLURM__WALLTIME", "02:00:00")
    monkeypatch.setenv("DASK_EOCUBE__CLUSTER__KIND", "slurm")
    dask.config.refresh()
    try:
        kind, s = resolve(None, {"walltime": "00:10:00", "account": None})
        assert kind == "slurm"
        assert (s["queue"], s["walltime"], s["account"]) == ("gpu", "00:10:00", None)
    finally:
        monkeypatch.undo()
        dask.config.refresh()
    assert resolve()[0] == "local"


def test_config_file_sits_between_environment_and_keywords(tmp_path: Path) -> None:
    path = tmp_path / "hpc.yaml"
    path.write_text("eocube:\n  cluster:\n    kind: slurm\n    slurm:\n      queue: short\n      cores: 8\n"
                    "      prologue: ['module load cuda', 'source env/bin/activate']\n")
    kind, s = resolve(None, {"cores": 4}, config_file=path)
    assert (kind, s["queue"], s["cores"], s["prologue"]) == ("slurm", "short", 4,
                                                             ["module load cuda", "source env/bin/activate"])


@pytest.mark.parametrize("text, match", [
    ("cluster:\n  kind: slurm\n", "no 'eocube: cluster:' section"),
    ("eocube:\n  cluster:\n    slurm:\n      parition: gpu\n", r"unknown setting eocube\.cluster\.slurm\.parition"),
    ("eocube: [unclosed\n", "not valid YAML"),
])
def test_bad_config_file_is_named(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ClusterConfigError, match=match):
        resolve("slurm", config_file=path)


@pytest.mark.parametrize("settings, match", [
    ({"memory": "lots"}, r"--memory / eocube\.cluster\.slurm\.memory='lots' is not a memory size"),
    ({"walltime": "2 hours"}, r"--walltime.*'2 hours' is not a Slurm time"),
    ({"cores": 0}, r"--cores.*must be at least 1"),
    ({"cores": "four"}, r"--cores.*'four' is not a whole number"),
    ({"processes": 4, "cores": 2}, r"--processes.*=4 is more than --cores"),
    ({"gpus": 2, "processes": 3, "cores": 4}, r"conflicts with --gpus"),
    ({"adapt_min": 3, "adapt_max": 1}, r"--adapt-min.*=3 is more than --adapt-max"),
    ({"n_workers": 2}, r"'n_workers' \(--workers / eocube\.cluster\.local\.n-workers\) does not apply to a slurm"),
    ({"partition": "gpu"}, r"unknown setting 'partition' for a slurm cluster: known are queue"),
    ({"queue": " "}, r"--partition.*is empty"),
])
def test_invalid_slurm_settings_name_the_setting(settings: dict, match: str) -> None:
    with pytest.raises(ClusterConfigError, match=match):
        resolve("slurm", settings)


def test_local_memory_limit_is_checked_and_unknown_cluster_named() -> None:
    with pytest.raises(ClusterConfigError, match=r"--memory-limit.*'4 gigs'"):
        resolve("local", {"memory_limit": "4 gigs"})
    with pytest.raises(ClusterConfigError, match=r"'queue' \(--partition.*\) does not apply to a local cluster"):
        resolve("local", {"queue": "gpu"})
    with pytest.raises(ClusterConfigError, match=r"--processes is for Slurm jobs, use --workers"):
        resolve("local", {"processes": 4})
    with pytest.raises(ClusterConfigError, match=r"unknown cluster 'pbs'.*--cluster"):
        resolve("pbs")
    with pytest.raises(ClusterConfigError, match=r"queue do not apply when joining"):
        resolve("tcp://127.0.0.1:8786", {"queue": "gpu"})


def test_job_script_translates_settings() -> None:
    script = _script(queue="gpu", account="proj42", walltime="02:30:00", cores=4, memory="16GiB",
                     processes=2, prologue=["module load cuda/12", "source /opt/venv/bin/activate"],
                     local_directory="$TMPDIR", interface="ib0", job_extra_directives=["--qos=short"])
    lines = script.splitlines()
    for expected in ("#SBATCH -p gpu", "#SBATCH -A proj42", "#SBATCH -t 02:30:00", "#SBATCH --cpus-per-task=4",
                     "#SBATCH --mem=16G", "#SBATCH --qos=short", "module load cuda/12",
                     "source /opt/venv/bin/activate"):
        assert expected in lines, f"{expected!r} not in\n{script}"
    worker = lines[-1]
    assert lines.index("module load cuda/12") < lines.index(worker)
    assert "--nworkers 2" in worker and "--nthreads 2" in worker and "--memory-limit 8.00GiB" in worker
    assert "--local-directory $TMPDIR" in worker and "--interface ib0" in worker
    assert "--gres" not in script and "CUDA_VISIBLE_DEVICES" not in script


def test_gpu_job_script_runs_one_worker_per_gpu(tmp_path: Path) -> None:
    # A stand-in for the workers' Python that prints what each worker would see.
    fake = tmp_path / "python"
    fake.write_text('#!/bin/bash\necho "$CUDA_VISIBLE_DEVICES $*"\n')
    fake.chmod(0o755)
    script = _script(cores=4, memory="8GB", gpus=2, gpu_type="a100", python=str(fake))
    assert "#SBATCH --gres=gpu:a100:2" in script.splitlines()
    assert "--nworkers" not in script
    for visible, expected in (("", ["0", "1"]), ("3,5", ["3", "5"])):
        env = {"PATH": "/usr/bin:/bin"} | ({"CUDA_VISIBLE_DEVICES": visible} if visible else {})
        out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                             check=True).stdout.splitlines()
        assert sorted(line.split(" ")[0] for line in out) == expected
        names = sorted(line.split("--name ")[1].split(" ")[0] for line in out)
        assert names == ["eocube-worker-0-0", "eocube-worker-0-1"]
        assert all("--resources GPU=1" in line and "--nthreads 2" in line for line in out)


def test_dry_run_touches_nothing(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    text = dry_run("slurm", log_directory=str(logs), gpus=1, memory="2GB")
    assert "#SBATCH --gres=gpu:1" in text and f"-o {logs}/eocube-worker-%J.out" in text
    assert not logs.exists()
    assert "local Dask cluster" in dry_run("local", n_workers=2)


def test_cli_dry_run_prints_the_job_script_and_does_no_work(tmp_path: Path) -> None:
    out = tmp_path / "never.zarr"
    result = CliRunner().invoke(main, ["gapfill", "--out", str(out), "--cluster", "slurm", "--partition", "gpu",
                                       "--gpus", "2", "--cores", "2", "--walltime", "00:20:00",
                                       "--prologue", "module load cuda", "--prologue", "conda activate eo",
                                       "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "#SBATCH -p gpu" in result.output and "#SBATCH --gres=gpu:2" in result.output
    assert result.output.index("module load cuda") < result.output.index("conda activate eo")
    for option in ("tls://<scheduler-address>", "--tls-ca-file", "--tls-cert", "--tls-key"):  # TLS by default
        assert option in result.output
    assert "BEGIN" not in result.output and "PRIVATE KEY" not in result.output  # paths, no key material
    assert "source:" not in result.output  # the command body never ran
    assert not out.exists()


def test_cli_bad_memory_exits_2_naming_the_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["gapfill", "--out", str(tmp_path / "x.zarr"), "--cluster", "slurm",
                                       "--memory", "lots", "--dry-run"])
    assert result.exit_code == 2
    assert "--memory" in result.output and "'lots'" in result.output


def test_no_slurm_commands_on_path(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterConfigError, match=r"needs the Slurm commands sbatch, squeue, scancel, not found on PATH"):
        connect("slurm", memory="1GB")


def test_unreachable_scheduler_names_the_address() -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match=rf"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} \(--cluster\)"):
        connect(f"tcp://127.0.0.1:{port}", timeout=1)
