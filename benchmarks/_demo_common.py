"""Helpers shared by the benchmark and demo scripts: the machine's description, held-out test-block cores."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :func:`platform.processor` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def hardware() -> str:
    """CPU cores and model, torch version and threads (printed by the demos)."""
    import torch

    return f"{os.cpu_count()} CPU cores ({cpu_model()}), torch {torch.__version__} with {torch.get_num_threads()} threads"


def core_boxes(split, part: str, margin: int) -> list[tuple[slice, slice]]:
    """The blocks of ``part`` of a :class:`~eocube.learn.split.BlockSplit` shrunk by ``margin`` px where they touch
    a block of another part (the pixels scored as held out: neither they nor their context were trained on)."""
    mask = split.mask() == split.code(part)
    h, w = split.shape
    out = []
    for ys, xs in split.blocks(part):
        y0, y1, x0, x1 = ys.start, ys.stop, xs.start, xs.stop

        def other(a, b, c, d):
            a, b, c, d = max(a, 0), min(b, h), max(c, 0), min(d, w)
            return b > a and d > c and not mask[a:b, c:d].all()

        if other(y0 - margin, y0, x0 - margin, x1 + margin):
            y0 += margin
        if other(y1, y1 + margin, x0 - margin, x1 + margin):
            y1 -= margin
        if other(y0 - margin, y1 + margin, x0 - margin, x0):
            x0 += margin
        if other(y0 - margin, y1 + margin, x1, x1 + margin):
            x1 -= margin
        if y1 > y0 and x1 > x0:
            out.append((slice(y0, y1), slice(x0, x1)))
    return out


def add_seed_options(parser, *, default: int = 5, quick: int = 2) -> None:
    """``--seeds N``: the block-split seeds 0 .. N-1 (default ``default``; ``quick`` with ``--quick``)."""
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"number of block-split seeds 0 .. N-1 to run (default {default}; {quick} with --quick)")
    parser.add_argument("--seed", type=int, default=None, metavar="K",
                        help="run block-split seed K only (one job per seed, e.g. on a cluster; merge their "
                             "seeds.json files with benchmarks/merge_seeds.py)")


def seed_list(args, *, default: int = 5, quick: int = 2) -> list[int]:
    """The seeds asked for by ``--seeds`` (see :func:`add_seed_options`)."""
    if getattr(args, "seed", None) is not None:
        if args.seeds is not None:
            raise SystemExit("error: give --seeds N (seeds 0 .. N-1) or --seed K (seed K alone), not both")
        if args.seed < 0:
            raise SystemExit(f"error: --seed must be >= 0, got {args.seed}")
        return [args.seed]
    n = args.seeds if args.seeds is not None else (quick if args.quick else default)
    if n < 1:
        raise SystemExit(f"error: --seeds must be >= 1, got {n}")
    return list(range(n))


def save_seed_scores(scores, out: Path, script: str, argv: list[str] | None, wall_seconds: float) -> Path:
    """``out/seeds.json``: the multi-seed scores with the date, the machine and the command that made them."""
    import sys

    command = f"python benchmarks/{script} " + " ".join(sys.argv[1:] if argv is None else argv)
    return scores.save(out / "seeds.json", command=command.strip(), machine=hardware(),
                       extra={"wall_seconds": round(wall_seconds, 1),
                              "load_average_1_5_15_min": [round(v, 2) for v in os.getloadavg()]})
