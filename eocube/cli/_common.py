"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click
import xarray as xr

from ..datasets import SAMPLES, open_sample
from ..errors import EOCubeError
from ..io import open_zarr


CLUSTER_OPTIONS = ("cluster", "workers", "threads", "memory_limit")


def cluster_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the cluster options to a command; it receives them as one ``cluster`` dict.

    The dict holds the keyword arguments of :func:`eocube.cluster.connect`, so a
    command runs ``client = connect(**cluster)``.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in CLUSTER_OPTIONS}
        kwargs["cluster"] = {
            "cluster": values["cluster"],
            "n_workers": values["workers"],
            "threads_per_worker": values["threads"],
            "memory_limit": values["memory_limit"],
        }
        return func(*args, **kwargs)

    options = [
        click.option("--cluster", default="local", show_default=True,
                     help="'local' (a Dask cluster sized to this machine) or a scheduler address (tcp://host:8786)."),
        click.option("--workers", type=int, default=None, help="Local cluster: worker processes (default: cores/2)."),
        click.option("--threads", type=int, default=None, help="Local cluster: threads per worker."),
        click.option("--memory-limit", default=None, help="Local cluster: memory per worker, e.g. 4GB."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def open_source(source: str, chunks: dict[str, int] | None) -> tuple[xr.DataArray, str | None]:
    """Open ``source`` (a bundled sample name or a Zarr path); also return the sample name or None."""
    if source in SAMPLES:
        return open_sample(source, chunks=chunks), source
    return open_zarr(Path(source), chunks=chunks), None


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Print eocube errors as one clear line and exit with status 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EOCubeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper
