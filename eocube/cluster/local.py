"""A distributed LocalCluster sized to the machine."""

from __future__ import annotations

import logging
import os

import psutil
from distributed import LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

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


class QuietEOCubeErrors(logging.Filter):
    """Drop a worker's "Compute Failed" log record when the task raised an eocube error.

    Such an error reaches the caller as one exception whose message names the input at fault
    and the remedy; on a local cluster the workers share the caller's terminal, where their
    multi-line tracebacks of the same error would bury that line. Other errors, and every
    other worker message (memory, restarts), are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a "Compute Failed" record whose exception is an :class:`~eocube.errors.EOCubeError`."""
        if not str(record.msg).startswith("Compute Failed") or not isinstance(record.args, tuple):
            return True
        texts = [arg for arg in record.args if isinstance(arg, str)]
        return not any(text.split("(", 1)[0] in _eocube_error_names() for text in texts)


def _eocube_error_names() -> set[str]:
    """Class names of every eocube error (the worker logs the exception's repr, ``Name('...')``)."""
    from ..errors import EOCubeError

    names, todo = set(), [EOCubeError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def quiet_eocube_errors() -> None:
    """Install :class:`QuietEOCubeErrors` on this process's ``distributed.worker`` logger (once)."""
    worker_logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, QuietEOCubeErrors) for f in worker_logger.filters):
        worker_logger.addFilter(QuietEOCubeErrors())


class QuietEOCubeErrorsPlugin(WorkerPlugin):
    """Installs :class:`QuietEOCubeErrors` in each worker process of a local cluster."""

    name = "eocube-quiet-errors"

    def setup(self, worker: object) -> None:
        """Called by distributed in the worker process."""
        quiet_eocube_errors()
