"""Make or join a Dask cluster from one setting."""

from __future__ import annotations

from typing import Any

from distributed import Client

from ..errors import ClusterError
from .local import local_cluster


def connect(
    cluster: str = "local",
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | int | None = None,
    processes: bool = True,
    dashboard_address: str | None = ":8787",
    timeout: float = 30,
    **options: Any,
) -> Client:
    """Start or join a Dask cluster and return its client.

    Parameters
    ----------
    cluster
        ``"local"`` (default): a LocalCluster sized to the machine.
        A scheduler address (``"tcp://host:8786"``): join that cluster.
    n_workers, threads_per_worker, memory_limit, processes, dashboard_address
        Sizing of the local cluster (see :func:`eocube.cluster.local.local_cluster`).
    timeout
        Seconds to wait for an existing scheduler.
    **options
        Unused by ``"local"``; reserved for other cluster kinds.

    Returns
    -------
    distributed.Client
        Connected client (also the default scheduler). Stop it, and a local
        cluster it started, with :func:`close`.

    Raises
    ------
    ClusterError
        The scheduler could not be reached, or the cluster kind is unknown.
    """
    if cluster == "local":
        lc = local_cluster(n_workers, threads_per_worker, memory_limit,
                           processes=processes, dashboard_address=dashboard_address)
        return Client(lc)
    if "://" in cluster or cluster.count(":") == 1:
        try:
            return Client(cluster, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {cluster} within {timeout:g} s ({exc}): "
                "check that it is running and the address/port are right, or use --cluster local"
            ) from exc
    raise ClusterError(f"unknown cluster {cluster!r}: use 'local' or a scheduler address such as tcp://127.0.0.1:8786")


def close(client: Client) -> None:
    """Close a client and, for a cluster started by :func:`connect`, the cluster too."""
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
    return (
        f"dask cluster {client.scheduler.address}: {len(workers)} workers, {threads} threads, "
        f"{memory / 2**30:.1f} GiB; dashboard {client.dashboard_link}"
    )
