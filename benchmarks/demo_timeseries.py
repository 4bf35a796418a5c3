"""Time-series classification of the Sentinel-2 sample: a temporal CNN against two forests, over block-split seeds.

One command, on the real data bundled with eocube (the sample's Sentinel-2 NDVI series, 68 dates
2015-07 .. 2017-12 with s2cloudless masks, and eo-learn's land-cover map of the same square
kilometre as labels); notebook 05 runs the same functions::

    .venv/bin/python benchmarks/demo_timeseries.py                 # full run, 5 split seeds (750 s at load 11, 2 cores)
    .venv/bin/python benchmarks/demo_timeseries.py --seeds 10      # more seeds
    .venv/bin/python benchmarks/demo_timeseries.py --quick         # CI: 2 seeds, fewer trees and epochs

What it does:

1. **Series**: clear observations (s2cloudless mask and data mask), NDVI filled linearly along time
   onto a 16-day grid (56 dates): every pixel gets a complete series, the input of every method.
2. **Labels**: the sample's land-cover map, four classes (cultivated land, 11 pixels, merged into
   grassland); unlabelled pixels are neither trained on nor scored.
3. **Split**: blocks of 20 x 20 px, 60 % train, 15 % validation, 25 % test (seeded by the split
   seed); training pixels at least 2 px from any other part (:func:`~eocube.learn.temporal_classifier.split_pixels`);
   every labelled pixel of the test blocks is scored, the same pixels for every method.
4. **Methods**, trained on the same training pixels:

   * ``network``: TempCNN (:func:`~eocube.learn.temporal_classifier.fit_temporal_classifier`),
     class-balanced cross-entropy, best epoch by validation macro-F1, training seed = split seed;
   * ``random forest``: scikit-learn on the full series (56 values per pixel), class-balanced;
   * ``harmonic forest``: the same forest on harmonic and summary features of each series
     (:func:`~eocube.learn.temporal_classifier.temporal_features`: trend, annual and semi-annual
     harmonics, amplitudes, residual, spread, quantiles).

5. **Seeds**: steps 3-4 per split seed (``--seeds N``: 0 .. N-1, default 5; 2 with ``--quick``), then
   the multi-seed table (:func:`eocube.evaluate.run_seeds`): per method the mean, standard deviation
   and range of OA, macro-F1 and mIoU, and the paired per-seed differences network - forest with the
   seeds the network wins; stored with the date, the machine and the command in ``OUT/seeds.json``.

Data: contains modified Copernicus Sentinel data (eo-learn sample, MIT); land cover from the same sample.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_common import add_seed_options, hardware, save_seed_scores, seed_list

CLASSES = [(2, "forest", "054907"), (3, "grassland", "FFA500"), (4, "shrubland", "806000"),
           (8, "artificial surface", "DC143C")]
"""The four classes kept (value, name, colour); cultivated land (1, 11 pixels) goes into grassland."""
MAPPING = {1: "grassland", 2: "forest", 3: "grassland", 4: "shrubland", 8: "artificial surface"}
METHODS = ("network", "random forest", "harmonic forest")
METRICS = ("macro_f1", "oa", "miou")
LABELS = {"macro_f1": "macro-F1", "oa": "OA", "miou": "mIoU"}


def settings(quick: bool = False, *, epochs: int | None = None, threads: int = 2) -> dict:
    """The split, network and forest settings (``quick``: fewer trees and epochs, for CI and the notebook)."""
    return {"block_size": 20, "fractions": (0.6, 0.15, 0.25), "buffer": 2,
            "epochs": epochs or (10 if quick else 20), "batch_size": 128, "trees": 100 if quick else 300,
            "threads": threads, "quick": quick}


@dataclass
class Data:
    """The gap-filled series and labels of the sample, shared by every seed."""

    series: np.ndarray
    """``(pixels, dates, 1)`` gap-filled NDVI, pixels in row-major order."""
    target: np.ndarray
    """``(pixels,)`` class index 0 .. 3, -1 unlabelled."""
    shape: tuple[int, int]
    times: np.ndarray
    names: list[str]
    colors: list[str]
    filled: object
    """The filled cube ``(time, band, y, x)``."""


def load_data() -> Data:
    """Mask, fill onto the 16-day grid and tabulate the sample's series; the sample's land cover as labels."""
    from eocube.datasets import sentinel2_sample, sentinel2_sample_landcover
    from eocube.labels import classes_from_attrs, labels_from_band
    from eocube.learn.temporal_classifier import pixel_series

    cube = sentinel2_sample()
    labels = labels_from_band(sentinel2_sample_landcover(), "label", classes=CLASSES, mapping=MAPPING)
    info = classes_from_attrs(labels)
    lab = labels.values[0, 0]
    target = np.full(lab.shape, -1)
    for i, c in enumerate(info):
        target[lab == c.value] = i
    clear = cube.eocube.clear_from_cloud_band("CLM", data_band="IS_DATA")
    filled = cube.eocube.gapfill(clear, method="linear", bands="NDVI", time_grid="16D").compute()
    series, _ = pixel_series(filled)
    return Data(series, target.ravel(), lab.shape, filled.time.values, [c.name for c in info],
                ["#" + c.color for c in info], filled)


def make_split(seed: int, data: Data, cfg: dict):
    """The block split of ``seed`` and its labelled train / val / test pixels (flat bool masks)."""
    from eocube.learn.split import BlockSplit
    from eocube.learn.temporal_classifier import split_pixels

    split = BlockSplit.make(data.shape, block_size=cfg["block_size"], fractions=cfg["fractions"],
                            buffer=cfg["buffer"], seed=seed)
    parts = {p: split_pixels(split, p).ravel() & (data.target >= 0) for p in ("train", "val", "test")}
    return split, parts


def one_seed(seed: int, data: Data, cfg: dict, *, keep: dict | None = None, log=print) -> dict:
    """Train the network and both forests on the split of ``seed``; their scores on its test pixels.

    Returns ``{method: {"oa", "macro_f1", "miou", "n"}}`` (``n``: the test pixels, the same for all).
    With ``keep`` (a dict), the split, the fitted models, the confusion matrices and the test
    predictions are put there (the notebook draws them for one seed).
    """
    from sklearn.ensemble import RandomForestClassifier

    from eocube.learn.metrics import classification_scores, confusion_matrix
    from eocube.learn.temporal_classifier import fit_temporal_classifier, predict_series, temporal_features

    t_seed = time.perf_counter()
    split, parts = make_split(seed, data, cfg)
    k = len(data.names)
    y = {p: data.target[m] for p, m in parts.items()}
    missing = [data.names[c] for c in range(k) if not (y["train"] == c).any()]
    if missing:
        raise SystemExit(f"error: split seed {seed} leaves no training pixel of {missing}: use larger data or "
                         f"another block size")
    x = data.series
    timing = {}

    t0 = time.perf_counter()
    fit = fit_temporal_classifier(x[parts["train"]], y["train"], k, val=(x[parts["val"]], y["val"]),
                                  epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=seed)
    pred = {"network": predict_series(fit.model, x[parts["test"]])}
    timing["network"] = time.perf_counter() - t0

    def forest(features):
        f = RandomForestClassifier(n_estimators=cfg["trees"], class_weight="balanced", n_jobs=cfg["threads"],
                                   random_state=seed)
        return f.fit(features[parts["train"]], y["train"])

    t0 = time.perf_counter()
    flat = x.reshape(len(x), -1)
    rf = forest(flat)
    pred["random forest"] = rf.predict(flat[parts["test"]])
    timing["random forest"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats, _ = temporal_features(x, data.times)
    hf = forest(feats)
    pred["harmonic forest"] = hf.predict(feats[parts["test"]])
    timing["harmonic forest"] = time.perf_counter() - t0

    cms = {m: confusion_matrix(y["test"], p, k) for m, p in pred.items()}
    scores = {m: classification_scores(cm, data.names) for m, cm in cms.items()}
    n = int(parts["test"].sum())
    best = fit.history[fit.best_epoch - 1]["val_macro_f1"]
    log(f"seed {seed}: {len(split.blocks('train'))} train, {len(split.blocks('val'))} validation, "
        f"{len(split.blocks('test'))} test blocks; pixels {int(parts['train'].sum())} train (buffered), "
        f"{int(parts['val'].sum())} validation, {n} test ("
        + ", ".join(f"{nm} {int((y['test'] == c).sum())}" for c, nm in enumerate(data.names))
        + f"); network best epoch {fit.best_epoch}/{cfg['epochs']} (validation macro-F1 {best:.3f}); "
        + ", ".join(f"{m} {t:.1f} s" for m, t in timing.items()) + f"; seed {time.perf_counter() - t_seed:.0f} s")
    if keep is not None:
        keep.update({"seed": seed, "split": split, "parts": parts, "fit": fit, "forest": rf, "harmonic_forest": hf,
                     "features": feats, "confusion": cms, "scores": scores})
    return {m: {**{key: s[key] for key in METRICS}, "n": n} for m, s in scores.items()}


def seed_table(scores) -> str:
    """The multi-seed Markdown tables of :class:`eocube.evaluate.SeedScores`."""
    return scores.to_markdown(list(METRICS), labels=LABELS)


def plot_seeds(scores, ax=None, metric: str = "macro_f1"):
    """Per-seed scores of each method, the seeds joined by lines (a paired view)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    methods = scores.methods
    vals = np.array([scores.values(m, metric) for m in methods])  # (methods, seeds)
    for j, s in enumerate(scores.seeds):
        ax.plot(range(len(methods)), vals[:, j], "o-", color=f"C{j % 10}", alpha=0.8, label=f"seed {s}")
    ax.set_xticks(range(len(methods)), methods)
    ax.set_xlim(-0.3, len(methods) - 0.7)
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.legend(fontsize=8, ncol=2)
    return ax


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI settings: 2 seeds, 100 trees, 10 epochs")
    p.add_argument("--out", default=None, help="folder of seeds.json and scores.json; "
                                               "default /tmp/eocube-demo-timeseries[-quick]")
    p.add_argument("--plot-dir", default=None, help="write demo_timeseries_seeds.png there")
    p.add_argument("--epochs", type=int, default=None, help="override the network's epochs")
    p.add_argument("--threads", type=int, default=2, help="forest jobs and dask threads (default 2); "
                                                          "the network trains on one thread")
    add_seed_options(p)
    a = p.parse_args(argv)
    seeds = seed_list(a)

    import dask

    dask.config.set(scheduler="threads", num_workers=a.threads)
    from eocube.evaluate import run_seeds

    t_start = time.perf_counter()
    out = Path(a.out or f"/tmp/eocube-demo-timeseries{'-quick' if a.quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    cfg = settings(a.quick, epochs=a.epochs, threads=a.threads)
    print(f"machine: {hardware()}")
    data = load_data()
    print(f"series: {data.series.shape} (pixels, dates, bands), {data.times[0]!s:.10} .. {data.times[-1]!s:.10}; "
          f"classes: " + ", ".join(f"{n} {int((data.target == i).sum())}" for i, n in enumerate(data.names))
          + f"; settings: {cfg}; loaded in {time.perf_counter() - t_start:.0f} s")
    scores = run_seeds(lambda seed: one_seed(seed, data, cfg), seeds, reference="network")
    print(f"\n{len(seeds)} block-split seeds, every labelled pixel of the test blocks, the same pixels for every "
          f"method (paired: network - forest per seed, and the seeds where the network is better):\n\n"
          + seed_table(scores) + "\n")
    wall = time.perf_counter() - t_start
    path = save_seed_scores(scores, out, "demo_timeseries.py", argv, wall)
    (out / "scores.json").write_text(json.dumps({"settings": {k: list(v) if isinstance(v, tuple) else v
                                                              for k, v in cfg.items()},
                                                 "classes": data.names, "seeds": scores.to_dict()}, indent=1))
    if a.plot_dir:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ax = plot_seeds(scores)
        ax.set_title(f"time-series classification, {len(seeds)} split seeds (held-out test blocks)", fontsize=9)
        png = Path(a.plot_dir) / "demo_timeseries_seeds.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        ax.figure.tight_layout()
        ax.figure.savefig(png, dpi=80)
        plt.close(ax.figure)
        print(f"picture: {png}")
    print(f"total: {wall:.0f} s; seeds in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
