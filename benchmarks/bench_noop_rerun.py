"""A rerun whose output is already complete, against ``python -c "import xarray"`` measured in the same run.

Run:  .venv/bin/python benchmarks/bench_noop_rerun.py [--rounds 5] [--old-tree /path/to/old/checkout]

Users resubmit finished jobs (a Slurm array rerun, a pipeline step run again): the rerun must
say "already complete" and end at about the cost of starting Python with xarray, not build the
computation again, start a cluster or compile kernels (issue 25 item 3: under 1 s where
``import xarray`` takes about 0.6 s, i.e. within about 1.67x it).

Each figure is a whole process started fresh, the best of ``--rounds`` alternating rounds (the
cases run one after the other within a round, so that the machine's load weighs on them alike):

* ``python -c "import xarray"``: the reference;
* ``eocube gapfill`` on the bundled sample, rerun into its complete output;
* ``eocube apply`` of a small TorchScript model (written by the set-up, with its card) on the
  bundled sample, rerun into its complete output (skipped when torch is missing);
* with ``--old-tree``: the same reruns with another checkout of eocube first on ``PYTHONPATH``
  (e.g. a ``git worktree`` of an older commit), each into an output that checkout wrote.

The first (computing) runs are set-up, not timed. Every rerun's output is checked to say
"already complete".
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable

MAKE_MODEL = """
import sys, warnings
import torch
from eocube.models import ModelSpec, OutputSpec, SourceSpec
from eocube.models.card import write_card

torch.manual_seed(0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    torch.jit.trace(torch.nn.Conv2d(1, 2, 3, padding=1).eval(), torch.rand(2, 1, 8, 8)).save(sys.argv[1])
write_card(ModelSpec(sources=(SourceSpec(name="s2", bands=("NDVI",)),), output=OutputSpec(bands=("a", "b")),
                     name="bench-noop"), sys.argv[1])
"""
"""A small TorchScript model and its card beside it (one band in, two out, per date)."""


WORK = Path(tempfile.gettempdir())
"""Where the commands run (not a checkout: ``python -m`` puts the current folder first on the path)."""


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Seconds to run ``cmd`` to completion, and its output; it must exit 0."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False,
                          cwd=WORK)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-1500:]}\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout + proc.stderr


def rerun(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds of a rerun that must find its output complete."""
    seconds, text = run(cmd, env)
    if "already complete" not in text:
        raise SystemExit(f"{' '.join(cmd)} did not find its output complete:\n{text[-2000:]}")
    return seconds


def machine() -> str:
    """One line: CPU, cores, load, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{cpu}, {os.cpu_count()} CPUs, load {load}, Python {sys.version.split()[0]}, {platform.system()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; each case keeps its best")
    parser.add_argument("--old-tree", default=None, help="another eocube checkout to time beside this one")
    args = parser.parse_args()

    global WORK
    work = WORK = Path(tempfile.mkdtemp(prefix="eocube-bench-noop-"))
    try:
        trees = {"": None} if args.old_tree is None else {"": None, " (old)": str(Path(args.old_tree).resolve())}
        try:
            import torch  # noqa: F401 - only whether it is there
            model = work / "net.pt"
            run([PYTHON, "-c", MAKE_MODEL, str(model)])
        except ImportError:
            model = None
        cases = {"python -c 'import xarray'": ([PYTHON, "-c", "import xarray"], None)}
        for label, tree in trees.items():
            env = {"PYTHONPATH": tree} if tree else None
            tag = label.strip(" ()") or "new"
            gap = [PYTHON, "-m", "eocube", "gapfill", "--out", str(work / f"gapfill-{tag}.zarr"), "--no-progress"]
            run(gap, env)  # the first run computes and writes (set-up)
            cases[f"eocube gapfill rerun{label}"] = (gap, env)
            if model is not None:
                app = [PYTHON, "-m", "eocube", "apply", str(model), "--source", "s2=sentinel2",
                       "--out", str(work / f"apply-{tag}.zarr"), "--no-progress"]
                run(app, env)
                cases[f"eocube apply rerun{label}"] = (app, env)
        best = {name: float("inf") for name in cases}
        for r in range(args.rounds):
            for name, (cmd, env) in cases.items():
                best[name] = min(best[name], rerun(cmd, env) if name.startswith("eocube") else run(cmd, env)[0])
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    xr_s = best["python -c 'import xarray'"]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}")
    print(f"best of {args.rounds} alternating rounds; target: a complete rerun within 1.67x import xarray "
          "(1 s where import xarray takes 0.6 s)")
    print(f"{'case':34s} {'seconds':>8s} {'x xarray':>9s}")
    for name, seconds in best.items():
        print(f"{name:34s} {seconds:8.2f} {seconds / xr_s:9.2f}")


if __name__ == "__main__":
    main()
