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
seamless = eocube.apply_model(small, cnn, layout="band", halo="probe", tile_size=16, batch_size=32,
                              out_bands=["edges"], mask_output=None)
naive = eocube.apply_model(small, cnn, layout="band", halo=0, tile_size=16, out_bands=["edges"], mask_output=None)
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
]
