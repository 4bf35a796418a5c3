"""Multi-process training set-up: torchrun or Slurm (one task per GPU or per node), gloo on CPU, NCCL on GPU.

Across hosts: the rendezvous is ``MASTER_ADDR:MASTER_PORT`` (under Slurm, the job's first host
and a port derived from the job id, unless given); gloo listens on the interface that routes
toward that address when this host's own name resolves to a loopback address (as Debian's
``127.0.1.1 <hostname>`` line makes it: other hosts could not reach it); and the loss of a step
is the mean over the whole global batch (:func:`global_batch_loss`), so that N processes with
batch B train as one process with batch N x B does.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..models import DeviceError
from .errors import LearnError

log = logging.getLogger(__name__)


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
        raise LearnError(f"cannot parse Slurm node list {nodelist!r}: set MASTER_ADDR explicitly")
    prefix, _, ranges = first.groups()
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def detect(environ: dict[str, str] | None = None) -> DistEnv:
    """Read the launcher's environment variables.

    torchrun sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (and the rendezvous
    address); ``srun`` sets ``SLURM_STEP_NUM_TASKS`` (or ``SLURM_NTASKS``)/``SLURM_PROCID``/
    ``SLURM_LOCALID`` and ``SLURM_STEP_ID``, from which ``MASTER_ADDR`` (first host of the job)
    and ``MASTER_PORT`` (derived from the job id) are filled in when not given. The batch
    script of a job of several tasks has ``SLURM_NTASKS`` and ``SLURM_PROCID=0`` but no step
    id: a process started there without ``srun`` trains alone (with a warning) instead of
    waiting for ranks that nothing starts.

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
    ntasks = int(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or 1)
    if ntasks > 1 and "SLURM_PROCID" in env and "SLURM_STEP_ID" not in env:
        log.warning("this Slurm job has %d tasks, but this process was not started by srun (no SLURM_STEP_ID): "
                    "training in this one process; for one DDP rank per task, run `srun eocube train ...`", ntasks)
        return DistEnv()
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
        raise DeviceError("train.device is 'cuda' but CUDA is not available: use device: auto or cpu")
    index = env.local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def interface_toward(address: str) -> str | None:
    """Name of this host's network interface that routes toward ``address`` (a host name or an IP).

    The route is looked up by connecting a UDP socket (no packet is sent); the interface is
    the one holding the route's source address.

    Parameters
    ----------
    address
        The rendezvous host (``MASTER_ADDR``).

    Returns
    -------
    str or None
        E.g. ``"eth0"`` or ``"ib0"``; ``"lo"`` toward this host itself by a loopback address;
        None when the address does not resolve or has no route.
    """
    import psutil

    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(address, 29500, proto=socket.IPPROTO_UDP)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(sockaddr)
            source = sock.getsockname()[0]
    except (OSError, UnicodeError, IndexError):
        return None
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == family and a.address.split("%")[0] == source for a in addrs):
            return name
    return None


def gloo_interface(environ: dict[str, str] | None = None, hostname: str | None = None) -> str | None:
    """The interface gloo must listen on, when its default (this host's name) cannot work across hosts.

    gloo binds the address this host's name resolves to; where that is a loopback address
    (``127.0.1.1 <hostname>`` in ``/etc/hosts``) and the rendezvous host is another host,
    the processes of other hosts could not connect to this one. Then the interface routing
    toward ``MASTER_ADDR`` is the answer; otherwise None (gloo's default, or the user's
    ``GLOO_SOCKET_IFNAME``, is kept).

    Parameters
    ----------
    environ
        The environment (``os.environ`` by default).
    hostname
        This host's name (``socket.gethostname()`` by default).

    Returns
    -------
    str or None
        An interface name for ``GLOO_SOCKET_IFNAME``, or None to leave gloo's choice.
    """
    env = os.environ if environ is None else environ
    master = env.get("MASTER_ADDR")
    if env.get("GLOO_SOCKET_IFNAME") or not master:
        return None
    try:
        own = {info[4][0] for info in socket.getaddrinfo(hostname or socket.gethostname(), None)}
        targets = {info[4][0] for info in socket.getaddrinfo(master, None)}
    except (OSError, UnicodeError):
        return None
    if not own or not all(_is_loopback(a) for a in own) or all(_is_loopback(a) for a in targets):
        return None  # the name gives a reachable address, or every process is on this host
    return interface_toward(master)


def init(env: DistEnv, device: torch.device) -> None:
    """Join the process group (gloo on CPU, NCCL on GPU) when several processes train.

    With gloo, ``GLOO_SOCKET_IFNAME`` is set from :func:`gloo_interface` when this host's
    name resolves to a loopback address and the rendezvous host is another one.
    """
    if env.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "gloo":
            iface = gloo_interface()
            if iface:
                log.info("gloo: this host's name resolves to a loopback address; listening on %s, the interface "
                         "toward %s (set GLOO_SOCKET_IFNAME to choose another)", iface, os.environ["MASTER_ADDR"])
                os.environ["GLOO_SOCKET_IFNAME"] = iface
        dist.init_process_group(backend, init_method="env://", rank=env.rank, world_size=env.world_size)


def hosts(env: DistEnv) -> list[str]:
    """Host name of every process, by rank (this host's alone when one process trains)."""
    me = socket.gethostname()
    if not (env.distributed and dist.is_initialized()):
        return [me]
    names: list[str] = [""] * env.world_size
    dist.all_gather_object(names, me)
    return names


def global_batch_loss(loss: torch.Tensor, count: torch.Tensor, env: DistEnv) -> tuple[torch.Tensor, float]:
    """The loss to back-propagate in this process, and the mean loss of the global batch.

    A task's loss is a mean over what this process's batch holds (``count``: labelled or
    hidden pixels, examples), which differs between processes. DDP averages the gradients
    of the processes, which would weigh each process's mean equally; scaling each loss by
    ``world_size * count / total count`` makes that average the gradient of the mean over the
    global batch, as one process with the whole batch computes it.

    Parameters
    ----------
    loss
        This process's mean loss.
    count
        What that mean is taken over in this process (a sum of weights).
    env
        The process group.

    Returns
    -------
    tuple
        ``(loss to back-propagate, mean loss of the global batch)``; alone: ``(loss, loss.item())``.
    """
    if not (env.distributed and dist.is_initialized()):
        return loss, float(loss.item())
    c = count.detach().to(device=loss.device, dtype=torch.float64)
    stats = torch.stack([c, loss.detach().to(torch.float64) * c])
    dist.all_reduce(stats)
    total, summed = (float(v) for v in stats.tolist())
    if total <= 0:  # nothing to learn from anywhere: every loss is zero
        return loss, 0.0
    return loss * (env.world_size * float(c) / total), summed / total


def shutdown(env: DistEnv) -> None:
    """Leave the process group."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    """Wait for every process (no-op when alone)."""
    if env.distributed and dist.is_initialized():
        dist.barrier()
