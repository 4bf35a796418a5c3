"""Per-band value scaling before the model (the STAC MLM ``value_scaling`` objects).

The arithmetic is :func:`eocube.models.card.scale_values` (one definition for cards and the
engine); this module checks a source's scalings when the graph is built and applies them to
blocks in the tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._errors import OptionError
from ._spec import Scaling


def check_scaling(scaling: Sequence[Scaling], n_bands: int, source: str) -> None:
    """One applicable scaling for all bands or one per band (a clear error otherwise)."""
    from .card import scaling_problem

    if len(scaling) not in (0, 1, n_bands):
        raise OptionError(
            f"source {source!r} has {len(scaling)} value scalings for {n_bands} bands: give one for all bands or one "
            "per band"
        )
    for i, s in enumerate(scaling):
        problem = scaling_problem(s)
        if problem:
            raise OptionError(f"source {source!r}, value scaling {i}: {problem}")


def apply_scaling(x: np.ndarray, scaling: Sequence[Scaling]) -> np.ndarray:
    """Scale a ``(t, C, h, w)`` float32 block band by band (one scaling for all, or one per band)."""
    if not scaling:
        return x
    from .card import scale_values

    return np.asarray(scale_values(x, tuple(scaling), axis=1), dtype=np.float32)
