"""Pictures people would rather look at than read (matplotlib, headless-safe).

matplotlib is imported when a figure is drawn, not with this package (the command line
imports it only to write a quicklook).

Place among the package floors (README, Architecture): floor 1; it may import grid, nodata, and no
other package's private modules (tests/test_import_structure.py checks it).
"""

from __future__ import annotations

from typing import Any

__all__ = ["gapfill_quicklook"]


def __getattr__(name: str) -> Any:
    if name == "gapfill_quicklook":
        from .quicklook import gapfill_quicklook

        return gapfill_quicklook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
