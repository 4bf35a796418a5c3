"""Benchmark: the same cube loaded by eocube.open_stac, stackstac, odc-stac and a plain rasterio read.

Fair by construction: every load runs in a fresh Python process (so no loader keeps GDAL handles,
caches or warmed-up code from an earlier load), the loaders alternate in rounds (so drift and the
load of a shared machine hit each alike), and the COGs are real imagery: the bundled Sentinel-2 L1C
scene (``eocube/datasets/sentinel2_l1c_brandenburg``, 10 m bands B02, B03, B04, B08, 768 x 1536 px)
mirrored and tiled up to ``--size``², each date a different offset into the mosaic, written as
uint16 COGs with DEFLATE, horizontal predictor, 512 px tiles and overviews, with STAC items (proj,
raster and eo extensions).

Each process times its loader's first load (the number the README quotes: what a user's script
sees) and then ``--repeat`` more loads in the same process (the best of them is printed as
"repeated": warm GDAL block cache and, for eocube, the file handles its threads keep open). The
library's import is timed apart and left out of both (with ``distributed``, which dask's first compute
imports to look for a client, 0.7 s here, for every dask loader alike). Ratios are medians over the rounds, against
the plain rasterio read (windows read into a preallocated array, the limit) and between eocube and
each peer. Each loader is timed to its own native output, with no conversion: eocube and stackstac
a (time, band, y, x) DataArray, odc-stac an xarray Dataset of one (time, y, x) variable per band;
every output's pixels are checked against the rasterio read (per-plane CRC32, after the timing).
One command:

    .venv/bin/python benchmarks/bench_stac_load.py [--dates 6 --bands 4 --size 2048 --threads 2 --rounds 3]

``--quick`` is a small smoke run (2 dates x 2 bands x 512², one round).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

CRS = "EPSG:32633"
ORIGIN = (399960.0, 5100000.0)
SCENE = Path(__file__).resolve().parents[1] / "eocube" / "datasets" / "sentinel2_l1c_brandenburg"
SCENE_BANDS = ("B02", "B03", "B04", "B08")  # the scene's 10 m bands
LOADERS = ("limit (rasterio)", "eocube", "stackstac", "odc-stac")


def real_mosaic(band: str) -> np.ndarray:
    """The bundled scene's band, mirrored into a 2 x 2 mosaic that tiles seamlessly (1536 x 3072 px)."""
    import rasterio

    with rasterio.open(SCENE / f"T33UUU_20170216T102101_{band}.jp2") as ds:
        a = ds.read(1)
    return np.block([[a, a[:, ::-1]], [a[::-1], a[::-1, ::-1]]])


def make_items(root: Path, dates: int, bands: int, size: int) -> list[dict]:
    """Write ``dates x bands`` COGs of real imagery and their STAC items; returns the items."""
    import pandas as pd
    import rasterio
    from affine import Affine

    transform = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
    mosaics = [real_mosaic(SCENE_BANDS[b % len(SCENE_BANDS)]) for b in range(bands)]
    items = []
    for d in range(dates):
        assets = {}
        rows = (np.arange(size) + 311 * d) % mosaics[0].shape[0]
        cols = (np.arange(size) + 577 * d) % mosaics[0].shape[1]
        for b in range(bands):
            path = root / f"d{d}_b{b}.tif"
            data = mosaics[b][np.ix_(rows, cols)].clip(1, None)  # 0 is nodata
            with rasterio.open(path, "w", driver="COG", width=size, height=size, count=1, dtype="uint16", crs=CRS,
                               transform=transform, nodata=0, compress="deflate", predictor=2, blocksize=512,
                               overviews="auto") as dst:
                dst.write(data, 1)
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
    import rasterio

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


def plane_crcs(result, bands: list[str]) -> list[int]:
    """CRC32 of each (date, band) plane of a loader's output (array, or Dataset of bands), to compare untimed."""
    if hasattr(result, "data_vars"):
        planes = [np.ascontiguousarray(result[b].values[t]) for t in range(result.sizes["time"]) for b in bands]
    else:
        arr = np.asarray(result)
        planes = [np.ascontiguousarray(arr[t, b]) for t in range(arr.shape[0]) for b in range(arr.shape[1])]
    return [zlib.crc32(p.view(np.uint8)) for p in planes]


IMPORTS = {"limit (rasterio)": "import rasterio", "eocube": "from eocube.stac import open_stac",
           "stackstac": "import stackstac", "odc-stac": "import odc.stac, pystac"}
FUNCS = {"limit (rasterio)": load_limit, "eocube": load_eocube, "stackstac": load_stackstac, "odc-stac": load_odc}


