"""eocube: satellite image time series to analysis-ready cubes at HPC scale.

The public API is what this module exports; everything else may change.
"""

from ._version import __version__
from .cube import DIMS, CubeInfo, cube_info, make_cube, select_bands, validate_cube
from .errors import (
    BandError,
    CubeError,
    EOCubeError,
    IncompleteStoreError,
    ResumeMismatchError,
    StoreError,
    StoreNotFoundError,
)
from .io import WriteReport, open_zarr, to_zarr
from .models import apply_model
from .stac import open_stac
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
]
