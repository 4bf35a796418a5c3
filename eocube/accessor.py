"""The ``.eocube`` accessor: eocube's functions as methods of a cube, for notebooks.

>>> cube.eocube                      # CRS, resolution, dates, bands, chunks at a glance
>>> clear = cube.eocube.clear_from_cloud_band("CLM")
>>> filled = cube.eocube.gapfill(clear, method="linear", bands="NDVI")
>>> filled.eocube.to_zarr("filled.zarr")

Each method calls the public function of the same job, so the accessor adds no
behaviour of its own (in the style of rioxarray's ``.rio``).
"""

from __future__ import annotations

import os
from typing import Any

import xarray as xr

from .cube import CubeInfo, cube_info, select_bands, validate_cube


@xr.register_dataarray_accessor("eocube")
class EOCubeAccessor:
    """eocube methods on an ``xarray.DataArray`` cube."""

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    @property
    def info(self) -> CubeInfo:
        """Summary of the cube's grid, dates, bands and chunks (:func:`eocube.cube_info`)."""
        return cube_info(self._obj)

    def __repr__(self) -> str:
        return str(self.info)

    def _repr_html_(self) -> str:
        return "<pre>" + str(self.info).replace("&", "&amp;").replace("<", "&lt;") + "</pre>"

    def validate(self) -> xr.DataArray:
        """Check the cube convention (:func:`eocube.validate_cube`) and return the cube."""
        return validate_cube(self._obj)

    def bands(self, names: str | list[str]) -> xr.DataArray:
        """Select bands by name (:func:`eocube.select_bands`)."""
        return select_bands(self._obj, names)

    def clear_from_cloud_band(self, band: str = "CLM", **kwargs: Any) -> xr.DataArray:
        """Clear mask from a cloud band (:func:`eocube.masks.clear_from_cloud_band`)."""
        from .masks import clear_from_cloud_band

        return clear_from_cloud_band(self._obj, band, **kwargs)

    def gapfill(self, clear: xr.DataArray | None = None, *, method: str = "linear", **kwargs: Any) -> xr.DataArray:
        """Fill gaps along time (:func:`eocube.fill.fill_gaps`)."""
        from .fill import fill_gaps

        return fill_gaps(self._obj, clear, method=method, **kwargs)

    def to_zarr(self, store: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Write the cube to Zarr, resumably (:func:`eocube.to_zarr`)."""
        from .io import to_zarr

        return to_zarr(self._obj, store, **kwargs)

    def apply_model(self, model: Any, spec: Any = None, *, run: Any = None, **keywords: Any) -> xr.DataArray:
        """Apply a PyTorch model chunk-wise with a halo (:func:`eocube.apply_model`: ``spec`` a
        :class:`~eocube.models.ModelSpec` or a card, ``run`` a :class:`~eocube.models.RunOptions`;
        the old keywords are a deprecated shorthand)."""
        from .models import apply_model

        return apply_model(self._obj, model, spec, run=run, **keywords)
