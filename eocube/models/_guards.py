"""The input sizes a ``torch.export`` program accepts, and the check of a run's tiles against them.

A program exported with ``torch.export.Dim("H", min=..., max=...)`` carries range constraints on
its dynamic dims and refuses, at run time, any input outside them ("Guard failed:
x.size()[2] <= 64"). eocube reads those ranges when it opens the program
(:func:`export_size_limits`) and, once the tiles, halo and batches of a run are planned,
refuses a run that would feed sizes outside them (:func:`check_size_limits`), before any
chunk is computed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ._errors import TileSizeError


@dataclass(frozen=True)
class SizeLimit:
    """The sizes one dynamic dim of one tensor input accepts."""

    argument: int
    """Position of the input among the program's user inputs (the model's arguments)."""
    name: str
    """The input's name in the program."""
    dim: int
    """The dim (0: batch; ndim-2, ndim-1: height, width)."""
    ndim: int
    """The input's number of dims."""
    lower: int
    """Smallest accepted size (sizes 1 and 2 are accepted when this is 2 or less)."""
    upper: int | None
    """Largest accepted size; None: unbounded."""

    def accepts(self, size: int) -> bool:
        """Whether the program's guard accepts ``size`` along this dim."""
        low = self.lower if self.lower > 2 else 1  # torch accepts 0/1-specialised sizes below a lower bound of 2
        return size >= low and (self.upper is None or size <= self.upper)

    def text(self) -> str:
        """The guard in words, as torch writes it (``x.size()[2] <= 64``)."""
        bounds = []
        if self.lower > 2:
            bounds.append(f"{self.name}.size()[{self.dim}] >= {self.lower}")
        if self.upper is not None:
            bounds.append(f"{self.name}.size()[{self.dim}] <= {self.upper}")
        return " and ".join(bounds)

    @property
    def bounded(self) -> bool:
        """Whether the guard refuses any size eocube may feed (an upper bound, or a lower bound above 2)."""
        return self.upper is not None or self.lower > 2


def export_size_limits(program: Any) -> tuple[SizeLimit, ...]:
    """The bounded ranges of the dynamic dims of a ``torch.export`` program's tensor inputs.

    Parameters
    ----------
    program
        A ``torch.export.ExportedProgram``.

    Returns
    -------
    tuple of SizeLimit
        One per dynamic dim whose range refuses some size (unbounded dims are left out).
    """
    user_inputs = list(program.graph_signature.user_inputs)
    ranges = getattr(program, "range_constraints", {}) or {}
    limits = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        for dim, size in enumerate(val.shape):
            if not isinstance(size, torch.SymInt):
                continue
            found = ranges.get(size.node.expr)
            if found is None:
                continue
            limit = SizeLimit(argument=user_inputs.index(node.name), name=node.name, dim=dim, ndim=val.ndim,
                              lower=_bound(found.lower) or 0, upper=_bound(found.upper))
            if limit.bounded:
                limits.append(limit)
    return tuple(limits)


def _bound(value: Any) -> int | None:
    """An int bound of a torch value range, None for infinity."""
    if getattr(value, "is_finite", True) is False or getattr(value, "is_infinite", False):
        return None  # sympy's oo and torch's int_oo
    try:
        number = int(value)
    except Exception:  # noqa: BLE001 - any other symbolic bound counts as unbounded
        return None
    return None if abs(number) >= 2**62 else number


@dataclass(frozen=True)
class FedSizes:
    """The sizes a run feeds one tensor argument of the model."""

    argument: int
    batch: Sequence[int]
    """Batch sizes fed (dim 0)."""
    spatial: Sequence[int]
    """Heights and widths fed (the last two dims)."""


def check_size_limits(limits: Iterable[SizeLimit], fed: Sequence[FedSizes], shown: str, tile: int | None,
                      halo: int, batch_size: int) -> None:
    """Refuse a run whose tiles or batches fall outside the program's guards.

    Parameters
    ----------
    limits
        The program's bounded dims (:func:`export_size_limits`).
    fed
        The sizes the run feeds each tensor argument.
    shown
        The program, in words (its path).
    tile, halo, batch_size
        The run's tile edge (None: one tile per chunk), halo and batch size, in the message.

    Raises
    ------
    TileSizeError
        A size outside a guard: names the guard, the sizes the run feeds and the remedy.
    """
    by_arg = {f.argument: f for f in fed}
    for limit in limits:
        sizes = by_arg.get(limit.argument)
        if sizes is None:
            continue
        spatial = limit.dim >= limit.ndim - 2 and limit.ndim >= 3
        if limit.dim != 0 and not spatial:
            continue
        values = sorted(set(sizes.batch if limit.dim == 0 else sizes.spatial))
        bad = [v for v in values if not limit.accepts(v)]
        if not bad:
            continue
        if limit.dim == 0:
            remedy = (f"pass a batch size within the guard (--batch-size / batch_size=, now {batch_size}), or export "
                      "the program again with a wider batch Dim")
        else:
            cut = "one tile per chunk" if tile is None else f"tiles of {tile} px"
            remedy = (f"the run feeds {cut} with a halo of {halo} px on each side: pass a tile size whose tiles fit "
                      f"(--tile / tile_size=, tile + 2 x halo within the bounds), or export the program again with a "
                      f"torch.export.Dim of this dim whose max is at least {max(values)}")
        raise TileSizeError(
            f"the torch.export program {shown} refuses the sizes this run feeds it: its guard {limit.text()} "
            f"(exported with a bounded torch.export.Dim) does not accept {_listed(bad)} "
            f"(the run feeds {_listed(values)}): {remedy}"
        )


def _listed(values: Sequence[int]) -> str:
    shown = ", ".join(str(v) for v in values[:6])
    return shown + (f" ... {values[-1]}" if len(values) > 6 else "")
