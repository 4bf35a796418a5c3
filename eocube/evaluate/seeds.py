"""Scores over several block-split seeds: a network and its baselines on the same pixels, paired.

One split seed is one draw of the held-out blocks; a claim that holds for seed 0 may not hold for
seed 1. :func:`run_seeds` calls a task once per seed; the task trains and scores the network and
every baseline on exactly the same held-out pixels and returns ``{method: {metric: value}}`` (with
``n``, the pixels scored, for each method: the harness refuses methods scored on different
numbers of pixels). :class:`SeedScores` reports per method and metric the mean, standard deviation
and range, and the paired per-seed differences network - baseline with the seeds the network wins::

    scores = run_seeds(lambda seed: my_task(seed), seeds=5, higher_is_better={"rmse": False})
    print(scores.to_markdown(["macro_f1", "oa"]))
    scores.save("seeds.json", command="python benchmarks/demo_landcover.py --seeds 5")
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .protocol import EvaluateError

LOWER_IS_BETTER = frozenset({"rmse", "mae", "sam", "loss", "error"})
"""Metrics where a lower value wins, also as a word of a longer name (``rmse_far``, ``val_loss``); by default every
other metric wins when higher."""

Task = Callable[[int], Mapping[str, Mapping[str, float]]]
"""``task(seed) -> {method: {metric: value, "n": pixels scored}}``."""


def _better_sign(metric: str, higher_is_better: Mapping[str, bool] | None) -> int:
    if higher_is_better and metric in higher_is_better:
        return 1 if higher_is_better[metric] else -1
    words = metric.lower()
    return -1 if words in LOWER_IS_BETTER or set(words.split("_")) & LOWER_IS_BETTER else 1


@dataclass
class SeedScores:
    """Scores of several methods over several seeds.

    Attributes
    ----------
    table
        Long table, one row per (seed, method, metric): columns ``seed``, ``method``, ``metric``, ``value``.
    reference
        The method the others are compared with (the network).
    higher_is_better
        Per metric, whether higher wins (default: lower wins for RMSE, MAE, SAM, loss, error).
    n_scored
        Per seed, the pixels every method was scored on (when the task gave ``n``).
    """

    table: pd.DataFrame
    reference: str
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    n_scored: dict[int, int] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        """The seeds, in the order run."""
        return list(dict.fromkeys(self.table["seed"]))

    @property
    def methods(self) -> list[str]:
        """The methods, the reference first."""
        ms = list(dict.fromkeys(self.table["method"]))
        return [self.reference] + [m for m in ms if m != self.reference] if self.reference in ms else ms

    @property
    def metrics(self) -> list[str]:
        """The metrics, in the order given."""
        return list(dict.fromkeys(self.table["metric"]))

    def values(self, method: str, metric: str) -> np.ndarray:
        """Per-seed values of a method's metric, in :attr:`seeds` order (NaN where missing)."""
        t = self.table[(self.table["method"] == method) & (self.table["metric"] == metric)]
        by = dict(zip(t["seed"], t["value"]))
        return np.array([by.get(s, np.nan) for s in self.seeds], dtype="float64")

    def summary(self) -> pd.DataFrame:
        """Per method and metric: ``mean``, ``std`` (ddof 1; NaN for one seed), ``min``, ``max``, ``seeds``."""
        rows = []
        for m in self.methods:
            for k in self.metrics:
                v = self.values(m, k)
                v = v[np.isfinite(v)]
                rows.append({"method": m, "metric": k, "mean": float(v.mean()) if v.size else math.nan,
                             "std": float(v.std(ddof=1)) if v.size > 1 else math.nan,
                             "min": float(v.min()) if v.size else math.nan,
                             "max": float(v.max()) if v.size else math.nan, "seeds": int(v.size)})
        return pd.DataFrame(rows)

    def paired(self) -> pd.DataFrame:
        """Per baseline and metric, the per-seed differences reference - baseline.

        Columns ``baseline``, ``metric``, ``mean``, ``std``, ``min``, ``max`` of the differences,
        ``wins`` (seeds where the reference is better: a positive difference, or a negative one for a
        lower-is-better metric), ``seeds`` (seeds where both were scored) and ``diffs`` (the list).
        """
        rows = []
        for b in self.methods:
            if b == self.reference:
                continue
            for k in self.metrics:
                d = self.values(self.reference, k) - self.values(b, k)
                ok = np.isfinite(d)
                dd = d[ok]
                sign = _better_sign(k, self.higher_is_better)
                rows.append({"baseline": b, "metric": k, "mean": float(dd.mean()) if dd.size else math.nan,
                             "std": float(dd.std(ddof=1)) if dd.size > 1 else math.nan,
                             "min": float(dd.min()) if dd.size else math.nan,
                             "max": float(dd.max()) if dd.size else math.nan,
                             "wins": int((sign * dd > 0).sum()), "seeds": int(dd.size),
                             "diffs": [float(x) for x in d]})
        return pd.DataFrame(rows)

    def to_markdown(self, metrics: Sequence[str] | None = None, *, digits: int | Mapping[str, int] = 3,
                    labels: Mapping[str, str] | None = None) -> str:
        """Two Markdown tables: per method ``mean ± std (min .. max)``, and the paired differences.

        Parameters
        ----------
        metrics
            Metrics to show (default all).
        digits
            Decimals, one for all or per metric.
        labels
            Display names of metrics or methods.
        """
        metrics = list(metrics or self.metrics)
        labels = dict(labels or {})
        dig = (lambda k: digits.get(k, 3)) if isinstance(digits, Mapping) else (lambda k: digits)
        name = lambda k: labels.get(k, k)  # noqa: E731
        s = self.summary().set_index(["method", "metric"])
        n = len(self.seeds)
        lines = [f"| method ({n} seed{'s' if n != 1 else ''}: {', '.join(map(str, self.seeds))}) | "
                 + " | ".join(f"{name(k)} mean ± std (min .. max)" for k in metrics) + " |",
                 "|---|" + "---:|" * len(metrics)]
        for m in self.methods:
            cells = []
            for k in metrics:
                r, d = s.loc[(m, k)], dig(k)
                std = "" if math.isnan(r["std"]) else f" ± {r['std']:.{d}f}"
                cells.append(f"{r['mean']:.{d}f}{std} ({r['min']:.{d}f} .. {r['max']:.{d}f})")
            lines.append(f"| {name(m)} | " + " | ".join(cells) + " |")
        p = self.paired()
        if len(p):
            p = p.set_index(["baseline", "metric"])
            lines += ["", f"| {name(self.reference)} - baseline, per seed | "
                      + " | ".join(f"{name(k)}: mean (min .. max), {name(self.reference)} better" for k in metrics)
                      + " |", "|---|" + "---:|" * len(metrics)]
            for b in self.methods[1:]:
                cells = []
                for k in metrics:
                    r, d = p.loc[(b, k)], dig(k)
                    cells.append(f"{r['mean']:+.{d}f} ({r['min']:+.{d}f} .. {r['max']:+.{d}f}), "
                                 f"{r['wins']}/{r['seeds']}")
                lines.append(f"| vs {name(b)} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Everything as JSON-ready values: per-seed scores, summary, paired differences."""
        per_seed: dict[str, dict[str, dict[str, float]]] = {}
        for r in self.table.itertuples(index=False):
            per_seed.setdefault(str(r.seed), {}).setdefault(r.method, {})[r.metric] = float(r.value)
        return {"reference": self.reference, "seeds": self.seeds, "methods": self.methods, "metrics": self.metrics,
                "higher_is_better": {k: _better_sign(k, self.higher_is_better) > 0 for k in self.metrics},
                "n_scored": {str(k): v for k, v in self.n_scored.items()}, "per_seed": per_seed,
                "summary": self.summary().to_dict(orient="records"), "paired": self.paired().to_dict(orient="records")}

    def save(self, path: str | Path, *, command: str | None = None, machine: str | None = None,
             extra: Mapping | None = None) -> Path:
        """Write :meth:`to_dict` with the date (UTC), the machine and the command to a JSON file."""
        path = Path(path)
        doc = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
               "machine": machine or f"{platform.node()} ({platform.machine()}, {platform.platform()})",
               "command": command if command is not None else " ".join([Path(sys.executable).name] + sys.argv),
               **dict(extra or {}), **self.to_dict()}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1, default=_json_default))
        return path


