"""Convert eo-learn's TestEOPatch (../shared/data/eolearn-testeopatch) into the bundled sample cube.

Run from the project root:  .venv/bin/python scripts/build_sample.py [SOURCE_DIR]

The result, eocube/datasets/sentinel2_slovenia/cube.zarr, is a complete eocube
Zarr store (format 2, zstd) with bands NDVI, CLP (s2cloudless probability),
CLM (s2cloudless mask, 1 = cloud) and IS_DATA, all float32 so that one cube
holds them; see the PROVENANCE.md beside it. Beside it, landcover.zarr holds the timeless
land-cover map (LULC) as a label cube (uint8, nodata 0, eo-learn's LULC legend in its attributes):
``eocube.datasets.sentinel2_sample_landcover()``.

    .venv/bin/python scripts/build_sample.py [SOURCE_DIR] [--landcover-only]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import eocube

HERE = Path(__file__).resolve().parent
TARGET = HERE.parent / "eocube" / "datasets" / "sentinel2_slovenia"

BUNDLING_NOTE = """
## How it is bundled in eocube
`cube.zarr` here was made by `scripts/build_sample.py` from the folder above (unchanged values):
one eocube Zarr store (format 2, zstd), array `sentinel2` with dims (time, band, y, x), bands
NDVI, CLP, CLM, IS_DATA (all float32; CLM and IS_DATA hold 0/1), pixel-centre coordinates derived
from `bbox.geojson` (100 columns, 101 rows: pixel size 9.9948 m x 9.9975 m, as the bbox implies),
CRS EPSG:32633, times from `timestamps.json` (UTC, stored without time zone).

`landcover.zarr` here holds `mask_timeless/LULC.npy` (unchanged values) as an eocube label cube: array
`labels`, dims (time, band, y, x) = (1, 1, 101, 100), uint8, band `label`, nodata 0 (no data), the
same grid and CRS as `cube.zarr`, and eo-learn's LULC legend in the attributes `class_values`,
`class_names`, `class_colors` (1 cultivated land, 2 forest, 3 grassland, 4 shrubland, 5 water,
6 wetland, 7 tundra, 8 artificial surface, 9 bareland, 10 snow and ice). The map is timeless: its
one date is a placeholder, the sample's first date. Pixels per class here: forest 7601, grassland
1777, shrubland 358, artificial surface 198, cultivated land 11, no data 155.

MIT License, Copyright (c) 2017-2024 Sinergise (eo-learn).
"""


LULC_CLASSES = (
    (1, "cultivated land", "FFFF00"), (2, "forest", "054907"), (3, "grassland", "FFA500"),
    (4, "shrubland", "806000"), (5, "water", "069AF3"), (6, "wetland", "95D0FC"), (7, "tundra", "967BB6"),
    (8, "artificial surface", "DC143C"), (9, "bareland", "A6A6A6"), (10, "snow and ice", "000000"),
)
"""eo-learn's LULC legend (value, name, colour; its land-cover example); 0 is no data."""


def main(source: Path) -> None:
    times = json.loads((source / "timestamps.json").read_text())
    bbox = json.loads((source / "bbox.geojson").read_text())["coordinates"][0]
    xs = [p[0] for p in bbox]
    ys = [p[1] for p in bbox]
    layers = {
        "NDVI": np.load(source / "data" / "NDVI.npy"),
        "CLP": np.load(source / "data" / "CLP.npy"),
        "CLM": np.load(source / "mask" / "CLM.npy"),
        "IS_DATA": np.load(source / "mask" / "IS_DATA.npy"),
    }
    data = np.stack([layers[b][..., 0].astype("float32") for b in layers], axis=1)  # (t, band, y, x)
    _, _, height, width = data.shape
    res_x = (max(xs) - min(xs)) / width
    res_y = (max(ys) - min(ys)) / height
    x = min(xs) + res_x * (np.arange(width) + 0.5)
    y = max(ys) - res_y * (np.arange(height) + 0.5)  # row 0 is the northern edge
    cube = eocube.make_cube(
        data, time=times, band=list(layers), y=y, x=x, crs="EPSG:32633", name="sentinel2",
        attrs={
            "title": "Sentinel-2 L1C NDVI time series with s2cloudless masks, Slovenia (eo-learn TestEOPatch)",
            "license": "MIT (Sinergise, eo-learn)",
            "source": "sentinel-hub/eo-learn example_data/TestEOPatch @ 303e75855880531d519264f847e7c6b2fb97104d",
        },
    ).chunk({"time": -1, "band": 1, "y": -1, "x": -1})
    store = TARGET / "cube.zarr"
    report = eocube.to_zarr(
        cube, store, mode="overwrite", zarr_format=2, compression_level=19, progress=False,
        provenance={"source": "eo-learn TestEOPatch", "converted_by": "scripts/build_sample.py"},
    )
    print(report)
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    print(f"{store}: {size / 1e6:.2f} MB")
    build_landcover(source)


def build_landcover(source: Path) -> None:
    """Write landcover.zarr (the timeless LULC band as a label cube on the sample's grid) and PROVENANCE.md."""
    from eocube.labels import labels_from_band

    sample = eocube.open_zarr(TARGET / "cube.zarr")
    lulc = np.load(source / "mask_timeless" / "LULC.npy")[..., 0]  # (y, x) uint16, 0 = no data
    if lulc.shape != (sample.sizes["y"], sample.sizes["x"]) or lulc.max() > 255:
        raise SystemExit(f"unexpected LULC: shape {lulc.shape}, max {lulc.max()}")
    band = eocube.make_cube(lulc[None, None].astype("float32"), time=sample.time.values[:1], band=["LULC"],
                            y=sample.y.values, x=sample.x.values, crs=sample.rio.crs)
    labels = labels_from_band(band, "LULC", classes=LULC_CLASSES)
    labels.attrs.update({
        "long_name": "land cover (eo-learn LULC), timeless: the date is the sample's first",
        "labels_source": "mask_timeless/LULC.npy of eo-learn TestEOPatch",
        "license": "MIT (Sinergise, eo-learn)",
    })
    labels = labels.chunk({"time": 1, "band": 1, "y": -1, "x": -1})
    store = TARGET / "landcover.zarr"
    report = eocube.to_zarr(
        labels, store, mode="overwrite", zarr_format=2, compression_level=19, progress=False,
        provenance={"source": "eo-learn TestEOPatch mask_timeless/LULC.npy", "converted_by": "scripts/build_sample.py"},
    )
    print(report)
    back = eocube.open_zarr(store).values[0, 0]
    assert (back == lulc).all(), "landcover.zarr differs from LULC.npy"
    (TARGET / "PROVENANCE.md").write_text((source / "PROVENANCE.md").read_text() + BUNDLING_NOTE)
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    print(f"{store}: {size / 1e3:.1f} kB")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    folder = Path(args[0]) if args else HERE.parent.parent / "shared" / "data" / "eolearn-testeopatch"
    build_landcover(folder) if "--landcover-only" in sys.argv else main(folder)
