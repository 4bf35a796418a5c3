"""Clear-observation masks and self-supervised artificial gaps made of real clouds.

Targets for training (and held-out evaluation) are made by *hiding* clear
observations under real cloud masks taken from other dates and other places of
a cube: :class:`MaskBank` holds the cloud masks, :meth:`MaskBank.sample` cuts,
flips and assigns them to the dates of a window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..cube import select_bands, validate_cube
from .errors import LearnError


def clear_mask(
    cube: xr.DataArray,
    *,
    bands: list[str] | tuple[str, ...] = ("NDVI",),
    cloud_band: str | None = "CLM",
    data_band: str | None = "IS_DATA",
) -> xr.DataArray:
    """Lazy mask of clear observations, ``(time, y, x)`` boolean.

    Clear means: ``cloud_band == 0``, ``data_band == 1`` and every band of
    ``bands`` finite.

    Parameters
    ----------
    cube
        A cube.
    bands
        Measurement bands that must be finite.
    cloud_band
        Cloud mask band (1 = cloud), or None when the cube has none.
    data_band
        Sensor-data band (1 = data), or None.

    Returns
    -------
    xarray.DataArray
        Boolean ``(time, y, x)``, lazy when the cube is.
    """
    validate_cube(cube, require_crs=False)
    values = select_bands(cube, list(bands))
    clear = np.isfinite(values).all("band")
    if cloud_band is not None:
        clear = clear & (select_bands(cube, cloud_band).squeeze("band", drop=True) == 0)
    if data_band is not None:
        clear = clear & (select_bands(cube, data_band).squeeze("band", drop=True) == 1)
    return clear.rename("clear")


@dataclass
class MaskBank:
    """Real cloud masks to hide clear observations with.

    Parameters
    ----------
    masks
        ``(N, H, W)`` boolean cloud masks (True = cloud), e.g. the cloud band of a
        cube at its cloudy dates.
    """

    masks: np.ndarray

    @classmethod
    def from_cloud_band(
        cls, cloud: np.ndarray, *, min_fraction: float = 0.02, max_fraction: float = 1.0
    ) -> MaskBank:
        """Keep the dates of a ``(time, y, x)`` cloud array whose cloudy fraction is in range.

        Parameters
        ----------
        cloud
            ``(time, y, x)`` cloud mask (nonzero or True = cloud; NaN = no cloud).
        min_fraction, max_fraction
            Range of cloudy fraction of the dates to keep (fully cloudy dates
            included by default, as in real series).

        Returns
        -------
        MaskBank
        """
        c = np.nan_to_num(np.asarray(cloud, dtype="float32")) > 0
        frac = c.mean(axis=(1, 2))
        keep = (frac >= min_fraction) & (frac <= max_fraction)
        if not keep.any():
            raise LearnError(
                f"no date has a cloudy fraction within [{min_fraction}, {max_fraction}] "
                f"(fractions {np.round(frac, 2).tolist()[:10]}...): lower gaps.min_cloud_fraction "
                "or take masks from a cloudier cube"
            )
        return cls(masks=c[keep])

    def sample(self, n_dates: int, height: int, width: int, rng: np.random.Generator, p_date: float) -> np.ndarray:
        """Artificial clouds for a window.

        Each date is covered, with probability ``p_date``, by a mask drawn at
        random from the bank, at a random place, randomly flipped and
        transposed (when square).

        Parameters
        ----------
        n_dates, height, width
            Window size.
        rng
            Random generator (the caller seeds it, so windows are reproducible).
        p_date
            Probability that a date receives a cloud mask.

        Returns
        -------
        numpy.ndarray
            ``(n_dates, height, width)`` boolean, True = hide.
        """
        n, mh, mw = self.masks.shape
        if height > mh or width > mw:
            raise LearnError(
                f"window {height} x {width} px is larger than the cloud masks ({mh} x {mw} px): "
                "use a smaller patch_size or masks from a larger region"
            )
        out = np.zeros((n_dates, height, width), dtype=bool)
        for t in np.flatnonzero(rng.random(n_dates) < p_date):
            m = self.masks[rng.integers(n)]
            if rng.random() < 0.5:
                m = m[::-1]
            if rng.random() < 0.5:
                m = m[:, ::-1]
            if mh == mw and rng.random() < 0.5:
                m = m.T
            y0 = rng.integers(0, m.shape[0] - height + 1)
            x0 = rng.integers(0, m.shape[1] - width + 1)
            out[t] = m[y0 : y0 + height, x0 : x0 + width]
        return out
