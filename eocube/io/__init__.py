"""Sources and sinks: Zarr stores (read lazily, written resumably)."""

from .zarr_reader import open_zarr
from .zarr_writer import DEFAULT_ZARR_FORMAT, WriteReport, check_target, to_zarr

__all__ = ["DEFAULT_ZARR_FORMAT", "WriteReport", "check_target", "open_zarr", "to_zarr"]
