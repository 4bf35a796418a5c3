"""The cube's nodata rules, now in the core (:mod:`eocube.nodata`); kept so that old imports still work."""

from ..nodata import NODATA_KEYS, cube_nodata, with_nan_nodata

__all__ = ["NODATA_KEYS", "cube_nodata", "with_nan_nodata"]
