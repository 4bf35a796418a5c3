"""Where the computation runs: a local Dask cluster (default) or an existing scheduler.

``connect(...)`` is the one entry point; it returns a ``distributed.Client``
that becomes the default scheduler, so every ``compute``/``to_zarr`` after it
runs on that cluster.
"""

from .connect import close, connect, describe

__all__ = ["connect", "close", "describe"]
