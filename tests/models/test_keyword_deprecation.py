"""The old keywords of ``apply_model`` are a deprecated shorthand for fields of the spec and the run options.

* each of the 28 keywords emits one :class:`DeprecationWarning` that names the field to set
  instead, attributed to the code that called ``apply_model`` (also through the ``.eocube``
  accessor), and builds the very graph the spec (or run options) field builds;
* eocube's own calls of the engine (``eocube apply``, a trained filler through
  :func:`eocube.learn.inference.fill_cube`) pass a spec: no DeprecationWarning from eocube's code.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from click.testing import CliRunner
from torch import nn

import eocube
from eocube.models import ModelSpec, OutputSpec, RunOptions, SourceSpec, apply_model
from eocube.models.card import export_model

OLD = r"apply_model\((\w+)=\.\.\.\) is deprecated; use (.+)"


class Pointwise(nn.Module):
    """Any channel count in, the first channel out; extra arguments (validity, dates) ignored."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * self.w


def _cube() -> xr.DataArray:
    rng = np.random.default_rng(0)
    values = rng.random((3, 2, 16, 16)).astype("float32")
    values[0, 0, :2, :2] = np.nan
    return xr.DataArray(
        values, dims=("time", "band", "y", "x"),
        coords={"time": pd.date_range("2021-05-01", periods=3, freq="5D"), "band": ["a", "b"],
                "y": 1000.0 - 10 * (np.arange(16) + 0.5), "x": 500.0 + 10 * (np.arange(16) + 0.5)},
    ).rio.write_crs("EPSG:32633").rio.write_nodata(np.nan, encoded=False).chunk({"time": 1, "y": 8, "x": 8})


SOURCE = SourceSpec()
CASES = {
    # keyword: (value, the field its warning names, the spec and run options it stands for)
    "layout": ("time_band", "SourceSpec(layout=", ModelSpec(sources=(replace(SOURCE, layout="time_band"),)), None),
    "bands": (["b"], "SourceSpec(bands=", ModelSpec(sources=(replace(SOURCE, bands=("b",)),)), None),
    "valid_input": ("argument", "SourceSpec(valid_input=", ModelSpec(sources=(replace(SOURCE, valid_input="argument"),)),
                    None),
    "time_input": ("doy", "SourceSpec(time_input=", ModelSpec(sources=(replace(SOURCE, time_input="doy"),)), None),
    "fill_value": (-1.0, "SourceSpec(fill_value=", ModelSpec(sources=(replace(SOURCE, fill_value=-1.0),)), None),
    "out_bands": (["o"], "OutputSpec(bands=", ModelSpec(output=OutputSpec(bands=("o",))), None),
    "output": ("per_date", "OutputSpec(kind=", ModelSpec(output=OutputSpec(kind="per_date")), None),
    "out_time": ("2021-06-01", "OutputSpec(time=", ModelSpec(output=OutputSpec(time="2021-06-01")), None),
    "postprocess": ("sigmoid", "OutputSpec(postprocess=", ModelSpec(output=OutputSpec(postprocess="sigmoid")), None),
    "out_dtype": ("float64", "OutputSpec(dtype=", ModelSpec(output=OutputSpec(dtype="float64")), None),
    "out_nodata": (-9999.0, "OutputSpec(nodata=", ModelSpec(output=OutputSpec(nodata=-9999.0)), None),
    "mask_output": ("all", "OutputSpec(mask=", ModelSpec(output=OutputSpec(mask="all")), None),
    "scale": (1, "OutputSpec(scale=", ModelSpec(output=OutputSpec(scale=Fraction(1))), None),
    "halo": (2, "ModelSpec(halo=", ModelSpec(halo=2), None),
    "size_multiple": (4, "ModelSpec(size_multiple=", ModelSpec(size_multiple=4), None),
    "reference": ("input", "ModelSpec(reference=", ModelSpec(reference="input"), None),
    "pairing": ("nearest", "ModelSpec(pairing=", ModelSpec(pairing="nearest"), None),
    "tolerance": ("3D", "ModelSpec(tolerance=", ModelSpec(tolerance="3D"), None),
    "model_version": ("v7", "ModelSpec(version=", ModelSpec(version="v7"), None),
    "tile_size": (4, "RunOptions(tile_size=", None, RunOptions(tile_size=4)),
    "batch_size": (3, "RunOptions(batch_size=", None, RunOptions(batch_size=3)),
    "chunks": ({"y": 4, "x": 4}, "RunOptions(chunks=", None, RunOptions(chunks={"y": 4, "x": 4})),
    "device": ("cpu", "RunOptions(device=", None, RunOptions(device="cpu")),
    "autocast": ("bf16", "RunOptions(autocast=", None, RunOptions(autocast="bf16")),
    "torch_threads": (1, "RunOptions(torch_threads=", None, RunOptions(torch_threads=1)),
    "resources": (None, "RunOptions(resources=", None, RunOptions(resources=None)),
    "name": ("ndvi_x2", "RunOptions(name=", None, RunOptions(name="ndvi_x2")),
    "prefetch": (False, "RunOptions(prefetch=", None, RunOptions(prefetch=False)),
}


