"""Errors of temporal gap filling."""

from __future__ import annotations

from ..errors import EOCubeError


class FillError(EOCubeError, ValueError):
    """A gap-filling request cannot be carried out (unknown method, bad option, chunked time axis)."""
