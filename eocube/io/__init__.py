"""Sources and sinks: Zarr stores (read lazily, written resumably).

The names are imported on first use, so that the light modules of this package (the write
record, manifest and lock of a store: what says that an output is already complete, see
:mod:`eocube.io.complete`) are imported without xarray's readers and writers.

Place among the package floors (README, Architecture): floor 2; it may import cube, errors and the
core helpers _redact, _version, and no other package's private modules
(tests/test_import_structure.py checks it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .zarr_reader import open_zarr
    from .zarr_writer import DEFAULT_ZARR_FORMAT, WriteReport, check_target, to_zarr

__all__ = ["DEFAULT_ZARR_FORMAT", "WriteReport", "check_target", "open_zarr", "to_zarr"]

_WHERE = {"open_zarr": ".zarr_reader", "DEFAULT_ZARR_FORMAT": ".zarr_writer", "WriteReport": ".zarr_writer",
          "check_target": ".zarr_writer", "to_zarr": ".zarr_writer"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
