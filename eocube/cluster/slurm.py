"""Dask workers in Slurm jobs, through dask-jobqueue's SLURMCluster.

This module only translates eocube's checked settings (:mod:`eocube.cluster.config`)
into dask-jobqueue arguments and adds what dask-jobqueue lacks:

* GPU jobs: ``--gres=gpu:N`` and one worker per GPU, each started with its own
  ``CUDA_VISIBLE_DEVICES`` (the i-th of the GPUs Slurm gave the job, or ``i`` when
  Slurm sets none) and advertising a ``GPU=1`` Dask resource;
* checks before anything is submitted: Slurm commands on PATH, and the job script
  accepted by ``sbatch --test-only`` (unknown partition, too much memory, GPUs the
  partition does not have...), with errors naming the setting;
* adaptive scaling always on (``jobs`` is minimum = maximum), so a worker job that
  ends (walltime, ``scancel``, preemption) is replaced by a new one;
* TLS by default: scheduler, workers and client speak ``tls://`` with certificates
  made for each run (``Security.temporary()``); the workers' certificate and key are
  written to a per-run 0700 folder the compute nodes see (``tls_directory``) and
  removed when the cluster closes. Without TLS anyone who reaches the scheduler's
  port could run code as the user;
* a scheduler address the compute nodes reach: unless the user sets one (``interface``,
  ``scheduler_host`` or dask-jobqueue's own settings), the scheduler listens on this
  host's address toward the partition's nodes (:func:`address_toward_nodes`), not on
  every interface with dask's guess (the route to the Internet, or loopback).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import weakref
from pathlib import Path
from typing import Any

import dask
from dask.utils import parse_timedelta
from dask_jobqueue import SLURMCluster
from dask_jobqueue.slurm import SLURMJob
from distributed.core import Status
from distributed.security import Security

from .config import DEFAULT_DASHBOARD, ClusterConfigError, is_default, setting_name

SLURM_COMMANDS = ("sbatch", "squeue", "scancel")
"""Slurm client commands a Slurm cluster needs on PATH."""

logger = logging.getLogger(__name__)

PLACEHOLDER_HOST = "<scheduler-address>:8786"
"""Scheduler host and port shown in a dry-run job script (the real ones are known once it starts)."""

TLS_DIRECTORY = "~/.eocube/tls"
"""Default parent of the per-run certificate folders (home directories are seen by compute nodes)."""

TLS_PLACEHOLDER_RUN = "RUN-FOLDER"
"""Name of the per-run certificate folder in a dry-run job script."""


class EOCubeSLURMJob(SLURMJob):
    """A Slurm worker job; with ``gpus > 0`` one worker per GPU, each on its own GPU.

    Parameters
    ----------
    *args, **kwargs
        Those of :class:`dask_jobqueue.slurm.SLURMJob`.
    gpus
        GPUs of the job. ``processes`` must equal it (set by :func:`job_kwargs`).
    """

    def __init__(self, *args: Any, gpus: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gpus = int(gpus)
        if self.gpus:
            self._command_template = per_gpu_commands(self._command_template, self.gpus)


def per_gpu_commands(command: str, gpus: int) -> str:
    """Turn a ``dask worker ... --nworkers N`` line into N workers, one per GPU.

    Each worker is named ``<name>-<i>`` (the names dask-jobqueue expects of a job
    with N processes) and sees only GPU ``i`` of the job through
    ``CUDA_VISIBLE_DEVICES``.

    Parameters
    ----------
    command
        The worker command dask-jobqueue built.
    gpus
        Number of GPUs (and workers) of the job.

    Returns
    -------
    str
        Shell lines for the job script.
    """
    tokens = command.split(" ")
    if "--nworkers" in tokens:
        at = tokens.index("--nworkers")
        del tokens[at:at + 2]
    at = tokens.index("--name") + 1
    tokens[at] = f"{tokens[at]}-$i"
    worker = " ".join(tokens)
    return "\n".join([
        f"# one Dask worker per GPU ({gpus}), each seeing only its own GPU",
        'IFS=, read -r -a EOCUBE_GPUS <<< "${CUDA_VISIBLE_DEVICES:-}"',
        f"for i in $(seq 0 {gpus - 1}); do",
        f'    CUDA_VISIBLE_DEVICES="${{EOCUBE_GPUS[$i]:-$i}}" {worker} &',
        "done",
        "wait",
    ])


class EOCubeSLURMCluster(SLURMCluster):
    """dask-jobqueue's SLURMCluster with :class:`EOCubeSLURMJob` workers that replaces lost jobs.

    When every worker of a job has left the scheduler (walltime, ``scancel``,
    preemption, node failure) and the job is still part of the cluster's plan,
    a new job is submitted in its place. Plain SpecCluster/Adaptive do not do
    this: the lost job stays in the plan, so the target looks met.
    """

    job_cls = EOCubeSLURMJob

    def __init__(self, *args: Any, run_directory: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # dask-jobqueue keeps the files of the workers' certificate and key open as _job_<key>
        handles = [getattr(self, f"_job_{key}") for key in ("ca_file", "cert", "key") if hasattr(self, f"_job_{key}")]
        self._run_directory = None if run_directory is None else Path(run_directory)
        self._remove_run_directory = weakref.finalize(self, _remove_tls_files, handles, self._run_directory)

    @property
    def run_directory(self) -> Path | None:
        """This run's folder of worker certificates (None without TLS); removed at close."""
        return self._run_directory

    async def _close(self) -> None:
        try:
            await super()._close()
        finally:
            self._remove_run_directory()

    def _update_worker_status(self, op: str, msg: Any) -> None:
        name = self.scheduler_info["workers"].get(msg, {}).get("name") if op == "remove" else None
        super()._update_worker_status(op, msg)
        job = self._job_of(str(name)) if name is not None else None
        if job is not None:
            job_id = getattr(self.workers.get(job), "job_id", None) or job
            # after SpecCluster's own clean-up of a lost single-worker job (same timeout)
            delay = parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout")) + 0.5
            asyncio.get_running_loop().call_later(delay, self._replace_if_lost, job, job_id)

    def _job_of(self, worker: str) -> str | None:
        for job, spec in self.worker_spec.items():
            if worker in {f"{job}{suffix}" for suffix in spec.get("group", [""])}:
                return str(job)
        return None

    def _replace_if_lost(self, job: str, job_id: str) -> None:
        if self.status != Status.running or job not in self.worker_spec:
            return  # closing, or the job was retired on purpose
        names = {f"{job}{suffix}" for suffix in self.worker_spec[job].get("group", [""])}
        if any(w.get("name") in names for w in self.scheduler_info["workers"].values()):
            return  # some of its workers are still there
        lost = self.workers.pop(job, None)
        if lost is not None:
            self._futures.add(asyncio.ensure_future(lost.close()))  # scancel whatever is left of it
        logger.warning("Slurm worker job %s ended (walltime, scancel or preemption); submitting a new one", job_id)
        self._correct_state()


