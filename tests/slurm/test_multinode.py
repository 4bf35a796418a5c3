"""eocube across hosts: a Slurm of a login host and two compute hosts (scripts/slurm/multinode-start.sh).

Each host is a network namespace with its own hostname and address (login 10.77.0.1, cn1
10.77.0.11, cn2 10.77.0.12); the login host also has an outward interface (10.77.1.1, its
default route) that the compute hosts cannot reach, as on a real cluster. The driver, the
client and the Dask scheduler run on the login host (``multinode-exec.sh login ...``); the
workers run in Slurm jobs on the compute hosts; the file system (working tree, /tmp) is
shared as a cluster's parallel file system would be. TLS is on, as by default.

Nothing here depends on timings: the tests wait (with generous deadlines) for states they
then check, and compare results with a local run bit for bit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from eocube import open_zarr
from eocube.io._ledger import done_chunks
from eocube.models import ModelSpec, OutputSpec, SourceSpec
from eocube.models.card import export_model

from .conftest import MULTI_EXEC, MultiNode, assert_same_as_reference, cli, gapfill_args, job_name, processes_in

CHUNKS = 16  # the sample in 32-px tiles: 4 x 4
pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]

WORKER_AT = re.compile(r"Start worker at:\s+tls://(\d+\.\d+\.\d+\.\d+):\d+")
REGISTERED = re.compile(r"Registered to:\s+(tls://[\d.]+:\d+)")


def _env(**dask: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({f"DASK_{k}": v for k, v in dask.items()})
    return env


def _slurm(mn: MultiNode, jobs: int = 2) -> list[str]:
    """Worker jobs of 1 core and 1 GB; no --interface: eocube finds the login host's address toward the nodes."""
    return ["--cluster", "slurm", "--partition", mn.partition, "--cores", "1", "--memory", "1GB", "--jobs", str(jobs),
            "--walltime", "00:10:00"]


def _report(stdout: str) -> tuple[int, int]:
    """(computed, skipped) chunks from the CLI's 'wrote ...' line."""
    m = re.search(r"(\d+) of (\d+) chunks computed(?:, (\d+) already done)?", stdout)
    assert m, stdout
    return int(m.group(1)), int(m.group(3) or 0)


def _workers(folder: Path) -> dict[str, tuple[str, str | None]]:
    """Slurm job id -> (address the worker listened on, scheduler it registered to or None), from the job logs."""
    found = {}
    for log in folder.glob("slurm-*.out"):
        text = log.read_text(errors="replace")
        at, reg = WORKER_AT.search(text), REGISTERED.search(text)
        if at:
            found[log.stem.split("-", 1)[1]] = (at.group(1), reg.group(1) if reg else None)
    return found


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}" + ("" if proc is None else f" (the run exited {proc.poll()})"))


def _wait_until_gone(mn: MultiNode, name: str, folder: Path, timeout: float = 300) -> None:
    """Wait until no job named ``name`` is queued and no process runs in ``folder`` (the jobs' folder)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not mn.jobs(name) and not processes_in(folder):
            return
        time.sleep(1)
    pytest.fail(f"jobs {mn.jobs(name)} named {name} or processes {processes_in(folder)} in {folder} are still there")


def _netns_pids(namespace: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_the_layout_has_separate_hosts(multinode: MultiNode) -> None:
    sinfo = multinode.run("login", ["sinfo", "-h", "-N", "-o", "%N %o %T"]).stdout.split("\n")
    nodes = {line.split()[0]: line.split()[1] for line in sinfo if line.strip()}
    assert nodes == {"cn1": "10.77.0.11", "cn2": "10.77.0.12"}, sinfo
    for host in ("login", "cn1", "cn2"):
        assert multinode.run(host, ["hostname"]).stdout.strip() == host
    # the compute hosts reach the login host's cluster address, not its outward one
    probe = ("import socket, sys\nfor a in sys.argv[1:]:\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             "    try:\n        s.connect((a, 9)); print(a, 'route')\n    except OSError:\n        print(a, 'none')\n")
    out = multinode.run("cn1", [sys.executable, "-c", probe, "10.77.0.1", "10.77.1.1"]).stdout.split("\n")
    assert out[:2] == ["10.77.0.1 route", "10.77.1.1 none"], out


def test_scheduler_address_defaults(multinode: MultiNode, slurm) -> None:
    """Without --interface/--scheduler-host: the login host's address toward the nodes; loopback on one node."""
    code = ("from eocube.cluster.slurm import address_toward_nodes as a; import sys; print(a(sys.argv[1]))")
    on_login = multinode.run("login", [sys.executable, "-c", code, multinode.partition])
    assert on_login.stdout.strip() == multinode.login_address, on_login.stdout + on_login.stderr
    # the single-node Slurm of this machine (its node is this host): the scheduler stays on loopback
    from eocube.cluster.slurm import address_toward_nodes

    assert address_toward_nodes(slurm.partition) == "127.0.0.1"


