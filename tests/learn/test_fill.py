"""A gap-filling run exported as model.pt2 + card and applied through apply_model only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eocube.datasets import sentinel2_sample
from eocube.learn import fill_cube, model_file
from eocube.learn.checkpoint import save_checkpoint
from eocube.learn.config import load_config
from eocube.learn.errors import CheckpointError
from eocube.learn.export import export_run
from eocube.learn.networks import GapFillNet
from eocube.learn.normalisation import Normaliser
from eocube.masks import clear_from_cloud_band

pytest.importorskip("eocube.models", reason="the model engine (eocube.models) is not in this build")


def _run(folder, config, perturb: bool):
    net = GapFillNet(n_bands=1, **config.network)
    if perturb:
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(folder / "best.pt", model=net, meta={"normaliser": Normaliser(("NDVI",), (0.6,), (0.2,)).to_dict()},
                    task="gapfill", config=config.to_dict(), epoch=1)
    return folder, net


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """An exported untrained network (exactly linear interpolation in time)."""
    torch.manual_seed(0)
    folder, _ = _run(tmp_path_factory.mktemp("untrained"), load_config(overrides={"network": {"hidden": 4, "depth": 1,
                                                                                                "kernel_t": 3}}), False)
    export_run(folder, check=False)
    return folder


def _interp(values, clear, days):
    out = np.empty(values.shape, "float32")
    for i in range(values.shape[2]):
        for j in range(values.shape[3]):
            m = clear[:, i, j]
            out[:, 0, i, j] = np.interp(days, days[m], values[m, 0, i, j]) if m.any() else 0.0
    return out


def test_an_untrained_exported_network_is_linear_interpolation_through_apply_model(untrained, sample):
    card = json.loads((untrained / "model.json").read_text())
    assert card["properties"]["mlm:input"][0]["eocube:time_input"] == "days"
    clear = clear_from_cloud_band(sentinel2_sample(), "CLM", data_band="IS_DATA")
    filled = fill_cube(sentinel2_sample(), untrained, clear)
    assert filled.chunks is not None  # lazy: a dask graph through apply_model
    assert filled.dims == ("time", "band", "y", "x") and list(filled.band.values) == ["NDVI"]
    assert filled.rio.crs == sample.rio.crs
    out = filled.values
    nd = sample.sel(band=["NDVI"]).values
    ok = clear.values
    np.testing.assert_array_equal(out[:, 0][ok], nd[:, 0][ok])  # clear kept
    days = (sample.time.values - np.datetime64("1970-01-01")) / np.timedelta64(1, "D")
    np.testing.assert_allclose(out, _interp(nd, ok, days), atol=1e-4)


def test_the_exported_program_gives_the_network_s_values(tmp_path, sample, tiny_config):
    folder, net = _run(tmp_path, tiny_config, True)
    export_run(folder)  # check=True: the saved program equals the module on example inputs
    sub = sample.isel(y=slice(0, 40), x=slice(0, 40))
    clear = clear_from_cloud_band(sub, "CLM", data_band="IS_DATA")
    filled = fill_cube(sub, folder / "model.pt2", clear, tile_size=16).values
    values = sub.sel(band=["NDVI"]).values
    ok = clear.values[:, None] & np.isfinite(values)
    x = torch.from_numpy(np.where(ok, (values - 0.6) / 0.2, 0).astype("float32"))[None]
    days = torch.from_numpy((sub.time.values - np.datetime64("1970-01-01")) / np.timedelta64(1, "D"))[None]
    with torch.no_grad():
        whole = (net.eval()(x, torch.from_numpy(ok)[None], days)[0] * 0.2 + 0.6).numpy()
    expect = np.where(ok, values, whole)
    np.testing.assert_allclose(filled, expect, atol=1e-4)  # tiles with halos = one pass over the image


def test_a_run_without_an_exported_model_is_refused_with_the_remedy(tmp_path, tiny_config):
    folder, _ = _run(tmp_path, tiny_config, False)
    with pytest.raises(CheckpointError, match="export_run"):
        model_file(folder)
