"""Errors of the mask builders."""

from __future__ import annotations

from ..errors import EOCubeError


class MaskError(EOCubeError, ValueError):
    """A clear-sky mask cannot be built or does not fit the cube (bad class, flag or dims)."""
