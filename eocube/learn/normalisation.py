"""Per-band normalisation statistics, computed once and stored with the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from .errors import LearnError


@dataclass(frozen=True)
class Normaliser:
    """Per-band mean and standard deviation of clear observations.

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

    @classmethod
    def from_cube(cls, values: xr.DataArray, clear: xr.DataArray) -> Normaliser:
        """Statistics of the clear observations of a cube (one pass, lazy inputs welcome).

        Parameters
        ----------
        values
            ``(time, band, y, x)`` measurement bands (already restricted to the
            training region).
        clear
            ``(time, y, x)`` boolean clear mask of the same region.

        Returns
        -------
        Normaliser
        """
        masked = values.where(clear)
        mean = masked.mean(("time", "y", "x")).values
        std = masked.std(("time", "y", "x")).values
        bands = tuple(str(b) for b in values["band"].values)
        if not np.all(np.isfinite(mean)) or not np.all(std > 0):
            raise LearnError(
                f"cannot normalise bands {bands}: no or constant clear observations in the training region "
                f"(mean {mean}, std {std}); check the clear mask and the region"
            )
        return cls(bands, tuple(float(m) for m in mean), tuple(float(s) for s in std))

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
