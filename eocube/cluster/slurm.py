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
  ends (walltime, ``scancel``, preemption) is replaced by a new one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import tempfile
from typing import Any

import dask
from dask.utils import parse_timedelta
from distributed.core import Status
from dask_jobqueue import SLURMCluster
from dask_jobqueue.slurm import SLURMJob

from .config import ClusterConfigError, setting_name

SLURM_COMMANDS = ("sbatch", "squeue", "scancel")
"""Slurm client commands a Slurm cluster needs on PATH."""

logger = logging.getLogger(__name__)

PLACEHOLDER_ADDRESS = "tcp://<scheduler-address>:8786"
"""Scheduler address shown in a dry-run job script (the real one is known once it starts)."""


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


def job_kwargs(settings: dict[str, Any], dashboard_address: str | None = ":8787") -> dict[str, Any]:
    """Keyword arguments of :class:`EOCubeSLURMCluster` from checked Slurm settings.

    Parameters
    ----------
    settings
        Output of :func:`eocube.cluster.config.resolve` for ``"slurm"``.
    dashboard_address
        Where the scheduler's dashboard listens (None: no dashboard).

    Returns
    -------
    dict
        Arguments for the cluster (job arguments included).
    """
    s = settings
    directives = list(s["job_extra_directives"])
    worker_args = list(s["worker_extra_args"])
    if s["gpus"]:
        gres = f"gpu:{s['gpu_type']}:{s['gpus']}" if s["gpu_type"] else f"gpu:{s['gpus']}"
        directives.append(f"--gres={gres}")
        worker_args += ["--resources", "GPU=1"]
    scheduler_options: dict[str, Any] = {"dashboard_address": dashboard_address}
    if s["scheduler_host"]:
        scheduler_options["host"] = s["scheduler_host"]
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
        "scheduler_options": scheduler_options,
        "gpus": s["gpus"],
    }
    if s["python"]:
        kwargs["python"] = s["python"]
    return {k: v for k, v in kwargs.items() if v is not None}


def job_script(settings: dict[str, Any], address: str = PLACEHOLDER_ADDRESS) -> str:
    """The job script one worker job would run, without starting a scheduler or submitting.

    Parameters
    ----------
    settings
        Checked Slurm settings (:func:`eocube.cluster.config.resolve`).
    address
        Scheduler address written into the script.

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
    job = EOCubeSLURMJob(address, name=f"{settings['job_name'] or 'worker'}-0", config_name="slurm", **kwargs)
    return job.job_script()


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
        hint = f"{setting_name('slurm', 'walltime')}={settings['walltime']!r} exceeds the partition's limit ('sinfo -o \"%P %l\"')"
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


def slurm_cluster(settings: dict[str, Any], dashboard_address: str | None = ":8787") -> EOCubeSLURMCluster:
    """Start a scheduler here and keep ``jobs`` (or adaptive min..max) Slurm worker jobs.

    Parameters
    ----------
    settings
        Checked Slurm settings (:func:`eocube.cluster.config.resolve`).
    dashboard_address
        Where the scheduler's dashboard listens.

    Returns
    -------
    EOCubeSLURMCluster
        The cluster; its jobs are submitted in the background. Jobs that end are
        replaced by adaptive scaling between ``adapt_min`` and ``adapt_max`` jobs.

    Raises
    ------
    ClusterConfigError
        Slurm commands missing, or Slurm would refuse the job.
    """
    check_job(settings)
    cluster = EOCubeSLURMCluster(**job_kwargs(settings, dashboard_address))
    cluster.adapt(minimum_jobs=settings["adapt_min"], maximum_jobs=settings["adapt_max"])
    return cluster
