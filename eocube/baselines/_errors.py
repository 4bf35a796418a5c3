"""Errors of the baselines."""

from __future__ import annotations

from ..errors import EOCubeError


class BaselineError(EOCubeError, ValueError):
    """A baseline cannot run on the given arrays (shapes, windows, no training pixel of a class)."""


class MissingDependencyError(EOCubeError, ImportError):
    """An optional package a baseline needs is not installed."""
