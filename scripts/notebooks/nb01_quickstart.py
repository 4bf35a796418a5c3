"""Cells of notebooks/01_quickstart.ipynb (see scripts/build_notebooks.py)."""

NAME = "01_quickstart.ipynb"

CELLS = [
    ("md", """# eocube quickstart: a real Sentinel-2 time series, its clouds, and a gap fill

This notebook opens the real Sentinel-2 sample bundled with eocube (68 dates over 1 km² in Slovenia,
NDVI with s2cloudless cloud masks), looks at it, masks the clouds, fills the gaps along time, and writes
the result to Zarr. Everything is lazy until a plot or a write needs pixels."""),
    ("code", """import matplotlib.pyplot as plt
import numpy as np

import eocube
from eocube.datasets import sentinel2_sample, SAMPLES

cube = sentinel2_sample()
cube.eocube   # CRS, resolution, dates, bands and chunks at a glance"""),
    ("md", "The cube is a plain `xarray.DataArray` with dims `(time, band, y, x)`, backed by dask, georeferenced through rioxarray:"),
    ("code", """print(cube.dims, cube.dtype, type(cube.data).__name__)
print(cube.rio.crs, cube.rio.transform(), sep="\\n")
print(SAMPLES["sentinel2"].provenance.splitlines()[0])"""),
    ("md", "## Look at the data: NDVI and the cloud mask over a few dates"),
    ("code", """dates = [3, 14, 20, 40, 55]
fig, axes = plt.subplots(2, len(dates), figsize=(15, 6), layout="constrained")
for ax_top, ax_bottom, t in zip(axes[0], axes[1], dates):
    day = cube.isel(time=t)
    ax_top.imshow(day.sel(band="NDVI"), cmap="RdYlGn", vmin=0, vmax=0.9)
    ax_top.set_title(str(day.time.values)[:10])
    ax_bottom.imshow(day.sel(band="CLM"), cmap="Greys_r", vmin=0, vmax=1)
    ax_bottom.set_title(f"cloud mask: {float(day.sel(band='CLM').mean()):.0%} cloudy")
for ax in axes.ravel():
    ax.set_axis_off()"""),
    ("md", "How cloudy is the series? The share of cloudy pixels per date:"),
    ("code", """cloudy = cube.sel(band="CLM").mean(["y", "x"]).compute()
fig, ax = plt.subplots(figsize=(12, 3))
ax.bar(cloudy.time.values, cloudy.values, width=6)
ax.set_ylabel("cloudy share")
ax.set_title(f"{int((cloudy == 1).sum())} dates fully cloudy, {int((cloudy == 0).sum())} fully clear");"""),
    ("md", "## Mask and fill\n\nA clear mask (True = usable observation), then linear interpolation along time, per pixel. Both are lazy:"),
    ("code", """clear = cube.eocube.clear_from_cloud_band("CLM", data_band="IS_DATA")
filled = cube.eocube.gapfill(clear, method="linear", bands="NDVI")
filled"""),
    ("md", "Before and after on a partly cloudy date, and one pixel's time series:"),
    ("code", """t = 14
fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), layout="constrained")
before = cube.sel(band="NDVI").isel(time=t).where(clear.isel(time=t))
axes[0].imshow(before, cmap="RdYlGn", vmin=0, vmax=0.9); axes[0].set_title("observed (clouds blank)")
axes[1].imshow(filled.sel(band="NDVI").isel(time=t), cmap="RdYlGn", vmin=0, vmax=0.9); axes[1].set_title("gap filled")
for ax in axes: ax.set_axis_off()

row, col = 50, 60
obs = cube.sel(band="NDVI").isel(y=row, x=col).compute()
ok = clear.isel(y=row, x=col).compute()
fig, ax = plt.subplots(figsize=(12, 3.5))
ax.plot(filled.time, filled.sel(band="NDVI").isel(y=row, x=col), label="filled")
ax.plot(obs.time[ok], obs[ok], "o", label="clear")
ax.plot(obs.time[~ok], obs[~ok], "x", alpha=0.6, label="cloudy (discarded)")
ax.legend(); ax.set_ylabel("NDVI");"""),
    ("md", "## Write to Zarr (chunk by chunk, resumable) and read it back"),
    ("code", """import tempfile, pathlib
store = pathlib.Path(tempfile.mkdtemp()) / "ndvi_filled.zarr"
report = filled.eocube.to_zarr(store, provenance={"source": "sentinel2 sample", "method": "linear"}, progress=False)
print(report)
back = eocube.open_zarr(store)
print(back.eocube.info)
print(back.attrs["eocube_provenance"])
assert np.allclose(back.values, filled.values, equal_nan=True)"""),
    ("md", """Running the same write again after a crash or a kill finishes only the missing chunks; an unfinished
store is refused by `eocube.open_zarr`. The same pipeline on the command line is `eocube gapfill`."""),
]
