"""Cells of notebooks/05_timeseries_classification.ipynb (see scripts/build_notebooks.py)."""

NAME = "05_timeseries_classification.ipynb"

CELLS = [
    ("md", """# Time-series classification: gap-filled NDVI series to a land-cover map

The workflow of [sits](https://e-sensing.github.io/sitsbook/): mask the clouds, fill the gaps along time onto
a regular time grid, then classify each pixel from its whole series. Here on the real data bundled with
eocube: the Sentinel-2 NDVI series of the sample (68 dates, 2015-07 .. 2017-12, s2cloudless masks) as
input, and the real land-cover map of the same square kilometre (eo-learn's `LULC` band) as labels.
Two classifiers see the same training pixels and are scored on the same held-out blocks: a small
temporal convolutional network (TempCNN, `eocube.learn.temporal_classifier`) and a random forest
(scikit-learn).

**Read the numbers with care.** This is 1 km² (10,100 pixels), one NDVI band, one land-cover map
dominated by forest (75 % of the pixels), with a few hundred shrubland and artificial-surface pixels
and 11 of cultivated land. Neighbouring pixels are alike, so a spatial split leaves few independent
samples, and which blocks fall into the test part changes the scores by several points. The notebook
shows the pipeline and an honest held-out evaluation; it is not a benchmark of the two methods."""),
    ("code", """import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from sklearn.ensemble import RandomForestClassifier

from eocube.datasets import sentinel2_sample, sentinel2_sample_landcover
from eocube.labels import class_counts, classes_from_attrs, labels_from_band
from eocube.learn.metrics import classification_scores, confusion_matrix
from eocube.learn.split import BlockSplit
from eocube.learn.temporal_classifier import (
    fit_temporal_classifier,
    pixel_series,
    predict_series,
    split_pixels,
)

started = time.perf_counter()
cube = sentinel2_sample()
landcover = sentinel2_sample_landcover()   # label cube (1, 1, 101, 100), eo-learn's LULC legend in its attributes
print(cube.shape, list(cube.band.values))
print({k: v for k, v in class_counts(landcover).items() if v})"""),
    ("md", """## Labels

Five classes occur. Cultivated land has 11 pixels, too few to learn or to score: they are merged into
grassland (the `mapping` of `labels_from_band`), which leaves four classes. The 155 pixels without a
class stay unlabelled (nodata 0) and are neither trained on nor scored."""),
    ("code", """classes = [(2, "forest", "054907"), (3, "grassland", "FFA500"), (4, "shrubland", "806000"),
           (8, "artificial surface", "DC143C")]
labels = labels_from_band(landcover, "label", classes=classes,
                          mapping={1: "grassland", 2: "forest", 3: "grassland", 4: "shrubland", 8: "artificial surface"})
info = classes_from_attrs(labels)
names = [c.name for c in info]
values = np.array([c.value for c in info])
cmap = ListedColormap(["#" + c.color for c in info])
label_map = labels.values[0, 0]
target = np.full(label_map.shape, -1)              # class index 0..3, -1 unlabelled
for i, v in enumerate(values):
    target[label_map == v] = i
print(class_counts(labels))"""),
    ("md", """## Mask and fill onto a regular time grid

Clear observations from the s2cloudless mask and the data mask; linear interpolation along time onto a
16-day grid (56 dates), per pixel. Every pixel then has a series of the same length with no gaps:
the input of both classifiers. (Whittaker smoothing, `method="whittaker"`, gave similar scores here.)"""),
    ("code", """clear = cube.eocube.clear_from_cloud_band("CLM", data_band="IS_DATA")
filled = cube.eocube.gapfill(clear, method="linear", bands="NDVI", time_grid="16D").compute()
series, _ = pixel_series(filled)                  # (pixels, dates, bands)
print(filled.sizes["time"], "dates", str(filled.time.values[0])[:10], "..", str(filled.time.values[-1])[:10],
      "| series", series.shape, "| NaN left:", int(np.isnan(series).sum()))

fig, ax = plt.subplots(figsize=(12, 3.5))
flat = target.ravel()
for i, c in enumerate(info):
    s = series[flat == i, :, 0]
    ax.plot(filled.time.values, s.mean(0), color="#" + c.color, label=f"{c.name} ({len(s)} px)")
    ax.fill_between(filled.time.values, *np.percentile(s, [25, 75], axis=0), color="#" + c.color, alpha=0.2)
ax.set_ylabel("gap-filled NDVI"); ax.legend(loc="lower left", ncol=4); ax.set_title("mean and quartiles per class");"""),
    ("md", """## Spatial split

The 101 x 100 grid is cut into blocks of 20 x 20 pixels, assigned at random (seeded) to train (60 %),
validation (15 %) and test (25 %) with `eocube.learn.split.BlockSplit`, the split of eocube's patch
training. Training pixels must lie at least `buffer` = 2 pixels away from every validation or test block
(`split_pixels` keeps only those), so that mixed pixels on a block edge are never seen on both sides.
Validation pixels choose the network's best epoch; test blocks are scored whole and only once."""),
    ("code", """split = BlockSplit.make(label_map.shape, block_size=20, fractions=(0.6, 0.15, 0.25), buffer=2, seed=0)
part = {p: split_pixels(split, p).ravel() & (flat >= 0) for p in ("train", "val", "test")}
table = pd.DataFrame({p: np.bincount(flat[m], minlength=len(names)) for p, m in part.items()}, index=names)
table.loc["total"] = table.sum()
print(table.to_string())

fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), layout="constrained")
show = np.where(split.mask() == 0, np.where(split_pixels(split, "train"), 0, -1), split.mask()).astype(float)
axes[0].imshow(np.ma.masked_less(show, 0), cmap=ListedColormap(["#8da0cb", "#fc8d62", "#66c2a5"]), vmin=0, vmax=2)
axes[0].set_title("train (blue), validation (orange), test (green);\\nwhite: buffer")
axes[1].imshow(np.ma.masked_less(target, 0), cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, interpolation="nearest")
axes[1].set_title("land cover (labels)")
for ax in axes: ax.set_axis_off()"""),
    ("md", """## Train both classifiers on the same pixels

The random forest takes the 56 NDVI values of a pixel as 56 features; the TempCNN convolves along time
(three 1-D convolutions of 32 filters, kernel 5, then a dense layer; per-band normalisation from the
training pixels only). Both weight the classes by inverse frequency, so that the rare classes count."""),
    ("code", """x_train, y_train = series[part["train"]], flat[part["train"]]
x_test, y_test = series[part["test"]], flat[part["test"]]

t0 = time.perf_counter()
forest = RandomForestClassifier(n_estimators=300, class_weight="balanced", n_jobs=2, random_state=0)
forest.fit(x_train.reshape(len(x_train), -1), y_train)
print(f"random forest: {time.perf_counter() - t0:.1f} s")

t0 = time.perf_counter()
fit = fit_temporal_classifier(x_train, y_train, len(names), val=(series[part["val"]], flat[part["val"]]),
                              epochs=20, batch_size=128, seed=0)
print(f"TempCNN: {time.perf_counter() - t0:.1f} s, {sum(p.numel() for p in fit.model.parameters())} weights, "
      f"best epoch {fit.best_epoch} (validation macro-F1 {fit.history[fit.best_epoch - 1]['val_macro_f1']:.3f})")"""),
    ("md", "## Scores on the held-out test blocks"),
    ("code", """pred = {"random forest": forest.predict(x_test.reshape(len(x_test), -1)),
        "TempCNN": predict_series(fit.model, x_test)}
cms = {k: confusion_matrix(y_test, p, len(names)) for k, p in pred.items()}
scores = {k: classification_scores(cm, names) for k, cm in cms.items()}
summary = pd.DataFrame({k: {"OA": s["oa"], "macro-F1": s["macro_f1"], "mIoU": s["miou"]} for k, s in scores.items()}).T
per_class = pd.DataFrame({k: s["f1"] for k, s in scores.items()}, index=names)
per_class.insert(0, "test pixels", scores["TempCNN"]["support"])
print(summary.round(3).to_string(), end="\\n\\n")
print("F1 per class")
print(per_class.round(3).to_string())
best = summary["macro-F1"].idxmax()
print(f"\\nhigher macro-F1 on these test blocks: {best} "
      f"({summary['macro-F1'].max():.3f} vs {summary['macro-F1'].min():.3f})")"""),
    ("code", """fig, axes = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
for ax, (k, cm) in zip(axes, cms.items()):
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, cm[i, j], ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right"); ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted"); ax.set_ylabel("true")
    ax.set_title(f"{k}: OA {scores[k]['oa']:.2f}, macro-F1 {scores[k]['macro_f1']:.2f}")
fig.suptitle("confusion matrices on the test blocks (counts; colour: share of the true class)");"""),
    ("md", "## Maps: labels and both predictions over the whole square kilometre (test blocks outlined)"),
    ("code", """maps = {"labels": np.ma.masked_less(target, 0),
        "random forest": forest.predict(series.reshape(len(series), -1)).reshape(target.shape),
        "TempCNN": predict_series(fit.model, series).reshape(target.shape)}
fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), layout="constrained")
for ax, (k, m) in zip(axes, maps.items()):
    ax.imshow(m, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, interpolation="nearest")
    ax.contour(split.mask() == 2, levels=[0.5], colors="black", linewidths=1.2)
    ax.set_title(k); ax.set_axis_off()
handles = [plt.Rectangle((0, 0), 1, 1, color="#" + c.color) for c in info]
fig.legend(handles, names, loc="lower center", ncol=len(names), bbox_to_anchor=(0.5, -0.06))
print(f"notebook ran in {time.perf_counter() - started:.0f} s")"""),
    ("md", """## What this shows, and what it does not

* Gap filling feeds the map: every pixel's series is complete on one time grid, which both classifiers
  need, although 19 of the 68 dates are fully cloudy.
* Forest and grassland are told apart well from NDVI alone by both models (their seasonal curves differ);
  artificial surface (roads and buildings, often a pixel wide: mixed pixels) partly; shrubland (358 pixels,
  an NDVI curve between forest and grassland) poorly: the random forest hardly ever predicts it, the
  class-weighted network finds more of it but also paints forest as shrubland, and both F1 stay far
  below the other classes'. The macro-F1 and mIoU are dominated by these two rare classes.
* The random forest tends to have the higher overall accuracy (it favours forest, 75 % of the pixels);
  the class-weighted network trades some of it for the rare classes. Which of the two has the higher
  macro-F1 depends on the split (seeds, block size) at this size: the test part holds a few thousand
  pixels from about eight blocks, a few tens of them for the rare classes. A real comparison needs many
  tiles, more bands than NDVI and a label set with more than a handful of polygons per class.
* The same pieces scale: the series come from a lazy cube (`fill_gaps` runs chunk-wise on dask), the
  split and metrics are those of `eocube train`, and the trained network is a plain `torch.nn.Module`."""),
]
