"""Session fixtures: local COGs with the published items' grids, and the real services serving them.

Published Sentinel-2 L2A items (Planetary Computer, tile 35MNM) keep their metadata as
published; only the hrefs of the assets under test are rewritten to local servers. The
COGs cover a small window at the grid's origin (same CRS, transform origin and pixel size).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from . import services

DATA = Path(__file__).resolve().parent / "data"  # copied from ../shared/data/stac-items (see PROVENANCE.md)
ITEMS_FILE = DATA / "site2-2020_jun_jul-35MNM.geojson"
COLLECTION_FILE = DATA / "sentinel-2-l2a.collection.json"
BANDS = ("B04", "B08", "SCL")  # 10 m, 10 m, 20 m
N_ITEMS = 4
WINDOW_10M = 512  # pixels of a 10 m COG (20 m: half)
BUCKET = "eocube-test"


def published_items() -> list[dict]:
    """The 13 published items, oldest first."""
    items = json.loads(ITEMS_FILE.read_text())["features"]
    return sorted(items, key=lambda it: it["properties"]["datetime"])


def pattern(item_index: int, band_index: int, shape: tuple[int, int]) -> np.ndarray:
    """Deterministic pixels (never nodata 0) with a nodata hole in the corner.

    The dtype is the published one (collection ``raster:bands``): uint8 for SCL, uint16 otherwise.
    """
    top = 250 if BANDS[band_index] == "SCL" else 9999
    dtype = "uint8" if BANDS[band_index] == "SCL" else "uint16"
    # random (so that deflate cannot shrink a tile to nothing and byte counts mean something)
    data = np.random.default_rng([item_index, band_index]).integers(1, top + 1, size=shape).astype(dtype)
    data[:16, :16] = 0
    return data


def write_cog(path: Path, data: np.ndarray, crs, transform: Affine, nodata=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="COG", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype,
        crs=crs, transform=transform, nodata=nodata, compress="deflate", blocksize=256,
    ) as dst:
        dst.write(data, 1)


@pytest.fixture(scope="session")
def cog_dir(tmp_path_factory) -> Path:
    """COG windows for the first N_ITEMS items and BANDS, laid out as ``<item id>/<band>.tif``."""
    root = tmp_path_factory.mktemp("cogs")
    for i, item in enumerate(published_items()[:N_ITEMS]):
        for b, band in enumerate(BANDS):
            asset = item["assets"][band]
            transform = Affine(*asset["proj:transform"][:6])
            size = int(WINDOW_10M * 10 / transform.a)
            write_cog(root / item["id"] / f"{band}.tif", pattern(i, b, (size, size)),
                      f"EPSG:{item['properties']['proj:epsg']}", transform)
    # a corrupt COG: a valid header cut short
    good = root / published_items()[0]["id"] / "B04.tif"
    (root / "corrupt").mkdir()
    (root / "corrupt" / "B04.tif").write_bytes(good.read_bytes()[:4000])
    return root


def rewrite(items: list[dict], base: str, bands=BANDS) -> list[dict]:
    """Copies of ``items`` whose ``bands`` assets point to ``base/<item id>/<band>.tif``."""
    out = []
    for item in items:
        new = copy.deepcopy(item)
        for band in bands:
            new["assets"][band]["href"] = f"{base}/{item['id']}/{band}.tif"
        out.append(new)
    return out


@pytest.fixture(scope="session")
def http(cog_dir, tmp_path_factory):
    """nginx serving the COGs; ``.log`` is its access log."""
    svc = services.start_nginx(cog_dir, tmp_path_factory.mktemp("nginx"))
    yield svc
    services.stop(svc.proc)


@pytest.fixture(scope="session")
def s3(cog_dir, tmp_path_factory):
    """moto's S3 server holding the COGs in bucket BUCKET; yields (service, gdal_env)."""
    import boto3

    svc = services.start_moto(tmp_path_factory.mktemp("moto"))
    client = boto3.client("s3", endpoint_url=svc.url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    for path in cog_dir.rglob("*.tif"):
        client.upload_file(str(path), BUCKET, str(path.relative_to(cog_dir)))
    env = {
        "AWS_S3_ENDPOINT": svc.url.removeprefix("http://"),
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    yield svc, env
    services.stop(svc.proc)


@pytest.fixture(scope="session")
def http_items(http) -> list[dict]:
    """The first N_ITEMS published items, hrefs rewritten to nginx."""
    return rewrite(published_items()[:N_ITEMS], http.url)


@pytest.fixture(scope="session")
def stac_api(http_items, tmp_path_factory):
    """rustac's STAC API loaded with the published collection and the rewritten items."""
    work = tmp_path_factory.mktemp("stacapi")
    coll = json.loads(COLLECTION_FILE.read_text())
    coll["links"] = []
    (work / "collection.json").write_text(json.dumps(coll))
    (work / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": http_items}))
    svc = services.start_stac_api([work / "collection.json", work / "items.json"], work)
    yield svc
    services.stop(svc.proc)


def read_log(path: Path) -> list[tuple[str, str, int, str, int]]:
    """nginx access log as (method, uri, status, range, bytes) tuples."""
    out = []
    for line in path.read_text().splitlines():
        method, uri, status, rest = line.split(" ", 3)
        rng, nbytes = rest.rsplit(" ", 1)
        out.append((method, uri, int(status), rng.strip('"'), int(nbytes)))
    return out
