"""Errors of the model engine (:func:`eocube.apply_model`).

Each one says what is wrong and what to do. They derive from :class:`eocube.errors.EOCubeError`
and from the built-in exception a Python user would expect.
"""

from __future__ import annotations

from ..errors import EOCubeError
from ..errors import GridError as GridError  # the one grid error (eocube.errors), importable from here too


class ModelError(EOCubeError):
    """Base class of the model engine's errors."""


class ModelLoadError(ModelError, ValueError):
    """A model file is missing, unsafe to load (arbitrary pickled objects) or does not fit its factory."""


class ChannelMismatchError(ModelError, ValueError):
    """The layout gives the model a channel count it does not accept."""


class OutputShapeError(ModelError, ValueError):
    """The model returned an output whose shape the engine cannot map back onto the cube."""


class HaloError(ModelError, ValueError):
    """The halo (overlap) is invalid or the receptive field could not be found by probing."""


class DeviceError(ModelError, RuntimeError):
    """A device was requested that torch cannot see (for example ``cuda`` without a GPU)."""


class ModelRuntimeError(ModelError, RuntimeError):
    """The model raised while processing one chunk; the message names the chunk, the cause is chained."""


class SourceError(ModelError, ValueError):
    """A source of the model is missing from the call, unexpected, or lacks the bands the model needs."""


class UnknownSourceError(SourceError, KeyError):
    """A source name the model does not have (also a ``KeyError``: a name looked up)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ExportError(ModelError, ValueError):
    """A module cannot be exported to a ``.pt2`` program (example inputs, dynamic sizes, a result that differs)."""


class ModelIdentityError(ModelError, ValueError):
    """The model's code cannot be read, so a store it wrote cannot be told from one an edited model wrote."""


class TileSizeError(ModelError, ValueError):
    """The run feeds the model tiles (or batches) of a size its ``torch.export`` guards refuse."""


class OptionError(ModelError, ValueError):
    """A field of the spec or an option of the run has a value it cannot take (the message names it)."""
