"""Honest accuracy of a trained network on held-out artificial gaps.

Protocol
--------
* The **test box** of the training config (by default the 36 eastern columns of
  the bundled sample) is never read during training: neither its values nor its
  cloud masks.
* In the test box, clear observations are hidden under real cloud masks taken
  from other dates and places of the cube (:class:`~eocube.learn.gaps.MaskBank`
  over the whole cube's cloud band; each date hidden with probability
  ``p_date``, seeded).
* Every method sees the same input (real clear observations minus the hidden
  ones) and is scored by RMSE on the hidden observations only. The network sees
  only the test box (no context from the training pixels).
* Baselines: linear temporal interpolation computed here with NumPy
  (``np.interp`` per pixel, constant beyond the ends), and every method of
  :func:`eocube.fill.fill_gaps` available (``linear``, ``whittaker``, ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..cube import select_bands
from .config import TrainConfig, config_from_dict
from .fill import fill_array
from .gaps import MaskBank, clear_mask
from .sampler import days_since_epoch


@dataclass
class HoldoutCase:
    """One draw of artificial gaps over the test box."""

    values: np.ndarray
    """``(T, C, h, w)`` raw values of the test box."""
    clear: np.ndarray
    """``(T, h, w)`` real clear mask."""
    hide: np.ndarray
    """``(T, h, w)`` artificial clouds."""
    days: np.ndarray
    """``(T,)`` days since 1970."""
    box: tuple[slice, slice]
    """Absolute ``(y, x)`` slices of the test box."""

    @property
    def visible(self) -> np.ndarray:
        """What every method may use: clear and not hidden."""
        return self.clear & ~self.hide

    @property
    def target(self) -> np.ndarray:
        """``(T, C, h, w)`` the hidden clear observations (scored)."""
        return (self.clear & self.hide)[:, None] & np.isfinite(self.values)


def make_holdout_case(cube: xr.DataArray, config: TrainConfig, seed: int, p_date: float | None = None) -> HoldoutCase:
    """Artificial gaps over the test box of ``config`` (reproducible from ``seed``)."""
    d = config.data
    values = select_bands(cube, list(d["bands"]))
    clear = clear_mask(cube, bands=list(d["bands"]), cloud_band=d["cloud_band"], data_band=d.get("data_band"))
    box = config.region("test").slices(cube.sizes["y"], cube.sizes["x"])
    bank = MaskBank.from_cloud_band(
        select_bands(cube, d["cloud_band"]).isel(band=0).values, min_fraction=float(config.gaps["min_cloud_fraction"])
    )
    v = np.asarray(values.isel(y=box[0], x=box[1]).values, dtype="float32")
    c = np.asarray(clear.isel(y=box[0], x=box[1]).values, dtype=bool)
    rng = np.random.default_rng([int(seed), 7])
    hide = bank.sample(c.shape[0], c.shape[1], c.shape[2], rng, float(p_date if p_date is not None else config.gaps["p_date"]))
    return HoldoutCase(v, c, hide, days_since_epoch(cube["time"].values), box)


def held_out_box(model: str | os.PathLike[str], height: int, width: int) -> tuple[slice, slice]:
    """The test region a trained network never saw, as ``(y, x)`` pixel slices of a cube.

    Parameters
    ----------
    model
        Checkpoint file or training folder written by ``eocube train``.
    height, width
        Size of the cube in pixels (the region's ``null`` bounds stop at its edges).

    Returns
    -------
    tuple of slice
        Rows and columns of the ``data.test_region`` of the network's training config.

    Raises
    ------
    LearnError
        No readable checkpoint, or a region that is empty on this cube.
    """
    from .checkpoint import load_checkpoint

    config = config_from_dict(load_checkpoint(model)["config"])
    return config.region("test").slices(height, width)


def linear_reference(values: np.ndarray, valid: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Linear interpolation in time per pixel and band with ``np.interp`` (the baseline).

    Parameters
    ----------
    values
        ``(T, C, h, w)``.
    valid
        ``(T, h, w)`` or ``(T, C, h, w)`` usable observations.
    days
        ``(T,)`` times.

    Returns
    -------
    numpy.ndarray
        Filled values; NaN for series without any valid observation.
    """
    t, _c, _h, _w = values.shape
    ok = np.broadcast_to(valid[:, None] if valid.ndim == 3 else valid, values.shape) & np.isfinite(values)
    flat_v = values.reshape(t, -1)
    flat_ok = ok.reshape(t, -1)
    out = np.full_like(flat_v, np.nan, dtype="float32")
    for i in range(flat_v.shape[1]):
        m = flat_ok[:, i]
        if m.any():
            out[:, i] = np.interp(days, days[m], flat_v[m, i])
    return out.reshape(values.shape)


def rmse(pred: np.ndarray, case: HoldoutCase) -> float:
    """RMSE of ``pred`` on the hidden clear observations of ``case``."""
    m = case.target
    err = pred[m] - case.values[m]
    if not np.all(np.isfinite(err)):
        err = np.where(np.isfinite(err), err, np.nan)
        return float(np.sqrt(np.nanmean(err**2)))
    return float(np.sqrt(np.mean(err**2)))


def _classical(cube: xr.DataArray, case: HoldoutCase, bands: list[str]) -> dict[str, np.ndarray]:
    try:
        from ..fill import METHODS, fill_gaps
    except ImportError:  # eocube.fill not installed in this build
        return {}
    sub = select_bands(cube, bands).isel(y=case.box[0], x=case.box[1])
    visible = xr.DataArray(case.visible, dims=("time", "y", "x"), coords={k: sub[k] for k in ("time", "y", "x")})
    out = {}
    for name in METHODS:
        try:
            out[name] = np.asarray(fill_gaps(sub, visible, method=name).values, dtype="float32")
        except Exception as exc:  # noqa: BLE001  (report, do not hide, a failing peer method)
            print(f"eocube.fill method {name!r} failed on the holdout case: {exc}")
    return out


def evaluate_holdout(
    cube: xr.DataArray,
    ckpt: dict,
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    device: str = "cpu",
) -> dict[str, float]:
    """RMSE of the network and the baselines, pooled over several draws of gaps.

    Parameters
    ----------
    cube
        The cube the network was trained on (its test box is scored).
    ckpt
        A loaded checkpoint (:func:`~eocube.learn.checkpoint.load_checkpoint`).
    seeds
        One draw of artificial gaps per seed.
    device
        Where the network runs.

    Returns
    -------
    dict
        ``{"model": rmse, "linear (numpy)": rmse, "fill.<method>": rmse, ...,
        "n_hidden": count}`` pooled over the draws (squared errors summed).
    """
    from .checkpoint import model_from_checkpoint

    config = config_from_dict(ckpt["config"])
    net, normaliser = model_from_checkpoint(ckpt, device)
    sq: dict[str, float] = {}
    n = 0
    for seed in seeds:
        case = make_holdout_case(cube, config, seed)
        preds = {
            "model": fill_array(net, normaliser, case.values, case.visible, case.days, device=device),
            "linear (numpy)": linear_reference(case.values, case.visible, case.days),
        }
        preds.update({f"fill.{k}": v for k, v in _classical(cube, case, list(normaliser.bands)).items()})
        m = case.target
        n += int(m.sum())
        for name, p in preds.items():
            sq[name] = sq.get(name, 0.0) + rmse(p, case) ** 2 * int(m.sum())
    result = {name: float(np.sqrt(s / n)) for name, s in sq.items()}
    result["n_hidden"] = float(n)
    return result


__all__ = ["HoldoutCase", "evaluate_holdout", "held_out_box", "linear_reference", "make_holdout_case", "rmse"]
