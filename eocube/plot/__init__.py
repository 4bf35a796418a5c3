"""Pictures people would rather look at than read (matplotlib, headless-safe)."""

from .quicklook import gapfill_quicklook

__all__ = ["gapfill_quicklook"]
