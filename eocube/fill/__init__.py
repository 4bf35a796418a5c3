"""Temporal gap filling (classical methods), regular composites and the quality band."""

from ._errors import FillError
from .composite import STATISTICS, composite
from .quality import days_to_clear, usable_mask
from .temporal import BOUNDED, METHODS, fill_gaps

__all__ = ["fill_gaps", "METHODS", "BOUNDED", "composite", "STATISTICS", "days_to_clear", "usable_mask", "FillError"]
