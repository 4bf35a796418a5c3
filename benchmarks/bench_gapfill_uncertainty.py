"""Calibration of the learned gap fill's per-pixel interval on the held-out half of a scene.

Trains ``eocube.learn`` with the default configuration on a bundled real series (``--dataset
sentinel2``, the default, or ``landsat``, as :mod:`bench_gapfill_accuracy` loads them; the
interval head is on by default: ``network.quantiles: [0.1, 0.9]``, calibrated by normalised
split-conformal prediction on the run's *validation* blocks, :mod:`eocube.learn.interval`), or
takes a training folder with ``--model``. Then, for each gap seed, the eocube.evaluate protocol hides 20 % of the clear
observations behind real cloud masks of other dates (:func:`eocube.evaluate.artificial_gaps`),
the network fills them with ``fill_cube(..., uncertainty=True)`` and only the hidden observations
of the run's *test* blocks (never read in training nor in calibration) are scored: the share of
hidden truths inside ``[lower, upper]`` (coverage; target: the nominal 80 % within 70-90 %), the
mean width, and, for comparison, the coverage of the interval head's raw (uncalibrated) quantiles,
of the same head calibrated by CQR on the same validation observations (one offset per band, the
calibration before the normalised one), the calibrated interval's coverage on the validation blocks
under the same draw, the coverage where the fill leaves linear interpolation by more than 0.05
("far from linear": where the errors are), and the fill's RMSE against linear interpolation.

    nice -n 5 .venv/bin/python benchmarks/bench_gapfill_uncertainty.py --out /tmp/gapfill-unc-run --seeds 10
    nice -n 5 .venv/bin/python benchmarks/bench_gapfill_uncertainty.py --dataset landsat --model RUN --seeds 10

Prints one line per seed and the mean, standard deviation (ddof 1) and range over seeds;
``--json FILE`` writes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_common import hardware
from bench_gapfill_accuracy import DATASETS, load_dataset


def _head_bounds(run: Path, cube, train_clear, bands: list[str], offset: list[float]):
    """The interval head's quantiles moved by CQR ``offset`` (normalised units; 0: raw), whole cube, in memory."""
    import torch

    from eocube.learn.checkpoint import load_checkpoint, model_from_checkpoint
    from eocube.learn.export import GapFillIntervalModule
    from eocube.learn.gaps import days_since_epoch

    net, normaliser = model_from_checkpoint(load_checkpoint(run / "best.pt"))
    module = GapFillIntervalModule(net, normaliser, {"calibration": "cqr", "offset": list(offset)}).eval()
    values = cube.sel(band=bands).transpose("time", "band", "y", "x").values.astype("float32")
    ok = np.broadcast_to(train_clear.transpose("time", "y", "x").values[:, None], values.shape).copy()
    x = torch.from_numpy(np.where(ok, values, np.nan))[None]
    days = torch.from_numpy(days_since_epoch(cube["time"].values))[None]
    with torch.no_grad():
        out = module(x, torch.from_numpy(ok)[None], days)[0].numpy()
    c = len(bands)
    return out[:, c:2 * c], out[:, 2 * c:]


def _val_area(run: Path, area):
    """``(y, x)`` boolean: the run's validation blocks (where the interval was calibrated)."""
    from eocube.learn.checkpoint import load_checkpoint
    from eocube.learn.split import BlockSplit

    split = BlockSplit.from_dict(load_checkpoint(run / "best.pt")["meta"]["split"])
    return area.copy(data=split.mask() == split.code("val"))


def _seed_row(cube, clear, area, val, run: Path, seed: int, bands: list[str], cqr_offset: list[float] | None
              ) -> dict[str, float]:
    from eocube.evaluate import artificial_gaps, interval_scores, score, split_bounds
    from eocube.fill import fill_gaps
    from eocube.learn import fill_cube

    truth = cube.sel(band=bands)
    train_clear, held_all = artificial_gaps(clear, 0.2, seed)
    held = held_all & area
    filled = fill_cube(truth, run, train_clear, uncertainty=True, device="cpu").compute()
    fill, lower, upper = split_bounds(filled)
    linear = fill_gaps(truth, train_clear, method="linear").compute()

    def scores(lo, hi, where):
        return interval_scores(lo, hi, truth, where).set_index("band").loc["all"]

    cal = scores(lower, upper, held)
    on_val = scores(lower, upper, train_clear.copy(data=held_all.values & val.values))
    far = held & (np.abs(fill - linear) > 0.05).any("band")  # where the network leaves the straight line
    on_far = scores(lower, upper, far)
    dates = int((held.values.reshape(held.shape[0], -1).mean(1) > 0.1).sum())  # dates with > 10 % of the area hidden
    raw_lo, raw_hi = _head_bounds(run, cube, train_clear, bands, [0.0] * len(bands))
    raw = scores(lower.copy(data=raw_lo), upper.copy(data=raw_hi), held)
    row = {"seed": seed, "n": int(cal["n"]), "coverage": float(cal["coverage"]), "width": float(cal["width"]),
           "raw_coverage": float(raw["coverage"]), "raw_width": float(raw["width"]),
           "far_n": int(on_far["n"]), "far_coverage": float(on_far["coverage"]),
           "val_coverage": float(on_val["coverage"]), "hidden_dates": dates,
           "rmse": float(score(fill, truth, held).set_index("band").loc["all", "rmse"]),
           "rmse_linear": float(score(linear, truth, held).set_index("band").loc["all", "rmse"])}
    if cqr_offset is not None:
        lo, hi = _head_bounds(run, cube, train_clear, bands, cqr_offset)
        cqr = scores(lower.copy(data=lo), upper.copy(data=hi), held)
        cqr_far = scores(lower.copy(data=lo), upper.copy(data=hi), far)
        row.update(cqr_coverage=float(cqr["coverage"]), cqr_width=float(cqr["width"]),
                   cqr_far_coverage=float(cqr_far["coverage"]))
    return row


