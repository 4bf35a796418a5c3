"""Issue 13, cases 17 and 18: what listens where, TLS for Slurm clusters, and no advice to unpickle.

The Slurm scheduler tests start dask-jobqueue's scheduler in this process with no
worker job (``jobs=0``) and ``sbatch --test-only`` skipped, so they need no Slurm;
tests/slurm runs real TLS jobs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import dask
import psutil
import pytest
import torch
from distributed import Client
from distributed.comm import connect as comm_connect
from distributed.security import Security
from torch import nn

import eocube.cluster.slurm as slurm_module
from eocube.cluster import close, connect, dry_run
from eocube.cluster.config import ClusterConfigError, resolve
from eocube.cluster.slurm import job_kwargs, slurm_cluster
from eocube.learn.checkpoint import load_checkpoint
from eocube.learn.errors import CheckpointError
from eocube.models import ModelLoadError, from_state_dict, from_torchscript

UNSAFE_HINTS = ("weights_only set to False", "weights_only=False", "add_safe_globals", "safe_globals")


# --- case 17, local: nothing listens beyond loopback -----------------------------------------

def _listening(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, ip, port) of the listening TCP sockets of these processes."""
    found = []
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.append((pid, conn.laddr.ip, conn.laddr.port))
    return found


def test_local_scheduler_workers_and_dashboard_listen_on_loopback_only():
    client = connect("local", n_workers=1, threads_per_worker=1, processes=True)  # the default dashboard address
    try:
        info = client.scheduler_info()
        workers = list(info["workers"].values())
        dashboard_port = info["services"]["dashboard"]
        scheduler_port = int(client.scheduler.address.rsplit(":", 1)[1])
        ours = _listening({os.getpid()})
        assert any(port == dashboard_port for _, _, port in ours), f"dashboard port {dashboard_port} not in {ours}"
        assert any(port == scheduler_port for _, _, port in ours), f"scheduler port {scheduler_port} not in {ours}"
        nanny_ports = {int(w["nanny"].rsplit(":", 1)[1]) for w in workers}  # nannies run in this process
        cluster_ports = {dashboard_port, scheduler_port, *nanny_ports}
        worker_pids = set(client.run(os.getpid).values())
        assert worker_pids and os.getpid() not in worker_pids  # workers are processes of their own
        in_cluster = [s for s in ours if s[2] in cluster_ports] + _listening(worker_pids)
        exposed = [s for s in in_cluster if s[1] != "127.0.0.1"]
        assert not exposed, f"sockets listening beyond 127.0.0.1 (pid, ip, port): {exposed}"
        assert client.dashboard_link.startswith("http://127.0.0.1:")
    finally:
        close(client)


