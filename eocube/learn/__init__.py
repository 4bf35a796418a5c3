"""Training on cubes: gap filling, segmentation (land cover) and super-resolution, one data path, one trainer.

Segmentation and super-resolution::

    dataset (PatchSources/PatchDataset: nested sources, lazy chunk reads) + split (BlockSplit with buffer)
    -> tasks (loss, scores) + networks (SegNet, SuperResNet) -> trainer -> export (model.pt2 + card)
    -> eocube.apply_model(cube, "run/model.pt2")

    result = train(None, task="segmentation", source={"s10": c10, "s20": c20}, target=labels, out="run")

Gap filling:

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
from .dataset import PatchDataset, PatchSources, WindowReader
from .export import export_run
from .errors import CheckpointError, LearnError
from .fill import EngineGapFill, fill_cube
from .gaps import MaskBank, clear_mask
from .holdout import evaluate_holdout
from .network import GapFillNet, NetworkConfig
from .normalisation import Normaliser
from .sampler import GapDataset, PatchSampler
from .split import BlockSplit
from .trainer import TrainResult, train

__all__ = [
    "BlockSplit",
    "PatchDataset",
    "PatchSources",
    "WindowReader",
    "export_run",
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
