"""The artificial-gap protocol, the scores and `eocube evaluate` on the real sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

from eocube.cli.evaluate import evaluate
from eocube.evaluate import EvaluateError, artificial_gaps, evaluate_methods, score
from eocube.fill import fill_gaps
from eocube.masks import clear_from_cloud_band


@pytest.fixture(scope="module")
def real(sample):
    cube = sample.chunk({"time": -1, "band": 1, "y": 64, "x": 64})
    return cube, clear_from_cloud_band(cube, "CLM", data_band="IS_DATA").compute()


@pytest.mark.parametrize("donor", ["dates", "pixels"])
def test_gaps_are_real_cloud_shapes_seeded_and_disjoint(real, donor):
    _, clear = real
    train, held = artificial_gaps(clear, 0.15, seed=3, donor=donor)
    c, tr, h = clear.values, train.values, held.values
    assert not (tr & h).any() and ((tr | h) == c).all()
    assert abs(h.sum() / c.sum() - 0.15) < 0.001
    again_train, again = artificial_gaps(clear, 0.15, seed=3, donor=donor)
    assert (again.values == h).all()
    assert not (artificial_gaps(clear, 0.15, seed=4, donor=donor)[1].values == h).all()
    # hidden pixels come in blobs (cloud shapes), not salt-and-pepper: most have a hidden neighbour
    neighbour = np.zeros_like(h)
    neighbour[:, 1:] |= h[:, :-1]
    neighbour[:, :-1] |= h[:, 1:]
    assert (neighbour[h]).mean() > 0.8


def test_protocol_bad_inputs(real):
    _, clear = real
    with pytest.raises(EvaluateError, match="between 0 and 1"):
        artificial_gaps(clear, 1.5)
    with pytest.raises(EvaluateError, match="no cloud at all"):
        artificial_gaps(xr.ones_like(clear), 0.1)


def test_score_known_errors(make_cube):
    truth = make_cube(t=4, bands=("a", "b"))
    filled = truth.copy(data=truth.values + np.array([0.0, 2.0], dtype="float32")[None, :, None, None])
    held = xr.zeros_like(truth.isel(band=0, drop=True), dtype=bool)
    held[1] = True
    table = score(filled, truth, held, method="shift").set_index("band")
    assert table.loc["a", "rmse"] == 0 and table.loc["b", "rmse"] == pytest.approx(2.0)
    assert table.loc["b", "bias"] == pytest.approx(2.0) and table.loc["all", "mae"] == pytest.approx(1.0)
    assert table.loc["all", "n"] == 2 * held.sum()


def test_evaluate_methods_ranks_real_methods_and_accepts_a_custom_filler(real):
    cube, clear = real
    table = evaluate_methods(cube, clear, methods=["linear", "previous"], bands="NDVI", fraction=0.1,
                             extra={"mean": lambda c, tr: c.where(tr).mean("time").broadcast_like(c)})
    overall = table[table.band == "all"].set_index("method")
    assert set(overall.index) == {"linear", "previous", "mean"}
    assert (overall["unfilled"] == 0).all()
    # on real NDVI, interpolating beats holding the last value, which beats the per-pixel mean
    assert overall.loc["linear", "rmse"] < overall.loc["previous", "rmse"] < overall.loc["mean", "rmse"]


def test_cli_evaluate_prints_the_table_and_writes_plot_and_csv(tmp_path):
    png, csv = tmp_path / "ev.png", tmp_path / "ev.csv"
    result = CliRunner().invoke(evaluate, ["--methods", "linear,whittaker", "--fraction", "0.1",
                                           "--quicklook", str(png), "--csv", str(csv)])
    assert result.exit_code == 0, result.output
    assert "| linear | NDVI |" in result.output and "| whittaker | all |" in result.output
    assert png.stat().st_size > 10_000
    assert list(pd.read_csv(csv).columns) == ["method", "band", "n", "unfilled", "rmse", "mae", "bias"]
    bad = CliRunner().invoke(evaluate, ["--methods", "linear,kriging", "--quicklook", ""])
    assert bad.exit_code != 0 and "kriging" in bad.output


def test_where_scores_only_the_given_pixels_with_the_same_gaps_and_context(real):
    cube, clear = real
    nd = cube.sel(band=["NDVI"])
    area = xr.DataArray(np.zeros((cube.sizes["y"], cube.sizes["x"]), bool), dims=("y", "x"),
                        coords={"y": cube.y, "x": cube.x})
    area[:, 64:] = True
    seen = []

    def spy(c, train):  # the filler sees the whole cube and the same gaps as without `where`
        seen.append(train)
        return fill_gaps(c, train, method="linear")

    everywhere = evaluate_methods(nd, clear, methods=["linear"], seed=1, extra={"spy": spy})
    part = evaluate_methods(nd, clear, methods=["linear"], seed=1, extra={"spy": spy}, where=area)
    xr.testing.assert_equal(seen[0], seen[1])
    _, held = artificial_gaps(clear, 0.2, 1)
    held_area = int((held & area).sum())
    rows = part[part["band"] == "all"].set_index("method")
    assert rows.loc["linear", "n"] == held_area == part.attrs["held_out"]
    assert 0 < held_area < int(held.sum()) == everywhere.attrs["held_out"]
    assert rows.loc["spy", "rmse"] == pytest.approx(rows.loc["linear", "rmse"])
    with pytest.raises(EvaluateError, match="where"):
        evaluate_methods(nd, clear, methods=["linear"], where=area.astype(int))
