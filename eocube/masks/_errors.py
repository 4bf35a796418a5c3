"""Errors of the mask builders."""

from __future__ import annotations

from ..errors import CubeError


class MaskError(CubeError):
    """A clear-sky mask cannot be built or does not fit the cube (bad class, flag or dims)."""
