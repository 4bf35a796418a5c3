"""Transparent huge pages for torch's CPU tensors (set on ``import eocube``, before torch allocates).

PyTorch has no caching allocator on the CPU: every tensor of a forward pass is ``malloc``-ed and
freed again. glibc maps each block over its mmap threshold (which follows the blocks freed, up to
32 MiB), and each block too large for a thread arena's 64 MiB heap, with a fresh ``mmap`` and
unmaps it when freed, so every batch of a model run faults in new 4 KiB pages: about half of its
CPU time is the kernel's. ``THP_MEM_ALLOC_ENABLE=1`` makes torch's allocator page-align its blocks
of 2 MiB or more and ``madvise(MADV_HUGEPAGE)`` them, so that they are faulted in 2 MiB at a time.
The pages are still new and zeroed; the million faults go, and no memory is kept between batches.

Measured with ``benchmarks/bench_torch_hugepages.py`` (a fresh process per run: one warm-up
``apply_model``, one timed, dask's threads; off and on alternating, 3 rounds, medians; 2-core AMD
EPYC shared with other jobs, glibc 2.36, torch 2.13, kernel THP mode ``madvise``, 2026-12-06):

=====================================================  ===================================  ===================================
case                                                   off (torch's default)                on (eocube's default)
=====================================================  ===================================  ===================================
3-layer CNN, 16 dates x 4 bands x 512², batches of 8   4.60 CPU s (2.68 kernel), 1157 k flt  3.54 CPU s (1.79 kernel), 39 k flt
x4 super-resolution, 4 dates x 4 x 512², tiles 128²    4.02 CPU s (2.68 kernel), 576 k flt   3.08 CPU s (1.78 kernel), 47 k flt
=====================================================  ===================================  ===================================

CPU time 0.77x in both (load 8-12 and 12-18; an earlier run of the super-resolution case at load
7-9, 2 rounds: 0.60x and 0.65x); peak resident memory 0.98x and 0.95x (990 -> 973 MB, 1253 -> 1195
MB); the outputs identical. Training in the same process gains too: 15 Adam steps of the CNN on 8 x 4
x 192² (``import eocube`` first, 2 alternating rounds, load 8-9) took 0.67x and 0.78x the CPU time
(2.7 M -> 0.17 M faults), peak 0.94x and 0.96x, the same loss.

glibc's own knobs keep memory and win less (super-resolution case, one round each, load 7-9):
``mallopt(M_MMAP_THRESHOLD, 64 MiB)`` with a 128 MiB trim threshold 0.81x the CPU time, 71 MB more
at the peak (its largest block, oneDNN's 140 MiB copy of a 4-channel activation padded to 16
channels, does not fit a thread arena's heap and is mapped anyway); ``MALLOC_MMAP_THRESHOLD_`` of
256 MiB alone 0.96x; huge pages and the ``mallopt`` pair together no better than huge pages alone,
170 MB more at the peak.

It takes effect only where torch has not allocated a CPU tensor yet when eocube is imported
(``import torch`` alone allocates none); a value already in the environment is kept:
``THP_MEM_ALLOC_ENABLE=0`` turns it off. Worker processes inherit it. It changes no value: only
where a tensor's memory lies and how the kernel maps it.
"""

from __future__ import annotations

import os
import sys

TORCH_THP_VARIABLE = "THP_MEM_ALLOC_ENABLE"
"""The environment variable torch's CPU allocator reads once, at its first allocation."""


def enable_torch_hugepages() -> bool:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` for torch's CPU allocator unless the environment already sets it.

    Returns
    -------
    bool
        Whether the environment now asks torch for huge pages (False off Linux, where torch
        ignores the variable, and where the user set another value).
    """
    if not sys.platform.startswith("linux"):
        return False
    return os.environ.setdefault(TORCH_THP_VARIABLE, "1") == "1"
