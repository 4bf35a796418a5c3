"""A distributed LocalCluster sized to the machine."""

from __future__ import annotations

import logging
import os

import dask.config
import psutil
from distributed import LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from .config import DEFAULT_DASHBOARD, loopback_address

MALLOC_ENVIRON: dict[str, int | None] = {"MALLOC_TRIM_THRESHOLD_": None}
"""glibc malloc settings of the local workers, set by their nannies (None: unset, glibc's own behaviour).

distributed sets ``MALLOC_TRIM_THRESHOLD_=65536`` so that freed memory goes back to the OS.
Setting it also turns off glibc's dynamic mmap threshold: every array over 128 KiB is then
mapped fresh, its pages faulted in, and unmapped when freed, so the workers of a gap fill spend
much of their time in the kernel. Left unset, glibc raises its mmap threshold (up to 32 MiB) to
the size of the blocks freed, reuses their pages, and still trims free memory at the top of its
heaps beyond twice that threshold.

Measured with ``benchmarks/bench_malloc_trim.py`` (linear fill to Zarr of a 0.81 GB cube, 1 worker
x 2 threads, on this project's 2-core machine shared with other jobs; best of 3 alternating
rounds; the worker's resident memory after the write in brackets):

===========================  ==========================  ==========================
setting                      512² blocks (default tile)  256² blocks
===========================  ==========================  ==========================
distributed's 64 KiB trim    2.70 s, 2.27 s sys [0.40]   3.10 s, 2.13 s sys [0.40]
unset (chosen)               2.14 s, 1.63 s sys [0.40]   3.00 s, 1.91 s sys [0.40]
trim 128 MiB + mmap 64 MiB   2.23 s, 1.73 s sys [0.47]   3.28 s, 1.95 s sys [0.47]
===========================  ==========================  ==========================

Unset is 0.79x distributed's setting in 512² blocks and 0.97x in 256² blocks, with the same
memory; an earlier run on a busier machine (best of 2) measured 1.12x and 0.83x, so the gain is
up to a fifth and the memory stays flat. It applies only where the configuration still holds
distributed's default: a value set in dask's configuration
(``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_``) or exported in the shell wins.
"""

DISTRIBUTED_TRIM_DEFAULT = 65536
"""distributed's own ``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_``."""


def malloc_environ() -> dict[str, int | None]:
    """The dask configuration that gives the workers :data:`MALLOC_ENVIRON`; empty where the user set their own."""
    key = "distributed.nanny.pre-spawn-environ"
    configured = dask.config.get(key, {}) or {}
    if configured.get("MALLOC_TRIM_THRESHOLD_") != DISTRIBUTED_TRIM_DEFAULT or "MALLOC_MMAP_THRESHOLD_" in configured:
        return {}
    return {f"{key}.{name}": value for name, value in MALLOC_ENVIRON.items()}


IN_PROCESS_WHEN_ONE_WORKER = True
"""A local cluster of one worker runs it as threads of this process (unless ``processes=True``).

Measured with ``benchmarks/bench_threads_vs_cluster.py`` (``eocube gapfill``'s work on the bundled
sample tiled up, one worker x 2 threads, 2-core AMD EPYC shared with other jobs at load 9-13,
2026-12-06, three runs of alternating rounds, the cluster's start included): a worker process took
2.7-4.0x the time of dask's threaded scheduler at 1x-16x the sample (5.2-7.5 s to start the nanny
and the worker process, which then imports eocube, numba's kernels and zarr again: 1.4-2.4 CPU s
where the threads used 0.7-1.2); the worker's threads in this process 1.02-1.43x (start 0.3-1.5 s),
1.45-1.62x at 64x. A single worker process buys no parallelism over its threads; what it would buy
is its nanny restarting it past the memory limit, and the tasks of a gap fill or a model stream
blocks of a planned size. What the in-process cluster still costs is CPU in the scheduler's and
worker's bookkeeping (0.3-1.2 CPU s more than the threads for 20-370 tasks), hence
``eocube.cluster.threads-below``.
"""


PROFILE_INTERVAL = "100ms"
"""How often the workers of a local cluster sample their tasks' stacks for the dashboard's profile.

distributed samples every 10 ms, on the worker's event loop; with the worker's threads in this
process that loop shares the command's cores. Measured with ``benchmarks/bench_threads_vs_cluster.py``
(16x the sample, one worker x 2 threads in process, load 10-13): 1.51 CPU s with the 10 ms profiler
and 1.23 s without it in one run (3 rounds; dask's threads 1.04 s); in another (2 rounds) 1.41 s
with a 100 ms profiler and 1.44 s without (64x: 3.18 and 2.96 s): within the noise of a loaded
machine. Sampling every 100 ms keeps the dashboard's profile at a tenth of the samples. Applied only
where the configuration still holds distributed's 10 ms (``distributed.worker.profile.interval``); set another value, or
``distributed.worker.profile.enabled: false``, to choose.
"""

DISTRIBUTED_PROFILE_INTERVAL = 0.01
"""distributed's own ``distributed.worker.profile.interval``, in seconds."""


def profile_config() -> dict[str, str]:
    """The dask configuration that gives the workers :data:`PROFILE_INTERVAL`; empty where the user set their own."""
    from dask.utils import parse_timedelta

    key = "distributed.worker.profile.interval"
    if parse_timedelta(dask.config.get(key, "10ms"), default="ms") != DISTRIBUTED_PROFILE_INTERVAL:
        return {}
    return {key: PROFILE_INTERVAL}


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
    processes: bool | None = None,
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
        Workers as processes (True) or threads in this process (False). Default: threads in
        this process when there is one worker (machines of up to 3 cores, see
        :data:`IN_PROCESS_WHEN_ONE_WORKER`), processes otherwise.
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
    if processes is None:
        processes = n_workers > 1
    with dask.config.set({**malloc_environ(), **profile_config()}):  # read by nannies and workers as they start
        return _start(n_workers, threads_per_worker, memory_limit, processes, dashboard_address)


def _start(n_workers: int, threads_per_worker: int, memory_limit: str | int, processes: bool,
           dashboard_address: str | None) -> LocalCluster:
    """The LocalCluster of :func:`local_cluster`, on 127.0.0.1."""
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
