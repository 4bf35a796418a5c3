"""Errors of :mod:`eocube.labels`: each says what is wrong and what to do."""

from __future__ import annotations

from ..errors import EOCubeError


class LabelError(EOCubeError, ValueError):
    """Labels cannot be made as asked (classes, mapping, priority, grid)."""


class VectorReadError(LabelError):
    """A vector file cannot be read (missing, not a vector format, no such layer)."""


class VectorFileNotFoundError(VectorReadError, FileNotFoundError):
    """A vector file that does not exist."""


class FieldError(LabelError):
    """The class field is missing, or holds values no class is given for."""
