"""The model engine: any PyTorch model over a cube, chunk by chunk, seamless, batched, GPU-ready.

:func:`apply_model` is the entry point (re-exported as ``eocube.apply_model``). Models come
as a ``torch.nn.Module``, a TorchScript file, or a factory plus a ``state_dict`` file
(:func:`from_state_dict`); :func:`load_counts` tells how often each model was built in a
process (once per worker process is the contract).
"""

from ._api import apply_model
from ._errors import (
    ChannelMismatchError,
    DeviceError,
    HaloError,
    ModelError,
    ModelLoadError,
    ModelRuntimeError,
    OutputShapeError,
)
from ._loading import clear_cache, from_state_dict, from_torchscript, load_counts

__all__ = [
    "apply_model",
    "from_state_dict",
    "from_torchscript",
    "load_counts",
    "clear_cache",
    "ModelError",
    "ModelLoadError",
    "ChannelMismatchError",
    "OutputShapeError",
    "HaloError",
    "DeviceError",
    "ModelRuntimeError",
]