CLIENT = r'''
import json, os, socket, subprocess, sys, time
from pathlib import Path
import psutil
from distributed.security import Security
from eocube.cluster import close, connect, describe

folder, partition, name, exec_script = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
client = connect("slurm", queue=partition, interface="eth0", cores=1, memory="1GB", jobs=2, walltime="00:10:00",
                 job_name=name, tls_directory=str(folder / "tls"), log_directory=str(folder))
try:
    client.wait_for_workers(2, timeout=400)
    result = {"scheduler": client.scheduler.address, "describe": describe(client),
              "hosts": sorted(client.run(socket.gethostname).values()),
              "workers": sorted(client.scheduler_info()["workers"]),
              "listening": sorted({f"{c.laddr.ip}" for c in psutil.Process().net_connections("inet")
                                   if c.status == psutil.CONN_LISTEN})}
    # a worker on cn2 that trusts the run's authority but shows a certificate of another one: the
    # scheduler refuses it, it never joins
    other = Security.temporary()
    ca = client.security.tls_ca_file
    ca = ca if ca.startswith("-----BEGIN") else Path(ca).read_text()
    files = {}
    for key, text in (("ca", ca), ("cert", other.tls_worker_cert), ("key", other.tls_worker_key)):
        files[key] = folder / f"intruder-{key}.pem"
        files[key].write_text(text)
    intruder = subprocess.run(
        ["bash", exec_script, "cn2", sys.executable, "-m", "distributed.cli.dask_worker", client.scheduler.address,
         "--name", "intruder", "--no-nanny", "--death-timeout", "15", "--tls-ca-file", str(files["ca"]),
         "--tls-cert", str(files["cert"]), "--tls-key", str(files["key"])],
        capture_output=True, text=True, timeout=300)
    result["intruder_rc"] = intruder.returncode
    result["intruder_said"] = intruder.stderr[-3000:]
    result["names"] = sorted(str(w.get("name")) for w in client.scheduler_info()["workers"].values())
    # and a worker with this run's own files, from the same host: accepted (what the jobs do)
    result["sum"] = client.submit(sum, [1, 2, 3]).result(timeout=120)
finally:
    close(client)
print(json.dumps(result))
'''


