"""Make or join a Dask cluster from one setting: local, Slurm, or a scheduler address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distributed import Client

from ..errors import ClusterError
from .config import DEFAULT_DASHBOARD, resolve
from .local import QuietEOCubeErrorsPlugin, local_cluster, machine_size


def connect(
    cluster: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | int | None = None,
    processes: bool | int | None = None,
    dashboard_address: str | None = DEFAULT_DASHBOARD,
    timeout: float | None = None,
    config_file: str | Path | None = None,
    **settings: Any,
) -> Client:
    """Start or join a Dask cluster and return its client.

    Parameters
    ----------
    cluster
        ``"local"``: a LocalCluster sized to the machine. ``"slurm"``: a scheduler
        here and Dask workers in Slurm jobs (dask-jobqueue). A scheduler address
        (``"tcp://host:8786"``): join that cluster. None (default): the setting
        ``eocube.cluster.kind`` of dask's configuration (``"local"`` unless changed,
        e.g. by ``DASK_EOCUBE__CLUSTER__KIND=slurm``).
    n_workers, threads_per_worker, memory_limit
        Local cluster sizing (see :func:`eocube.cluster.local.local_cluster`).
    processes
        Local: workers as processes (True) or threads in this process (False); default:
        threads when the cluster has one worker (up to 3 cores), processes otherwise. Slurm:
        Dask worker processes per job.
    dashboard_address
        Where the dashboard listens. Default: 127.0.0.1:8787 (for Slurm, the
        ``dashboard_address`` of dask's ``jobqueue.slurm.scheduler-options`` when set).
        Local: an address without a host (``":0"``: a free port) is bound to
        127.0.0.1. None: no dashboard.
    timeout
        Seconds to wait for an existing scheduler (default: ``eocube.cluster.timeout``).
    config_file
        A YAML file in the layout of ``eocube/cluster/eocube.yaml`` (CLI ``--cluster-config``).
    **settings
        Slurm settings (see ``eocube/cluster/eocube.yaml``): ``queue``, ``account``,
        ``walltime``, ``cores``, ``memory``, ``gpus``, ``gpu_type``, ``jobs``,
        ``adapt_min``, ``adapt_max``, ``prologue``, ``local_directory``, ``interface``
        (of scheduler and workers, e.g. ``ib0``), ``scheduler_host`` (the address the
        scheduler listens on; with neither, this host's address toward the partition's
        nodes, see :func:`eocube.cluster.slurm.address_toward_nodes`), ``log_directory``, ``job_name``, ``job_extra_directives``,
        ``worker_extra_args``, ``death_timeout``, ``python``, ``tls`` (default True:
        scheduler, workers and client use TLS with per-run certificates; False: plain
        TCP, which lets anyone who reaches the scheduler run code as you),
        ``tls_directory`` (parent of the per-run certificate folder, default
        ``~/.eocube/tls``). dask's ``jobqueue.slurm.scheduler-options`` are honoured.
        None values are ignored.

    Returns
    -------
    distributed.Client
        Connected client (also the default scheduler). Stop it, and a cluster it
        started (Slurm jobs included, and the TLS certificate folder), with :func:`close`.
        A local cluster listens on 127.0.0.1 only; a Slurm scheduler on ``tls://``.

    Raises
    ------
    ClusterConfigError
        A setting is unknown or invalid, Slurm commands are missing, or Slurm
        would refuse the worker job; the message names the setting.
    ClusterError
        The scheduler could not be reached.
    """
    kind, s = _resolve(cluster, config_file, n_workers=n_workers, threads_per_worker=threads_per_worker,
                       memory_limit=memory_limit, processes=processes, **settings)
    if kind == "local":
        lc = local_cluster(s["n_workers"], s["threads_per_worker"], s["memory_limit"],
                           processes=s["processes"], dashboard_address=dashboard_address)
        client = Client(lc)
        client.register_plugin(QuietEOCubeErrorsPlugin())
        return client
    if kind == "slurm":
        from .slurm import slurm_cluster

        return Client(slurm_cluster(s, dashboard_address))
    wait = s["timeout"] if timeout is None else timeout
    try:
        return Client(s["address"], timeout=wait)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {s['address']} (--cluster) within {wait:g} s ({exc}): "
            "check that it is running and the address/port are right, or use --cluster local"
        ) from exc


def dry_run(cluster: str | None = None, *, config_file: str | Path | None = None, **settings: Any) -> str:
    """What :func:`connect` would start, without starting or submitting anything.

    Takes the arguments of :func:`connect`. For Slurm it is the job script that
    each worker job would run (the scheduler address is a placeholder).

    Returns
    -------
    str
        The job script (Slurm) or a one-line description (local, address).

    Raises
    ------
    ClusterConfigError
        A setting is unknown or invalid.
    """
    settings.pop("dashboard_address", None)
    settings.pop("timeout", None)
    kind, s = _resolve(cluster, config_file, **settings)
    if kind == "slurm":
        from .slurm import job_script

        adaptive = (f"{s['adapt_min']} to {s['adapt_max']} jobs (adaptive)" if s["adapt_min"] != s["adapt_max"]
                    else f"{s['adapt_max']} job(s), replaced when they end")
        head = (f"# eocube dry run: Dask scheduler in this process, workers in {adaptive}; "
                f"{s['processes']} worker(s) per job; {_tls_line(s)}.\n")
        head += "".join(f"# chosen from --gpus: {line}\n" for line in s.get("derived", []))
        head += "# Script of one job:\n"
        return head + job_script(s)
    if kind == "local":
        cores, memory = machine_size()
        workers = s["n_workers"] or max(1, cores // 2)
        threads = s["threads_per_worker"] or max(1, cores // workers)
        limit = s["memory_limit"] or f"{0.8 * memory / workers / 2**30:.1f}GiB"
        where = "worker processes" if (workers > 1 if s["processes"] is None else s["processes"]) else (
            "worker threads in this process")
        return (f"eocube dry run: local Dask cluster, {workers} workers x {threads} threads, {limit} each, "
                f"{where}, on 127.0.0.1")
    return f"eocube dry run: would join the Dask scheduler at {s['address']}"


def _tls_line(settings: dict[str, Any]) -> str:
    """How scheduler and workers will talk, for a dry run."""
    if not settings["tls"]:
        return "TLS OFF (eocube.cluster.slurm.tls=false): anyone who reaches the scheduler can run code as you"
    from .slurm import TLS_PLACEHOLDER_RUN, tls_base_directory

    folder = tls_base_directory(settings) / TLS_PLACEHOLDER_RUN
    return f"TLS on, certificates made for this run, the workers' files in {folder} (0700, removed at the end)"


def _resolve(cluster: str | None, config_file: str | Path | None, **overrides: Any) -> tuple[str, dict[str, Any]]:
    kind = cluster
    if kind not in (None, "local") and overrides.get("processes") is True:
        overrides["processes"] = None  # the local default leaking into another kind
    return resolve(kind, overrides, config_file)


def close(client: Client) -> None:
    """Close a client and, for a cluster started by :func:`connect`, the cluster too (Slurm jobs cancelled)."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def describe(client: Client) -> str:
    """One line saying where the work runs and where the dashboard is."""
    info = client.scheduler_info()
    workers = info.get("workers", {})
    threads = sum(w.get("nthreads", 0) for w in workers.values())
    memory = sum(w.get("memory_limit", 0) or 0 for w in workers.values())
    where = f"dask cluster {client.scheduler.address}"
    cluster = getattr(client, "cluster", None)
    jobs = getattr(cluster, "workers", None) if type(cluster).__name__.endswith("SLURMCluster") else None
    if jobs is not None:
        ids = [str(getattr(j, "job_id", "?")) for j in jobs.values()]
        where += f" with Slurm worker jobs {', '.join(ids) or '(being submitted)'}"
    return (
        f"{where}: {len(workers)} workers, {threads} threads, "
        f"{memory / 2**30:.1f} GiB; dashboard {dashboard_link(client) or 'off'}"
    )


def dashboard_link(client: Client) -> str:
    """The dashboard's address where it really listens ("" without a dashboard).

    dask builds ``client.dashboard_link`` from the scheduler's host, but a Slurm
    scheduler listens on the address the compute nodes reach while its dashboard
    stays on 127.0.0.1 (:data:`~eocube.cluster.config.DEFAULT_DASHBOARD`): for a
    scheduler in this process, the address its dashboard server is bound to is used.
    """
    from distributed.utils import format_dashboard_link

    server = getattr(getattr(getattr(client, "cluster", None), "scheduler", None), "http_server", None)
    host, port = getattr(server, "address", None), getattr(server, "port", None)
    if not host or not port:
        return client.dashboard_link
    if host in ("0.0.0.0", "::", ""):  # all interfaces: the scheduler's host is one of them
        return client.dashboard_link
    return format_dashboard_link(f"[{host}]" if ":" in host else host, port)
