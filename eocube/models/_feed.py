"""Feeding batches to the device: plain tensors on the CPU, pinned and prefetched copies on CUDA.

On the CPU a batch is wrapped without a copy (``torch.from_numpy``). On CUDA each batch is
copied from page-locked (pinned) host memory with ``non_blocking=True``; with ``prefetch``
the copy runs on a second CUDA stream, so that the engine can stage batch ``k + 1`` (host
work: slicing, padding, pinning; device work: the copy) while the device still runs the
forward pass of batch ``k``. The compute stream waits on the copy's event before using the
tensors, and the tensors are recorded on the compute stream so that the caching allocator
does not reuse their memory too early.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class Staged:
    """A batch on its way to the device (tensors, and the event its copy records, if any)."""

    tensors: list[torch.Tensor]
    event: Any = None


class Feeder:
    """Stages batches of numpy arrays on a device (see the module docstring).

    Parameters
    ----------
    device
        The torch device the model runs on.
    prefetch
        On CUDA, copy on a second stream so that a copy overlaps the previous forward pass.
    """

    def __init__(self, device: torch.device, prefetch: bool = True) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device=device) if self.cuda and prefetch else None

    def stage(self, arrays: Sequence[np.ndarray]) -> Staged:
        """Start moving one batch to the device (returns at once on CUDA with prefetch)."""
        host = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        if not self.cuda:
            return Staged([t.to(self.device) for t in host])
        pinned = [t.pin_memory() for t in host]
        if self.stream is None:
            return Staged([t.to(self.device, non_blocking=True) for t in pinned])
        with torch.cuda.stream(self.stream):
            tensors = [t.to(self.device, non_blocking=True) for t in pinned]
            event = torch.cuda.Event()
            event.record(self.stream)
        return Staged(tensors, event)

    def ready(self, staged: Staged) -> list[torch.Tensor]:
        """The batch's tensors, usable on the current stream."""
        if staged.event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(staged.event)
            for t in staged.tensors:
                t.record_stream(current)
        return staged.tensors


def to_numpy(y: torch.Tensor) -> np.ndarray:
    """A model output on the host (float32 for half-precision outputs)."""
    if y.dtype in (torch.bfloat16, torch.float16):
        y = y.float()
    if y.device.type == "cuda":
        host = torch.empty(y.shape, dtype=y.dtype, pin_memory=True)
        host.copy_(y, non_blocking=True)
        torch.cuda.current_stream(y.device).synchronize()
        return host.numpy()
    return y.cpu().numpy()
