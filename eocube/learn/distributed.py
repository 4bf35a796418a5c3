"""Multi-process training set-up: torchrun or Slurm (one task per GPU), gloo on CPU, NCCL on GPU."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a (possibly single-process) training job."""

    rank: int = 0
    """Global rank."""
    local_rank: int = 0
    """Rank on this node (selects the GPU)."""
    world_size: int = 1
    """Number of processes."""
    launcher: str = "none"
    """``"torchrun"``, ``"slurm"`` or ``"none"``."""

    @property
    def distributed(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints and shows progress."""
        return self.rank == 0


def first_slurm_host(nodelist: str) -> str:
    """First host name of a Slurm node list (``"gpu[03-05,9],cpu1"`` -> ``"gpu03"``).

    Parameters
    ----------
    nodelist
        ``SLURM_JOB_NODELIST`` / ``SLURM_NODELIST``.

    Returns
    -------
    str
        The first host (the rendezvous host of the job).
    """
    first = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if first is None:
        raise ValueError(f"cannot parse Slurm node list {nodelist!r}: set MASTER_ADDR explicitly")
    prefix, _, ranges = first.groups()
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def detect(environ: dict[str, str] | None = None) -> DistEnv:
    """Read the launcher's environment variables.

    torchrun sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (and the rendezvous
    address); ``srun`` sets ``SLURM_NTASKS``/``SLURM_PROCID``/``SLURM_LOCALID``,
    from which ``MASTER_ADDR`` (first host of the job) and ``MASTER_PORT``
    (derived from the job id) are filled in when not given.

    Parameters
    ----------
    environ
        The environment (``os.environ`` by default); updated with
        ``MASTER_ADDR``/``MASTER_PORT`` for Slurm.

    Returns
    -------
    DistEnv
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return DistEnv(int(env["RANK"]), int(env.get("LOCAL_RANK", "0")), int(env["WORLD_SIZE"]), "torchrun")
    ntasks = int(env.get("SLURM_NTASKS", "1") or 1)
    if ntasks > 1 and "SLURM_PROCID" in env:
        env.setdefault("MASTER_ADDR", first_slurm_host(env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", "127.0.0.1"))))
        env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
        return DistEnv(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", "0")), ntasks, "slurm")
    return DistEnv()


def pick_device(preference: str, env: DistEnv) -> torch.device:
    """``auto`` -> this rank's GPU when CUDA is present, else the CPU."""
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but CUDA is not available: use device: auto or cpu")
    index = env.local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init(env: DistEnv, device: torch.device) -> None:
    """Join the process group (gloo on CPU, NCCL on GPU) when several processes train."""
    if env.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://", rank=env.rank, world_size=env.world_size)


def shutdown(env: DistEnv) -> None:
    """Leave the process group."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    """Wait for every process (no-op when alone)."""
    if env.distributed and dist.is_initialized():
        dist.barrier()
