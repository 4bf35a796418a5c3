"""Deep-learning gap filling: train a compact spatio-temporal network on cubes, fill cubes with it.

Pipeline, in the order of the modules::

    config (default.yaml) -> data: sampler (lazy windows) + gaps (real cloud masks)
    + normalisation -> network -> trainer (DDP, checkpoints, resume) -> fill (apply_model)
    -> holdout (honest accuracy against classical filling)

Typical use::

    from eocube.learn import train, fill_cube
    result = train("my.yaml", source="cube.zarr", out="run")   # or: eocube train --config my.yaml
    filled = fill_cube(cube, "run/best.pt")                     # lazy, chunk-wise with halos
"""

from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .config import TrainConfig, load_config
from .errors import CheckpointError, LearnError
from .fill import EngineGapFill, fill_cube
from .gaps import MaskBank, clear_mask
from .holdout import evaluate_holdout
from .network import GapFillNet, NetworkConfig
from .normalisation import Normaliser
from .sampler import GapDataset, PatchSampler
from .trainer import TrainResult, train

__all__ = [
    "CheckpointError",
    "EngineGapFill",
    "GapDataset",
    "GapFillNet",
    "LearnError",
    "MaskBank",
    "NetworkConfig",
    "Normaliser",
    "PatchSampler",
    "TrainConfig",
    "TrainResult",
    "clear_mask",
    "evaluate_holdout",
    "fill_cube",
    "load_checkpoint",
    "load_config",
    "load_model",
    "save_checkpoint",
    "train",
]
