"""Convert eo-learn's TestEOPatch (../shared/data/eolearn-testeopatch) into the bundled sample cube.

Run from the project root:  .venv/bin/python scripts/build_sample.py [SOURCE_DIR]

The result, eocube/datasets/sentinel2_slovenia/cube.zarr, is a complete eocube
Zarr store (format 2, zstd) with bands NDVI, CLP (s2cloudless probability),
CLM (s2cloudless mask, 1 = cloud) and IS_DATA, all float32 so that one cube
holds them; see the PROVENANCE.md beside it.
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

MIT License, Copyright (c) 2017-2024 Sinergise (eo-learn).
"""


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
    (TARGET / "PROVENANCE.md").write_text((source / "PROVENANCE.md").read_text() + BUNDLING_NOTE)
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    print(f"{store}: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent.parent / "shared" / "data" / "eolearn-testeopatch")
