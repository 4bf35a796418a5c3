"""Reproduce the gap-filling accuracy of the trained network against the classical methods.

Trains ``eocube.learn`` with the default configuration on a bundled real cube (or takes an
existing training folder with ``--model``), then scores it and the classical methods with
:func:`eocube.evaluate.evaluate_methods`: real cloud masks of other dates hide 20 % of the
clear observations of the whole cube, every method fills from the rest, and only the hidden
observations of the run's held-out test blocks (never read in training) are scored, for each
gap seed (``--seeds``, default 3).

    .venv/bin/python benchmarks/bench_gapfill_accuracy.py --out /tmp/gapfill-run
    .venv/bin/python benchmarks/bench_gapfill_accuracy.py --dataset landsat --out /tmp/gapfill-landsat

``--dataset sentinel2`` (default): the Sentinel-2 NDVI sample, clear = s2cloudless ``CLM`` and
``IS_DATA``. ``--dataset landsat``: the bundled Landsat 5/7 series (Colorado), clear from its
``QA_PIXEL`` band through :func:`eocube.masks.clear_from_qa_pixel` (fill, cloud, cloud shadow not
clear) and a finite NDVI; the network keeps the default configuration but for what the data
impose: the mask band names (a cloud band and a data band made from ``QA_PIXEL``) and
``split.block_size`` 31 (the 61 x 61 px crop in 2 x 2 blocks, as 51 makes of the 101 x 100 px
Sentinel-2 sample). Both are printed.

Prints the training time, the hardware, the RMSE per method (mean ± std and range over the gap
seeds, and pooled), and the ratios ``network / linear`` and ``network / best classical`` (the
lowest classical RMSE of each seed), per seed and over seeds. ``--json FILE`` stores it all with
the date, the machine, the load and the command. With ``--plot FILE`` also draws a few held-out
series. ``--area Y0:Y1,X0:X1`` scores a box of the test blocks only (the
like-for-like comparison with the pixel-box runs before the one training path: ``0:51,64:100``
with ``split: {seed: 1}``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_common import cpu_model

DATASETS = ("sentinel2", "landsat")
"""The bundled cubes ``--dataset`` takes."""

LANDSAT_BLOCK_SIZE = 31
"""``split.block_size`` on the 61 x 61 px Landsat crop: 2 x 2 blocks (31 and 30 px), as 51 px on the S2 sample."""


@dataclass
class Dataset:
    """A bundled cube made ready for the bench: the cube to train on and score, its clear mask, the config changes."""

    name: str
    cube: object
    clear: object
    overrides: dict = field(default_factory=dict)
    note: str = ""


def _hardware() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu_model()}), torch threads {torch.get_num_threads()}, {gpu}"


def load_dataset(name: str) -> Dataset:
    """The cube of ``--dataset NAME``, its clear mask and the config keys the data impose.

    ``landsat``: the QA_PIXEL clear mask (:func:`eocube.masks.clear_from_qa_pixel`) and a finite
    NDVI; the training cube gets two bands made from it, ``CLOUD`` (1 where QA_PIXEL says cloud or
    cloud shadow) and ``IS_DATA`` (1 where QA_PIXEL is not fill and NDVI is finite), so that the
    trainer's ``clear_from_cloud_band(CLOUD, data_band=IS_DATA)`` is the same clear mask.
    """
    import xarray as xr

    from eocube.cube import select_bands
    from eocube.masks import clear_from_cloud_band, clear_from_qa_pixel

    if name == "sentinel2":
        from eocube.datasets import sentinel2_sample

        cube = sentinel2_sample()
        return Dataset(name, cube, clear_from_cloud_band(cube, "CLM", data_band="IS_DATA").compute(),
                       note="clear: CLM == 0 and IS_DATA; default config")
    if name != "landsat":
        raise SystemExit(f"--dataset {name!r}: use one of {', '.join(DATASETS)}")
    from eocube.datasets import landsat_sample

    cube = landsat_sample()
    ndvi = select_bands(cube, "NDVI")
    clear_qa = clear_from_qa_pixel(cube)
    data = clear_from_qa_pixel(cube, flags=["fill"]) & ndvi.isel(band=0, drop=True).notnull()
    cloud = ~clear_qa & data
    masks = xr.concat([cloud.astype("float32").expand_dims(band=["CLOUD"]),
                       data.astype("float32").expand_dims(band=["IS_DATA"])], dim="band").transpose(*ndvi.dims)
    train_cube = xr.concat([ndvi, masks], dim="band")
    train_cube.attrs = cube.attrs
    train_cube.name = cube.name
    # held in memory (4.7 MB), one chunk per band as in the store: windows are not re-derived from QA_PIXEL per batch
    train_cube = train_cube.rio.write_crs(cube.rio.crs).compute().chunk({"time": -1, "band": 1, "y": -1, "x": -1})
    clear = clear_from_cloud_band(train_cube, "CLOUD", data_band="IS_DATA").compute()
    overrides = {"data": {"bands": ["NDVI"], "cloud_band": "CLOUD", "data_band": "IS_DATA"},
                 "split": {"block_size": LANDSAT_BLOCK_SIZE}}
    note = (f"clear: clear_from_qa_pixel(QA_PIXEL) (fill, dilated cloud, cirrus, cloud, cloud shadow not clear) and "
            f"finite NDVI; config changes from the default: data.cloud_band CLOUD, data.data_band IS_DATA (from "
            f"QA_PIXEL), split.block_size {LANDSAT_BLOCK_SIZE} (61 x 61 px crop in 2 x 2 blocks)")
    return Dataset(name, train_cube, clear, overrides, note)


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


def _scores(ds: Dataset, run: Path, seeds: int, box: np.ndarray | None = None):
    """eocube.evaluate's protocol on the whole cube, scored on the held-out area (or a box of it), per gap seed.

    Returns the :class:`~eocube.evaluate.seeds.SeedScores` (reference ``network``), the RMSE pooled over seeds
    per method, the hidden observations scored (all seeds) and the pixels scored.
    """
    from eocube.cube import select_bands
    from eocube.evaluate import evaluate_methods
    from eocube.evaluate.seeds import collect
    from eocube.learn.inference import model_filler

    cube = ds.cube
    area = _test_area(cube, run)
    if box is not None:
        if (box & ~area.values).any():
            raise SystemExit(f"--area: {int((box & ~area.values).sum()):,} of its pixels are not in the run's test "
                             "blocks (they may have been read in training): pick a box inside them, or train with "
                             "another split.seed")
        area = area.copy(data=box)
    filler = model_filler(run, device="cpu")
    results, sq, count = {}, {}, {}
    for seed in range(seeds):
        rows = evaluate_methods(select_bands(cube, ["NDVI"]), ds.clear, seed=seed, where=area,
                                extra={"network": filler})
        rows = rows[rows["band"] == "all"]
        results[seed] = {r.method: {"rmse": float(r.rmse), "n": int(r.n)} for r in rows.itertuples()}
        for r in rows.itertuples():
            sq[r.method] = sq.get(r.method, 0.0) + float(r.rmse) ** 2 * int(r.n)
            count[r.method] = count.get(r.method, 0) + int(r.n)
    pooled = {m: float(np.sqrt(sq[m] / count[m])) for m in sq}
    return collect(results, reference="network"), pooled, int(count["network"]), int(area.sum())


def ratios(scores) -> dict[str, dict]:
    """Per gap seed, ``network / linear`` and ``network / best classical`` RMSE, with mean, std and range."""
    table = scores.table[scores.table["metric"] == "rmse"].pivot(index="seed", columns="method", values="value")
    classical = [m for m in table.columns if m != "network"]
    per_seed = {"network/linear": table["network"] / table["linear"],
                "network/best classical": table["network"] / table[classical].min(axis=1)}
    best = table[classical].idxmin(axis=1)
    out = {}
    for name, values in per_seed.items():
        v = values.to_numpy(float)
        out[name] = {"per_seed": {int(s): float(x) for s, x in values.items()}, "mean": float(v.mean()),
                     "std": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
                     "min": float(v.min()), "max": float(v.max())}
    out["network/best classical"]["best_classical_per_seed"] = {int(s): str(m) for s, m in best.items()}
    return out


def _plot(ds: Dataset, run: Path, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eocube.evaluate import artificial_gaps
    from eocube.fill import fill_gaps
    from eocube.learn.inference import fill_cube

    cube, clear = ds.cube, ds.clear
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's options (``argv``: the command line without the program, None for ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sentinel2", choices=DATASETS,
                        help="bundled cube: sentinel2 (NDVI sample, CLM mask) or landsat (QA_PIXEL mask)")
    parser.add_argument("--out", default="gapfill-run", help="training output folder (must not hold a run)")
    parser.add_argument("--config", default=None, help="YAML config (defaults: eocube/learn/default.yaml)")
    parser.add_argument("--model", default=None, help="score this training folder instead of training")
    parser.add_argument("--seeds", type=int, default=3, help="draws of artificial gaps (gap seeds 0 .. N-1)")
    parser.add_argument("--plot", default=None, help="PNG file for a few held-out series")
    parser.add_argument("--json", default=None, help="write the numbers here (with date, machine, load, command)")
    parser.add_argument("--area", default=None,
                        help="score only this box of the run's test blocks, Y0:Y1,X0:X1 (e.g. 0:51,64:100: the pixels "
                             "that the pixel-box runs before the one training path held out too; train with "
                             "split.seed 1 to hold them out)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from eocube.learn.config import load_config
    from eocube.learn.export import MODEL_FILE, export_run
    from eocube.learn.trainer import train

    t_start = time.perf_counter()
    ds = load_dataset(args.dataset)
    cube = ds.cube
    print(f"dataset {args.dataset}: {cube.sizes['time']} dates, {cube.sizes['y']} x {cube.sizes['x']} px; {ds.note}")
    train_s = None
    if args.model is None:
        t0 = time.perf_counter()
        result = train(load_config(args.config, ds.overrides or None), source=cube, out=args.out)
        train_s = time.perf_counter() - t0
        run = Path(args.out)
        print(f"training: {result.epochs} epochs in {train_s:.0f} s (incl. data preparation) on {_hardware()}")
    else:
        run = Path(args.model)
    if not (run / MODEL_FILE).exists():
        export_run(run)
    t0 = time.perf_counter()
    scores, pooled, n, pixels = _scores(ds, run, args.seeds, _box(args.area, (cube.sizes["y"], cube.sizes["x"])))
    eval_s = time.perf_counter() - t0
    print(f"\neocube.evaluate protocol (artificial_gaps, donor dates, fraction 0.2, gap seeds 0..{args.seeds - 1}) over "
          f"the whole cube, scored on the {pixels:,} held-out pixels{' of ' + args.area if args.area else ''}: "
          f"{n:,} hidden clear NDVI observations over the seeds (scored in {eval_s:.1f} s)\n")
    print(scores.to_markdown(["rmse"], digits=4, labels={"rmse": "RMSE"}))
    ref = pooled["linear"]
    print(f"\n{'method':<18}{'pooled RMSE':>12}{'vs linear':>12}")
    for name, value in sorted(pooled.items(), key=lambda kv: kv[1]):
        print(f"{name:<18}{value:>12.4f}{value / ref:>12.3f}")
    rat = ratios(scores)
    print()
    for name, r in rat.items():
        seeds = ", ".join(f"{v:.3f}" for v in r["per_seed"].values())
        print(f"{name}: {r['mean']:.3f} ± {r['std']:.3f} ({r['min']:.3f} .. {r['max']:.3f}; per gap seed {seeds})")
    best = rat["network/best classical"]["best_classical_per_seed"]
    print(f"best classical per gap seed: {', '.join(best.values())}")
    load = [round(v, 2) for v in os.getloadavg()]
    print(f"load average (1, 5, 15 min) at the end: {load}; targets (issue 24): network/linear <= 0.75, "
          "network/best classical <= 0.85")
    if args.plot:
        _plot(ds, run, args.plot)
    if args.json:
        command = "python benchmarks/bench_gapfill_accuracy.py " + " ".join(sys.argv[1:] if argv is None else argv)
        scores.save(args.json, command=command.strip(), machine=_hardware(), extra={
            "dataset": args.dataset, "dataset_note": ds.note, "config_overrides": ds.overrides,
            "ratios": rat, "rmse_pooled": pooled, "n_hidden_all_seeds": n, "pixels_scored": pixels,
            "area": args.area, "run": str(run), "train_seconds": None if train_s is None else round(train_s, 1),
            "wall_seconds": round(time.perf_counter() - t_start, 1), "load_average_1_5_15_min": load})
        print(f"json: {args.json}")


if __name__ == "__main__":
    main()
