"""A real single-node Slurm for the session (scripts/slurm/start.sh), and helpers to watch it.

The daemons are started once for the tests that ask for the ``slurm`` fixture and
stopped afterwards (unless they were already running before the session). If they
cannot be started, those tests FAIL, naming the missing step: they never skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "slurm"
SLURM_DIR = Path(os.environ.get("EOCUBE_SLURM_DIR", "/tmp/eocube-slurm"))
PARTITION = "eocube"
TILE = 32  # the sample (101 x 100 px, 1 data band) in 16 chunks


@dataclass(frozen=True)
class SlurmInfo:
    """The running test Slurm."""

    conf: str
    partition: str
    dir: Path


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


@pytest.fixture(scope="session")
def slurm() -> SlurmInfo:
    """Start Slurm (slurmctld, slurmd, munged) on this machine for the session."""
    env = dict(os.environ, EOCUBE_SLURM_DIR=str(SLURM_DIR), EOCUBE_SLURM_PARTITION=PARTITION)
    ours = not _alive(SLURM_DIR / "slurmctld.pid")
    try:
        done = subprocess.run(["bash", str(SCRIPTS / "start.sh")], env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"could not run scripts/slurm/start.sh ({exc}): run scripts/slurm/install.sh (as root) first")
    if done.returncode != 0:
        pytest.fail(
            "the test Slurm did not start; run scripts/slurm/install.sh (as root: apt-get install slurm-wlm munge) "
            f"before pytest. start.sh said:\n{done.stdout}{done.stderr}",
            pytrace=False,
        )
    conf = str(SLURM_DIR / "slurm.conf")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield SlurmInfo(conf=conf, partition=PARTITION, dir=SLURM_DIR)
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous
    if ours:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh")], env=env, capture_output=True, text=True, timeout=60)


@dataclass
class SqueueLog:
    """Polls ``squeue`` in a thread and keeps every line seen (with the time), also in a file."""

    path: Path
    interval: float = 0.5
    lines: list[tuple[float, str, str, str]] = field(default_factory=list)  # (t, job id, name, state)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def _run(self) -> None:
        previous = None
        with open(self.path, "a") as log:
            while not self._stop.is_set():
                out = subprocess.run(["squeue", "-h", "-o", "%i %j %T %b %R"], capture_output=True, text=True).stdout
                t = time.monotonic() - self._t0
                rows = sorted(out.splitlines())
                for row in rows:
                    parts = row.split()
                    if len(parts) >= 3:
                        self.lines.append((t, parts[0], parts[1], parts[2]))
                if rows != previous:  # log each change of the queue
                    log.write(f"{t:7.1f}s squeue: " + ("; ".join(rows) or "(empty)") + "\n")
                    log.flush()
                    previous = rows
                self._stop.wait(self.interval)

    def __enter__(self) -> SqueueLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        print(f"squeue while it ran ({self.path}):\n{self.path.read_text()}")

    def running(self, name: str = "eocube-worker") -> list[str]:
        """Ids of jobs named ``name`` seen RUNNING, in order of first sight."""
        seen: list[str] = []
        for _, job, jname, state in self.lines:
            if jname == name and state == "RUNNING" and job not in seen:
                seen.append(job)
        return seen

    def seen(self, name: str = "eocube-worker") -> list[str]:
        """Ids of jobs named ``name`` seen in any state, in order of first sight."""
        seen: list[str] = []
        for _, job, jname, _state in self.lines:
            if jname == name and job not in seen:
                seen.append(job)
        return seen

    def now_running(self, name: str = "eocube-worker") -> list[str]:
        """Ids of jobs named ``name`` RUNNING at this moment (asks squeue)."""
        return queued(name, "R")


def queued(name: str, states: str = "all") -> list[str]:
    """Ids of the jobs named ``name`` squeue lists now in ``states`` (``"all"``, ``"R"``, ``"PD"``...)."""
    out = subprocess.run(["squeue", "-h", "-t", states, "-n", name, "-o", "%i"], capture_output=True, text=True).stdout
    return out.split()


def job_name(tag: str) -> str:
    """A worker job name of this test session only (other sessions may share the Slurm)."""
    return f"eocube-{tag}-{os.getpid()}"


def processes_in(folder: Path) -> list[int]:
    """Pids of the live processes (zombies aside) whose working directory is ``folder``, this one excepted."""
    pids = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.status() != psutil.STATUS_ZOMBIE and Path(proc.cwd()) == folder:
                pids.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return pids


def wait_until_gone(name: str, folder: Path, timeout: float) -> None:
    """Wait until no job named ``name`` is queued and no process runs in ``folder`` (the jobs' folder).

    Worker jobs outlive a killed driver (until their death timeout or walltime) and may
    still write a chunk; a count taken before this returns can be too low. Pending jobs
    of ``name`` are cancelled at once (they would only start workers without a scheduler).
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pending = queued(name, "PD")
        if pending:
            subprocess.run(["scancel", *pending], capture_output=True)
        if not queued(name) and not processes_in(folder):
            return
        time.sleep(1)
    pytest.fail(f"after {timeout:g} s, jobs {queued(name)} named {name} or processes {processes_in(folder)} "
                f"in {folder} are still there")


def worker_registered(job: str, folder: Path) -> bool:
    """Whether the Dask worker of Slurm job ``job`` has joined its scheduler (its log in ``folder`` says so)."""
    log = folder / f"slurm-{job}.out"
    return log.is_file() and "Registered to:" in log.read_text(errors="replace")


def cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``eocube ARGS`` in a subprocess (this Python) and return it, output captured."""
    cmd = [sys.executable, "-c", "from eocube.cli import main; main()", *args]
    return subprocess.run(cmd, cwd=cwd, env=env or dict(os.environ), capture_output=True, text=True, timeout=timeout)


def cli_popen(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start ``eocube ARGS`` in the background, stdout+stderr to ``cwd/cli.log``."""
    cmd = [sys.executable, "-c", "from eocube.cli import main; main()", *args]
    log = open(cwd / "cli.log", "w")
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def gapfill_args(out: Path) -> list[str]:
    """The gap fill run of these tests (the bundled sample, small tiles)."""
    return ["gapfill", "--out", str(out), "--tile", str(TILE), "--no-progress"]


def slurm_args(partition: str, *, jobs: int = 1, walltime: str = "00:05:00") -> list[str]:
    """Small Slurm worker jobs (1 core, 1 GB), scheduler and workers on loopback, TLS as by default."""
    return ["--cluster", "slurm", "--partition", partition, "--interface", "lo", "--cores", "1",
            "--memory", "1GB", "--jobs", str(jobs), "--walltime", walltime]


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The gap fill of the sample computed on a local cluster (the result Slurm must match)."""
    from eocube import open_zarr

    folder = tmp_path_factory.mktemp("local")
    out = folder / "local.zarr"
    done = cli([*gapfill_args(out), "--cluster", "local", "--workers", "1", "--threads", "1"], cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return open_zarr(out).values


def assert_same_as_reference(path: Path, reference: np.ndarray) -> None:
    """The store at ``path`` is complete and equal to the local result, NaN for NaN."""
    from eocube import open_zarr

    result = open_zarr(path)
    assert result.rio.crs is not None and result.rio.crs.to_epsg() == 32633
    np.testing.assert_array_equal(result.values, reference)


# --- the multi-node layout (scripts/slurm/multinode-start.sh) -----------------------------------------

MULTI_DIR = Path(os.environ.get("EOCUBE_SLURM_MULTI_DIR", "/tmp/eocube-slurm-multi"))
MULTI_EXEC = SCRIPTS / "multinode-exec.sh"


@dataclass(frozen=True)
class MultiNode:
    """The running multi-node test Slurm: a login host and compute hosts, each a network namespace."""

    conf: str
    partition: str
    dir: Path
    computes: tuple[str, ...]
    login_address: str

    def command(self, host: str, args: list[str]) -> list[str]:
        """``args`` run on ``host`` (its network namespace and hostname, SLURM_CONF set)."""
        return ["bash", str(MULTI_EXEC), host, *args]

    def run(self, host: str, args: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        """Run ``args`` on ``host``, output captured."""
        return subprocess.run(self.command(host, args), capture_output=True, text=True, timeout=timeout, **kwargs)

    def eocube(self, args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
        """``eocube ARGS`` run on the login host (this Python), output captured."""
        cmd = [sys.executable, "-c", "from eocube.cli import main; main()", *args]
        return self.run("login", cmd, timeout=timeout, cwd=cwd, env=env)

    def eocube_popen(self, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
        """``eocube ARGS`` started on the login host in the background, stdout+stderr to ``cwd/cli.log``."""
        cmd = [sys.executable, "-c", "from eocube.cli import main; main()", *args]
        log = open(cwd / "cli.log", "w")
        return subprocess.Popen(self.command("login", cmd), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)

    def jobs(self, name: str) -> dict[str, tuple[str, str]]:
        """Jobs named ``name`` squeue lists now (pending, running, completing): id -> (state, node list)."""
        out = self.run("login", ["squeue", "-h", "-n", name, "-o", "%i %T %N"]).stdout
        rows = (line.split() for line in out.splitlines())
        return {r[0]: (r[1], r[2] if len(r) > 2 else "") for r in rows if len(r) >= 2}

    def restore(self) -> None:
        """Start again what a test stopped (a compute host's slurmd) and put every host back in service."""
        done = subprocess.run(["bash", str(SCRIPTS / "multinode-start.sh")], env=_multi_env(), capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, f"multinode-start.sh could not restore the cluster:\n{done.stdout}{done.stderr}"


def _multi_env() -> dict[str, str]:
    env = dict(os.environ, EOCUBE_SLURM_MULTI_DIR=str(MULTI_DIR), EOCUBE_SLURM_MULTI_PARTITION=PARTITION)
    env.pop("SLURM_CONF", None)
    return env


@pytest.fixture(scope="session")
def multinode() -> MultiNode:
    """A Slurm of a login host and two compute hosts (network namespaces) for the session; torn down after it.

    Adopted and torn down too when a session that is gone left it running (its owner file names a
    dead process); left alone only while another live session owns it. Never skips: if the
    layout cannot be made, the tests fail naming the missing step.
    """
    owner = MULTI_DIR / "owner"
    ours = not _alive(MULTI_DIR / "slurmctld.pid") or not _alive(owner)
    env = _multi_env()
    try:
        done = subprocess.run(["bash", str(SCRIPTS / "multinode-start.sh")], env=env, capture_output=True, text=True,
                              timeout=180)
    except (OSError, subprocess.TimeoutExpired) as exc:
        subprocess.run(["bash", str(SCRIPTS / "multinode-stop.sh")], env=env, capture_output=True, timeout=120)
        pytest.fail(f"could not run scripts/slurm/multinode-start.sh ({exc})", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            "the multi-node test Slurm did not start; it needs root, scripts/slurm/install.sh (slurm-wlm, munge, "
            "iproute2) and network namespaces (ip netns). multinode-start.sh said:\n" + done.stdout + done.stderr,
            pytrace=False,
        )
    if ours:
        owner.write_text(str(os.getpid()))
    try:
        yield MultiNode(conf=str(MULTI_DIR / "slurm.conf"), partition=PARTITION, dir=MULTI_DIR,
                        computes=("cn1", "cn2"), login_address="10.77.0.1")
    finally:
        if ours:
            subprocess.run(["bash", str(SCRIPTS / "multinode-stop.sh")], env=env, capture_output=True, text=True,
                           timeout=180)
            owner.unlink(missing_ok=True)
