"""Honest accuracy of gap filling: the artificial-gap protocol, metrics, table and plot.

>>> train, held = artificial_gaps(clear, fraction=0.2, seed=0)
>>> filled = my_filler(cube, train)
>>> score(filled, cube, held, method="mine")
"""

from .metrics import format_table, score
from .plot import plot_scores
from .protocol import EvaluateError, artificial_gaps
from .run import DEFAULT_METHODS, evaluate_methods

__all__ = ["artificial_gaps", "score", "format_table", "evaluate_methods", "plot_scores",
           "DEFAULT_METHODS", "EvaluateError"]