def test_a_dashboard_address_without_host_is_bound_to_loopback():
    client = connect("local", n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0")
    try:
        port = client.scheduler_info()["services"]["dashboard"]
        assert [ip for _, ip, p in _listening({os.getpid()}) if p == port] == ["127.0.0.1"]
    finally:
        close(client)


# --- case 17, Slurm: TLS by default ----------------------------------------------------------

def _connect(address: str, security: Security | None = None) -> None:
    """Open and close one comm to ``address`` (a failed distributed.Client would stay the default client)."""

    async def attempt() -> None:
        args = security.get_connection_args("client") if security else {}
        comm = await comm_connect(address, timeout=10, **args)
        await comm.close()

    asyncio.run(attempt())


@pytest.fixture
def no_sbatch(monkeypatch):
    """Skip ``sbatch --test-only`` (no Slurm needed: the clusters here submit no job)."""
    monkeypatch.setattr(slurm_module, "check_job", lambda settings: None)


def _settings(tmp_path: Path, **overrides) -> dict:
    _, s = resolve("slurm", {"memory": "1GB", "jobs": 0, "interface": "lo", "tls_directory": str(tmp_path / "tls"),
                             **overrides})
    return s


def test_slurm_scheduler_speaks_tls_with_per_run_certificates(tmp_path, no_sbatch):
    cluster = slurm_cluster(_settings(tmp_path), dashboard_address=None)
    try:
        address = cluster.scheduler_address
        run = cluster.run_directory
        assert address.startswith("tls://127.0.0.1:")
        assert run.parent == tmp_path / "tls" and stat.S_IMODE(run.stat().st_mode) == 0o700
        files = sorted(run.iterdir())
        assert len(files) == 3 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
        script = cluster.job_script()
        assert f"--tls-ca-file {run}/" in script and f"--tls-key {run}/" in script and "--protocol tls://" in script
        assert "BEGIN" not in script  # paths, never the key material itself
        with Client(cluster) as client:  # the cluster's own Security: accepted
            assert client.scheduler_info()["address"] == address
        _connect(address, cluster.security)
        with pytest.raises(TypeError, match="TLS expects a `ssl_context`"):  # no certificate at all
            _connect(address)
        with pytest.raises(OSError):  # plain TCP to the TLS port
            _connect(address.replace("tls://", "tcp://"))
        with pytest.raises(OSError, match="certificate"):  # a certificate of another authority
            _connect(address, Security.temporary())
    finally:
        cluster.close()
    assert not run.exists(), "the run's certificate folder was not removed at close"


def test_tls_can_be_turned_off_by_environment_and_keyword(tmp_path, monkeypatch, no_sbatch, caplog):
    monkeypatch.setenv("DASK_EOCUBE__CLUSTER__SLURM__TLS", "false")
    dask.config.refresh()
    try:
        assert resolve("slurm")[1]["tls"] is False
        assert resolve("slurm", {"tls": True})[1]["tls"] is True  # a keyword beats the environment
        script = dry_run("slurm", memory="1GB")
        assert "--tls" not in script and "tcp://<scheduler-address>" in script and "TLS OFF" in script
        cluster = slurm_cluster(_settings(tmp_path), dashboard_address=None)
        try:
            assert cluster.scheduler_address.startswith("tcp://127.0.0.1:") and cluster.run_directory is None
        finally:
            cluster.close()
        assert "TLS is off" in caplog.text
    finally:
        monkeypatch.undo()
        dask.config.refresh()
    assert resolve("slurm")[1]["tls"] is True  # the default
    with pytest.raises(ClusterConfigError, match=r"eocube\.cluster\.slurm\.tls='maybe' is not true or false"):
        resolve("slurm", {"tls": "maybe"})


def test_dry_run_shows_the_tls_options_without_key_material(tmp_path):
    text = dry_run("slurm", memory="1GB", tls_directory=str(tmp_path / "certs"))
    worker = text.splitlines()[-1]
    folder = tmp_path / "certs" / "RUN-FOLDER"
    for option in ("--protocol tls://", f"--tls-ca-file {folder}/", f"--tls-cert {folder}/", f"--tls-key {folder}/"):
        assert option in worker, f"{option!r} not in {worker}"
    assert worker.split()[3] == "tls://<scheduler-address>:8786"
    assert "TLS on" in text and "BEGIN" not in text and "PRIVATE" not in text
    assert not (tmp_path / "certs").exists()  # a dry run makes nothing


def test_jobqueue_scheduler_options_are_honoured(tmp_path, no_sbatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    configured = {"port": port, "dashboard_address": "127.0.0.1:0", "idle_timeout": "1h"}
    with dask.config.set({"jobqueue.slurm.scheduler-options": configured}):
        s = _settings(tmp_path)
        options = job_kwargs(s)["scheduler_options"]
        assert {k: options[k] for k in configured} == configured
        assert job_kwargs(s, ":9999")["scheduler_options"]["dashboard_address"] == ":9999"  # a keyword wins
        assert job_kwargs(_settings(tmp_path, scheduler_host="127.0.0.2"))["scheduler_options"]["host"] == "127.0.0.2"
        cluster = slurm_cluster(s)
        try:
            assert cluster.scheduler_address == f"tls://127.0.0.1:{port}"
        finally:
            cluster.close()
    with dask.config.set({"jobqueue.slurm.scheduler-options": {"protocol": "tcp://"}}):
        with pytest.raises(ClusterConfigError, match=r"protocol 'tcp://'.*tls"):
            job_kwargs(_settings(tmp_path))


def test_certificate_folders_of_dead_runs_are_removed(tmp_path, no_sbatch):
    base = tmp_path / "tls"
    base.mkdir()
    host = socket.gethostname()
    dead = base / f"{host}-{2**22 + 17}-abc"  # above Linux's default pid_max: no such process
    alive = base / f"{host}-{os.getpid()}-def"
    other_host = base / f"elsewhere-{2**22 + 17}-ghi"
    for folder in (dead, alive, other_host):
        folder.mkdir()
    cluster = slurm_cluster(_settings(tmp_path), dashboard_address=None)
    cluster.close()
    assert sorted(p.name for p in base.iterdir()) == sorted([alive.name, other_host.name])


def test_an_unusable_certificate_folder_is_named(tmp_path, no_sbatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ClusterConfigError, match=r"eocube\.cluster\.slurm\.tls-directory"):
        slurm_cluster(_settings(tmp_path, tls_directory=str(blocker / "tls")), dashboard_address=None)


# --- case 18: files of pickled objects -------------------------------------------------------

class WholeNet(nn.Module):
    """A module saved whole with torch.save (pickled by class)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _messages(exc: BaseException) -> str:
    """The message and every chained one (what a traceback would print)."""
    texts = []
    while exc is not None:
        texts.append(str(exc))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "\n".join(texts)


def _assert_safe_advice(exc: BaseException) -> None:
    text = _messages(exc)
    for hint in UNSAFE_HINTS:
        assert hint not in text, f"{hint!r} relayed in:\n{text}"
    assert "pickled" in text and "state_dict" in text


def test_a_whole_pickled_module_is_refused_with_safe_advice(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(WholeNet(), path)
    with pytest.raises(ModelLoadError) as as_weights:
        from_state_dict(WholeNet, path).build()
    _assert_safe_advice(as_weights.value)
    assert "torch.export" in str(as_weights.value) and "WholeNet" in str(as_weights.value)
    with pytest.raises(ModelLoadError) as as_script:
        from_torchscript(path).build()
    _assert_safe_advice(as_script.value)
    assert "torch.export" in str(as_script.value) and "not a TorchScript file" in str(as_script.value)
    assert "corrupted" not in _messages(as_script.value)  # torch's misleading 'corrupted' guess is not relayed


def test_a_state_dict_given_as_torchscript_says_to_use_from_state_dict(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(WholeNet().state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"not a TorchScript file but weights.*from_state_dict"):
        from_torchscript(path).build()


def test_a_checkpoint_with_a_pickled_module_is_refused_with_safe_advice(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"format": "eocube-gapfill-1", "model": WholeNet()}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    _assert_safe_advice(caught.value)
    assert "WholeNet" in str(caught.value)