def _plot(cube, clear, area, run: Path, rows: list[dict], nominal: float, bands: list[str], path: str) -> None:
    """Coverage per gap seed (normalised and CQR) beside two held-out series of gap seed 0 with their interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eocube.evaluate import artificial_gaps, split_bounds
    from eocube.learn import fill_cube

    visible, held = artificial_gaps(clear, 0.2, 0)
    held = (held & area).values
    truth = cube.sel(band=bands[:1])
    fill, lower, upper = (a.values[:, 0] for a in split_bounds(
        fill_cube(truth, run, visible, uncertainty=True, device="cpu").compute()))
    counts = held.sum(0)
    picks = np.argsort(counts.ravel())[::-1][[0, len(np.flatnonzero(counts)) // 2]]
    dates, values = cube["time"].values, truth.values[:, 0]
    fig = plt.figure(figsize=(12, 5.2))
    grid = fig.add_gridspec(2, 3)
    ax = fig.add_subplot(grid[:, 0])
    seeds = [r["seed"] for r in rows]
    ax.axhspan(0.7, 0.9, color="tab:green", alpha=0.12, label="target 70-90 %")
    ax.axhline(nominal, color="tab:green", lw=0.8)
    ax.plot(seeds, [r["coverage"] for r in rows], "o-", color="tab:blue", label="normalised (eocube)")
    if "cqr_coverage" in rows[0]:
        ax.plot(seeds, [r["cqr_coverage"] for r in rows], "s--", color="tab:orange", label="CQR, same head")
    ax.plot(seeds, [r["raw_coverage"] for r in rows], ".:", color="grey", label="head, uncalibrated")
    ax.set_xlabel("gap seed")
    ax.set_ylabel(f"coverage of the nominal {nominal:.0%} interval (test block)")
    ax.set_ylim(0.4, 1.0)
    ax.legend(fontsize=8, loc="lower right")
    for i, flat in enumerate(picks):
        y, x = np.unravel_index(flat, counts.shape)
        a = fig.add_subplot(grid[i, 1:])
        hid, vis = held[:, y, x], visible.values[:, y, x]
        a.errorbar(dates[hid], fill[hid, y, x], yerr=[fill[hid, y, x] - lower[hid, y, x],
                   upper[hid, y, x] - fill[hid, y, x]], fmt="o", ms=3, color="tab:blue", lw=1,
                   label="fill and its interval (hidden dates)")
        a.plot(dates[vis], values[vis, y, x], "k.", label="clear (input)")
        a.plot(dates[hid], values[hid, y, x], "rx", label="hidden (truth)")
        a.set_ylabel(f"{bands[0]}, px ({y}, {x})")
        if i == 0:
            a.legend(ncol=4, fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sentinel2", choices=DATASETS, help="the bundled series (default sentinel2)")
    parser.add_argument("--out", default="gapfill-uncertainty-run", help="training output folder (must not hold a run)")
    parser.add_argument("--config", default=None, help="YAML config (defaults: eocube/learn/default.yaml)")
    parser.add_argument("--model", default=None, help="score this training folder instead of training")
    parser.add_argument("--seeds", type=int, default=3, help="draws of artificial gaps (seeds 0..N-1)")
    parser.add_argument("--json", default=None, help="write the numbers here")
    parser.add_argument("--plot", default=None, help="PNG: coverage per gap seed and two held-out series with intervals")
    args = parser.parse_args()

    from eocube.learn.config import load_config
    from eocube.learn.export import MODEL_FILE, export_run, interval_file
    from eocube.learn.inference import held_out_area
    from eocube.learn.trainer import train

    t_start = time.perf_counter()
    ds = load_dataset(args.dataset)
    cube = ds.cube.compute()
    print(f"dataset {args.dataset}: {cube.sizes['time']} dates, {cube.sizes['y']} x {cube.sizes['x']} px; {ds.note}")
    train_s = None
    if args.model is None:
        t0 = time.perf_counter()
        result = train(load_config(args.config, ds.overrides or None), source=cube, out=args.out)
        train_s = time.perf_counter() - t0
        run = Path(args.out)
        print(f"training: {result.epochs} epochs in {train_s:.0f} s (incl. data preparation) on {hardware()}")
    else:
        run = Path(args.model)
    if not interval_file(run / MODEL_FILE).exists():
        export_run(run)
    card = json.loads(interval_file(run / MODEL_FILE).with_suffix(".json").read_text())
    cal = card["properties"]["eocube:interval"]
    nominal = float(cal["coverage"])
    kind = cal.get("calibration", "cqr")
    factor = cal["scale"] if kind == "normalised" else cal["offset_units"]
    print(f"interval head quantiles {cal['quantiles']}, nominal coverage {nominal:.0%}; {kind} calibration on the "
          f"validation blocks: {sum(cal['n']):,} hidden observations, raw coverage "
          f"{np.round(cal['raw_coverage'], 3).tolist()}, {'scale' if kind == 'normalised' else 'offset'} "
          f"{np.round(factor, 4).tolist()}")
    cqr_offset = cal.get("cqr_offset") if kind == "normalised" else cal["offset"]
    area, where = held_out_area(run, cube)
    bands = list(ds.overrides.get("data", {}).get("bands", ["NDVI"]))
    t0 = time.perf_counter()
    val = _val_area(run, area)
    rows = [_seed_row(cube, ds.clear, area, val, run, seed, bands, cqr_offset) for seed in range(args.seeds)]
    eval_s = time.perf_counter() - t0
    has_cqr = "cqr_coverage" in rows[0]
    print(f"\nheld out: {where}; artificial_gaps (donor dates, fraction 0.2), hidden observations of the test blocks "
          f"only (scored in {eval_s:.0f} s)")
    cols = [("coverage", "coverage", ".3f"), ("width", "width", ".4f"), ("far cov.", "far_coverage", ".3f"),
            ("raw cov.", "raw_coverage", ".3f")]
    cols += [("CQR cov.", "cqr_coverage", ".3f"), ("CQR width", "cqr_width", ".4f"),
             ("CQR far", "cqr_far_coverage", ".3f")] if has_cqr else []
    cols += [("val cov.", "val_coverage", ".3f"), ("RMSE", "rmse", ".4f"), ("linear", "rmse_linear", ".4f")]
    print(f"{'seed':>4}{'n':>8}{'dates':>6}" + "".join(f"{h:>10}" for h, _, _ in cols))
    for r in rows:
        print(f"{r['seed']:>4}{r['n']:>8,}{r['hidden_dates']:>6}" + "".join(f"{r[k]:>10{f}}" for _, k, f in cols))
    print("(dates: dates with > 10 % of the test area hidden, the draw's nearly independent events; far cov.: where "
          "the fill is more than 0.05 from linear interpolation; CQR: the same head calibrated by one offset per band "
          "on the same validation observations; val cov.: the calibrated interval on the validation blocks' hidden "
          "observations of the same draw)")
    summary = {}
    for _, key, _ in cols:
        v = np.array([r[key] for r in rows])
        summary[key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                        "min": float(v.min()), "max": float(v.max()),
                        "in_70_90": int(((v >= 0.7) & (v <= 0.9)).sum())}
    c = summary["coverage"]
    ok = 0.7 <= c["min"] and c["max"] <= 0.9
    print(f"\ncoverage of the nominal {nominal:.0%} interval: {c['mean']:.3f} ± {c['std']:.3f} (range "
          f"{c['min']:.3f}..{c['max']:.3f}; {c['in_70_90']}/{len(rows)} seeds in 0.70-0.90, target every seed: "
          f"{'met' if ok else 'NOT met'}); mean width {summary['width']['mean']:.4f}; uncalibrated quantiles: "
          f"{summary['raw_coverage']['mean']:.3f}")
    if has_cqr:
        q = summary["cqr_coverage"]
        print(f"CQR on the same head: {q['mean']:.3f} ± {q['std']:.3f} (range {q['min']:.3f}..{q['max']:.3f}, "
              f"{q['in_70_90']}/{len(rows)} in 0.70-0.90), mean width {summary['cqr_width']['mean']:.4f}")
    print(f"fill RMSE / linear RMSE = {summary['rmse']['mean'] / summary['rmse_linear']['mean']:.3f}")
    if args.plot:
        _plot(cube, ds.clear, area, run, rows, nominal, bands, args.plot)
    if args.json:
        import datetime
        import os

        Path(args.json).write_text(json.dumps({
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": "python benchmarks/bench_gapfill_uncertainty.py " + " ".join(sys.argv[1:]),
            "dataset": args.dataset, "rows": rows, "summary": summary, "nominal": nominal, "calibration": cal,
            "train_seconds": train_s, "hardware": hardware(), "run": str(run), "held_out": where,
            "wall_seconds": round(time.perf_counter() - t_start, 1),
            "load_average_1_5_15_min": [round(v, 2) for v in os.getloadavg()]}, indent=2))


if __name__ == "__main__":
    main()
