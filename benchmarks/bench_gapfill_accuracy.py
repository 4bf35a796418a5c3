"""Reproduce the gap-filling accuracy of the trained network against linear interpolation.

Trains ``eocube.learn`` with the default configuration on the bundled real
Sentinel-2 sample (or loads an existing checkpoint with ``--model``), then
scores it and the classical baselines on held-out artificial gaps of the test
box (never read in training; see ``eocube/learn/holdout.py`` for the protocol).

    .venv/bin/python benchmarks/bench_gapfill_accuracy.py --out /tmp/gapfill-run

Prints the training time, the hardware, an RMSE table and the ratio
``model RMSE / linear RMSE`` (acceptance: <= 0.85). With ``--plot FILE`` also
draws a few held-out series.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_common import cpu_model


def _hardware() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu_model()}), torch threads {torch.get_num_threads()}, {gpu}"


def _plot(cube, ckpt, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eocube.learn.checkpoint import model_from_checkpoint
    from eocube.learn.config import config_from_dict
    from eocube.learn.fill import fill_array
    from eocube.learn.holdout import linear_reference, make_holdout_case

    case = make_holdout_case(cube, config_from_dict(ckpt["config"]), seed=0)
    net, norm = model_from_checkpoint(ckpt)
    model = fill_array(net, norm, case.values, case.visible, case.days)
    linear = linear_reference(case.values, case.visible, case.days)
    counts = case.target[:, 0].sum(0)
    picks = np.argsort(counts.ravel())[::-1][:3]
    dates = cube["time"].values
    fig, axes = plt.subplots(len(picks), 1, figsize=(10, 2.6 * len(picks)), sharex=True)
    for ax, flat in zip(np.atleast_1d(axes), picks):
        y, x = np.unravel_index(flat, counts.shape)
        vis, hid = case.visible[:, y, x], case.target[:, 0, y, x]
        ax.plot(dates, linear[:, 0, y, x], "--", color="grey", label="linear")
        ax.plot(dates, model[:, 0, y, x], color="tab:blue", label="network")
        ax.plot(dates[vis], case.values[vis, 0, y, x], "k.", label="clear (input)")
        ax.plot(dates[hid], case.values[hid, 0, y, x], "rx", label="hidden (truth)")
        ax.set_ylabel(f"NDVI, test-box px\n(y={y}, x={x})")
    np.atleast_1d(axes)[0].legend(ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def _peer_protocol(cube, ckpt, path) -> None:
    """The same comparison with eocube.evaluate's protocol (its own gaps), restricted to the test box."""
    try:
        from eocube.evaluate.metrics import format_table
        from eocube.evaluate.run import evaluate_methods
    except ImportError:
        print("(eocube.evaluate not available: peer protocol skipped)")
        return
    from eocube.learn.config import config_from_dict
    from eocube.learn.fill import model_filler
    from eocube.learn.gaps import clear_mask

    cfg = config_from_dict(ckpt["config"])
    ys, xs = cfg.region("test").slices(cube.sizes["y"], cube.sizes["x"])
    box = cube.isel(y=ys, x=xs)
    clear = clear_mask(box, bands=list(cfg.data["bands"]), cloud_band=cfg.data["cloud_band"],
                       data_band=cfg.data.get("data_band")).compute()
    from eocube.cube import select_bands

    table = evaluate_methods(select_bands(box, list(cfg.data["bands"])), clear, extra={"model": model_filler(path, engine="loop")})
    print("\neocube.evaluate protocol (artificial_gaps, donor dates, fraction 0.2, seed 0) on the test box:")
    print(format_table(table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gapfill-run", help="training output folder (must not hold a run)")
    parser.add_argument("--config", default=None, help="YAML config (defaults: eocube/learn/default.yaml)")
    parser.add_argument("--model", default=None, help="score this checkpoint instead of training")
    parser.add_argument("--seeds", type=int, default=3, help="draws of artificial gaps")
    parser.add_argument("--plot", default=None, help="PNG file for a few held-out series")
    parser.add_argument("--json", default=None, help="write the numbers here")
    args = parser.parse_args()

    from eocube.datasets import sentinel2_sample
    from eocube.learn.checkpoint import load_checkpoint
    from eocube.learn.holdout import evaluate_holdout
    from eocube.learn.trainer import BEST, train

    cube = sentinel2_sample()
    train_s = None
    if args.model is None:
        t0 = time.perf_counter()
        result = train(args.config, out=args.out)
        train_s = time.perf_counter() - t0
        path = Path(args.out) / BEST
        print(f"training: {result.epochs} epochs in {train_s:.0f} s (incl. data preparation) on {_hardware()}")
    else:
        path = Path(args.model)
    ckpt = load_checkpoint(path)
    t0 = time.perf_counter()
    scores = evaluate_holdout(cube, ckpt, seeds=tuple(range(args.seeds)))
    eval_s = time.perf_counter() - t0
    n = int(scores.pop("n_hidden"))
    ref = scores["linear (numpy)"]
    print(f"\nheld-out artificial gaps: {n} hidden clear NDVI observations over {args.seeds} draws "
          f"(scored in {eval_s:.1f} s)")
    print(f"{'method':<18}{'RMSE':>10}{'vs linear':>12}")
    for name, value in sorted(scores.items(), key=lambda kv: kv[1]):
        print(f"{name:<18}{value:>10.4f}{value / ref:>12.3f}")
    ratio = scores["model"] / ref
    print(f"\nmodel RMSE / linear RMSE = {ratio:.3f} ({(1 - ratio) * 100:.1f}% lower; acceptance: >= 15% lower)")
    _peer_protocol(cube, ckpt, path)
    if args.plot:
        _plot(cube, ckpt, args.plot)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rmse": scores, "ratio_model_over_linear": ratio, "n_hidden": n, "train_seconds": train_s,
             "hardware": _hardware(), "checkpoint": str(path)}, indent=2))


if __name__ == "__main__":
    main()
