"""Cells of notebooks/03_models.ipynb (see scripts/build_notebooks.py)."""

NAME = "03_models.ipynb"

CELLS = [
    ("md", """# PyTorch models over cubes: chunk-wise, seamless, batched

`eocube.apply_model` runs any PyTorch model over a cube chunk by chunk with a **halo** (overlap) so that
tile seams vanish, loads the model **once per worker**, **batches** tiles, and uses CUDA when torch sees
it. Part 1 applies a small CNN and checks it against one whole-image forward pass; part 2 trains the
deep gap-filling network on the real sample and applies it through the same engine."""),
    ("code", """import matplotlib.pyplot as plt
import numpy as np
import torch

import eocube
from eocube.datasets import sentinel2_sample
from eocube.models import ModelSpec, OutputSpec, RunOptions

cube = sentinel2_sample()
clear = cube.eocube.clear_from_cloud_band("CLM", data_band="IS_DATA")
ndvi = cube.sel(band=["NDVI"]).where(clear)        # clouds -> NaN (nodata)
print("torch", torch.__version__, "| CUDA available:", torch.cuda.is_available())"""),
    ("md", "## 1. A CNN with a 3-pixel receptive field, on 16 x 16-pixel chunks"),
    ("code", """torch.manual_seed(0)
cnn = torch.nn.Sequential(
    torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(8, 1, 3, padding=1),
).eval()

small = ndvi.fillna(0).chunk({"time": 4, "band": 1, "y": 16, "x": 16})
edges = OutputSpec(bands=("edges",), mask=None)   # one output band; no nodata mask (the input is filled)
seamless = eocube.apply_model(small, cnn, ModelSpec(output=edges, halo="probe"),
                              run=RunOptions(tile_size=16, batch_size=32))
naive = eocube.apply_model(small, cnn, ModelSpec(output=edges, halo=0), run=RunOptions(tile_size=16))
print(seamless.eocube)   # lazy: nothing computed yet"""),
    ("code", """t = 30
with torch.no_grad():
    whole = cnn(torch.from_numpy(small.isel(time=[t]).values)).numpy()[0, 0]
a, b = seamless.isel(time=t, band=0).values, naive.isel(time=t, band=0).values
print(f"halo probed; max |chunked - whole image| with halo: {np.abs(a - whole).max():.2e}, without: {np.abs(b - whole).max():.2e}")
fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
for ax, img, title in zip(axes, [whole, a, np.abs(b - whole)],
                          ["one forward pass, whole image", "apply_model with halo (16 px chunks)",
                           "|error| without halo: the seams"]):
    ax.imshow(img, cmap="magma"); ax.set_title(title); ax.set_axis_off()"""),
    ("md", """The halo was found by probing the model's receptive field (from input gradients). The result equals
the whole-image pass to float rounding; without a halo every chunk border shows."""),
    ("md", """## 2. Train the gap-filling network and apply it through the same engine

`GapFillNet` starts from linear interpolation along time and learns a correction from neighbouring pixels
and dates (architecture in `eocube/learn/networks.py`). Training is self-supervised: clear observations are
hidden under **real cloud masks** taken from other dates and places, and the network learns to bring them
back. Like every task of `eocube.learn`, the cube is cut into blocks (here 2 x 2): two train, one validates,
and the test block is never read in training.

A short run here (2 epochs) keeps the notebook quick; the accuracy quoted in the README comes from the
default configuration (`eocube train`, 5 epochs)."""),
    ("code", """import tempfile, pathlib
from eocube.learn import load_config, train, fill_cube, held_out_area

run_dir = pathlib.Path(tempfile.mkdtemp()) / "run"
config = load_config(overrides={"train": {"epochs": 2, "steps_per_epoch": 16, "progress": False, "num_workers": 0}})
result = train(config, out=run_dir)          # the bundled sample by default; exports model.pt2 + card at the end
for row in result.history:
    print({k: round(v, 4) for k, v in row.items()})
print(f"{result.seconds:.0f} s on {result.device}; files:", sorted(p.name for p in run_dir.iterdir()))"""),
    ("md", """Fill the whole cube with the exported network: `fill_cube(cube, run_dir, clear)` is
`apply_model(cube.where(clear), run_dir / "model.pt2")`, lazy and chunk-wise with halos:"""),
    ("code", """filled = fill_cube(cube, run_dir, clear)
print(filled.eocube)
area, held_out = held_out_area(run_dir, cube)      # the test block(s): never read in training
rows, cols = np.nonzero(area.values)
row, col = int(rows[len(rows) // 2]), int(cols[len(cols) // 2])
obs = cube.sel(band="NDVI").isel(y=row, x=col).values
ok = clear.isel(y=row, x=col).values
linear = cube.sel(band=["NDVI"]).eocube.gapfill(clear).isel(band=0, y=row, x=col).values
fig, ax = plt.subplots(figsize=(12, 3.5))
ax.plot(cube.time, linear, color="0.6", label="linear")
ax.plot(cube.time, filled.isel(band=0, y=row, x=col).values, label="GapFillNet")
ax.plot(cube.time.values[ok], obs[ok], "o", color="k", ms=4, label="clear")
ax.legend(); ax.set_ylabel("NDVI"); ax.set_title(f"pixel (row {row}, col {col}), held out from training");"""),
    ("md", """Scored with `eocube.evaluate` (real cloud masks of other dates hide 20 % of the clear observations of the
whole cube; every method fills from the rest; only the hidden observations of the test block are scored):"""),
    ("code", """from eocube.evaluate import evaluate_methods, format_table
from eocube.learn.inference import model_filler

table = evaluate_methods(cube.sel(band=["NDVI"]), clear.compute(), methods=["linear", "whittaker", "harmonic"],
                         where=area, extra={"model": model_filler(run_dir)})
print(held_out)
print(format_table(table[table.band == "all"]))"""),
]
