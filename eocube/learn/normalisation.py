"""Per-band normalisation statistics, computed once and stored with the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Normaliser:
    """Per-band mean and standard deviation (of the training windows: :func:`~eocube.learn.patches.band_statistics`).

    Parameters
    ----------
    bands
        Band names, in the order the network sees them.
    mean, std
        One value per band.
    """

    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def _arrays(self, ndim_after_band: int) -> tuple[np.ndarray, np.ndarray]:
        shape = (-1,) + (1,) * ndim_after_band
        return (np.asarray(self.mean, "float32").reshape(shape), np.asarray(self.std, "float32").reshape(shape))

    def normalise(self, x: np.ndarray, band_axis: int = 1) -> np.ndarray:
        """``(x - mean) / std`` along ``band_axis``."""
        mean, std = self._arrays(x.ndim - band_axis - 1)
        return ((x - mean) / std).astype("float32", copy=False)

    def denormalise(self, x: np.ndarray, band_axis: int = 1) -> np.ndarray:
        """Inverse of :meth:`normalise`."""
        mean, std = self._arrays(x.ndim - band_axis - 1)
        return (x * std + mean).astype("float32", copy=False)

    def to_dict(self) -> dict[str, list]:
        """Plain dict (stored in checkpoints; loads with ``weights_only=True``)."""
        return {"bands": list(self.bands), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> Normaliser:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(d["bands"]), tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))
