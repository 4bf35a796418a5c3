"""eocube: satellite image time series to analysis-ready cubes at HPC scale.

The public API is what this module exports; everything else may change.
"""

from ._version import __version__
from .cube import DIMS, CubeInfo, cube_info, make_cube, select_bands, validate_cube
from .errors import (
    BandError,
    CorruptChunkError,
    CubeError,
    EOCubeError,
    IncompleteStoreError,
    ResumeMismatchError,
    StoreError,
    StoreNotFoundError,
)
from .io import WriteReport, open_zarr, to_zarr
from . import accessor as _accessor  # noqa: F401  (registers cube.eocube)

__all__ = [
    "__version__",
    "DIMS",
    "CubeInfo",
    "cube_info",
    "make_cube",
    "select_bands",
    "validate_cube",
    "open_zarr",
    "to_zarr",
    "WriteReport",
    "open_stac",
    "apply_model",
    "EOCubeError",
    "CubeError",
    "BandError",
    "StoreError",
    "StoreNotFoundError",
    "IncompleteStoreError",
    "ResumeMismatchError",
    "CorruptChunkError",
]

_LAZY = {"apply_model": ("eocube.models", "apply_model"), "open_stac": ("eocube.stac", "open_stac")}
"""Public names imported on first use, so that ``import eocube`` does not import torch or pystac."""


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'eocube' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

