"""A trained run for inference: its exported model file, and gap filling through ``apply_model``.

Every task is applied the same way: ``eocube.apply_model(cube, "run/model.pt2")`` with the card
beside the file (:mod:`eocube.learn.export` writes both). Gap filling only adds the clear mask:
the cube's cloudy observations become nodata before the model sees them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import xarray as xr

from ..names import MODEL_FILE
from .errors import CheckpointError


def model_file(model: str | os.PathLike[str]) -> Path:
    """The exported ``.pt2`` of a training run (its folder, a checkpoint in it, or the file itself).

    Raises
    ------
    CheckpointError
        No exported model: the message says how to write it (``eocube.learn.export_run``).
    """
    p = Path(model)
    if p.suffix == ".pt2" and p.is_file():
        return p
    folder = p if p.is_dir() else p.parent
    if (folder / MODEL_FILE).is_file():
        return folder / MODEL_FILE
    raise CheckpointError(
        f"no exported model ({MODEL_FILE} and its card) in {folder}: export the run first with "
        f"`python -c \"from eocube.learn import export_run; export_run('{folder}')\"` (train.export: true in the "
        "config does it at the end of training)"
    )


def fill_cube(cube: xr.DataArray, model: str | os.PathLike[str], clear: xr.DataArray, *, uncertainty: bool = False,
              **run: object) -> xr.DataArray:
    """Fill the gaps of a cube with a trained gap-filling network, lazily through ``apply_model``.

    Parameters
    ----------
    cube
        A cube holding the bands the network was trained on (others are ignored).
    model
        The exported model (``model.pt2`` with its card) or the training folder holding it.
    clear
        ``(time, y, x)`` boolean clear mask (e.g. from :mod:`eocube.masks`); the other
        observations are gaps.
    uncertainty
        Also return each band's calibrated interval as bands ``<band>_lower`` and
        ``<band>_upper`` (NaN where the value was observed): the network's predicted quantiles,
        calibrated on its validation blocks to the nominal coverage of ``network.quantiles``
        (the card's ``eocube:interval``). Needs a network trained with an interval head.
    **run
        Fields of :class:`eocube.models.RunOptions` (``tile_size``, ``device``, ...).

    Returns
    -------
    xarray.DataArray
        The network's bands, gaps filled, clear observations unchanged (lazy); with
        ``uncertainty``, followed by their lower and upper bounds.

    Raises
    ------
    CheckpointError
        No exported model, or (``uncertainty``) a model exported without an interval.
    """
    from ..models import RunOptions, apply_model
    from ..models.card import find_card, load_card

    path = model_file(model)
    if uncertainty:
        from .export import interval_file

        if not interval_file(path).is_file():
            raise CheckpointError(
                f"{path.parent} holds no calibrated interval ({interval_file(path).name}): the network was trained "
                "without an interval head (or by an earlier eocube); retrain with network.quantiles: [0.1, 0.9] "
                "(the default) to get lower and upper bounds"
            )
        path = interval_file(path)
    card = find_card(path)
    if card is None:
        raise CheckpointError(f"{path} has no model card beside it: export the run again with eocube.learn.export_run")
    spec = load_card(card)
    bands = list(spec.sources[0].bands)
    gappy = cube.sel(band=bands).where(clear).astype("float32")
    result = apply_model(gappy, path, spec, run=RunOptions(**run) if run else None)  # type: ignore[arg-type]
    if uncertainty:  # the bounds of observed values are NaN: only filled values have an interval
        bound = ~result["band"].isin(bands)
        result = result.where(~(bound & clear.astype(bool)))
    result.attrs = {**cube.attrs, "eocube_gapfill": f"eocube.learn {spec.name}"}
    if uncertainty:
        cal = json.loads(Path(card).read_text()).get("properties", {}).get("eocube:interval") or {}
        result.attrs["eocube_interval"] = (f"<band>_lower, <band>_upper: nominal {cal.get('coverage', float('nan')):.0%} "
                                           f"interval of the filled values, {cal.get('method', 'calibrated')}")
    return result


def model_filler(model: str | os.PathLike[str], **run: object):
    """A filler ``f(cube, clear) -> filled`` for :func:`eocube.evaluate.evaluate_methods` (``extra=``)."""
    path = model_file(model)

    def filler(cube: xr.DataArray, clear: xr.DataArray) -> xr.DataArray:
        return fill_cube(cube, path, clear, **run)

    return filler


def held_out_area(model: str | os.PathLike[str], cube: xr.DataArray) -> tuple[xr.DataArray, str]:
    """The pixels of a cube a trained network never read in training: its split's test blocks.

    Parameters
    ----------
    model
        Training folder written by ``eocube train`` (or a checkpoint or ``model.pt2`` in it).
    cube
        The cube the network was trained on (same grid).

    Returns
    -------
    area : xarray.DataArray
        Boolean ``(y, x)``, True on the test blocks (for ``evaluate_methods(where=...)``).
    description : str
        The blocks in words (count, size, pixels).

    Raises
    ------
    CheckpointError
        No readable checkpoint, a split of another grid size, or a split without test blocks.
    """
    from .checkpoint import load_checkpoint
    from .split import BlockSplit

    p = Path(model)
    ckpt = load_checkpoint(p.parent if p.suffix == ".pt2" else p)
    split = BlockSplit.from_dict(ckpt["meta"]["split"])
    shape = (cube.sizes["y"], cube.sizes["x"])
    if tuple(split.shape) != shape:
        raise CheckpointError(f"the network was trained on a {split.shape[0]} x {split.shape[1]} px grid, this cube is "
                              f"{shape[0]} x {shape[1]} px: score it on the cube it was trained on (or --all-pixels)")
    mask = split.mask() == split.code("test")
    if not mask.any():
        raise CheckpointError("the network's split has no test block (split.fractions without a test share): nothing "
                              "was held out; score with --all-pixels (optimistic) or retrain with a test share")
    blocks = len(split.blocks("test"))
    area = xr.DataArray(mask, dims=("y", "x"), coords={"y": cube["y"], "x": cube["x"]}, name="held_out_area")
    return area, (f"{blocks} test block(s) of {split.block_size} px of the network's training split "
                  f"({int(mask.sum()):,} pixels)")


__all__ = ["fill_cube", "held_out_area", "model_file", "model_filler"]
