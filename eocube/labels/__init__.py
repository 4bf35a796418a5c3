"""Label cubes: class maps on a cube's grid, from polygons or from a class band.

* :func:`burn_polygons`: polygons (GeoPackage, GeoJSON, Shapefile, FlatGeobuf, GeoParquet, a
  GeoDataFrame) reprojected to a cube's CRS and rasterised onto its grid, lazily per chunk, with a
  class field, a mapping (merging several field values into one class), overlap priority and the
  centre or all-touched rule.
* :func:`labels_from_band`: a class band of a cube (a land-cover map) as a label cube.
* :func:`classes_from_attrs`, :func:`class_attrs`: the classes (value, name, colour) that travel in
  the attributes ``class_values``, ``class_names``, ``class_colors``.
* :data:`OSM_LANDUSE_CLASSES`, :data:`OSM_LANDUSE_MAPPING`: the class table of OpenStreetMap
  land-use polygons (Geofabrik ``fclass``).

A label cube follows the cube convention: dims ``(time, band, y, x)`` with one date and one band
``"label"``, an integer dtype (uint8 unless class values need more), ``rio.nodata`` for unlabelled
pixels (0 by default, 255 if a class is 0).

Place among the package floors (README, Architecture): floor 3; it may import cube, errors, grid,
models, and no other package's private modules (tests/test_import_structure.py checks it).
"""

from __future__ import annotations

from ..models import ClassInfo
from ._burn import burn_polygons
from ._classes import (
    OSM_LANDUSE_CLASSES,
    OSM_LANDUSE_MAPPING,
    as_classes,
    class_attrs,
    classes_from_attrs,
)
from ._counts import class_counts
from ._errors import FieldError, LabelError, VectorFileNotFoundError, VectorReadError
from ._raster import labels_from_band
from ._vector import Polygons, read_polygons

__all__ = [
    "OSM_LANDUSE_CLASSES",
    "OSM_LANDUSE_MAPPING",
    "ClassInfo",
    "FieldError",
    "LabelError",
    "Polygons",
    "VectorFileNotFoundError",
    "VectorReadError",
    "as_classes",
    "burn_polygons",
    "class_attrs",
    "class_counts",
    "classes_from_attrs",
    "labels_from_band",
    "read_polygons",
]
