"""The ``eocube`` command line: one click group, one module per command, each imported when it runs.

Start-up cost is part of the interface: ``eocube --help`` and an input error must appear
as fast as ``python -c "import xarray"`` (``benchmarks/bench_startup.py`` measures it). So:

* **Commands are imported lazily.** :data:`COMMANDS` maps each command name to
  ``("module:attribute", "one-line help")``; :class:`LazyGroup` imports a command's module
  only when that command runs (or its own ``--help`` is asked for), and ``eocube --help``
  lists the one-line helps without importing any command module.
* **A command module imports only click and light eocube modules at the top** (``_common``,
  ``errors``; the names it needs for its options, e.g. :data:`eocube.fill.METHOD_NAMES`).
  xarray-heavy and compiled code (``eocube.fill.temporal``, ``eocube.masks``, ``eocube.io``,
  the cluster, matplotlib, torch) is imported inside the command function, after the
  arguments, the source and the outputs have been checked (see :mod:`eocube.cli._common`:
  ``check_output_writable``, ``open_source``, ``run_on``).
* **Adding a command** (e.g. ``eocube apply`` in ``eocube/cli/apply.py``): write the click
  command there with ``cls=OneLineCommand``, ``@cluster_options`` and ``@friendly_errors``
  from ``_common``, keep torch and friends inside the function, and add one line to
  :data:`COMMANDS`. ``tests/core/test_startup.py`` checks that ``eocube --help`` still
  imports no command module, torch, matplotlib nor numba.

Place among the package floors (README, Architecture): floor 6; it may import every package below it
(each command's modules on first use), and no other package's private modules
(tests/test_import_structure.py checks it).
"""

from __future__ import annotations

import importlib

import click

from .._version import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "gapfill": ("eocube.cli.gapfill:gapfill", "Fill cloudy observations of a cube along time and write the result to Zarr."),
    "evaluate": ("eocube.cli.evaluate:evaluate",
                 "Score gap-filling methods on hidden clear observations of a real cube (RMSE, MAE, bias)."),
    "train": ("eocube.cli.train:train_command",
              "Train a network on cubes: gap filling (self-supervised), land-cover segmentation, super-resolution."),
    "apply": ("eocube.cli.apply:apply",
              "Run a PyTorch model file (card beside it) on one or several sources and write the result to Zarr."),
}
"""Command name -> (``"module:attribute"`` of the click command, one-line help for ``eocube --help``)."""


class LazyGroup(click.Group):
    """A click group whose commands (:data:`COMMANDS`) are imported only when they are used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Command names, the lazy ones included."""
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, importing its module on first use."""
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in COMMANDS:
            module, attr = COMMANDS[cmd_name][0].split(":")
            command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands with their one-line help, without importing them."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
            else:
                limit = formatter.width - 6 - len(name)
                rows.append((name, click.utils.make_default_short_help(COMMANDS[name][1], limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eocube")
def main() -> None:
    """eocube: satellite image time series to analysis-ready cubes (gap filling, models, Zarr)."""


__all__ = ["COMMANDS", "LazyGroup", "main"]
