"""Temporal gap filling (classical methods), regular composites and the quality band.

Imports are lazy: ``import eocube.fill`` costs nothing beyond this file, so that the
command line can build its options (:data:`METHOD_NAMES`) without importing dask.array,
rioxarray or the compiled kernels. The public names below are imported on first use;
the compiled (numba) kernels (``_fast_*.py``) are imported only inside the kernels that
run them, i.e. in the dask tasks, on the workers that compute (see :mod:`eocube.fill._warmup`
for compiling them ahead of time).

Place among the package floors (README, Architecture): floor 3; it may import cube, errors, masks,
names, nodata, and no other package's private modules (tests/test_import_structure.py checks it).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from ..names import FILL_METHODS

METHOD_NAMES: tuple[str, ...] = FILL_METHODS
"""Names of :data:`METHODS` (the keys of ``eocube.fill.temporal.METHODS``; a test keeps them equal),
available without importing the kernels."""

_LAZY = {
    "fill_gaps": "temporal",
    "METHODS": "temporal",
    "BOUNDED": "temporal",
    "composite": "composite",
    "STATISTICS": "composite",
    "days_to_clear": "quality",
    "usable_mask": "quality",
    "FillError": "_errors",
}
"""Public name -> submodule that defines it, imported on first use."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _FillPackage(types.ModuleType):
    """This package's module type: a submodule named like a public function (``composite``) stays hidden.

    Importing ``eocube.fill.composite`` sets the package attribute ``composite`` to the submodule;
    the function of that name is kept there instead, as when this package imported it eagerly.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}" and name in _LAZY:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _FillPackage


__all__ = [
    "BOUNDED",
    "METHODS",
    "METHOD_NAMES",
    "STATISTICS",
    "FillError",
    "composite",
    "days_to_clear",
    "fill_gaps",
    "usable_mask",
]