def _json_default(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def collect(results: Mapping[int, Mapping[str, Mapping[str, float]]], *, reference: str,
            higher_is_better: Mapping[str, bool] | None = None) -> SeedScores:
    """A :class:`SeedScores` from ``{seed: {method: {metric: value}}}`` (``n``: pixels scored, checked).

    Raises
    ------
    EvaluateError
        When the reference is missing from a seed, or methods of one seed were scored on
        different numbers of pixels.
    """
    rows, n_scored = [], {}
    for seed, methods in results.items():
        if reference not in methods:
            raise EvaluateError(f"seed {seed}: the reference method {reference!r} has no scores "
                                f"(methods: {sorted(methods)})")
        ns = {m: int(v["n"]) for m, v in methods.items() if "n" in v}
        if len(set(ns.values())) > 1:
            raise EvaluateError(f"seed {seed}: methods were scored on different numbers of pixels {ns}: score "
                                f"every method on the same pixels")
        if ns:
            n_scored[int(seed)] = next(iter(ns.values()))
        for m, scores in methods.items():
            for k, v in scores.items():
                if k != "n":
                    rows.append({"seed": int(seed), "method": str(m), "metric": str(k), "value": float(v)})
    if not rows:
        raise EvaluateError("no scores to collect: the task returned nothing")
    return SeedScores(pd.DataFrame(rows), reference, dict(higher_is_better or {}), n_scored)


def merge_seed_files(paths: Iterable[str | Path]) -> SeedScores:
    """One :class:`SeedScores` from several files written by :meth:`SeedScores.save` (e.g. one job per seed).

    Parameters
    ----------
    paths
        JSON files of the same task: the same reference and methods, each seed in one file only.

    Returns
    -------
    SeedScores
        The seeds of all files, in increasing order.

    Raises
    ------
    EvaluateError
        An unreadable file, a seed in two files, or files of different references or methods.
    """
    results: dict[int, dict[str, dict[str, float]]] = {}
    reference, methods, better = None, None, {}
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text())
            per_seed, ref, n_scored = doc["per_seed"], doc["reference"], doc.get("n_scored", {})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise EvaluateError(f"{path}: not a seeds file written by SeedScores.save ({e}); give the seeds.json "
                                "files of the runs to merge") from None
        if reference is not None and (ref != reference or list(doc.get("methods", [])) != methods):
            raise EvaluateError(f"{path}: reference {ref!r} and methods {doc.get('methods')} differ from the first "
                                f"file's ({reference!r}, {methods}): merge runs of the same task only")
        reference, methods = ref, list(doc.get("methods", []))
        better.update(doc.get("higher_is_better", {}))
        for seed, scores in per_seed.items():
            if int(seed) in results:
                raise EvaluateError(f"{path}: seed {seed} is already in an earlier file: each seed once")
            n = n_scored.get(str(seed))
            results[int(seed)] = {m: {**v, **({"n": n} if n is not None else {})} for m, v in scores.items()}
    if reference is None:
        raise EvaluateError("no seeds file to merge: give one or more seeds.json files")
    return collect(dict(sorted(results.items())), reference=reference, higher_is_better=better)