def test_the_cases_cover_every_old_keyword():
    from eocube.models._keywords import KEYWORDS

    assert sorted(CASES) == KEYWORDS and len(KEYWORDS) == 28


@pytest.mark.parametrize("keyword", sorted(CASES))
def test_each_old_keyword_warns_naming_its_field_and_builds_what_the_field_builds(keyword):
    value, field, spec, run = CASES[keyword]
    cube, net = _cube(), Pointwise()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        old = apply_model(cube, net, **{keyword: value})
    deprecations = [w for w in seen if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == 1, [str(w.message) for w in deprecations]
    warning = deprecations[0]
    message = str(warning.message)
    assert message.startswith(f"apply_model({keyword}=...) is deprecated; use "), message
    assert field in message, message
    assert warning.filename == __file__  # points at the caller, not at the engine

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = apply_model(cube, net, spec, run=run)
    assert old.data.name == new.data.name  # the same computation
    assert old.name == new.name and old.dtype == new.dtype
    assert repr(old.attrs) == repr(new.attrs)  # NaN nodata: compared as written
    xr.testing.assert_identical(old.coords.to_dataset(), new.coords.to_dataset())


def test_several_keywords_warn_once_each_and_the_accessor_points_at_its_caller():
    cube, net = _cube(), Pointwise()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cube.eocube.apply_model(net, halo=1, out_bands=["o"], tile_size=8)
    messages = sorted(str(w.message) for w in seen if issubclass(w.category, DeprecationWarning))
    assert messages == [
        "apply_model(halo=...) is deprecated; use ModelSpec(halo=...)",
        "apply_model(out_bands=...) is deprecated; use ModelSpec(output=OutputSpec(bands=...))",
        "apply_model(tile_size=...) is deprecated; use apply_model(..., run=RunOptions(tile_size=...))",
    ]
    assert {w.filename for w in seen if issubclass(w.category, DeprecationWarning)} == {__file__}


def test_a_spec_and_run_options_emit_no_deprecation_warning():
    cube = _cube()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        out = cube.eocube.apply_model(Pointwise(), ModelSpec(output=OutputSpec(bands=("o",))),
                                      run=RunOptions(tile_size=8))
    assert list(out["band"].values) == ["o"]


# ----------------------------------------------------------------------------- eocube's own calls


def _eocube_deprecations_are_errors() -> warnings.catch_warnings:
    """A context in which a DeprecationWarning attributed to one of eocube's modules raises."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("error", category=DeprecationWarning, module=r"eocube(\.|$)")
    return ctx


@pytest.fixture
def strict_eocube():
    ctx = _eocube_deprecations_are_errors()
    try:
        yield
    finally:
        ctx.__exit__(None, None, None)


def test_the_filter_catches_an_old_keyword_passed_by_eocube_code(strict_eocube):
    """The check below is not vacuous: a keyword passed from a module of eocube raises under it."""
    namespace = {"__name__": "eocube.made_up", "apply_model": apply_model}
    exec("def call(cube, net):\n    return apply_model(cube, net, halo=1)\n", namespace)
    with pytest.raises(DeprecationWarning, match=r"apply_model\(halo=\.\.\.\)"):
        namespace["call"](_cube(), Pointwise())


def test_eocube_apply_and_the_learned_filler_pass_a_spec(strict_eocube, tmp_path):
    # `eocube apply` in this process: a .pt2 with its card on the bundled sample
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1))
    spec = ModelSpec(sources=(SourceSpec(bands=("NDVI",)),), output=OutputSpec(bands=("smooth",)))
    model = export_model(net, torch.rand(2, 1, 16, 16), tmp_path / "model.pt2", spec=spec)
    from eocube.cli.apply import apply

    result = CliRunner().invoke(apply, [str(model), "--source", "sentinel2", "--out", str(tmp_path / "out.zarr"),
                                        "--chunk", "32", "--no-progress", "--quicklook", str(tmp_path / "q.png")])
    assert result.exit_code == 0, result.output
    assert eocube.open_zarr(tmp_path / "out.zarr")["band"].values.tolist() == ["smooth"]

    # a gap-filling network exported with its card, through eocube.learn.inference.fill_cube
    from eocube.datasets import sentinel2_sample
    from eocube.learn.inference import fill_cube

    class Keep(nn.Module):
        def forward(self, x: torch.Tensor, valid: torch.Tensor, days: torch.Tensor) -> torch.Tensor:
            return x * valid

    gap_spec = ModelSpec(sources=(SourceSpec(bands=("NDVI",), layout="sequence", valid_input="argument",
                                             time_input="days"),), output=OutputSpec(bands="input", mask="all"))
    run = tmp_path / "run"
    run.mkdir()
    export_model(Keep(), (torch.rand(2, 4, 1, 16, 16), torch.ones(2, 4, 1, 16, 16, dtype=torch.bool),
                          torch.rand(2, 4)), run / "model.pt2", spec=gap_spec)
    cube = sentinel2_sample().isel(time=slice(0, 4), y=slice(0, 32), x=slice(0, 32))
    clear = cube.eocube.clear_from_cloud_band("CLM", data_band="IS_DATA")
    filled = fill_cube(cube, run, clear, tile_size=16)
    assert filled.sizes["band"] == 1 and filled.compute().notnull().any()
