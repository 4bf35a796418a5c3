"""Helpers of the label tests: a small UTM grid and polygon files written in several formats."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

import eocube

DATA = Path(__file__).parent / "data"
X0, Y0, RES = 465000.0, 5080000.0, 10.0
"""Upper-left corner of the test grid (EPSG:32633) and its pixel size."""


def grid(h: int = 20, w: int = 30, *, chunks: int | None = None, t: int = 2):
    """A float cube on a 10 m UTM 33N grid whose upper-left corner is (X0, Y0)."""
    x = X0 + RES * (np.arange(w) + 0.5)
    y = Y0 - RES * (np.arange(h) + 0.5)
    cube = eocube.make_cube(np.zeros((t, 1, h, w), "float32"), time=pd.date_range("2021-05-01", periods=t),
                            band=["red"], y=y, x=x, crs="EPSG:32633")
    return cube.chunk({"y": chunks, "x": chunks}) if chunks else cube


def box(c0: float, r0: float, c1: float, r1: float) -> shapely.Polygon:
    """A rectangle in pixel units of the test grid (columns c0..c1, rows r0..r1), in UTM metres."""
    return shapely.box(X0 + c0 * RES, Y0 - r1 * RES, X0 + c1 * RES, Y0 - r0 * RES)


def write_geojson(path: Path, geoms, fields: dict, crs: str = "EPSG:32633") -> Path:
    """Polygons to GeoJSON (any CRS) with pyogrio."""
    from pyogrio.raw import write

    write(path, shapely.to_wkb(np.asarray(geoms, dtype=object)), [np.asarray(v) for v in fields.values()],
          fields=list(fields), geometry_type="Polygon", crs=crs, driver="GeoJSON")
    return path


def write_gpkg(path: Path, geoms, fields: dict, crs: str = "EPSG:32633") -> Path:
    from pyogrio.raw import write

    write(path, shapely.to_wkb(np.asarray(geoms, dtype=object)), [np.asarray(v) for v in fields.values()],
          fields=list(fields), geometry_type="Polygon", crs=crs, driver="GPKG")
    return path


def write_geoparquet(path: Path, geoms, fields: dict, crs: str = "EPSG:32633") -> Path:
    """GeoParquet 1.1 (WKB) written with pyarrow alone, as geopandas would."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyproj import CRS

    table = pa.table({**{k: list(v) for k, v in fields.items()},
                      "geometry": pa.array(list(shapely.to_wkb(np.asarray(geoms, dtype=object))), pa.binary())})
    geo = {"version": "1.1.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"],
                                    "crs": CRS.from_user_input(crs).to_json_dict()}}}
    table = table.replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    pq.write_table(table, path)
    return path


def to_lonlat(geom: shapely.Geometry) -> shapely.Geometry:
    """A UTM 33N geometry in EPSG:4326 (lon, lat), densified to 1 m first so its edges stay put."""
    t = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    dense = shapely.segmentize(geom, 1.0)
    return shapely.transform(dense, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


@pytest.fixture
def h():
    """These helpers (grid, box, writers, to_lonlat, DATA), for tests under --import-mode=importlib."""
    return sys.modules[__name__]
