"""``import eocube`` asks torch's CPU allocator for transparent huge pages (eocube._hugepages)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="torch reads THP_MEM_ALLOC_ENABLE on Linux only")

PROBE = textwrap.dedent("""
    import json, os, resource, sys
    import eocube  # before torch's first allocation, as in a script or the command line
    import torch
    keep = [torch.empty(1 << 20) for _ in range(4)]  # 4 MiB each: over torch's 2 MiB huge-page threshold
    aligned = [t.data_ptr() % 4096 == 0 for t in keep]
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        t = torch.empty(16 << 20)  # 64 MiB, a fresh mapping each time (over glibc's mmap threshold)
        t.fill_(1.0)
        del t
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0
    print(json.dumps({"env": os.environ.get("THP_MEM_ALLOC_ENABLE"), "aligned": aligned, "faults": faults}))
""")


def probe(thp: str | None) -> dict:
    """Import eocube, then torch, in a fresh interpreter (THP_MEM_ALLOC_ENABLE as given, None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if thp is not None:
        env["THP_MEM_ALLOC_ENABLE"] = thp
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def thp_mode() -> str:
    """The kernel's transparent huge page mode (``always``, ``madvise``, ``never``; ``""`` where unknown)."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return ""
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else ""


def test_import_eocube_turns_torch_huge_pages_on():
    got = probe(None)
    assert got["env"] == "1"
    assert all(got["aligned"])  # torch aligns its blocks to the page only with huge pages on


def test_a_value_in_the_environment_is_kept():
    got = probe("0")
    assert got["env"] == "0"
    assert not any(got["aligned"])  # torch's own 64-byte alignment: its default allocator


@pytest.mark.skipif(thp_mode() != "madvise", reason="huge pages on request only where the kernel's THP mode is madvise")
def test_fresh_tensor_memory_faults_in_huge_pages():
    small_pages = 4 * (64 << 20) // 4096  # 65536 faults with 4 KiB pages
    on, off = probe(None), probe("0")
    assert off["faults"] >= small_pages // 2
    assert on["faults"] < small_pages // 4  # 2 MiB pages: 512 times fewer; some may fall back to 4 KiB
