"""Where the computation runs: a local Dask cluster (default), Slurm jobs, or an existing scheduler.

``connect(...)`` is the one entry point; it returns a ``distributed.Client``
that becomes the default scheduler, so every ``compute``/``to_zarr`` after it
runs on that cluster. Settings come from ``eocube.yaml`` merged into
``dask.config`` (``eocube.cluster.*``), environment variables, a config file
and keyword arguments (see :mod:`eocube.cluster.config`).

Place among the package floors (README, Architecture): floor 1; it may import errors (distributed
and dask-jobqueue on first use), and no other package's private modules
(tests/test_import_structure.py checks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import ClusterConfigError

if TYPE_CHECKING:
    from .connect import close, connect, describe, dry_run

__all__ = ["connect", "close", "describe", "dry_run", "ClusterConfigError"]

_CONNECT = ("close", "connect", "describe", "dry_run")
"""Names of :mod:`eocube.cluster.connect`, imported on first use: ``distributed`` is imported only
when a cluster is asked for, not by the settings check (``eocube.cluster.config``) a command runs
first, nor by a rerun whose output is already complete."""


def __getattr__(name: str) -> Any:
    if name in _CONNECT:
        import importlib

        module = importlib.import_module(".connect", __name__)
        # All at once: importing the submodule bound the package's ``connect`` to the module itself.
        globals().update({n: getattr(module, n) for n in _CONNECT})
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
