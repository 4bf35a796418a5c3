"""Where the computation runs: a local Dask cluster (default), Slurm jobs, or an existing scheduler.

``connect(...)`` is the one entry point; it returns a ``distributed.Client``
that becomes the default scheduler, so every ``compute``/``to_zarr`` after it
runs on that cluster. Settings come from ``eocube.yaml`` merged into
``dask.config`` (``eocube.cluster.*``), environment variables, a config file
and keyword arguments (see :mod:`eocube.cluster.config`).
"""

from .config import ClusterConfigError
from .connect import close, connect, describe, dry_run

__all__ = ["connect", "close", "describe", "dry_run", "ClusterConfigError"]
