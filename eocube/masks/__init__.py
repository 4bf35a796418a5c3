"""Clear-sky masks: which observations of a cube are usable (True = clear).

Every builder returns a lazy boolean ``(time, y, x)`` DataArray; combine them with
``&`` and grow clouds with :func:`dilate_clouds`. The builders read nothing;
:func:`check_mask_band` reads a sample of a mask band and refuses values its mask
kind cannot hold (a 0/1 cloud mask given as SCL classes, say).

Place among the package floors (README, Architecture): floor 2; it may import cube, errors, names,
nodata, and no other package's private modules (tests/test_import_structure.py checks it).
"""

from ._errors import MaskError
from .boolean import align_mask, clear_from_cloud_band, clear_from_mask, has_data
from .check import MASK_KINDS, BandSummary, check_mask_band, summarise_band
from .classified import (
    QA_PIXEL_BITS,
    QA_PIXEL_NOT_CLEAR,
    SCL_CLASSES,
    SCL_NOT_CLEAR,
    clear_from_probability,
    clear_from_qa_pixel,
    clear_from_scl,
)
from .dilate import dilate_clouds

__all__ = [
    "MaskError",
    "MASK_KINDS",
    "BandSummary",
    "check_mask_band",
    "summarise_band",
    "align_mask",
    "clear_from_cloud_band",
    "clear_from_mask",
    "clear_from_probability",
    "clear_from_qa_pixel",
    "clear_from_scl",
    "dilate_clouds",
    "has_data",
    "SCL_CLASSES",
    "SCL_NOT_CLEAR",
    "QA_PIXEL_BITS",
    "QA_PIXEL_NOT_CLEAR",
]
