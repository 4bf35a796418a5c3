"""What eocube's other packages use of :mod:`eocube.models` beyond its user API.

:mod:`eocube.learn` checks and loads its checkpoints as this package loads model files, and the
CLI hashes model files and reports NaN outputs; they import these names from here rather than
from the private modules that define them. Not part of the user API (see :mod:`eocube.models`).
"""

from ._archive import UnsafeArchiveError, check_archive
from ._engine import run_nan_counts
from ._loading import safe_cause, sha256_file, weights_only_failure
from ._sources import nest_grids

__all__ = [
    "UnsafeArchiveError",
    "check_archive",
    "nest_grids",
    "run_nan_counts",
    "safe_cause",
    "sha256_file",
    "weights_only_failure",
]
