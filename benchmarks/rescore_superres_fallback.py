"""Re-export a demo_superres run with network.fallback on (same weights) and score it like the demo, per seed."""
import json, sys, shutil
from pathlib import Path
sys.path.insert(0, "/work/main/benchmarks")
import numpy as np, torch
torch.set_num_threads(1)
import demo_superres as S
from eocube.baselines import guided_highpass, bicubic
from eocube.datasets import sentinel2_l1c_scene
from eocube.learn.checkpoint import load_checkpoint
from eocube.learn.export import export_run
from eocube.learn.split import BlockSplit
from eocube.models import apply_model
seed = int(sys.argv[1]); src = Path(f"/tmp/demo5/sr{seed}/run"); run = Path(f"/tmp/s5/srfb/sr{seed}/run")
run.mkdir(parents=True, exist_ok=True)
c = torch.load(src / "best.pt", weights_only=True, map_location="cpu")
c["network"]["fallback"] = True
c["config"]["network"]["fallback"] = True
torch.save(c, run / "best.pt")
export_run(run, tta=True)
scene = sentinel2_l1c_scene()
s10, s20 = scene["10m"].sel(band=S.GUIDE), scene["20m"].sel(band=S.LOW)
x10 = s10.values.astype("float32"); x20 = s20.values.astype("float32")
sc, sf = S.sigma_for_mtf(S.MTF_NYQUIST)
d10 = S.coarser(s10, S.degrade(x10, sf)); d20 = S.coarser(s20, S.degrade(x20, sf)); truth20 = S.coarser(s10, x20, bands=S.LOW)
low, guide = d20.isel(time=0).values, d10.isel(time=0).values
truth = truth20.isel(time=0).values; valid = S.scorable_truth(truth); far = S.far_from_saturation(truth)
base = {"guided": guided_highpass(low, guide, guide_low=S.degrade(guide, sf), window=S.GUIDED_WINDOW)}
meta = load_checkpoint(run / "best.pt")["meta"]
split = BlockSplit.from_dict(meta["split"]); halo = int(meta["halo"])
pred = apply_model({"s10": d10, "s20": d20}, run / "model.pt2").compute().isel(time=0).sel(band=S.LOW).values
boxes = S.core_boxes(split, "test", halo)
crop = lambda a: [a[..., ys, xs] for ys, xs in boxes]
out = {}
for name, arr in (("network", pred), *base.items()):
    full = S.band_scores(crop(arr), crop(truth), crop(valid), scale=S.DATA_RANGE)
    f = S.band_scores(crop(arr), crop(truth), crop(valid & far), scale=S.DATA_RANGE)
    out[name] = {k: full[k][-1] for k in ("psnr", "rmse", "ssim", "sam")} | {"psnr_far": f["psnr"][-1], "rmse_far": f["rmse"][-1]}
json.dump(out, open(run.parent / "scores_fb.json", "w"), indent=1)
print(seed, {k: {m: round(v, 4) for m, v in d.items()} for k, d in out.items()})
