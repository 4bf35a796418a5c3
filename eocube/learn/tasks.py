"""The training tasks by name (:data:`TASK_CLASSES`, :func:`make_task`): what differs between them.

The trainer (:mod:`eocube.learn.trainer`) runs one loop for every task; a task builds the
training and validation datasets, the network, the loss of a batch, the validation scores of
an epoch, the task's part of the checkpoint and the exported model.

This module maps each task's name to its class and re-exports the tasks' public names; their code
is in :mod:`eocube.learn.task_base` (:class:`Task`, :class:`PatchTask`, :func:`open_cube`,
:func:`window_halo`) and in one module per task:

* ``gapfill`` (:mod:`eocube.learn.task_gapfill`): self-supervised gap filling, the ``gaps``
  target of the same patch dataset (:class:`~eocube.learn.networks.GapFillNet`, masked MSE on
  hidden clear observations).
* ``segmentation`` (:mod:`eocube.learn.task_segmentation`): class maps from a label cube
  (:class:`~eocube.learn.networks.SegNet`, cross-entropy + optional Dice; OA, macro-F1, mIoU,
  per-class F1, confusion matrix).
* ``superres`` (:mod:`eocube.learn.task_superres`): bands of one source predicted on the
  reference grid (:class:`~eocube.learn.networks.SuperResNet`, L1; RMSE, PSNR, SSIM, SAM, and
  PSNR of bicubic upsampling for comparison).
"""

from __future__ import annotations

from .config import TrainConfig
from .task_base import HALO_MODES, PatchTask, Task, open_cube, window_halo

# _cache_chunks and _check_fractions: importable from here as before the tasks moved to their own modules
from .task_base import _cache_chunks as _cache_chunks
from .task_base import _check_fractions as _check_fractions
from .task_gapfill import GapfillTask, masked_mse
from .task_segmentation import SegmentationTask, soft_dice_loss
from .task_superres import SuperresTask

TASK_CLASSES: dict[str, type[Task]] = {"gapfill": GapfillTask, "segmentation": SegmentationTask, "superres": SuperresTask}


def make_task(cfg: TrainConfig) -> Task:
    """The task object of a configuration."""
    return TASK_CLASSES[cfg.task](cfg)


__all__ = ["GapfillTask", "HALO_MODES", "PatchTask", "masked_mse", "SegmentationTask", "SuperresTask", "TASK_CLASSES",
           "Task", "make_task", "open_cube", "soft_dice_loss", "window_halo"]
