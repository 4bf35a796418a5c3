"""Filling cubes with a trained network.

:func:`predict_window` is the pure array core (NumPy in, NumPy out) and
:func:`fill_cube` applies it to a whole cube tile by tile, each tile read with
a halo of :attr:`GapFillNet.halo` pixels so that tile borders match a
whole-cube prediction. Clear observations are kept as they are; only gaps get
the network's values.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import xarray as xr

from ..cube import select_bands, validate_cube
from .checkpoint import load_checkpoint, model_from_checkpoint
from .gaps import clear_mask
from .network import GapFillNet
from .normalisation import Normaliser
from .sampler import days_since_epoch


class EngineGapFill(torch.nn.Module):
    """A trained network in raw units, for :func:`eocube.models.apply_model`.

    Called as ``module(x, valid, days)`` with the engine's ``layout="sequence"``,
    ``valid_input="argument"`` and ``time_input="days"``: ``x`` ``(N, T, C, H, W)``
    raw values (clouds already set to nodata), ``valid`` like ``x``, ``days``
    ``(N, T)``. Returns the filled values, clear observations unchanged.

    Parameters
    ----------
    net, normaliser
        A trained network and its band statistics.
    keep_clear
        Keep the valid input values (True) or return the reconstruction everywhere.
    """

    def __init__(self, net: GapFillNet, normaliser: Normaliser, keep_clear: bool = True) -> None:
        super().__init__()
        self.net, self.keep_clear = net, keep_clear
        self.register_buffer("mean", torch.tensor(normaliser.mean, dtype=torch.float32).view(1, 1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(normaliser.std, dtype=torch.float32).view(1, 1, -1, 1, 1))
        self.halo = net.halo

    def forward(self, x: torch.Tensor, valid: torch.Tensor, days: torch.Tensor) -> torch.Tensor:
        valid = valid.bool() & torch.isfinite(x)
        norm = torch.where(valid, (x - self.mean) / self.std, torch.zeros_like(x))
        out = self.net(norm, valid, days.double()) * self.std + self.mean
        return torch.where(valid, x, out) if self.keep_clear else out


def predict_window(
    net: GapFillNet,
    normaliser: Normaliser,
    values: np.ndarray,
    clear: np.ndarray,
    days: np.ndarray,
    *,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Reconstruct every date of a window.

    Parameters
    ----------
    net, normaliser
        A trained network and its band statistics.
    values
        ``(T, C, h, w)`` raw values (bands in ``normaliser.bands`` order).
    clear
        ``(T, h, w)`` boolean clear mask (the observations the network may use).
    days
        ``(T,)`` times in days since 1970-01-01.
    device
        Where to run.

    Returns
    -------
    numpy.ndarray
        ``(T, C, h, w)`` float32 reconstruction in raw units (at every date,
        clear ones included).
    """
    finite = np.isfinite(values)
    ok = clear[:, None] & finite
    norm = np.where(ok, normaliser.normalise(np.where(finite, values, 0).astype("float32")), 0).astype("float32")
    with torch.no_grad():
        pred = net(
            torch.from_numpy(norm)[None].to(device),
            torch.from_numpy(ok)[None].to(device),
            torch.from_numpy(np.asarray(days, "float64"))[None].to(device),
        )[0]
    return normaliser.denormalise(pred.float().cpu().numpy())


def fill_array(
    net: GapFillNet,
    normaliser: Normaliser,
    values: np.ndarray,
    clear: np.ndarray,
    days: np.ndarray,
    *,
    tile: int = 256,
    device: torch.device | str = "cpu",
    keep_clear: bool = True,
) -> np.ndarray:
    """Fill a ``(T, C, H, W)`` array tile by tile with halos.

    Parameters
    ----------
    net, normaliser, values, clear, days, device
        As in :func:`predict_window`.
    tile
        Tile height and width (the halo comes on top).
    keep_clear
        Keep clear observations unchanged (True) or return the reconstruction everywhere.

    Returns
    -------
    numpy.ndarray
        ``(T, C, H, W)`` float32.
    """
    _, _, height, width = values.shape
    halo = net.halo
    out = np.empty(values.shape, dtype="float32")
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            ya, yb, xa, xb = max(0, y0 - halo), min(height, y1 + halo), max(0, x0 - halo), min(width, x1 + halo)
            pred = predict_window(net, normaliser, values[:, :, ya:yb, xa:xb], clear[:, ya:yb, xa:xb], days, device=device)
            out[:, :, y0:y1, x0:x1] = pred[:, :, y0 - ya : y0 - ya + (y1 - y0), x0 - xa : x0 - xa + (x1 - x0)]
    if keep_clear:
        ok = clear[:, None] & np.isfinite(values)
        out = np.where(ok, values, out).astype("float32")
    return out


