"""A local cluster sized to the machine by default; an existing scheduler by address."""

from __future__ import annotations

import pytest
from distributed import LocalCluster

import eocube
from eocube.cluster import close, connect, describe
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
    client = connect(n_workers=1, threads_per_worker=1, dashboard_address=":0")
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
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["caught", "StoreError", "caught", "ZeroDivisionError"]
    assert "StoreError" not in proc.stderr and "X.zarr" not in proc.stderr
    assert "Compute Failed" in proc.stderr and "ZeroDivisionError" in proc.stderr
