"""Training on cubes: gap filling, segmentation (land cover) and super-resolution, one data path, one trainer.

Pipeline, in the order of the modules (every task)::

    config (default.yaml, segmentation.yaml, superres.yaml)
    -> windows + sources (WindowReader, PatchSources: nested sources, batched chunk reads, the
       training windows' chunks staged in memory when they fit)
    -> patches (PatchDataset; targets: labels, values, or gaps = clear observations hidden under
       real cloud masks, see gaps)
       + split (BlockSplit with buffer) + normalisation
    -> tasks (datasets, network, loss, scores: task_base, then task_gapfill, task_segmentation,
       task_superres) + networks (SegNet, SuperResNet, GapFillNet)
    -> trainer (DDP, AMP, checkpoint, resume checked by identity) -> export (model.pt2 + card; ensemble: several
       networks as one program)
    -> inference: eocube.apply_model(cube, "run/model.pt2"); held-out scores with eocube.evaluate

Typical use::

    from eocube.learn import train, fill_cube
    train(None, task="segmentation", source={"s10": c10, "s20": c20}, target=labels, out="seg")
    train("my.yaml", source="cube.zarr", out="run")   # gap filling; or: eocube train --config my.yaml
    filled = fill_cube(cube, "run", clear)             # apply_model(cube.where(clear), "run/model.pt2")

Imports flow one way: cli -> trainer -> tasks -> task_* -> (patches -> sources -> windows, gaps, split, networks,
normalisation) -> errors; checkpoint, export and inference sit beside them (no cycle: tests/learn/test_layout.py).

Place among the package floors (README, Architecture): floor 4; it may import cube, datasets,
errors, io, masks, models, names, nodata, and no other package's private modules
(tests/test_import_structure.py checks it).
"""

from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .config import TrainConfig, load_config
from .ensemble import Ensemble, export_ensemble
from .errors import CheckpointError, LearnError
from .export import export_run
from .gaps import GapTarget, MaskBank
from .inference import fill_cube, held_out_area, model_file
from .networks import GapFillNet, NetConfig, SegNet, SuperResNet
from .normalisation import Normaliser
from .patches import PatchDataset, PatchSources, WindowReader
from .split import BlockSplit
from .trainer import TrainResult, train

__all__ = [
    "BlockSplit",
    "Ensemble",
    "PatchDataset",
    "PatchSources",
    "WindowReader",
    "export_ensemble",
    "export_run",
    "CheckpointError",
    "GapFillNet",
    "GapTarget",
    "LearnError",
    "MaskBank",
    "NetConfig",
    "Normaliser",
    "SegNet",
    "SuperResNet",
    "TrainConfig",
    "TrainResult",
    "fill_cube",
    "held_out_area",
    "load_checkpoint",
    "load_config",
    "load_model",
    "model_file",
    "save_checkpoint",
    "train",
]