def worker(name: str, items_path: Path, repeat: int, threads: int) -> None:
    """One fresh process: import the loader (timed apart), its first load, then ``repeat`` more; JSON on stdout."""
    t0 = time.perf_counter()
    exec(IMPORTS[name])  # a fixed import line from IMPORTS
    if name != "limit (rasterio)":
        import importlib.util

        import dask  # noqa: F401 - imported here so that it is not in the load time
        if importlib.util.find_spec("distributed"):  # dask's first compute imports it to look for a client
            import distributed  # noqa: F401

    t_import = time.perf_counter() - t0
    items = json.loads(items_path.read_text())
    bands = list(items[0]["assets"])
    size = items[0]["assets"][bands[0]]["proj:shape"][0]
    times, crcs = [], None
    for i in range(1 + repeat):
        t0 = time.perf_counter()
        out = FUNCS[name](items, bands, size, threads)
        times.append(time.perf_counter() - t0)
        if i == 0:
            crcs = plane_crcs(out, bands)
        del out
    print(json.dumps({"import": t_import, "first": times[0], "repeats": times[1:], "crcs": crcs}))


def machine() -> str:
    """CPU model, core count and load average, one line."""
    model = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, load average {load}"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("eocube", "stackstac", "odc-stac", "rasterio", "dask"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} ?")
    return ", ".join(out)


def span(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"


def ratios(num: list[float], den: list[float]) -> list[float]:
    """Per-round ratios ``num / den`` (same round, so the same machine load)."""
    return [a / b for a, b in zip(num, den, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dates", type=int, default=6)
    ap.add_argument("--bands", type=int, default=4)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of one fresh process per loader, order rotated")
    ap.add_argument("--repeat", type=int, default=2, help="loads after the first in each process")
    ap.add_argument("--quick", action="store_true", help="2 dates x 2 bands x 512^2, one round (a smoke run)")
    ap.add_argument("--worker", choices=LOADERS, help=argparse.SUPPRESS)
    ap.add_argument("--items", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.items, args.repeat, args.threads)
        return
    if args.quick:
        args.dates, args.bands, args.size, args.rounds, args.repeat = 2, 2, 512, 1, 1
    print(f"machine: {machine()}\n{versions()}")
    with tempfile.TemporaryDirectory() as tmp:
        items = make_items(Path(tmp), args.dates, args.bands, args.size)
        items_path = Path(tmp) / "items.json"
        items_path.write_text(json.dumps(items))
        nbytes = args.dates * args.bands * args.size**2 * 2
        disk = sum(f.stat().st_size for f in Path(tmp).glob("*.tif"))
        print(f"cube {args.dates} dates x {args.bands} bands x {args.size}^2 uint16 = {nbytes / 2**20:.0f} MiB "
              f"(real Sentinel-2 L1C, tiled), DEFLATE+predictor COGs {disk / 2**20:.0f} MiB on disk "
              f"({nbytes / disk:.1f}:1); {args.threads} threads; {args.rounds} rounds of one fresh process "
              f"per loader, each a first load then {args.repeat} repeated")
        runs: dict[str, list[dict]] = {name: [] for name in LOADERS}
        for r in range(args.rounds):
            order = LOADERS[r % len(LOADERS):] + LOADERS[:r % len(LOADERS)]
            for name in order:
                cmd = [sys.executable, __file__, "--worker", name, "--items", str(items_path),
                       "--repeat", str(args.repeat), "--threads", str(args.threads)]
                res = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if res.returncode:
                    raise SystemExit(f"{name}'s load failed:\n{res.stderr[-3000:]}")
                runs[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}: " + ", ".join(f"{n} {runs[n][-1]['first']:.2f} s" for n in order)
                  + f"; load average {os.getloadavg()[0]:.2f}", flush=True)
        ref = runs["limit (rasterio)"][0]["crcs"]
        for name in LOADERS:
            bad = [i + 1 for i, run in enumerate(runs[name]) if run["crcs"] != ref]
            if bad:
                raise SystemExit(f"{name}'s pixels differ from the rasterio reference (rounds {bad})")
        first = {n: [run["first"] for run in runs[n]] for n in LOADERS}
        again = {n: [min(run["repeats"]) for run in runs[n]] for n in LOADERS} if args.repeat else {}
        mib, lim = nbytes / 2**20, "limit (rasterio)"
        print(f"\n{'loader':18s} {'import':>7s} {'first load':>11s} {'MiB/s':>7s} {'of limit':>9s}"
              + (f" {'repeated':>9s} {'of limit':>9s}" if again else ""))
        for n in LOADERS:
            imp = statistics.median(run["import"] for run in runs[n])
            row = (f"{n:18s} {imp:6.2f}s {statistics.median(first[n]):10.3f}s "
                   f"{mib / statistics.median(first[n]):7.1f} {statistics.median(ratios(first[lim], first[n])):9.2f}")
            if again:
                row += f" {statistics.median(again[n]):8.3f}s {statistics.median(ratios(again[lim], again[n])):9.2f}"
            print(row)
        print("(medians over the rounds; 'of limit' = rasterio's time / the loader's in the same round; "
              "imports not timed in the loads)")
        for peer in ("stackstac", "odc-stac"):
            line = f"eocube / {peer}: first loads {span(ratios(first[peer], first['eocube']))}x the speed"
            if again:
                line += f", repeated loads {span(ratios(again[peer], again['eocube']))}x"
            print(line + " (median, range over rounds)")
        print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
