"""Errors and warnings raised by :func:`eocube.open_stac`.

Each message names the input at fault and what to do about it.
"""

from __future__ import annotations

from ..errors import EOCubeError


class StacError(EOCubeError, ValueError):
    """A STAC input cannot be turned into a cube (base class of the loader's errors)."""


class EmptySearchError(StacError):
    """A STAC search (or an item list) gave no item; the message shows the query."""


class AssetError(StacError, KeyError):
    """An asked-for asset/band is missing from some items or is ambiguous."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class MixedCRSError(StacError):
    """Items come in several CRS and no target CRS was given."""


class GridError(StacError):
    """The output grid cannot be derived (bbox outside the items, no resolution, ...)."""


class AssetReadError(StacError, OSError):
    """An asset could not be read (unreachable, 404, corrupt); the message names the href."""


class AssetReadWarning(UserWarning):
    """An asset could not be read and its pixels were filled with nodata (``on_error="nodata"``)."""
