"""Devices, torch threads, autocast and dask resources for the model engine."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, ContextManager, Iterator

import torch

from ._errors import DeviceError, OptionError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
_DEVICE_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device to run on, in this process.

    Parameters
    ----------
    device
        ``"auto"`` (CUDA when torch sees a GPU, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``
        or ``"mps"``.

    Returns
    -------
    torch.device

    Raises
    ------
    DeviceError
        If the device is not available here.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"device {device!r} is not a torch device: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} was requested but torch sees no CUDA device on host {os.uname().nodename} "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}): use device='auto' to "
                "fall back to the CPU, run on a GPU node, or install a CUDA build of torch"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {device!r} was requested but only {torch.cuda.device_count()} CUDA device(s) are visible "
                f"on host {os.uname().nodename}: use 'cuda' or an index below {torch.cuda.device_count()}"
            )
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError(f"device {device!r} was requested but MPS is not available: use device='auto' or 'cpu'")
    return dev


def _distributed_client() -> Any | None:
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def check_device_early(device: str) -> None:
    """Fail at graph construction when the device cannot exist where the graph will run.

    Without a distributed client the graph runs in this process, so an absent device is an
    error now. With a client, the workers may have GPUs that this process lacks (a login node
    submitting to GPU nodes): the check then happens in the workers.
    """
    if device == "auto" or _distributed_client() is not None:
        if device != "auto":
            torch.device(device)  # syntax check only
        return
    resolve_device(device)


def gpu_resources(device: str, resources: dict[str, float] | str | None) -> dict[str, float] | None:
    """The dask resource annotation for the model tasks.

    ``"auto"``: ``{"GPU": 1}`` when the device may be a GPU and the workers of the current
    distributed client declare a ``GPU`` resource (so each GPU runs one model task at a
    time), else none: annotating with a resource no worker has would hang the computation.
    """
    if resources is None or isinstance(resources, dict):
        return resources
    if resources != "auto":
        raise OptionError(f"resources must be 'auto', None or a dict like {{'GPU': 1}}, got {resources!r}")
    if str(device).startswith("cpu"):
        return None
    client = _distributed_client()
    if client is None:
        return None
    try:
        workers = client.scheduler_info().get("workers", {})
    except Exception:  # noqa: BLE001 - a client that cannot reach its scheduler: no annotation
        return None
    if any("GPU" in (w.get("resources") or {}) for w in workers.values()):
        return {"GPU": 1}
    return None


def dask_threads_here() -> int:
    """How many dask tasks may run at once in this process (1 under the synchronous scheduler)."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        pass
    if threading.current_thread() is threading.main_thread():
        return 1
    import dask
    from dask.system import CPU_COUNT

    return max(1, int(dask.config.get("num_workers", None) or CPU_COUNT))


def usable_cores() -> int:
    """CPU cores this process may use (affinity, capped by ``OMP_NUM_THREADS`` where set)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0 and _in_worker():
        cores = min(cores, int(omp) * dask_threads_here())
    return max(1, cores)


def _in_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"active": 0, "saved": 0}


@contextlib.contextmanager
def matched_torch_threads(torch_threads: int | None) -> Iterator[int]:
    """Run a block with torch's intra-op threads matched to dask's threads, then restore them.

    ``None`` (auto): the process's usable cores divided by the dask threads that run tasks in
    it, so that dask's parallelism times torch's fills the cores without oversubscribing them.
    The setting is process-wide in torch: it is made when the first engine task of the process
    starts and the caller's value is restored when the last running one ends, so a local
    (threaded) computation leaves the caller's torch settings as they were.
    """
    n = torch_threads if torch_threads else max(1, usable_cores() // dask_threads_here())
    with _THREADS_LOCK:
        if _THREADS_STATE["active"] == 0:
            _THREADS_STATE["saved"] = torch.get_num_threads()
        _THREADS_STATE["active"] += 1
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    try:
        yield n
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["active"] -= 1
            if _THREADS_STATE["active"] == 0 and torch.get_num_threads() != _THREADS_STATE["saved"]:
                torch.set_num_threads(_THREADS_STATE["saved"])


def device_lock(device: torch.device) -> ContextManager[Any]:
    """A lock per CUDA device (one batch at a time on a GPU per process); a no-op on the CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    key = str(device)
    with _LOCKS_LOCK:
        lock = _DEVICE_LOCKS.setdefault(key, threading.Lock())
    return lock


def autocast_context(device: torch.device, autocast: str | None) -> ContextManager[Any]:
    """``torch.autocast`` for ``"bf16"`` / ``"fp16"``, or a no-op for None."""
    if autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[autocast])


def check_autocast(autocast: str | None) -> None:
    """Raise a clear error for an unknown autocast name."""
    if autocast is not None and autocast not in AUTOCAST_DTYPES:
        raise OptionError(f"autocast must be None, 'bf16' or 'fp16', got {autocast!r}")
