"""Temporal gap filling (classical methods)."""

from .temporal import METHODS, fill_gaps

__all__ = ["fill_gaps", "METHODS"]