def scheduler_options(settings: dict[str, Any], dashboard_address: str | None = DEFAULT_DASHBOARD) -> dict[str, Any]:
    """Options of the scheduler, from defaults, dask-jobqueue's configuration and eocube's settings.

    Priority, lowest first: the loopback dashboard (:data:`DEFAULT_DASHBOARD`); dask's
    ``jobqueue.slurm.scheduler-options`` (e.g. ``port``, ``dashboard_address``,
    ``interface``); ``scheduler_host`` and a ``dashboard_address`` given by the caller.

    Parameters
    ----------
    settings
        Checked Slurm settings (:func:`eocube.cluster.config.resolve`).
    dashboard_address
        Where the dashboard listens (None: no dashboard; the default yields to the configuration).

    Returns
    -------
    dict
        Keyword arguments of the scheduler (``scheduler_options`` of dask-jobqueue).

    Raises
    ------
    ClusterConfigError
        The configured scheduler protocol is not ``tls://`` while TLS is on.
    """
    options: dict[str, Any] = {"dashboard_address": DEFAULT_DASHBOARD}
    options.update(dask.config.get("jobqueue.slurm.scheduler-options", None) or {})
    if not is_default(dashboard_address):
        options["dashboard_address"] = dashboard_address
    if settings["scheduler_host"]:
        options["host"] = settings["scheduler_host"]
    protocol = options.get("protocol")
    if settings["tls"] and protocol not in (None, "tls", "tls://"):
        raise ClusterConfigError(
            f"jobqueue.slurm.scheduler-options sets protocol {protocol!r} but {setting_name('slurm', 'tls')} is "
            "true (the scheduler speaks tls://): remove that protocol, or turn TLS off"
        )
    return options


