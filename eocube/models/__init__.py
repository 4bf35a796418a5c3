"""The model engine: any PyTorch model over one or several cubes, chunk by chunk, seamless, batched, GPU-ready.

:func:`apply_model` is the entry point (re-exported as ``eocube.apply_model``). What describes
a model (its sources, layouts, outputs, halo, scale) is a :class:`ModelSpec`, usually loaded
from the model card beside the model file; how to run it is a :class:`RunOptions`. Models come
as a ``torch.nn.Module``, a TorchScript file, or a factory plus a ``state_dict`` file
(:func:`from_state_dict`); :func:`load_counts` tells how often each model was built in a
process (once per worker process is the contract).

Place among the package floors (README, Architecture): floor 2; it may import cube, errors, grid,
names, nodata, and no other package's private modules (tests/test_import_structure.py checks it).
"""

from ._api import apply_model
from ._errors import (
    ChannelMismatchError,
    DeviceError,
    ExportError,
    GridError,
    HaloError,
    ModelError,
    ModelIdentityError,
    ModelLoadError,
    ModelRuntimeError,
    OptionError,
    OutputShapeError,
    SourceError,
    TileSizeError,
    UnknownSourceError,
)
from ._loading import clear_cache, from_state_dict, from_torchscript, load_counts
from ._sources import pair_dates
from ._spec import ClassInfo, ModelSpec, OutputSpec, RunOptions, Scaling, SourceSpec

__all__ = [
    "ChannelMismatchError",
    "ClassInfo",
    "DeviceError",
    "ExportError",
    "GridError",
    "HaloError",
    "ModelError",
    "ModelIdentityError",
    "ModelLoadError",
    "ModelRuntimeError",
    "ModelSpec",
    "OptionError",
    "OutputShapeError",
    "OutputSpec",
    "RunOptions",
    "Scaling",
    "SourceError",
    "SourceSpec",
    "TileSizeError",
    "UnknownSourceError",
    "apply_model",
    "clear_cache",
    "from_state_dict",
    "from_torchscript",
    "load_counts",
    "pair_dates",
]
