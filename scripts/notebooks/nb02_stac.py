"""Cells of notebooks/02_stac.ipynb (see scripts/build_notebooks.py).

The notebook searches a STAC API and loads a cube with ``eocube.open_stac``. The public catalogues
(Earth Search, Planetary Computer) are shown in a cell guarded by ``USE_PUBLIC_CATALOGUE = False``;
what runs is a local fallback with no network beyond 127.0.0.1: real published Sentinel-2 items
(tests/stac/data) whose hrefs are rewritten to small local COGs on the items' own grids, served by
nginx (HTTP range requests, access log) and searched through a real STAC API (``rustac serve``).
Both services come from ``scripts/services/install.sh``.
"""

NAME = "02_stac.ipynb"

CELLS = [
    ("md", """# Search a STAC API and load a cube with `eocube.open_stac`

`eocube.open_stac` turns STAC items (from a search or given directly) into a lazy cube `(time, band, y, x)`
on the items' own pixel grid: CRS and transform from the `proj:` metadata, dtype and nodata from
`raster:bands`, one time step per solar day. Opening reads no pixel; computing reads only the windows of
the COGs that the requested chunks need, with HTTP range requests.

This notebook first shows how to point at a public catalogue, then runs everything against a local STAC
API so that it works offline (and in CI)."""),
    ("md", """## A public catalogue (not executed here)

Set `USE_PUBLIC_CATALOGUE = True` on a machine with internet access. Earth Search (Element 84) serves
Sentinel-2 L2A COGs on AWS that anyone may read; its asset keys are common names (`red`, `nir`, `scl`).
Planetary Computer (Microsoft) needs each href signed with a short-lived SAS token before GDAL reads it:
pass `patch_url=planetary_computer.sign` (`pip install planetary-computer`); tokens last about an hour,
so sign close to the compute (re-open the cube for long jobs)."""),
    ("code", """import eocube

USE_PUBLIC_CATALOGUE = False   # True: search the public catalogues below (needs internet)

if USE_PUBLIC_CATALOGUE:
    around_ljubljana = (14.45, 46.02, 14.55, 46.08)        # lon/lat: west, south, east, north
    earth_search = eocube.open_stac(
        url="https://earth-search.aws.element84.com/v1",
        collections="sentinel-2-l2a",
        bbox=around_ljubljana,
        datetime="2023-05-01/2023-08-31",
        query={"eo:cloud_cover": {"lt": 30}},
        assets=["red", "nir", "scl"],                       # asset keys or eo:bands common names
        chunks={"y": 1024, "x": 1024},
        # rescale=True would apply raster:bands scale/offset: float32 reflectance, NaN nodata
    )

    import planetary_computer                               # pip install planetary-computer
    planetary = eocube.open_stac(
        url="https://planetarycomputer.microsoft.com/api/stac/v1",
        collections="sentinel-2-l2a",
        bbox=around_ljubljana,
        datetime="2023-05-01/2023-08-31",
        query={"eo:cloud_cover": {"lt": 30}},
        assets=["B04", "B08", "SCL"],
        patch_url=planetary_computer.sign,                  # signs every href (SAS token) before reading
    )
    print(earth_search.eocube, planetary.eocube, sep="\\n\\n")"""),
    ("md", """## The local fallback: real items, local pixels, real services

The items are **real published metadata**: Sentinel-2 L2A items of MGRS tile 35MNM (EPSG:32735) as
Planetary Computer published them (13 items of June-July 2020 stored in `tests/stac/data/`, see
`PROVENANCE.md` there; we take the 8 up to early July). Their assets still point to Azure; we rewrite the hrefs of `B04`, `B08` and `SCL` to small COGs
written here on the **same grids** (same CRS, origin and pixel size as each asset's `proj:transform`),
covering a 2.56 km window at the tile's north-west corner. The pixels are synthetic (fields whose NDVI
changes over the season, a river, and as much cloud, with shadows, as each item's published
`eo:cloud_cover`), so the notebook needs no download."""),
    ("code", """import copy, json
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path("..") / "tests" / "stac" / "data"        # the notebook runs from notebooks/
assert DATA.is_dir(), f"{DATA.resolve()} not found: run this notebook from the repository's notebooks/ folder"
published = json.loads((DATA / "site2-2020_jun_jul-35MNM.geojson").read_text())["features"]
published = sorted(published, key=lambda it: it["properties"]["datetime"])[:8]   # June to early July
collection = json.loads((DATA / "sentinel-2-l2a.collection.json").read_text())
BANDS = ["B04", "B08", "SCL"]

pd.DataFrame([{
    "id": it["id"][:27],
    "datetime": it["properties"]["datetime"][:19],
    "eo:cloud_cover": round(it["properties"]["eo:cloud_cover"], 1),
    **{f"{b} proj:transform": it["assets"][b]["proj:transform"][:6] for b in ("B04", "SCL")},
} for it in published])"""),
    ("md", """Write the COGs: 256 x 256 px for the 10 m bands, 128 x 128 px for the 20 m `SCL`, in the dtypes the
collection publishes (`uint16` reflectance x 10000, `uint8` SCL classes, nodata 0). The window is at a
swath edge: pixels outside each item's published footprint (its `geometry`) are nodata, as in the real files."""),
    ("code", """import atexit, shutil, tempfile

import rasterio
from affine import Affine
from rasterio.features import geometry_mask
from rasterio.warp import transform_bounds, transform_geom
from scipy import ndimage

WORK = Path(tempfile.mkdtemp(prefix="eocube-stac-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)   # removed when the kernel exits, whatever happens
COGS = WORK / "cogs"
N = 256                                              # 10 m pixels per side
rng = np.random.default_rng(8)
yy, xx = np.mgrid[0:N, 0:N]
seeds = rng.uniform(0, N, size=(30, 2))              # fields: Voronoi cells with a crop type each
field = np.argmin((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2, axis=-1)
crop = rng.integers(0, 4, size=len(seeds))[field]    # 0 grass, 1 late crop, 2 harvested, 3 bare
river = np.abs(yy - (150 + 30 * np.sin(xx / 40))) < 5
offset = rng.normal(0, 0.04, size=len(seeds))[field]  # each field a little different

def scene(day: int, cloud_cover: float, outside: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    \"\"\"B04, B08 (uint16, reflectance x 10000) and SCL (uint8, 10 m) for a day of 2020.\"\"\"
    s = (day - 153) / 60                             # 0 on 1 June, 1 on 31 July
    ndvi = np.choose(crop, [0.65 + 0 * s, 0.3 + 0.55 * s, np.clip(0.85 - 1.2 * s, 0.2, None), 0.12 + 0 * s])
    scl = np.select([river, ndvi > 0.4], [6, 4], 5)  # SCL classes 6 water, 4 vegetation, 5 not vegetated
    ndvi = np.where(river, -0.3, ndvi + offset)
    nir = np.where(river, 0.02, 0.12 + 0.3 * np.clip(ndvi, 0, 1))
    red = nir * (1 - ndvi) / (1 + ndvi)
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=(N, N)), 14, mode="wrap")
    cloud = noise > np.quantile(noise, 1 - cloud_cover / 100)
    core = noise > np.quantile(noise, 1 - cloud_cover / 200)
    shadow = np.roll(cloud, (14, 18), axis=(0, 1)) & ~cloud
    red, nir = np.where(shadow, red * 0.4, red), np.where(shadow, nir * 0.4, nir)
    red, nir = np.where(cloud, 0.35, red), np.where(cloud, 0.38, nir)
    scl = np.select([core, cloud, shadow], [9, 8, 3], scl)
    dn = lambda refl: np.clip(refl * 10000 + rng.normal(0, 10, refl.shape), 1, None).astype("uint16")  # + sensor noise
    out = {"B04": dn(red), "B08": dn(nir), "SCL": scl.astype("uint8")}
    for a in out.values():
        a[outside] = 0                               # beyond the item's published footprint: nodata
    return out

def write_cog(path: Path, data: np.ndarray, crs: str, transform: Affine) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="COG", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs=crs, transform=transform, nodata=0, compress="deflate",
                       blocksize=128) as dst:
        dst.write(data, 1)

tile = Affine(*published[0]["assets"]["B04"]["proj:transform"][:6])   # the 10 m grid of the tile
CRS = f"EPSG:{published[0]['properties']['proj:epsg']}"
WINDOW = (tile.c, tile.f - N * 10, tile.c + N * 10, tile.f)           # left, bottom, right, top in CRS
BBOX = transform_bounds(CRS, "EPSG:4326", *WINDOW)                    # the same in lon/lat

for i, item in enumerate(published):
    props = item["properties"]
    day = pd.Timestamp(props["datetime"]).dayofyear
    footprint = transform_geom("EPSG:4326", CRS, item["geometry"])
    outside = geometry_mask([footprint], out_shape=(N, N), transform=tile)
    pixels = scene(day, props["eo:cloud_cover"], outside, seed=i)
    for band in BANDS:
        asset = item["assets"][band]
        transform = Affine(*asset["proj:transform"][:6])
        step = round(transform.a / 10)               # 1 for 10 m, 2 for the 20 m SCL
        write_cog(COGS / item["id"] / f"{band}.tif", pixels[band][::step, ::step],
                  CRS, transform)
print(f"{len(list(COGS.rglob('*.tif')))} COGs, {sum(p.stat().st_size for p in COGS.rglob('*.tif')) / 1e6:.1f} MB")"""),
    ("md", """Start the two services on 127.0.0.1 (installed by `scripts/services/install.sh`): **nginx** serves the
COGs with HTTP range requests, like a cloud bucket, and logs every request; **`rustac serve`** is a real
STAC API (in-memory) loaded with the published collection and the items, hrefs rewritten to nginx.
Both are stopped at the end of the notebook (and when the kernel exits)."""),
    ("code", """import os, socket, subprocess, sys, time, urllib.request

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def start(args: list[str], url: str, log: Path) -> subprocess.Popen:
    \"\"\"Start a local service and wait until it answers at url.\"\"\"
    proc = subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    atexit.register(stop, proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc
        except urllib.error.HTTPError:
            return proc                              # it answers
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"{args[0]} did not start: {log.read_text()[-1000:]}\\n"
                       "Install it with `bash scripts/services/install.sh` (as root, from the repository root).")

def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)

# nginx: static files with range requests; the access log is our request counter
nginx_exe = shutil.which("nginx") or "/usr/sbin/nginx"
web = WORK / "nginx"; web.mkdir()
cog_url = f"http://127.0.0.1:{free_port()}"
root_user = "user root;" if os.geteuid() == 0 else ""   # else root's workers run as nobody, who cannot read WORK
(web / "nginx.conf").write_text(f\"\"\"{root_user}
daemon off; worker_processes 1; pid {web}/nginx.pid; error_log {web}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format ranges '$request_method $uri $status "$http_range" $body_bytes_sent';
    access_log {web}/access.log ranges;
    client_body_temp_path {web}/body; proxy_temp_path {web}/proxy; fastcgi_temp_path {web}/fcgi;
    uwsgi_temp_path {web}/uwsgi; scgi_temp_path {web}/scgi;
    types {{ image/tiff tif; }}
    server {{ listen {cog_url.removeprefix('http://')}; root {COGS}; }}
}}\"\"\")
nginx = start([nginx_exe, "-c", str(web / "nginx.conf"), "-p", str(web)], cog_url + "/", web / "error.log")

def requests_log() -> pd.DataFrame:
    \"\"\"Every request nginx has answered: method, file, status, byte range, bytes sent.\"\"\"
    path = web / "access.log"
    rows = [line.split(" ", 3) for line in path.read_text().splitlines()] if path.exists() else []
    return pd.DataFrame([(m, u, int(s), r.rsplit(" ", 1)[0].strip('"'), int(r.rsplit(" ", 1)[1])) for m, u, s, r in rows],
                        columns=["method", "file", "status", "range", "bytes"])

# the items, hrefs rewritten to nginx, and a STAC API holding them
items = copy.deepcopy(published)
for item in items:
    for band in BANDS:
        item["assets"][band]["href"] = f"{cog_url}/{item['id']}/{band}.tif"
collection["links"] = []                             # nothing points outside this machine
(WORK / "collection.json").write_text(json.dumps(collection))
(WORK / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
rustac = str(Path(sys.executable).parent / "rustac")
api_url = f"http://127.0.0.1:{free_port()}"
api = start([rustac, "serve", "--addr", api_url.removeprefix("http://"),
             str(WORK / "collection.json"), str(WORK / "items.json")], api_url + "/", WORK / "rustac.log")
print("COGs at", cog_url, "| STAC API at", api_url)"""),
    ("md", """## Search and open

The same call as for a public catalogue, pointed at the local API. `bbox` (lon/lat) filters the search;
`bounds` (in the items' CRS) sets the cube's extent, here the window our COGs cover. Without `bounds` the
cube would cover the items' whole footprint (the full 110 km tile)."""),
    ("code", """before = len(requests_log())

cube = eocube.open_stac(
    url=api_url,
    collections="sentinel-2-l2a",
    bbox=BBOX,                                       # lon/lat, for the search
    datetime="2020-06-01/2020-07-10",
    assets=BANDS,
    bounds=WINDOW,
    chunks={"y": 128, "x": 128},
)
print(f"requests to the COG server while opening: {len(requests_log()) - before}")
cube.eocube"""),
    ("md", """Opening made no request to the COG server: the cube was built from the metadata alone. Computing a
piece of it reads only the tiles that piece needs: a HEAD request for the file's size, then HTTP range
requests (status 206). Here one band on one date, a 100 x 100 px corner of a 256 x 256 px COG with
128 x 128 px tiles:"""),
    ("code", """before = len(requests_log())
corner = cube.sel(band="B08").isel(time=3, y=slice(0, 100), x=slice(0, 100)).compute()
new = requests_log().iloc[before:]
size = (COGS / new.file.iloc[0].lstrip("/")).stat().st_size
print(f"{len(new)} requests, {new.bytes.sum() / 1e3:.0f} kB of a {size / 1e3:.0f} kB file; pixels {corner.shape} {corner.dtype}")
new"""),
    ("md", """The cube is a plain `xarray.DataArray` backed by dask, with the items' metadata as coordinates along
`time` (`item_ids`, `cloud_cover`, `platform`, `tile`):"""),
    ("code", "cube"),
    ("md", """### The grid and dtype follow the metadata

The CRS comes from `proj:epsg`, the transform from the 10 m assets' `proj:transform` (the 20 m `SCL` is
read onto the 10 m grid with nearest-neighbour resampling, so classes stay classes). The dtype is the
published one: all bands share one array, so `uint8` SCL is held as `uint16` (values unchanged); opened
alone it stays `uint8`."""),
    ("code", """b04 = items[0]["assets"]["B04"]
print("CRS      ", cube.rio.crs, "| items:", f"EPSG:{items[0]['properties']['proj:epsg']}")
print("transform", tuple(cube.rio.transform())[:6])
print("items    ", tuple(b04["proj:transform"][:6]))
assert cube.rio.transform() == Affine(*b04["proj:transform"][:6])      # window at the tile's corner
print("dtype    ", cube.dtype, "| nodata", cube.rio.nodata)
scl_alone = eocube.open_stac(url=api_url, collections="sentinel-2-l2a", datetime="2020-06-01/2020-07-10",
                             assets="SCL", bounds=WINDOW)
print("SCL alone", scl_alone.dtype, "on its own 20 m grid:", scl_alone.rio.resolution())

before = len(requests_log())
full = eocube.open_stac(url=api_url, collections="sentinel-2-l2a", datetime="2020-06-01/2020-07-10", assets=BANDS)
assert full.rio.transform() == Affine(*b04["proj:transform"][:6]) and full.shape[2:] == tuple(b04["proj:shape"])
print(f"whole tile: {full.shape} {full.dtype} = {full.nbytes / 1e9:.1f} GB described by "
      f"{full.data.npartitions} read tasks; requests while opening: {len(requests_log()) - before}")"""),
    ("md", """## Items given directly

No API at hand? Pass the items themselves (a list of dicts or `pystac` items, an `ItemCollection`, a GeoJSON
file or a static catalog). These items carry no `raster:bands` (the API added them from the collection's
`item_assets`), so `open_stac` reads each band's dtype from one file header: a few small range requests,
still no pixel. The pixels are the same as the search's (both cubes are computed here to compare them):"""),
    ("code", """import xarray as xr

before = len(requests_log())
direct = eocube.open_stac(items, assets=BANDS, bounds=WINDOW, chunks={"y": 128, "x": 128})
log = requests_log().iloc[before:]
print(f"opening from items: {len(log)} header requests, {log.bytes.sum() / 1e3:.0f} kB")
assert direct.dtype == cube.dtype and direct.rio.transform() == cube.rio.transform()
xr.testing.assert_equal(direct.compute(), cube.compute())
print("same cube:", direct.shape, direct.dtype)"""),
    ("md", """## Look at it: NDVI and the scene classification over the dates

The window is small, so load it once (`persist` keeps a dask-backed cube whose chunks are now in memory);
the plots below then do not read the files again. On a large area, compute only what a plot needs."""),
    ("code", """import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap
from eocube.masks import SCL_CLASSES, clear_from_scl

cube = cube.persist()
red = cube.sel(band="B04").astype("float32")
nir = cube.sel(band="B08").astype("float32")
valid = (red > 0) & (nir > 0)                        # nodata is 0
ndvi = (nir - red) / (nir + red).where(valid)         # lazy, float32, NaN where no data

NDVI_CMAP = plt.get_cmap("RdYlGn", 11)              # NDVI in 0.1 classes
scl_colors = ["black", "red", "dimgray", "saddlebrown", "forestgreen", "gold", "royalblue",
              "darkgray", "silver", "white", "lightskyblue", "magenta"]
scl_cmap = ListedColormap(scl_colors)
fig, axes = plt.subplots(2, cube.sizes["time"], figsize=(16, 4.6), layout="constrained")
for t, (ax_top, ax_bottom) in enumerate(zip(axes[0], axes[1])):
    ax_top.imshow(ndvi[t], cmap=NDVI_CMAP, vmin=-0.2, vmax=0.9, interpolation="nearest")
    ax_top.set_title(f"{str(cube.time.values[t])[:10]}\\ncloud {float(cube.cloud_cover[t]):.0f}%", fontsize=9)
    ax_bottom.imshow(cube.sel(band="SCL")[t], cmap=scl_cmap, vmin=-0.5, vmax=11.5, interpolation="nearest")
for ax in axes.ravel():
    ax.set_axis_off()
axes[0, 0].text(-0.1, 0.5, "NDVI", transform=axes[0, 0].transAxes, rotation=90, va="center", ha="right")
axes[1, 0].text(-0.1, 0.5, "SCL", transform=axes[1, 0].transAxes, rotation=90, va="center", ha="right")
handles = [plt.Rectangle((0, 0), 1, 1, color=scl_colors[v], ec="k", lw=0.3) for v in SCL_CLASSES.values()]
fig.legend(handles, list(SCL_CLASSES), loc="lower center", ncol=6, fontsize=8, bbox_to_anchor=(0.5, -0.12));"""),
    ("md", """Black is no data: the window lies at the edge of the satellite's swath, and each item's footprint
(its published `geometry`) cuts the corner differently.

## A clear mask from SCL

`eocube.masks.clear_from_scl` marks no data, saturated, cloud shadow, medium/high-probability cloud and
thin cirrus as not clear (pass `classes=` to choose, `snow=True` to drop snow too). It is lazy, boolean
`(time, y, x)`:"""),
    ("code", """clear = clear_from_scl(cube)                         # the SCL band of the cube
print(clear.dims, clear.dtype, type(clear.data).__name__, "| not clear:", clear.attrs["not_clear_classes"])
share = clear.mean(["y", "x"]).compute()

fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 4), layout="constrained",
                                    gridspec_kw={"width_ratios": [1.4, 1, 1]})
ax0.bar([str(d)[5:10] for d in share.time.values], share.values)
ax0.set_ylabel("clear share of the window"); ax0.set_title("clear observations per date (no data is not clear)")
t = int(np.argmax(cube.cloud_cover.values))          # the cloudiest item
ax1.imshow(ndvi[t], cmap=NDVI_CMAP, vmin=-0.2, vmax=0.9, interpolation="nearest"); ax1.set_title(f"NDVI {str(cube.time.values[t])[:10]}")
ax2.imshow(ndvi[t].where(clear[t]), cmap=NDVI_CMAP, vmin=-0.2, vmax=0.9, interpolation="nearest"); ax2.set_title("clear pixels only")
for ax in (ax1, ax2):
    ax.set_axis_off()"""),
    ("md", """How many clear looks each pixel got, the median clear NDVI of the period (pixels never seen clear stay
blank), and the mean clear NDVI of each field type over time:"""),
    ("code", """import warnings
import matplotlib.dates as mdates

clear_ndvi = ndvi.where(clear)
looks = clear.sum("time")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # median of a pixel never seen clear: NaN, said once here
    median = clear_ndvi.median("time").compute()
fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(16, 4), layout="constrained", gridspec_kw={"width_ratios": [1, 1, 1.6]})
im = ax0.imshow(looks, cmap="viridis", vmin=0, vmax=cube.sizes["time"]); fig.colorbar(im, ax=ax0, shrink=0.8)
ax0.set_title("clear looks per pixel"); ax0.set_axis_off()
ax1.imshow(median, cmap=NDVI_CMAP, vmin=-0.2, vmax=0.9, interpolation="nearest")
ax1.set_title(f"median clear NDVI ({int(median.isnull().sum())} px never clear)"); ax1.set_axis_off()
for name, k in [("late crop", 1), ("harvested", 2), ("grass", 0)]:
    in_type = xr.DataArray(crop == k, dims=("y", "x"))
    ax2.plot(cube.time, clear_ndvi.where(in_type).mean(["y", "x"]), "o-", label=name)
ax2.set_xticks(cube.time.values); ax2.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
ax2.set_ylabel("mean clear NDVI"); ax2.legend(); ax2.set_title("by field type");"""),
    ("md", """All the COG reads of this notebook: HEAD requests (file size) and range requests (status 206), never a
whole-file download. The comparison above computed two cubes and `persist` a third; GDAL's caches spared
most repeated reads, but each computation from a lazy cube may read again, so persist what you reuse."""),
    ("code", """log = requests_log()
tifs = log[log.file.str.endswith(".tif")]
total = sum(p.stat().st_size for p in COGS.rglob("*.tif"))
print(f"{len(tifs)} requests to COGs, {tifs.bytes.sum() / 1e6:.2f} MB read; the {len(list(COGS.rglob('*.tif')))} COGs hold {total / 1e6:.2f} MB")
tifs.groupby(["method", "status"]).bytes.agg(["count", "sum"])"""),
    ("md", "Stop the local services (the kernel's exit would stop them too) and remove the temporary files:"),
    ("code", """stop(api); stop(nginx)
shutil.rmtree(WORK)
assert api.poll() is not None and nginx.poll() is not None and not WORK.exists()
print("local STAC API and COG server stopped, temporary files removed")"""),
    ("md", """Next: `01_quickstart.ipynb` masks and gap-fills a real Sentinel-2 series with the same cube convention;
a cube from `open_stac` goes through `cube.eocube.gapfill(...)` and `cube.eocube.to_zarr(...)` the same way."""),
]
