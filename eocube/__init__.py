"""eocube: satellite image time series to analysis-ready cubes at HPC scale.

The public API is what this module exports; everything else may change.

``import eocube`` is cheap (about the cost of ``import xarray``): every public name is
imported on first use (:data:`_LAZY`), and the ``.eocube`` and ``.rio`` accessors of
``xarray.DataArray`` are registered as stand-ins that import their module the first
time a cube uses them (:class:`_LazyAccessor`). Nothing here imports dask.array,
rioxarray, zarr, numba, torch, pystac-client or matplotlib. It asks torch's CPU allocator for
transparent huge pages (``THP_MEM_ALLOC_ENABLE=1`` unless the environment sets it: :mod:`._hugepages`),
which torch reads at its first allocation.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._hugepages import enable_torch_hugepages
from ._version import __version__
from .errors import (
    BandError,
    ClusterError,
    CorruptChunkError,
    CubeError,
    EOCubeError,
    GridError,
    IncompleteStoreError,
    ResumeMismatchError,
    StoreError,
    StoreLockedError,
    StoreNotFoundError,
    StoreOptionError,
    TargetIsInputError,
    UnknownSampleError,
)

__all__ = [
    "DIMS",
    "BandError",
    "ChunkPlan",
    "ChunkPlanError",
    "ClusterError",
    "CorruptChunkError",
    "CubeError",
    "CubeInfo",
    "EOCubeError",
    "GridError",
    "IncompleteStoreError",
    "ResumeMismatchError",
    "StoreError",
    "StoreLockedError",
    "StoreNotFoundError",
    "StoreOptionError",
    "TargetIsInputError",
    "UnknownSampleError",
    "WriteReport",
    "__version__",
    "apply_model",
    "compute_into",
    "cube_info",
    "make_cube",
    "open_stac",
    "open_zarr",
    "plan_chunks",
    "select_bands",
    "to_zarr",
    "validate_cube",
]

_LAZY = {
    "DIMS": ("eocube.cube", "DIMS"),
    "CubeInfo": ("eocube.cube", "CubeInfo"),
    "cube_info": ("eocube.cube", "cube_info"),
    "make_cube": ("eocube.cube", "make_cube"),
    "select_bands": ("eocube.cube", "select_bands"),
    "validate_cube": ("eocube.cube", "validate_cube"),
    "open_zarr": ("eocube.io", "open_zarr"),
    "to_zarr": ("eocube.io", "to_zarr"),
    "WriteReport": ("eocube.io", "WriteReport"),
    "compute_into": ("eocube._compute", "compute_into"),
    "apply_model": ("eocube.models", "apply_model"),
    "open_stac": ("eocube.stac", "open_stac"),
    "plan_chunks": ("eocube.plan", "plan_chunks"),
    "ChunkPlan": ("eocube.plan", "ChunkPlan"),
    "ChunkPlanError": ("eocube.plan", "ChunkPlanError"),
}
"""Public names imported on first use: ``import eocube`` imports neither torch, pystac nor rioxarray."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'eocube' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _LazyAccessor:
    """Stand-in for an xarray accessor: imports the module that registers the real one on first use.

    On the class (``xr.DataArray.rio``) it raises AttributeError, so that the module's own
    ``register_dataarray_accessor`` sees no attribute and replaces it without a warning.

    Parameters
    ----------
    name
        Accessor name (``"eocube"``, ``"rio"``).
    module
        Module whose import registers the real accessor.
    """

    def __init__(self, name: str, module: str) -> None:
        self._name = name
        self._module = module

    def __get__(self, obj: Any, cls: type) -> Any:
        if obj is None:
            raise AttributeError(f"the {self._name!r} accessor is registered on first use ({self._module})")
        importlib.import_module(self._module)
        if cls.__dict__.get(self._name) is self:  # the module did not register it
            raise RuntimeError(f"importing {self._module} did not register the {self._name!r} accessor")
        return getattr(obj, self._name)


def _register_lazy_accessors() -> None:
    """``cube.eocube`` and, unless rioxarray is already imported, ``cube.rio`` / ``ds.rio``."""
    import sys

    import xarray as xr

    classes = {"eocube": ((xr.DataArray,), "eocube.accessor"), "rio": ((xr.DataArray, xr.Dataset), "rioxarray")}
    for name, (types, module) in classes.items():
        if module in sys.modules:
            continue
        for cls in types:
            if name not in cls.__dict__:
                setattr(cls, name, _LazyAccessor(name, module))


_register_lazy_accessors()
enable_torch_hugepages()
