"""What a write did: :class:`WriteReport` (a module of its own, so that saying that an output is
already complete, :mod:`eocube.io.complete`, imports no writer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WriteReport:
    """What a call to :func:`to_zarr` did."""

    path: str
    """The store written."""
    variable: str
    """Name of the cube's array in the store."""
    chunks_total: int
    """Number of write units (shards where sharded, else chunks) of the cube."""
    chunks_written: int
    """Units computed and written by this call."""
    chunks_skipped: int
    """Units found already written (resumed write) and not recomputed."""
    seconds: float
    """Wall-clock time of the call."""
    note: str = ""
    """Anything the caller should know (e.g. an unfinished creation was started over)."""
    zarr_format: int = 2
    """Format of the store."""
    unit: str = "chunks"
    """What a write unit is: ``"shards"`` or ``"chunks"``."""

    def __str__(self) -> str:
        note = f" ({self.note})" if self.note else ""
        if self.chunks_total == 0:
            return (f"{self.path} [{self.variable}] holds an empty cube (no dates or no bands): metadata and "
                    f"coordinates only, no {self.unit} (Zarr format {self.zarr_format}){note}")
        if self.chunks_written == 0 and self.chunks_skipped == self.chunks_total:
            return (f"{self.path} [{self.variable}] is already complete ({self.chunks_total} {self.unit}) "
                    f"and was made by the same computation: nothing to compute{note}")
        resumed = f", {self.chunks_skipped} already done (resumed)" if self.chunks_skipped else ""
        return (
            f"wrote {self.path} [{self.variable}]: {self.chunks_written} of {self.chunks_total} {self.unit} "
            f"computed{resumed} in {self.seconds:.1f} s (Zarr format {self.zarr_format}){note}"
        )
