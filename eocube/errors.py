"""Exceptions raised by eocube.

Every error says what is wrong and what to do about it. They derive from the
built-in exception a Python user would expect (``ValueError``, ``KeyError``,
``FileNotFoundError``) so existing ``except`` clauses keep working.
"""

from __future__ import annotations


class EOCubeError(Exception):
    """Base class of every eocube error.

    Errors pickle as themselves (a dask worker sends them to the client): the default reduction
    of an error that also derives from ``OSError`` and ``ValueError`` cannot be unpickled, and
    the client then saw a plain ``Exception``.
    """

    def __reduce__(self) -> tuple:
        return (type(self), self.args, self.__dict__ or None)


class CubeError(EOCubeError, ValueError):
    """An array does not follow the cube conventions (dims, coords, CRS)."""


class GridError(EOCubeError, ValueError):
    """A pixel grid cannot be made or used: no resolution or footprint to derive it from, a bbox outside
    the items, sources whose grids do not nest (another CRS, a resolution ratio that is no integer, an
    origin off the pixel corners), a rotated grid where a north-up one is needed.

    The one grid error of eocube: ``eocube.stac.GridError`` and ``eocube.models.GridError`` are this class.
    """


class BandError(EOCubeError, KeyError):
    """A band name was asked for that the cube does not have."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnknownSampleError(EOCubeError, KeyError):
    """A bundled sample (or multi-source scene) name that eocube does not ship; the message lists the names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class StoreError(EOCubeError, ValueError):
    """A Zarr store is missing, incomplete, corrupt or not an eocube cube."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """A path that should hold a Zarr store does not exist."""


class IncompleteStoreError(StoreError):
    """A Zarr store whose write has not finished (resume it by running the same command)."""


class ResumeMismatchError(StoreError):
    """A store exists but was started by a different computation, so it cannot be resumed."""


class StoreLockedError(StoreError):
    """Another process is writing the store (its write lock names the holder): one writer at a time."""


class StoreOptionError(StoreError):
    """An argument of ``to_zarr`` or ``open_zarr`` (variable, chunks, memory budget, compression level,
    an attribute to store, a cube of too many chunks) has a value it cannot take; the message names it."""


class TargetIsInputError(StoreError):
    """The store to write is, contains or lies inside a store the cube reads: the write would destroy its input."""


class CorruptChunkError(StoreError):
    """A chunk of an input Zarr store cannot be decoded: its file is damaged (re-create or re-download the store)."""


class ClusterError(EOCubeError, RuntimeError):
    """A Dask cluster could not be created or reached."""
