"""STAC loading: search a STAC API or take items, get a lazy cube that reads only what it needs.

The public face is :func:`open_stac` and its errors; the pipeline is visible in
the private modules, in order: ``_search`` (items) -> ``_items`` (metadata model)
-> ``_grid`` (output grid) -> ``_load`` (dask graph) -> ``_reader`` (pixels).

Place among the package floors (README, Architecture): floor 2; it may import cube, errors, grid and
the core helper _redact, and no other package's private modules (tests/test_import_structure.py
checks it).
"""

from ._errors import (
    AssetError,
    AssetReadError,
    AssetReadWarning,
    EmptySearchError,
    GridError,
    MixedCRSError,
    NodataWarning,
    StacError,
)
from ._load import DEFAULT_CHUNKS, open_stac
from ._reader import DEFAULT_GDAL_ENV

__all__ = [
    "open_stac",
    "DEFAULT_CHUNKS",
    "DEFAULT_GDAL_ENV",
    "StacError",
    "EmptySearchError",
    "AssetError",
    "MixedCRSError",
    "GridError",
    "AssetReadError",
    "AssetReadWarning",
    "NodataWarning",
]
