"""Calibration of the learned gap fill's per-pixel interval on the held-out half of a scene.

Trains ``eocube.learn`` with the default configuration on the bundled real Sentinel-2 sample
(the interval head is on by default: ``network.quantiles: [0.1, 0.9]``, calibrated by
split-conformal CQR on the run's *validation* blocks), or takes a training folder with
``--model``. Then, for each gap seed, the eocube.evaluate protocol hides 20 % of the clear
observations behind real cloud masks of other dates (:func:`eocube.evaluate.artificial_gaps`),
the network fills them with ``fill_cube(..., uncertainty=True)`` and only the hidden observations
of the run's *test* blocks (never read in training nor in calibration) are scored: the share of
hidden truths inside ``[lower, upper]`` (coverage; target: the nominal 80 % within 70-90 %), the
mean width, and, for comparison, the coverage of the interval head's raw (uncalibrated) quantiles,
the calibrated interval's coverage on the validation blocks under the same draw, and the fill's RMSE
against linear interpolation.

    nice -n 5 .venv/bin/python benchmarks/bench_gapfill_uncertainty.py --out /tmp/gapfill-unc-run

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


def _raw_bounds(run: Path, cube, train_clear, bands: list[str]):
    """The interval head's quantiles without the conformal offset, over the whole cube (in memory)."""
    import torch

    from eocube.learn.checkpoint import load_checkpoint, model_from_checkpoint
    from eocube.learn.export import GapFillIntervalModule
    from eocube.learn.gaps import days_since_epoch

    net, normaliser = model_from_checkpoint(load_checkpoint(run / "best.pt"))
    module = GapFillIntervalModule(net, normaliser, [0.0] * len(bands)).eval()  # CQR with offset 0: the raw quantiles
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


def _seed_row(cube, clear, area, val, run: Path, seed: int, bands: list[str]) -> dict[str, float]:
    from eocube.evaluate import artificial_gaps, interval_scores, score, split_bounds
    from eocube.fill import fill_gaps
    from eocube.learn import fill_cube

    truth = cube.sel(band=bands)
    train_clear, held_all = artificial_gaps(clear, 0.2, seed)
    held = held_all & area
    filled = fill_cube(truth, run, train_clear, uncertainty=True, device="cpu").compute()
    fill, lower, upper = split_bounds(filled)
    cal = interval_scores(lower, upper, truth, held).set_index("band").loc["all"]
    on_val = interval_scores(lower, upper, truth, train_clear.copy(data=held_all.values & val.values))
    dates = int((held.values.reshape(held.shape[0], -1).mean(1) > 0.1).sum())  # dates with > 10 % of the area hidden
    raw_lo, raw_hi = _raw_bounds(run, cube, train_clear, bands)
    raw = interval_scores(lower.copy(data=raw_lo), upper.copy(data=raw_hi), truth, held).set_index("band").loc["all"]
    rmse = score(fill, truth, held).set_index("band").loc["all", "rmse"]
    linear = score(fill_gaps(truth, train_clear, method="linear").compute(), truth, held).set_index("band").loc["all", "rmse"]
    return {"seed": seed, "n": int(cal["n"]), "coverage": float(cal["coverage"]), "width": float(cal["width"]),
            "raw_coverage": float(raw["coverage"]), "raw_width": float(raw["width"]), "rmse": float(rmse),
            "rmse_linear": float(linear), "val_coverage": float(on_val.set_index("band").loc["all", "coverage"]),
            "hidden_dates": dates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gapfill-uncertainty-run", help="training output folder (must not hold a run)")
    parser.add_argument("--config", default=None, help="YAML config (defaults: eocube/learn/default.yaml)")
    parser.add_argument("--model", default=None, help="score this training folder instead of training")
    parser.add_argument("--seeds", type=int, default=3, help="draws of artificial gaps (seeds 0..N-1)")
    parser.add_argument("--json", default=None, help="write the numbers here")
    args = parser.parse_args()

    from eocube.datasets import sentinel2_sample
    from eocube.learn.export import MODEL_FILE, export_run, interval_file
    from eocube.learn.inference import held_out_area
    from eocube.learn.trainer import train
    from eocube.masks import clear_from_cloud_band

    cube = sentinel2_sample().compute()
    train_s = None
    if args.model is None:
        t0 = time.perf_counter()
        result = train(args.config, out=args.out)
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
    print(f"interval head quantiles {cal['quantiles']}, nominal coverage {nominal:.0%}; CQR on the validation blocks: "
          f"{sum(cal['n']):,} hidden observations, raw coverage {np.round(cal['raw_coverage'], 3).tolist()}, "
          f"offset {np.round(cal['offset_units'], 4).tolist()} (band units)")
    clear = clear_from_cloud_band(cube, "CLM", data_band="IS_DATA").compute()
    area, where = held_out_area(run, cube)
    bands = list(card["properties"]["mlm:input"][0]["bands"]) if "mlm:input" in card["properties"] else ["NDVI"]
    bands = [b if isinstance(b, str) else b["name"] for b in bands]
    t0 = time.perf_counter()
    val = _val_area(run, area)
    rows = [_seed_row(cube, clear, area, val, run, seed, bands) for seed in range(args.seeds)]
    eval_s = time.perf_counter() - t0
    print(f"\nheld out: {where}; artificial_gaps (donor dates, fraction 0.2), hidden observations of the test blocks "
          f"only (scored in {eval_s:.0f} s)")
    print(f"{'seed':>4}{'n':>8}{'dates':>6}{'coverage':>10}{'width':>9}{'raw cov.':>10}{'raw width':>11}"
          f"{'val cov.':>10}{'RMSE':>9}{'linear':>9}")
    for r in rows:
        print(f"{r['seed']:>4}{r['n']:>8,}{r['hidden_dates']:>6}{r['coverage']:>10.3f}{r['width']:>9.4f}"
              f"{r['raw_coverage']:>10.3f}{r['raw_width']:>11.4f}{r['val_coverage']:>10.3f}{r['rmse']:>9.4f}"
              f"{r['rmse_linear']:>9.4f}")
    print("(dates: dates with > 10 % of the test area hidden, the draw's nearly independent events; val cov.: the "
          "calibrated interval on the validation blocks' hidden observations of the same draw)")
    summary = {}
    for key in ("coverage", "width", "raw_coverage", "raw_width", "val_coverage", "rmse", "rmse_linear"):
        v = np.array([r[key] for r in rows])
        summary[key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                        "min": float(v.min()), "max": float(v.max())}
    c = summary["coverage"]
    ok = 0.7 <= c["min"] and c["max"] <= 0.9
    print(f"\ncoverage of the nominal {nominal:.0%} interval: {c['mean']:.3f} ± {c['std']:.3f} (range "
          f"{c['min']:.3f}..{c['max']:.3f}; target 0.70-0.90 on every seed: {'met' if ok else 'NOT met'}); mean width "
          f"{summary['width']['mean']:.4f}; uncalibrated quantiles: {summary['raw_coverage']['mean']:.3f}")
    print(f"fill RMSE / linear RMSE = {summary['rmse']['mean'] / summary['rmse_linear']['mean']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary, "nominal": nominal, "calibration": cal,
                                               "train_seconds": train_s, "hardware": hardware(), "run": str(run),
                                               "held_out": where}, indent=2))


if __name__ == "__main__":
    main()
