"""Benchmark: the same cube loaded by eocube.open_stac, stackstac, odc-stac and a plain rasterio read.

Writes local deflate COGs (uint16, 512 px tiles) with STAC items (proj + raster extensions),
then loads the full cube with each loader into memory on the same thread count, best of
``--repeat`` runs, and prints throughput and ratios to the limit (rasterio windows read into
a preallocated array) and to the peers. Each loader is timed to its own native output, with no
conversion: eocube and stackstac a (time, band, y, x) DataArray, odc-stac an xarray Dataset of
one (time, y, x) variable per band (its ``to_array("band")`` is an extra copy that cost it about
30 %, so it is left out; the pixels are compared with the reference after the timing). One command:

    .venv/bin/python benchmarks/bench_stac_load.py [--dates 6 --bands 4 --size 2048 --threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import rasterio
from affine import Affine

CRS = "EPSG:32633"
ORIGIN = (399960.0, 5100000.0)


def make_items(root: Path, dates: int, bands: int, size: int) -> list[dict]:
    rng = np.random.default_rng(0)
    transform = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
    base = (rng.normal(3000, 800, (size, size))).clip(1, 60000).astype("uint16")
    items = []
    for d in range(dates):
        assets = {}
        for b in range(bands):
            path = root / f"d{d}_b{b}.tif"
            with rasterio.open(path, "w", driver="COG", width=size, height=size, count=1, dtype="uint16", crs=CRS,
                               transform=transform, nodata=0, compress="deflate", blocksize=512) as dst:
                dst.write(np.roll(base, d * 7 + b * 13, axis=1), 1)
            assets[f"B{b}"] = {
                "href": str(path), "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"], "proj:shape": [size, size], "proj:transform": list(transform)[:6],
                "raster:bands": [{"data_type": "uint16", "nodata": 0}], "eo:bands": [{"name": f"B{b}"}],
            }
        lon0, lat0 = 13.7, 46.0
        items.append({
            "type": "Feature", "stac_version": "1.0.0", "id": f"item-{d}",
            "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
            "geometry": {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon0 + .3, lat0], [lon0 + .3, lat0 - .2],
                                                              [lon0, lat0 - .2], [lon0, lat0]]]},
            "bbox": [lon0, lat0 - .2, lon0 + .3, lat0],
            "properties": {"datetime": (pd.Timestamp("2024-05-01T10:00:00Z") + pd.Timedelta(days=5 * d)).isoformat(),
                           "proj:epsg": 32633},
            "assets": assets, "links": [],
        })
    return items


def load_limit(items, bands, size, threads) -> np.ndarray:
    out = np.empty((len(items), len(bands), size, size), dtype="uint16")

    def read(args):
        t, b = args
        with rasterio.open(items[t]["assets"][bands[b]]["href"]) as ds:
            ds.read(1, out=out[t, b])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(read, [(t, b) for t in range(len(items)) for b in range(len(bands))]))
    return out


def load_eocube(items, bands, size, threads) -> np.ndarray:
    from eocube.stac import open_stac

    cube = open_stac(items, assets=bands, chunks={"y": 1024, "x": 1024})
    return cube.data.compute(scheduler="threads", num_workers=threads)


def load_stackstac(items, bands, size, threads) -> np.ndarray:
    import stackstac

    cube = stackstac.stack(items, assets=bands, dtype="uint16", rescale=False, fill_value=np.uint16(0),
                           chunksize=1024, epsg=32633, resolution=10)
    return cube.data.compute(scheduler="threads", num_workers=threads)


def load_odc(items, bands, size, threads):
    """odc-stac's native output: a Dataset with one variable per band, loaded (no to_array copy)."""
    import odc.stac
    import pystac

    ds = odc.stac.load([pystac.Item.from_dict(it) for it in items], bands=bands, chunks={"x": 1024, "y": 1024})
    return ds.compute(scheduler="threads", num_workers=threads)


def same_pixels(result, ref: np.ndarray, bands: list[str]) -> bool:
    """Whether a loader's output (array, or Dataset of bands) holds the reference's pixels (checked untimed)."""
    if hasattr(result, "data_vars"):
        return all(np.array_equal(result[b].values, ref[:, i]) for i, b in enumerate(bands))
    return np.array_equal(np.asarray(result), ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dates", type=int, default=6)
    ap.add_argument("--bands", type=int, default=4)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        items = make_items(Path(tmp), args.dates, args.bands, args.size)
        bands = [f"B{b}" for b in range(args.bands)]
        nbytes = args.dates * args.bands * args.size**2 * 2
        print(f"cube {args.dates} dates x {args.bands} bands x {args.size}^2 uint16 = {nbytes / 2**20:.0f} MiB, "
              f"deflate COGs, {args.threads} threads, best of {args.repeat}")
        loaders = {"limit (rasterio)": load_limit, "eocube": load_eocube, "stackstac": load_stackstac,
                   "odc-stac": load_odc}
        best, ref = {}, None
        for _ in range(args.repeat):  # interleaved, so drift hits every loader alike
            for name, fn in loaders.items():
                with dask.config.set(scheduler="threads"):
                    t0 = time.perf_counter()
                    arr = fn(items, bands, args.size, args.threads)
                    dt = time.perf_counter() - t0
                best[name] = min(best.get(name, np.inf), dt)
                if ref is None:
                    ref = arr
                elif name in ("eocube", "odc-stac") and not same_pixels(arr, ref, bands):
                    raise SystemExit(f"{name}'s pixels differ from the rasterio reference")
                del arr
        limit = best["limit (rasterio)"]
        for name, dt in best.items():
            print(f"{name:18s} {dt:7.3f} s  {nbytes / 2**20 / dt:8.1f} MiB/s  ratio to limit {limit / dt:5.2f}")
        for peer in ("stackstac", "odc-stac"):
            print(f"eocube / {peer}: {best[peer] / best['eocube']:.2f}x the speed")


if __name__ == "__main__":
    main()
