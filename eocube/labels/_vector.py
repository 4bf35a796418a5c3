"""Reading polygons: GeoPackage, GeoJSON, Shapefile, FlatGeobuf (pyogrio) and GeoParquet (pyarrow).

The polygons are read whole (label files are small next to the rasters they label) into a
:class:`Polygons`: shapely geometries, attribute columns as NumPy arrays, and the CRS.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer

from ._errors import LabelError, VectorFileNotFoundError, VectorReadError

PARQUET_SUFFIXES = (".parquet", ".geoparquet", ".pq")


@dataclass(frozen=True, eq=False)
class Polygons:
    """Polygons with attribute columns and a CRS.

    Attributes
    ----------
    geometry
        1-D object array of shapely (Multi)Polygons (None for features without geometry).
    fields
        Column name -> 1-D array, one value per polygon.
    crs
        The CRS of the coordinates (anything :class:`pyproj.CRS` takes), or None if unknown.
    source
        Where they came from (a path, or a description), for messages and provenance.
    """

    geometry: np.ndarray
    fields: Mapping[str, np.ndarray] = field(default_factory=dict)
    crs: Any = None
    source: str = "polygons"

    def __len__(self) -> int:
        return len(self.geometry)

    def to_crs(self, crs: Any) -> Polygons:
        """The polygons in another CRS (vertices transformed exactly; edges stay straight lines).

        Parameters
        ----------
        crs
            Target CRS (anything :class:`pyproj.CRS` takes).

        Returns
        -------
        Polygons
            A new set; the same object when the CRS already matches.
        """
        if self.crs is None:
            raise LabelError(f"{self.source} has no CRS, so it cannot be reprojected to {crs}: give the file a CRS "
                             "(e.g. ogr2ogr -a_srs EPSG:xxxx) or pass Polygons(..., crs=...)")
        src, dst = CRS.from_user_input(self.crs), CRS.from_user_input(crs)
        if src == dst:
            return self
        transformer = Transformer.from_crs(src, dst, always_xy=True)
        with np.errstate(invalid="ignore"):
            geometry = shapely.transform(self.geometry,
                                         lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
        coords, index = shapely.get_coordinates(geometry, return_index=True)
        lost = np.unique(index[~np.isfinite(coords).all(axis=1)]).tolist()
        if lost:
            box = np.round(shapely.total_bounds(self.geometry), 3).tolist()
            raise LabelError(
                f"{len(lost)} of the {len(self)} polygons of {self.source} (e.g. features {lost[:5]}) cannot be "
                f"reprojected from {src.to_string()} to {dst.to_string()} (their coordinates become NaN or inf); "
                f"the polygons span {box} in {src.to_string()}: is that their CRS? (metres labelled as lon/lat, "
                "or latitude and longitude swapped, give such coordinates)"
            )
        return Polygons(geometry, self.fields, dst.to_wkt(), self.source)


def as_polygons(source: Any, *, layer: str | int | None = None) -> Polygons:
    """Polygons from a path, a :class:`Polygons`, or a geopandas GeoDataFrame.

    Parameters
    ----------
    source
        A vector file path, a :class:`Polygons`, or an object with ``.geometry`` and ``.crs``
        (a GeoDataFrame).
    layer
        Layer of a multi-layer file (GeoPackage): its name or index; default the first.

    Returns
    -------
    Polygons
    """
    if isinstance(source, Polygons):
        return source
    if isinstance(source, (str, os.PathLike)):
        return read_polygons(source, layer=layer)
    if hasattr(source, "geometry") and hasattr(source, "crs") and hasattr(source, "columns"):  # GeoDataFrame
        geometry = np.asarray(source.geometry.values, dtype=object)
        fields = {str(c): np.asarray(source[c].values) for c in source.columns if c != source.geometry.name}
        return Polygons(geometry, fields, source.crs, "GeoDataFrame")
    raise LabelError(f"cannot read polygons from a {type(source).__name__}: give a file path (GeoPackage, "
                     "GeoJSON, Shapefile, FlatGeobuf, GeoParquet), an eocube.labels.Polygons or a GeoDataFrame")


def read_polygons(path: str | os.PathLike[str], *, layer: str | int | None = None,
                  columns: Sequence[str] | None = None) -> Polygons:
    """Read the polygons of a vector file.

    GeoPackage, GeoJSON, Shapefile, FlatGeobuf and any other OGR format go through pyogrio;
    GeoParquet (``.parquet``, ``.geoparquet``) through pyarrow, because the GDAL inside pyogrio's
    wheels has no Parquet driver.

    Parameters
    ----------
    path
        The file.
    layer
        Layer name or index (GeoPackage with several layers); default the first.
    columns
        Attribute columns to read (default all).

    Returns
    -------
    Polygons

    Raises
    ------
    VectorFileNotFoundError
        The file does not exist.
    VectorReadError
        The file cannot be read as vectors, or has no such layer; the message says which layers exist.
    """
    path = Path(path)
    if not path.exists():
        raise VectorFileNotFoundError(f"vector file {str(path)!r} does not exist: check the path")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _read_geoparquet(path, columns)
    import pyogrio
    import pyogrio.errors
    from pyogrio.raw import read

    try:
        meta, _, wkb, values = read(path, layer=layer, columns=columns)
    except pyogrio.errors.DataLayerError as e:
        try:
            layers = [str(name) for name, _ in pyogrio.list_layers(path)]
        except Exception:  # noqa: BLE001 - the layer error is the one to report
            layers = []
        raise VectorReadError(f"cannot read layer {layer!r} of {str(path)!r} ({e}); its layers: {layers}: "
                              "pass layer= with one of them") from None
    except (pyogrio.errors.DataSourceError, pyogrio.errors.GeometryError, pyogrio.errors.FieldError) as e:
        raise VectorReadError(f"cannot read {str(path)!r} as vector data ({e}): give a GeoPackage, GeoJSON, "
                              "Shapefile, FlatGeobuf or GeoParquet file") from None
    if wkb is None:
        raise VectorReadError(f"{str(path)!r} has no geometry column: label polygons need geometries")
    geometry = shapely.from_wkb(wkb)
    fields = {str(name): np.asarray(v) for name, v in zip(meta["fields"], values)}
    return Polygons(geometry, fields, meta.get("crs"), str(path))


def _read_geoparquet(path: Path, columns: Sequence[str] | None) -> Polygons:
    """GeoParquet (1.x, WKB geometry) through pyarrow."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise VectorReadError(f"reading GeoParquet ({str(path)!r}) needs pyarrow: pip install pyarrow, or convert "
                              "the file to GeoPackage (ogr2ogr out.gpkg in.parquet)") from None
    try:
        pfile = pq.ParquetFile(path)
        meta = json.loads((pfile.schema_arrow.metadata or {}).get(b"geo", b"null") or b"null")
    except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds for a bad file
        raise VectorReadError(f"cannot read {str(path)!r} as GeoParquet ({e}): give a GeoParquet file") from None
    if not meta or "primary_column" not in meta:
        raise VectorReadError(f"{str(path)!r} is Parquet but not GeoParquet (no 'geo' metadata): write it with "
                              "geopandas' to_parquet or ogr2ogr -f Parquet")
    gcol = meta["primary_column"]
    info = meta.get("columns", {}).get(gcol, {})
    if info.get("encoding", "WKB").upper() != "WKB":
        raise VectorReadError(f"{str(path)!r} stores geometry as {info['encoding']!r}: only WKB GeoParquet is "
                              "read; rewrite it with geopandas' to_parquet(geometry_encoding='WKB')")
    names = [n for n in pfile.schema_arrow.names if n != gcol and (columns is None or n in columns)]
    table = pfile.read(columns=[*names, gcol])
    geometry = shapely.from_wkb(np.asarray(table.column(gcol).to_pylist(), dtype=object))
    fields = {n: np.asarray(table.column(n).to_pylist()) for n in names}
    crs = info.get("crs", "OGC:CRS84")  # GeoParquet: a missing crs means OGC:CRS84, null means unknown
    if isinstance(crs, dict):
        crs = CRS.from_json_dict(crs).to_wkt()
    return Polygons(geometry, fields, crs, str(path))
