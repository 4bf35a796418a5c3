"""Reproduce the gap-filling accuracy of the trained network against linear interpolation.

Trains ``eocube.learn`` with the default configuration on the bundled real
Sentinel-2 sample (or takes an existing training folder with ``--model``), then
scores it and the classical methods with :func:`eocube.evaluate.evaluate_methods`:
real cloud masks of other dates hide 20 % of the clear observations of the whole
cube, every method fills from the rest, and only the hidden observations of the
run's held-out test part (never read in training) are scored; pooled over seeds.

    .venv/bin/python benchmarks/bench_gapfill_accuracy.py --out /tmp/gapfill-run

Prints the training time, the hardware, an RMSE table and the ratio
``model RMSE / linear RMSE`` (acceptance: <= 0.85). With ``--plot FILE`` also
draws a few held-out series. ``--area Y0:Y1,X0:X1`` scores a box of the test blocks only (the
like-for-like comparison with the pixel-box runs before the one training path: ``0:51,64:100``
with ``split: {seed: 1}``).
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


def _test_area(cube, run: Path):
    """``(y, x)`` boolean: the pixels the run never read in training (its split's test blocks)."""
    from eocube.learn.inference import held_out_area

    return held_out_area(run, cube)[0]


def _box(text: str | None, shape: tuple[int, int]) -> np.ndarray | None:
    """``(y, x)`` boolean of a pixel box ``"Y0:Y1,X0:X1"`` (``[start, stop)``, rows then columns), or None."""
    if not text:
        return None
    try:
        (y0, y1), (x0, x1) = ([int(v) for v in part.split(":")] for part in text.split(","))
    except ValueError:
        raise SystemExit(f"--area {text!r}: give rows and columns as Y0:Y1,X0:X1, e.g. 0:51,64:100") from None
    box = np.zeros(shape, bool)
    box[y0:y1, x0:x1] = True
    if not box.any():
        raise SystemExit(f"--area {text!r} holds no pixel of the {shape[0]} x {shape[1]} px cube")
    return box


def _scores(cube, run: Path, seeds: int, box: np.ndarray | None = None):
    """eocube.evaluate's protocol on the whole cube, scored on the held-out area (or a box of it), pooled over seeds."""
    import pandas as pd

    from eocube.cube import select_bands
    from eocube.evaluate import evaluate_methods
    from eocube.learn.inference import model_filler
    from eocube.masks import clear_from_cloud_band

    spec_bands = ["NDVI"]
    clear = clear_from_cloud_band(cube, "CLM", data_band="IS_DATA").compute()
    area = _test_area(cube, run)
    if box is not None:
        if (box & ~area.values).any():
            raise SystemExit(f"--area: {int((box & ~area.values).sum()):,} of its pixels are not in the run's test "
                             "blocks (they may have been read in training): pick a box inside them, or train with "
                             "another split.seed")
        area = area.copy(data=box)
    filler = model_filler(run, device="cpu")
    tables = [evaluate_methods(select_bands(cube, spec_bands), clear, seed=seed, where=area,
                               extra={"model": filler}).assign(seed=seed) for seed in range(seeds)]
    rows = pd.concat(tables)
    rows = rows[rows["band"] == "all"]
    sq = (rows["rmse"] ** 2 * rows["n"]).groupby(rows["method"]).sum()
    n = rows.groupby("method")["n"].sum()
    return {m: float(np.sqrt(sq[m] / n[m])) for m in n.index}, int(n.iloc[0]), int(area.sum())


def _plot(cube, run: Path, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eocube.evaluate import artificial_gaps
    from eocube.fill import fill_gaps
    from eocube.learn.inference import fill_cube
    from eocube.masks import clear_from_cloud_band

    clear = clear_from_cloud_band(cube, "CLM", data_band="IS_DATA").compute()
    visible, held = artificial_gaps(clear, 0.2, 0)
    held = held & _test_area(cube, run)
    nd = cube.sel(band=["NDVI"]).compute()
    model = fill_cube(nd, run, visible, device="cpu").values
    linear = fill_gaps(nd, visible, method="linear").values
    counts = held.values.sum(0)
    picks = np.argsort(counts.ravel())[::-1][:3]
    dates = cube["time"].values
    fig, axes = plt.subplots(len(picks), 1, figsize=(10, 2.6 * len(picks)), sharex=True)
    for ax, flat in zip(np.atleast_1d(axes), picks):
        y, x = np.unravel_index(flat, counts.shape)
        vis, hid = visible.values[:, y, x], held.values[:, y, x]
        ax.plot(dates, linear[:, 0, y, x], "--", color="grey", label="linear")
        ax.plot(dates, model[:, 0, y, x], color="tab:blue", label="network")
        ax.plot(dates[vis], nd.values[vis, 0, y, x], "k.", label="clear (input)")
        ax.plot(dates[hid], nd.values[hid, 0, y, x], "rx", label="hidden (truth)")
        ax.set_ylabel(f"NDVI, test px\n(y={y}, x={x})")
    np.atleast_1d(axes)[0].legend(ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gapfill-run", help="training output folder (must not hold a run)")
    parser.add_argument("--config", default=None, help="YAML config (defaults: eocube/learn/default.yaml)")
    parser.add_argument("--model", default=None, help="score this training folder instead of training")
    parser.add_argument("--seeds", type=int, default=3, help="draws of artificial gaps")
    parser.add_argument("--plot", default=None, help="PNG file for a few held-out series")
    parser.add_argument("--json", default=None, help="write the numbers here")
    parser.add_argument("--area", default=None,
                        help="score only this box of the run's test blocks, Y0:Y1,X0:X1 (e.g. 0:51,64:100: the pixels "
                             "that the pixel-box runs before the one training path held out too; train with "
                             "split.seed 1 to hold them out)")
    args = parser.parse_args()

    from eocube.datasets import sentinel2_sample
    from eocube.learn.export import MODEL_FILE, export_run
    from eocube.learn.trainer import train

    cube = sentinel2_sample()
    train_s = None
    if args.model is None:
        t0 = time.perf_counter()
        result = train(args.config, out=args.out)
        train_s = time.perf_counter() - t0
        run = Path(args.out)
        print(f"training: {result.epochs} epochs in {train_s:.0f} s (incl. data preparation) on {_hardware()}")
    else:
        run = Path(args.model)
    if not (run / MODEL_FILE).exists():
        export_run(run)
    t0 = time.perf_counter()
    scores, n, pixels = _scores(cube, run, args.seeds, _box(args.area, (cube.sizes["y"], cube.sizes["x"])))
    eval_s = time.perf_counter() - t0
    ref = scores["linear"]
    print(f"\neocube.evaluate protocol (artificial_gaps, donor dates, fraction 0.2, seeds 0..{args.seeds - 1}) over the "
          f"whole cube, scored on the {pixels:,} held-out pixels{' of ' + args.area if args.area else ''}: "
          f"{n:,} hidden clear NDVI observations "
          f"(scored in {eval_s:.1f} s)")
    print(f"{'method':<18}{'RMSE':>10}{'vs linear':>12}")
    for name, value in sorted(scores.items(), key=lambda kv: kv[1]):
        print(f"{name:<18}{value:>10.4f}{value / ref:>12.3f}")
    ratio = scores["model"] / ref
    print(f"\nmodel RMSE / linear RMSE = {ratio:.3f} ({(1 - ratio) * 100:.1f}% lower; acceptance: >= 15% lower)")
    if args.plot:
        _plot(cube, run, args.plot)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rmse": scores, "ratio_model_over_linear": ratio, "n_hidden": n, "train_seconds": train_s,
             "hardware": _hardware(), "run": str(run), "area": args.area, "pixels": pixels}, indent=2))


if __name__ == "__main__":
    main()
