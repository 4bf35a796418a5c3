"""The ``eocube`` command line: one click group, one module per command."""

from __future__ import annotations

import click

from .._version import __version__
from .evaluate import evaluate
from .gapfill import gapfill
from ..learn.cli import train_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eocube")
def main() -> None:
    """eocube: satellite image time series to analysis-ready cubes (gap filling, models, Zarr)."""


main.add_command(gapfill)
main.add_command(evaluate)
main.add_command(train_command)

__all__ = ["main"]
