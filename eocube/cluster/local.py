"""A distributed LocalCluster sized to the machine."""

from __future__ import annotations

import os

import psutil
from distributed import LocalCluster

from .config import DEFAULT_DASHBOARD, loopback_address


def machine_size() -> tuple[int, int]:
    """Cores usable by this process and total memory in bytes."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores, int(psutil.virtual_memory().total)


def local_cluster(
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | int | None = None,
    *,
    processes: bool = True,
    dashboard_address: str | None = DEFAULT_DASHBOARD,
) -> LocalCluster:
    """Start a LocalCluster sized to the machine.

    Parameters
    ----------
    n_workers
        Worker processes; default: one per 2 cores (at least 1), so NumPy and
        torch threads have room.
    threads_per_worker
        Threads per worker; default: the cores divided among the workers.
    memory_limit
        Per-worker memory limit (``"4GB"`` or bytes); default: 80 % of the
        machine's memory divided among the workers.
    processes
        Workers as processes (True, default) or threads in this process.
    dashboard_address
        Where the dashboard listens: default 127.0.0.1:8787; an address without a host
        (``":0"``: a free port) is bound to 127.0.0.1 too, one with a host as given;
        None disables it.

    Returns
    -------
    distributed.LocalCluster
        The running cluster: scheduler, workers and dashboard listen on 127.0.0.1 only
        (unless ``dashboard_address`` names another host).
    """
    cores, memory = machine_size()
    n_workers = n_workers or max(1, cores // 2)
    threads_per_worker = threads_per_worker or max(1, cores // n_workers)
    if memory_limit is None:
        memory_limit = int(0.8 * memory / n_workers)
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        processes=processes,
        host="127.0.0.1",
        protocol="tcp://",  # also for processes=False (inproc would ignore the host)
        dashboard_address=loopback_address(dashboard_address),
    )