def test_client_on_login_workers_on_both_hosts_tls_between_hosts(multinode: MultiNode, tmp_path: Path) -> None:
    """--interface eth0 (as --interface ib0 on a real cluster): scheduler on login's address; a wrong certificate is refused."""
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    done = multinode.run("login", [sys.executable, str(script), str(tmp_path), multinode.partition,
                                   job_name("mn-api"), str(MULTI_EXEC)], timeout=700, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["scheduler"].startswith(f"tls://{multinode.login_address}:")
    assert result["hosts"] == ["cn1", "cn2"]
    assert sorted(w.split(":")[1].lstrip("/") for w in result["workers"]) == ["10.77.0.11", "10.77.0.12"]
    assert all(w.startswith("tls://") for w in result["workers"])
    # the scheduler listens on the cluster address only, the dashboard on loopback only: never all interfaces
    assert result["listening"] == ["10.77.0.1", "127.0.0.1"], result["listening"]
    assert "dashboard http://127.0.0.1:" in result["describe"], result["describe"]
    assert result["intruder_rc"] != 0 and "intruder" not in result["names"], result
    assert re.search(r"certificate|SSL|TLS|Timed out", result["intruder_said"]), result["intruder_said"]
    assert result["sum"] == 6
    assert list((tmp_path / "tls").iterdir()) == [], "the run's certificate folder was left behind"


def test_gapfill_across_hosts_survives_losing_a_host(multinode: MultiNode, reference, tmp_path: Path) -> None:
    """Workers on cn1 and cn2; cn1 is lost mid-run (Slurm marks it down, every process on it dies); cn2 finishes."""
    out = tmp_path / "lost.zarr"
    name = job_name("mn-lost")
    env = _env(EOCUBE__TESTING__CHUNK_DELAY="2", DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT="2s",
               EOCUBE__CLUSTER__SLURM__JOB_NAME=name, EOCUBE__CLUSTER__SLURM__TLS_DIRECTORY=str(tmp_path / "tls"))
    placed: dict[str, str] = {}  # job -> node, every RUNNING job seen

    def seen() -> dict[str, tuple[str, str]]:
        now = multinode.jobs(name)
        placed.update({job: node for job, (state, node) in now.items() if state == "RUNNING"})
        return now

    def on_both_hosts() -> bool:
        seen()
        joined = {placed.get(job) for job, (_, reg) in _workers(tmp_path).items() if reg}
        return {"cn1", "cn2"} <= joined and len(done_chunks(out, "sentinel2")) >= 2

    proc = multinode.eocube_popen([*gapfill_args(out), *_slurm(multinode)], tmp_path, env)
    try:
        _wait(on_both_hosts, 400, "workers of both compute hosts joined and two chunks written", proc)
        before = dict(placed)
        # What slurmctld does once it misses a host (after SlurmdTimeout), done at once and first, so no
        # replacement job can be placed on cn1 (ReturnToService=1 keeps it DOWN); then the host dies.
        subprocess.run(multinode.command("login", ["scontrol", "update", "nodename=cn1", "state=down",
                                                   "reason=test: host lost"]), check=True, capture_output=True)
        for pid in _netns_pids("eocube-mn-cn1"):  # slurmd, job steps, the worker: the host is gone
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 500
        while proc.poll() is None and time.monotonic() < end:
            seen()
            time.sleep(0.5)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(multinode.command("login", ["scancel", "-n", name]), capture_output=True)
        multinode.restore()  # slurmd of cn1 again, the host back in service
    log = (tmp_path / "cli.log").read_text()
    assert rc == 0, log
    assert f"dask cluster tls://{multinode.login_address}:" in log, log
    workers = _workers(tmp_path)
    assert {addr for addr, _ in workers.values()} >= {"10.77.0.11", "10.77.0.12"}, workers
    assert all(reg is None or reg.startswith(f"tls://{multinode.login_address}:") for _, reg in workers.values())
    assert "cn1" in before.values() and "cn2" in before.values(), before
    after = {job: node for job, node in placed.items() if job not in before}
    assert all(node == "cn2" for node in after.values()), f"jobs started after cn1 was lost: {after}"
    assert_same_as_reference(out, reference)


def test_rerun_after_a_driver_kill_computes_only_the_missing_chunks(multinode: MultiNode, reference,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "killed.zarr"
    name = job_name("mn-kill")
    run_env = {"DASK_EOCUBE__CLUSTER__SLURM__JOB_NAME": name,
               "DASK_EOCUBE__CLUSTER__SLURM__TLS_DIRECTORY": str(tmp_path / "tls"),
               "DASK_EOCUBE__CLUSTER__SLURM__DEATH_TIMEOUT": "10"}
    env = dict(os.environ, **run_env, DASK_EOCUBE__TESTING__CHUNK_DELAY="2")
    args = [*gapfill_args(out), *_slurm(multinode)]
    proc = multinode.eocube_popen(args, tmp_path, env)
    try:
        _wait(lambda: len(done_chunks(out, "sentinel2")) >= 3, 400, "three chunks written", proc)
    finally:
        proc.send_signal(signal.SIGKILL)  # the driver (client and scheduler) on the login host
        proc.wait(timeout=60)
    # its workers lose the scheduler and end (death timeout); count once they and their jobs are gone
    _wait_until_gone(multinode, name, tmp_path)
    written = len(done_chunks(out, "sentinel2"))
    assert 0 < written < CHUNKS, f"{written} chunks were written before the kill"
    done = multinode.eocube(args, cwd=tmp_path, env=dict(os.environ, **run_env), timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    computed, skipped = _report(done.stdout)
    assert computed + skipped == CHUNKS, done.stdout
    assert skipped >= written, f"{written} chunks were done before the rerun, it skipped only {skipped}"
    assert list((tmp_path / "tls").iterdir()) == [], "the killed run's certificate folder was not cleaned up"
    assert_same_as_reference(out, reference)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN on NDVI and CLP as a .pt2 program with its card."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    spec = ModelSpec(sources=(SourceSpec(name="s2", bands=("NDVI", "CLP")),), output=OutputSpec(bands=("smooth",)))
    return export_model(net, torch.rand(2, 2, 16, 16), tmp_path_factory.mktemp("model") / "smooth.pt2", spec=spec)


def _apply_args(model: Path, out: Path) -> list[str]:
    return ["apply", str(model), "--source", "sentinel2", "--out", str(out), "--chunk", "32", "--no-progress"]


def test_apply_across_hosts_equals_local(multinode: MultiNode, model: Path, tmp_path: Path) -> None:
    local = tmp_path / "local.zarr"
    done = cli([*_apply_args(model, local), "--cluster", "local", "--workers", "1", "--threads", "1"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "slurm.zarr"
    name = job_name("mn-apply")
    env = _env(EOCUBE__CLUSTER__SLURM__JOB_NAME=name, EOCUBE__CLUSTER__SLURM__TLS_DIRECTORY=str(tmp_path / "tls"))
    placed: dict[str, str] = {}  # the worker jobs run from their start until the run closes its cluster
    proc = multinode.eocube_popen([*_apply_args(model, out), *_slurm(multinode)], tmp_path, env)
    try:
        end = time.monotonic() + 500
        while proc.poll() is None and time.monotonic() < end:
            placed.update({job: node for job, (state, node) in multinode.jobs(name).items() if state == "RUNNING"})
            time.sleep(0.5)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "cli.log").read_text()
    assert rc == 0, log
    assert f"dask cluster tls://{multinode.login_address}:" in log and _report(log) == (CHUNKS, 0), log
    assert sorted(set(placed.values())) == ["cn1", "cn2"], f"worker jobs ran on {placed}"
    workers = _workers(tmp_path)
    registered = {addr for addr, reg in workers.values() if reg}
    assert registered and registered <= {"10.77.0.11", "10.77.0.12"}, workers
    assert list((tmp_path / "tls").iterdir()) == []
    np.testing.assert_array_equal(open_zarr(out).values, open_zarr(local).values)
