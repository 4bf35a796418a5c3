"""Former home of ``eocube train``, now :mod:`eocube.cli.train` beside the other commands (issue 22 item 4).

``python -m eocube.learn.cli ARGS`` (as under ``torchrun`` or ``srun``) still runs
``eocube train ARGS`` and prints a one-line deprecation warning on stderr: run
``python -m eocube train ARGS`` instead. ``from eocube.learn.cli import train_command`` gives the
command with a :class:`DeprecationWarning`. The command is looked up by name when it is asked
for, so that ``eocube.learn`` does not import the CLI above it.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any

MOVED = "eocube.learn.cli is deprecated: `eocube train` lives in eocube.cli.train; run `python -m eocube train`"


def __getattr__(name: str) -> Any:
    if name == "train_command":
        warnings.warn(MOVED, DeprecationWarning, stacklevel=2)
        return importlib.import_module("eocube.cli.train").train_command
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    print(f"warning: {MOVED}", file=sys.stderr)
    importlib.import_module("eocube.cli").main(["train", *sys.argv[1:]], prog_name="eocube")