def run_seeds(task: Task, seeds: int | Iterable[int] = 5, *, reference: str = "network",
              higher_is_better: Mapping[str, bool] | None = None,
              log: Callable[[str], None] | None = None) -> SeedScores:
    """Run ``task(seed)`` for each seed and collect the scores (see :func:`collect`).

    Parameters
    ----------
    task
        ``task(seed) -> {method: {metric: value, "n": pixels scored}}``: trains and scores every
        method on the held-out pixels of the split made with ``seed``.
    seeds
        A number ``N`` (seeds ``0 .. N-1``) or the seeds themselves.
    reference
        The method compared with every other one (paired differences).
    higher_is_better
        Per metric, whether higher wins (see :data:`LOWER_IS_BETTER`).
    log
        Called with a line per finished seed (e.g. ``print``).
    """
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seeds:
        raise EvaluateError("no seed to run: pass seeds >= 1")
    if len(set(seeds)) != len(seeds):
        raise EvaluateError(f"seeds repeat: {seeds}")
    results = {}
    for s in seeds:
        results[s] = task(s)
        if log:
            log(f"seed {s}: " + "; ".join(f"{m} " + ", ".join(f"{k} {v:.4g}" for k, v in sc.items() if k != "n")
                                          for m, sc in results[s].items()))
    return collect(results, reference=reference, higher_is_better=higher_is_better)