def job_kwargs(settings: dict[str, Any], dashboard_address: str | None = DEFAULT_DASHBOARD) -> dict[str, Any]:
    """Keyword arguments of :class:`EOCubeSLURMCluster` from checked Slurm settings (TLS not included).

    Parameters
    ----------
    settings
        Output of :func:`eocube.cluster.config.resolve` for ``"slurm"``.
    dashboard_address
        Where the scheduler's dashboard listens (see :func:`scheduler_options`).

    Returns
    -------
    dict
        Arguments for the cluster (job arguments included). :func:`slurm_cluster`
        adds ``security`` and ``shared_temp_directory`` when TLS is on.
    """
    s = settings
    directives = [f"--{key}={s[key]}" for key in ("qos", "constraint") if s.get(key)]
    directives += list(s["job_extra_directives"])
    worker_args = list(s["worker_extra_args"])
    if s["gpus"]:
        gres = f"gpu:{s['gpu_type']}:{s['gpus']}" if s["gpu_type"] else f"gpu:{s['gpus']}"
        directives.append(f"--gres={gres}")
        worker_args += ["--resources", "GPU=1"]
    kwargs: dict[str, Any] = {
        "queue": s["queue"],
        "account": s["account"],
        "walltime": s["walltime"],
        "cores": s["cores"],
        "memory": str(s["memory"]),
        "processes": s["processes"],
        "job_name": s["job_name"],
        "job_script_prologue": list(s["prologue"]),
        "job_extra_directives": directives,
        "worker_extra_args": worker_args,
        "local_directory": s["local_directory"],
        "interface": s["interface"],
        "log_directory": s["log_directory"],
        "death_timeout": s["death_timeout"],
        "scheduler_options": scheduler_options(s, dashboard_address),
        "gpus": s["gpus"],
    }
    if s["python"]:
        kwargs["python"] = s["python"]
    return {k: v for k, v in kwargs.items() if v is not None}


def job_script(settings: dict[str, Any], address: str | None = None) -> str:
    """The job script one worker job would run, without starting a scheduler or submitting.

    With TLS on, the script shows the ``--tls-*`` options with the paths the
    certificate files will have (the per-run folder is ``RUN-FOLDER``); no key
    material is made or printed.

    Parameters
    ----------
    settings
        Checked Slurm settings (:func:`eocube.cluster.config.resolve`).
    address
        Scheduler address written into the script (default: a placeholder with
        the protocol, ``tls://`` or ``tcp://``).

    Returns
    -------
    str
        The script, as ``sbatch`` would receive it.
    """
    kwargs = job_kwargs(settings)
    kwargs.pop("scheduler_options")
    if kwargs.get("log_directory"):
        # the job class creates the folder; a dry run must not touch the disk
        log_directory = kwargs.pop("log_directory")
        kwargs["job_extra_directives"] = [
            f"-e {log_directory}/{settings['job_name'] or 'worker'}-%J.err",
            f"-o {log_directory}/{settings['job_name'] or 'worker'}-%J.out",
        ] + kwargs["job_extra_directives"]
    protocol = "tls://" if settings["tls"] else "tcp://"
    if settings["tls"]:
        kwargs["protocol"] = protocol
        kwargs["security"] = placeholder_security(tls_base_directory(settings) / TLS_PLACEHOLDER_RUN)
    address = address or protocol + PLACEHOLDER_HOST
    job = EOCubeSLURMJob(address, name=f"{settings['job_name'] or 'worker'}-0", config_name="slurm", **kwargs)
    return job.job_script()


def placeholder_security(folder: str | os.PathLike[str]) -> Security:
    """A :class:`~distributed.security.Security` naming certificate files in ``folder``, for display only."""
    return Security(
        tls_ca_file=f"{folder}/ca.pem",
        tls_worker_cert=f"{folder}/worker-cert.pem",
        tls_worker_key=f"{folder}/worker-key.pem",
        require_encryption=True,
    )


def tls_base_directory(settings: dict[str, Any]) -> Path:
    """Parent of the per-run certificate folders (not created).

    ``tls_directory`` if set, else dask-jobqueue's ``jobqueue.slurm.shared-temp-directory``,
    else :data:`TLS_DIRECTORY`; ``~`` and ``$VARS`` expanded.
    """
    base = settings.get("tls_directory") or dask.config.get("jobqueue.slurm.shared-temp-directory", None)
    return Path(os.path.expandvars(str(base or TLS_DIRECTORY))).expanduser().absolute()


_RUN_NAME = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)-[^-]+$")


