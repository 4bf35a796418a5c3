"""Re-export a ``demo_superres.py`` run's weights with ``network.fallback`` on and score them like the demo.

The check behind the README's "same trained weights re-exported with the fallback" line: the fallback changes
the output only where a band to sharpen is beyond ``network.clip``, so the same weights show what it does
alone, without a new training (whose validation choices also change)::

    .venv/bin/python benchmarks/rescore_superres_fallback.py RUN OUT   # RUN: OUT/run of demo_superres.py --seed K

Prints and writes ``OUT/scores_fb.json``: PSNR, RMSE, SSIM, SAM and the PSNR/RMSE away from saturation of the
network and of the guided baseline on the same test-block cores as the demo.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_superres as S
from _demo_common import core_boxes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="training folder of a demo_superres.py run (holds best.pt)")
    p.add_argument("out", help="folder for the re-exported run and scores_fb.json")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    from eocube.baselines import guided_highpass
    from eocube.datasets import sentinel2_l1c_scene
    from eocube.learn.checkpoint import load_checkpoint
    from eocube.learn.export import export_run
    from eocube.learn.split import BlockSplit
    from eocube.models import apply_model

    run = Path(a.out) / "run"
    run.mkdir(parents=True, exist_ok=True)
    ckpt = torch.load(Path(a.run) / "best.pt", weights_only=True, map_location="cpu")
    if ckpt["network"].get("clip") is None:
        raise SystemExit(f"error: {a.run} was trained without network.clip: the fallback needs it")
    ckpt["network"]["fallback"] = True
    ckpt["config"]["network"]["fallback"] = True
    torch.save(ckpt, run / "best.pt")
    export_run(run, tta=bool(ckpt["config"]["train"].get("tta", False)))

    scene = sentinel2_l1c_scene()
    s10, s20 = scene["10m"].sel(band=S.GUIDE), scene["20m"].sel(band=S.LOW)
    _, sigma_fine = S.sigma_for_mtf(S.MTF_NYQUIST)
    d10 = S.coarser(s10, S.degrade(s10.values.astype("float32"), sigma_fine))
    d20 = S.coarser(s20, S.degrade(s20.values.astype("float32"), sigma_fine))
    truth = S.coarser(s10, s20.values.astype("float32"), bands=S.LOW).isel(time=0).values
    low, guide = d20.isel(time=0).values, d10.isel(time=0).values
    valid, far = S.scorable_truth(truth), S.far_from_saturation(truth)
    guided = guided_highpass(low, guide, guide_low=S.degrade(guide, sigma_fine), window=S.GUIDED_WINDOW)
    meta = load_checkpoint(run / "best.pt")["meta"]
    boxes = core_boxes(BlockSplit.from_dict(meta["split"]), "test", int(meta["halo"]))
    pred = apply_model({"s10": d10, "s20": d20}, str(run / "model.pt2")).compute().isel(time=0).sel(band=S.LOW).values

    def crop(arr):
        return [arr[..., ys, xs] for ys, xs in boxes]

    out = {}
    for name, arr in (("network", pred), ("guided", guided)):
        full = S.band_scores(crop(arr), crop(truth), crop(valid), scale=S.DATA_RANGE)
        away = S.band_scores(crop(arr), crop(truth), crop(valid & far), scale=S.DATA_RANGE)
        out[name] = {k: full[k][-1] for k in ("psnr", "rmse", "ssim", "sam")}
        out[name].update(psnr_far=away["psnr"][-1], rmse_far=away["rmse"][-1])
    (Path(a.out) / "scores_fb.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    print(f"network - guided: {out['network']['psnr'] - out['guided']['psnr']:+.2f} dB "
          f"({out['network']['psnr_far'] - out['guided']['psnr_far']:+.2f} dB away from saturation)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
