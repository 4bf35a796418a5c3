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
