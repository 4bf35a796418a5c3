"""Errors of the learning package."""

from __future__ import annotations

from ..errors import EOCubeError


class LearnError(EOCubeError, ValueError):
    """Training or applying a gap-filling network cannot go on (bad config, data or checkpoint)."""


class CheckpointError(LearnError):
    """A checkpoint file is missing, unreadable or not an eocube gap-filling checkpoint."""
