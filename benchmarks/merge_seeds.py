"""Merge the ``seeds.json`` files of demo runs made one split seed at a time (``--seed K``) into one table.

    .venv/bin/python benchmarks/demo_superres.py --seed 0 --out /tmp/sr0     # one job per seed (any machines)
    .venv/bin/python benchmarks/demo_superres.py --seed 1 --out /tmp/sr1
    .venv/bin/python benchmarks/merge_seeds.py /tmp/sr0/seeds.json /tmp/sr1/seeds.json --out docs/demo_superres_seeds.json

Prints the multi-seed table (mean, standard deviation, range, paired differences and wins) of
:func:`eocube.evaluate.merge_seed_files` and writes the merged file with each run's date, machine and command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="seeds.json files of runs of the same demo")
    p.add_argument("--out", default=None, help="write the merged seeds file there")
    a = p.parse_args(argv)
    from eocube.evaluate import EvaluateError, merge_seed_files

    try:
        scores = merge_seed_files(a.files)
    except EvaluateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(scores.to_markdown())
    if a.out:
        runs = []
        for f in a.files:
            doc = json.loads(Path(f).read_text())
            runs.append({k: doc.get(k) for k in ("date", "machine", "command", "wall_seconds", "load_average_1_5_15_min")}
                        | {"seeds": doc.get("seeds")})
        cmd = "python benchmarks/merge_seeds.py " + " ".join(a.files)
        path = scores.save(a.out, command=cmd, machine=runs[0]["machine"], extra={"runs": runs})
        print(f"merged seeds file: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
