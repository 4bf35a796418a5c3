"""Honest accuracy: the artificial-gap protocol of gap filling (metrics, table, plot), scores of
super-resolved bands (:func:`superres_scores`, fixed data range, nodata never scored) and the
multi-seed harness that compares a network with its baselines on the same pixels (:func:`run_seeds`).

>>> train, held = artificial_gaps(clear, fraction=0.2, seed=0)
>>> filled = my_filler(cube, train)
>>> score(filled, cube, held, method="mine")
>>> interval_scores(lower, upper, cube, held)  # coverage and width of a fill's intervals

Place among the package floors (README, Architecture): floor 5; it may import cube, errors, fill,
learn, names, and no other package's private modules (tests/test_import_structure.py checks it).
"""

from .intervals import interval_scores, split_bounds
from .metrics import format_table, score
from .plot import plot_scores
from .protocol import EvaluateError, artificial_gaps
from .run import DEFAULT_METHODS, evaluate_methods
from .seeds import SeedScores, collect, merge_seed_files, run_seeds
from .superres import scorable, superres_scores

__all__ = ["artificial_gaps", "score", "format_table", "evaluate_methods", "plot_scores",
           "DEFAULT_METHODS", "EvaluateError", "SeedScores", "collect", "merge_seed_files", "run_seeds", "scorable",
           "superres_scores",
           "interval_scores", "split_bounds"]
