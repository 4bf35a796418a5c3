"""CPU time, page faults and peak memory of ``apply_model`` with torch's huge pages off and on.

Each measurement is a fresh process (torch reads ``THP_MEM_ALLOC_ENABLE`` once, at its first
allocation, and the peak resident memory only grows): it builds the case, runs ``apply_model`` once
to warm up (model cached, kernels chosen) and once timed, with dask's threads, and prints the timed
run's CPU time (all threads; the kernel's share apart), minor page faults, wall time and the
process's peak resident memory. The variants alternate in rounds, so that other load on the
machine hits both; the medians of the rounds and their ratios are printed.

Cases: ``sr``, the x4 super-resolution network of ``bench_apply_model.py`` on 4 dates x 4 bands x
512² (chunks 256², tiles 128², batches of 8: issue 25's case); ``cnn``, its 3-layer CNN on 16 dates
x 4 bands x 512² (chunks and tiles 256², batches of 8).

Variants: ``off`` (``THP_MEM_ALLOC_ENABLE=0``, torch's default), ``on`` (eocube's default), and
``mallopt:MMAP_MIB:TRIM_MIB``: huge pages off and glibc's mmap and trim thresholds set with
``mallopt`` before the run.

Usage: ``python benchmarks/bench_torch_hugepages.py [--cases sr,cnn] [--rounds 3] [--variants off,on]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def child(case: str, variant: str) -> None:
    """One measured run in this (fresh) process; prints one JSON line."""
    import ctypes
    import resource
    import time

    if variant.startswith("mallopt:"):
        libc = ctypes.CDLL("libc.so.6")
        mmap_mib, trim_mib = (int(v) for v in variant.split(":")[1:3])
        assert libc.mallopt(-3, mmap_mib << 20) == 1 and libc.mallopt(-1, trim_mib << 20) == 1  # M_MMAP/TRIM_THRESHOLD

    import dask
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).parent))
    import bench_apply_model as bench

    from eocube.models import ModelSpec, OutputSpec, RunOptions, SourceSpec, apply_model

    rng = np.random.default_rng(0)
    n_dates = 4 if case == "sr" else 16
    data = rng.standard_normal((n_dates, 4, 512, 512)).astype("float32")
    cube = bench._cube(data, 10.0, pd.date_range("2022-01-01", periods=n_dates, freq="5D"))
    cube = cube.chunk({"time": 8, "y": 256, "x": 256})
    if case == "sr":
        spec = ModelSpec(sources=(SourceSpec(name="input"),), output=OutputSpec(mask=None))
        lazy = apply_model(cube, bench.make_sr(4, 32), spec, run=RunOptions(device="cpu", batch_size=8, tile_size=128))
    else:
        lazy = apply_model(cube, bench.make_model(4, 32), run=RunOptions(device="cpu", batch_size=8, tile_size=256))
    with dask.config.set(scheduler="threads"):
        lazy.values  # noqa: B018 - warm-up
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        out = lazy.values
        wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "cpu": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, "sys": r1.ru_stime - r0.ru_stime,
        "faults": r1.ru_minflt - r0.ru_minflt, "wall": wall, "peak_mb": r1.ru_maxrss / 1024,
        "thp": os.environ.get("THP_MEM_ALLOC_ENABLE"), "checksum": float(np.abs(out).sum()),
        "load": os.getloadavg()[0],
    }), flush=True)


def measure(case: str, variant: str) -> dict[str, float]:
    """Run :func:`child` in a fresh interpreter with the variant's environment."""
    env = dict(os.environ, THP_MEM_ALLOC_ENABLE="1" if variant == "on" else "0")
    proc = subprocess.run([sys.executable, __file__, "--child", case, variant], env=env, capture_output=True,
                          text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{case} {variant} failed: {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="sr,cnn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="off,on", help="comma-separated: off, on, mallopt:MMAP_MIB:TRIM_MIB")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
        runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        for r in range(args.rounds):
            for v in variants:
                m = measure(case, v)
                runs[v].append(m)
                print(f"[{case}] round {r + 1} {v:>16}: CPU {m['cpu']:.2f} s (kernel {m['sys']:.2f} s), "
                      f"{m['faults'] / 1e3:.0f} k faults, wall {m['wall']:.2f} s, peak {m['peak_mb']:.0f} MB; "
                      f"load {m['load']:.1f}", flush=True)
        first = variants[0]
        for v in variants:
            med = {k: statistics.median(m[k] for m in runs[v]) for k in ("cpu", "sys", "faults", "wall", "peak_mb")}
            ref = {k: statistics.median(m[k] for m in runs[first]) for k in med}
            same = len({round(m["checksum"], 3) for m in runs[v] + runs[first]}) == 1
            print(f"[{case}] {v:>16} medians: CPU {med['cpu']:.2f} s ({med['cpu'] / ref['cpu']:.2f}x {first}), "
                  f"kernel {med['sys']:.2f} s, {med['faults'] / 1e3:.0f} k faults, wall {med['wall']:.2f} s "
                  f"({med['wall'] / ref['wall']:.2f}x), peak {med['peak_mb']:.0f} MB "
                  f"({med['peak_mb'] / ref['peak_mb']:.3f}x); same output as {first}: {same}")
    print(f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