def tls_run_directory(settings: dict[str, Any]) -> Path:
    """Make this run's private folder for the workers' certificate files.

    The folder is ``<base>/<host>-<pid>-<random>``, mode 0700 (the files in it are
    0600), under :func:`tls_base_directory`. Folders that earlier runs on this host
    left behind (their process is gone, e.g. killed at walltime) are removed first.

    Parameters
    ----------
    settings
        Checked Slurm settings.

    Returns
    -------
    Path
        The new, empty folder.

    Raises
    ------
    ClusterConfigError
        The folder cannot be made.
    """
    base = tls_base_directory(settings)
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        _remove_stale_runs(base)
        return Path(tempfile.mkdtemp(prefix=f"{socket.gethostname()}-{os.getpid()}-", dir=base))
    except OSError as exc:
        raise ClusterConfigError(
            f"cannot make a folder for the workers' TLS certificates under {base} ({exc}): set "
            f"{setting_name('slurm', 'tls_directory')} to a folder of yours that the compute nodes see"
        ) from exc


def _remove_stale_runs(base: Path) -> None:
    """Remove run folders in ``base`` made on this host by processes that no longer exist."""
    host = socket.gethostname()
    for folder in base.iterdir():
        m = _RUN_NAME.match(folder.name)
        if folder.is_dir() and m and m.group("host") == host and not _pid_alive(int(m.group("pid"))):
            shutil.rmtree(folder, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _remove_tls_files(handles: list[Any], folder: Path | None) -> None:
    """Close dask-jobqueue's certificate files (it deletes them) and remove the run folder."""
    for handle in handles:
        try:
            handle.close()
        except OSError:
            pass
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def check_commands() -> None:
    """Raise :class:`ClusterConfigError` when the Slurm client commands are not on PATH."""
    missing = [cmd for cmd in SLURM_COMMANDS if shutil.which(cmd) is None]
    if missing:
        raise ClusterConfigError(
            f"--cluster slurm needs the Slurm commands {', '.join(missing)}, not found on PATH: run on a "
            "login node of the Slurm cluster (or 'module load slurm'), or use --cluster local"
        )


def check_job(settings: dict[str, Any]) -> None:
    """Ask Slurm whether it would accept the worker job (``sbatch --test-only``), submitting nothing.

    Raises
    ------
    ClusterConfigError
        Slurm refuses the job; the message quotes Slurm and names the likely setting.
    """
    check_commands()
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as fh:
        fh.write(job_script(settings))
    try:
        done = subprocess.run(["sbatch", "--test-only", fh.name], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise ClusterConfigError("sbatch --test-only did not answer within 60 s: is slurmctld running? (try 'sinfo')") from exc
    finally:
        os.unlink(fh.name)
    if done.returncode == 0:
        return
    said = " ".join((done.stderr or done.stdout).split())
    lowered = said.lower()
    if "partition" in lowered:
        partitions = _partitions()
        hint = (f"{setting_name('slurm', 'queue')}={settings['queue']!r} is not a partition of this Slurm cluster"
                + (f" (partitions: {', '.join(partitions)})" if partitions else ""))
    elif "account" in lowered:
        hint = f"check {setting_name('slurm', 'account')}={settings['account']!r} ('sacctmgr show assoc user=$USER')"
    elif "time limit" in lowered:
        hint = (f"{setting_name('slurm', 'walltime')}={settings['walltime']!r} exceeds the partition's limit "
                "('sinfo -o \"%P %l\"')")
    elif "node configuration is not available" in lowered or "memory" in lowered or "gres" in lowered:
        hint = (f"no node of the partition has {setting_name('slurm', 'cores')}={settings['cores']}, "
                f"{setting_name('slurm', 'memory')}={settings['memory']!r}, "
                f"{setting_name('slurm', 'gpus')}={settings['gpus']}: ask for less ('sinfo -o \"%P %c %m %G\"')")
    else:
        hint = "check the job script with --dry-run"
    raise ClusterConfigError(f"Slurm would refuse the worker job: {said}; {hint}")


def _partitions() -> list[str]:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return sorted({line.strip() for line in out.splitlines() if line.strip()})


def _chooses_scheduler_address(settings: dict[str, Any], options: dict[str, Any]) -> bool:
    """Whether the user set where the scheduler listens (eocube's or dask-jobqueue's settings)."""
    return bool(settings["interface"] or settings["scheduler_host"] or "host" in options or "interface" in options
                or dask.config.get("jobqueue.slurm.interface", None))


def _node_addresses(queue: str | None) -> list[str]:
    """The NodeAddr of the nodes of partition ``queue`` (all partitions when None), as ``sinfo`` lists them."""
    cmd = ["sinfo", "-h", "-N", "-o", "%o"] + (["-p", queue] if queue else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return list(dict.fromkeys(line.strip() for line in out.splitlines() if line.strip()))


def _local_addresses() -> set[str]:
    """This host's own IP addresses (all interfaces)."""
    import psutil

    return {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)}


def _source_toward(node: str) -> tuple[str, str] | None:
    """(this host's address used to reach ``node``, the node's address), from a route lookup; None if unknown.

    A UDP socket is connected, which only asks the kernel for the route: no packet is sent.
    """
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(node, 6818, proto=socket.IPPROTO_UDP)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(sockaddr)
            return sock.getsockname()[0], sockaddr[0]
    except (OSError, UnicodeError, IndexError):
        return None


MAX_NODES_ASKED = 16
"""Compute nodes (spread over the partition's list) whose route is looked up to choose the scheduler address."""


def address_toward_nodes(queue: str | None) -> str | None:
    """The address of this host that the compute nodes of ``queue`` reach it by, for the scheduler to listen on.

    Looks up (without sending anything) the route from this host to the nodes' addresses
    (``NodeAddr`` in ``sinfo``). Nodes that are this host itself are left aside; if no
    other node remains (a single-node Slurm), the answer is ``127.0.0.1``. Otherwise it is
    the source address of those routes (the most common one if they differ), e.g. the
    login node's address on the cluster's internal network, rather than the address of
    the route to the Internet that dask would use.

    Parameters
    ----------
    queue
        Partition of the worker jobs (None: all partitions).

    Returns
    -------
    str or None
        The address; None when the nodes or their routes are unknown.
    """
    nodes = _node_addresses(queue)
    if len(nodes) > MAX_NODES_ASKED:
        step = len(nodes) / MAX_NODES_ASKED
        nodes = [nodes[int(i * step)] for i in range(MAX_NODES_ASKED)]
    local = _local_addresses()
    sources: list[str] = []
    known = False
    for node in nodes:
        found = _source_toward(node)
        if found is None:
            continue
        known = True
        source, target = found
        if target in local or target.startswith("127.") or target == "::1":
            continue  # the node is this host
        sources.append(source)
    if not known:
        return None
    if not sources:
        return "127.0.0.1"
    return max(sorted(set(sources)), key=sources.count)


def slurm_cluster(settings: dict[str, Any], dashboard_address: str | None = DEFAULT_DASHBOARD) -> EOCubeSLURMCluster:
    """Start a scheduler here and keep ``jobs`` (or adaptive min..max) Slurm worker jobs.

    Parameters
    ----------
    settings
        Checked Slurm settings (:func:`eocube.cluster.config.resolve`).
    dashboard_address
        Where the scheduler's dashboard listens (see :func:`scheduler_options`).

    Returns
    -------
    EOCubeSLURMCluster
        The cluster; its jobs are submitted in the background. Jobs that end are
        replaced by adaptive scaling between ``adapt_min`` and ``adapt_max`` jobs.
        With TLS (the default) its ``security`` is needed by any client:
        ``Client(cluster)`` uses it.

    Raises
    ------
    ClusterConfigError
        Slurm commands missing, Slurm would refuse the job, or the certificate folder
        cannot be made.
    """
    check_job(settings)
    kwargs = job_kwargs(settings, dashboard_address)
    options = kwargs["scheduler_options"]
    if not _chooses_scheduler_address(settings, options):
        host = address_toward_nodes(settings["queue"])
        if host is None:
            logger.warning(
                "cannot tell this host's address toward the compute nodes (sinfo gave no node address that "
                "resolves): the scheduler listens on all interfaces and tells the workers dask's guess; set %s "
                "(e.g. ib0) or %s to the address the nodes reach this host by",
                setting_name("slurm", "interface"), setting_name("slurm", "scheduler_host"))
        else:
            options["host"] = host
            logger.info("scheduler listens on %s, this host's address toward the compute nodes (set %s or %s to "
                        "choose)", host, setting_name("slurm", "interface"), setting_name("slurm", "scheduler_host"))
    if settings["tls"]:
        run_directory = tls_run_directory(settings)
        kwargs.update(security=Security.temporary(), shared_temp_directory=str(run_directory),
                      run_directory=run_directory)
    else:
        logger.warning(
            "TLS is off (%s=false): the Dask scheduler accepts unauthenticated connections, and anyone "
            "who reaches its port can run code as you", setting_name("slurm", "tls"))
    try:
        cluster = EOCubeSLURMCluster(**kwargs)
    except BaseException:
        if settings["tls"]:
            shutil.rmtree(kwargs["run_directory"], ignore_errors=True)
        raise
    cluster.adapt(minimum_jobs=settings["adapt_min"], maximum_jobs=settings["adapt_max"])
    return cluster
