"""From a configuration and a cube to the training and validation datasets."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..cube import select_bands, validate_cube
from .config import TrainConfig
from .errors import LearnError
from .gaps import MaskBank, clear_mask
from .normalisation import Normaliser
from .sampler import GapDataset, PatchSampler


def open_source(source: str | os.PathLike[str] | xr.DataArray | None) -> xr.DataArray:
    """The cube to train on: the bundled Sentinel-2 sample (None), a Zarr path, or a cube."""
    if isinstance(source, xr.DataArray):
        return validate_cube(source, name="source")
    if source is None or str(source) == "sample":
        from ..datasets import sentinel2_sample

        return sentinel2_sample()
    from ..io import open_zarr

    return open_zarr(source)


def _overlap(a: tuple[slice, slice], b: tuple[slice, slice]) -> bool:
    return all(p.start < q.stop and q.start < p.stop for p, q in zip(a, b))


@dataclass
class TrainingData:
    """Everything training reads, built from a cube and a config."""

    train: GapDataset
    """Training examples (epoch-dependent)."""
    val: GapDataset
    """Validation examples (fixed)."""
    normaliser: Normaliser
    """Band statistics of the training box."""


def build_training_data(cube: xr.DataArray, config: TrainConfig, *, world_size: int = 1) -> TrainingData:
    """Samplers, cloud masks, normalisation and datasets for a cube.

    Normalisation statistics and cloud masks come from the training box only;
    the validation box gets its own windows; the test box is never read.

    Parameters
    ----------
    cube
        A cube with the measurement bands and (ideally) cloud and data bands.
    config
        Training configuration.
    world_size
        Number of training processes (the epoch holds ``steps_per_epoch`` batches per process).

    Returns
    -------
    TrainingData
    """
    validate_cube(cube, name="source", require_crs=False)  # the time axis included
    d, s, g, t = config.data, config.sampler, config.gaps, config.train
    if d.get("cloud_band") is None:
        raise LearnError(
            "data.cloud_band is null: artificial gaps are made of real cloud masks, so the training cube "
            "needs a cloud mask band (1 = cloud)"
        )
    values = select_bands(cube, list(d["bands"])).astype("float32")
    clear = clear_mask(cube, bands=list(d["bands"]), cloud_band=d["cloud_band"], data_band=d.get("data_band"))
    height, width = cube.sizes["y"], cube.sizes["x"]
    train_box = config.region("train").slices(height, width)
    val_box = config.region("val").slices(height, width)
    test_box = config.region("test").slices(height, width)
    for name, box in (("train", train_box), ("val", val_box)):
        if _overlap(box, test_box):
            warnings.warn(
                f"data.{name}_region {box} overlaps data.test_region {test_box}: held-out scores of this "
                "run are not honest (fine for a production model trained on everything)", stacklevel=2,
            )
    normaliser = Normaliser.from_cube(values.isel(y=train_box[0], x=train_box[1]), clear.isel(y=train_box[0], x=train_box[1]))
    cloud = select_bands(cube, d["cloud_band"]).isel(band=0, y=train_box[0], x=train_box[1]).values
    bank = MaskBank.from_cloud_band(np.asarray(cloud), min_fraction=float(g["min_cloud_fraction"]))

    def sampler(box: tuple[slice, slice]) -> PatchSampler:
        return PatchSampler(
            values, clear, box, patch_size=int(s["patch_size"]), time_size=s.get("time_size"),
            min_clear_fraction=float(s["min_clear_fraction"]), in_memory=d.get("in_memory", "auto"),
        )

    seed = int(t["seed"])
    per_epoch = int(t["steps_per_epoch"]) * int(t["batch_size"]) * int(world_size)
    train = GapDataset(sampler(train_box), bank, normaliser, length=per_epoch, p_date=float(g["p_date"]), seed=seed)
    val = GapDataset(
        sampler(val_box), bank, normaliser, length=int(t["val_windows"]), p_date=float(g["p_date"]),
        seed=seed + 1_000_003, fixed=True,
    )
    return TrainingData(train, val, normaliser)