def fill_cube(
    cube: xr.DataArray,
    model: str | os.PathLike[str] | tuple[GapFillNet, Normaliser],
    *,
    clear: xr.DataArray | None = None,
    tile: int = 256,
    device: str = "auto",
    keep_clear: bool = True,
    engine: str = "auto",
) -> xr.DataArray:
    """Fill the gaps of a cube's bands with a trained network.

    Parameters
    ----------
    cube
        A cube holding the bands the network was trained on (and, when
        ``clear`` is None, the cloud and data bands named in its training config).
    model
        A checkpoint path (file or training folder), or ``(network, normaliser)``.
    clear
        ``(time, y, x)`` boolean clear mask; by default built like in training.
    tile
        Tile size in pixels (memory per tile: ``T x C x (tile + 2 halo)²`` floats
        times the network width).
    device
        ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    keep_clear
        Keep clear observations unchanged.
    engine
        ``"apply_model"``: lazily, chunk-wise with halos through
        :func:`eocube.models.apply_model` (GPU when present, dask workers,
        ready for a resumable :func:`eocube.to_zarr`); ``"loop"``: a plain tiled
        loop in this process, in memory; ``"auto"``: the engine when installed.

    Returns
    -------
    xarray.DataArray
        A cube of the network's bands, gaps filled, with the input's
        coordinates, CRS and attributes (lazy with the engine).
    """
    validate_cube(cube)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    data_cfg = {}
    if isinstance(model, tuple):
        net, normaliser = model
        net = net.to(dev).eval()
    else:
        ckpt = load_checkpoint(model, map_location=dev)
        net, normaliser = model_from_checkpoint(ckpt, dev)
        data_cfg = ckpt["config"].get("data", {})
    bands = select_bands(cube, list(normaliser.bands))
    if clear is None:
        clear = clear_mask(
            cube, bands=list(normaliser.bands), cloud_band=data_cfg.get("cloud_band", "CLM"),
            data_band=data_cfg.get("data_band", "IS_DATA"),
        )
    if engine in ("auto", "apply_model"):
        try:
            from ..models import apply_model
        except ImportError:
            if engine == "apply_model":
                raise
        else:
            result = apply_model(
                bands.where(clear).astype("float32"), EngineGapFill(net.cpu(), normaliser, keep_clear),
                layout="sequence", valid_input="argument", time_input="days", out_bands="input",
                mask_output=None, halo=net.halo, tile_size=tile, device=device, name=cube.name,
            )
            result.attrs = {**cube.attrs, "eocube_gapfill": "eocube.learn GapFillNet"}
            return result
    filled = fill_array(
        net, normaliser, np.asarray(bands.values, dtype="float32"), np.asarray(clear.values, dtype=bool),
        days_since_epoch(cube["time"].values), tile=tile, device=dev, keep_clear=keep_clear,
    )
    result = bands.astype("float32").copy(data=filled)
    result.attrs = {**cube.attrs, "eocube_gapfill": "eocube.learn GapFillNet"}
    return result


def model_filler(model: str | os.PathLike[str], **kwargs: object):
    """A filler ``f(cube, clear) -> filled`` for :func:`eocube.evaluate.evaluate_methods` (``extra=``).

    Parameters
    ----------
    model
        Checkpoint path (file or training folder).
    **kwargs
        Passed to :func:`fill_cube` (``tile``, ``device``, ``engine``).

    Returns
    -------
    callable
        ``filler(cube, clear)`` filling the network's bands of ``cube`` using
        the observations where ``clear`` is True.
    """
    ckpt = load_checkpoint(model)
    pair = model_from_checkpoint(ckpt)

    def filler(cube: xr.DataArray, clear: xr.DataArray) -> xr.DataArray:
        return fill_cube(cube, pair, clear=clear, **kwargs)  # type: ignore[arg-type]

    return filler
