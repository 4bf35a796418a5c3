"""Messages of the model engine found by the audit of issue 21.

* a model that returns NaN from finite inputs on part of the image: written, with a WARNING
  giving the share of such pixels (once per run and process; ``eocube apply`` prints the share
  of the whole run, also from the workers of a cluster);
* a per-pixel model (``nn.Linear`` on the band axis) fed the wrong number of bands: the channel
  remedy, as for convolutions;
* a ``.pt2`` whose export guards refuse the run's tile size: refused before compute, naming the
  guard and the remedy.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import eocube
from eocube.errors import EOCubeError
from eocube.models import ChannelMismatchError, apply_model

EOCUBE_ROOT = str(Path(eocube.__file__).resolve().parents[1])


class Sqrt(nn.Module):
    """NaN where the first band is negative (a model that cannot take some valid inputs)."""

    halo = 0

    def forward(self, x):
        return torch.sqrt(x[:, :1])


def negative_rows(make_unit_cube, rows: int = 8):
    """A cube of positive values whose first ``rows`` rows are negative in band a, and one nodata pixel."""
    cube = make_unit_cube(t=2, h=32, w=32)
    values = np.abs(cube.values) + 0.1
    values[:, 0, :rows, :] *= -1
    values[:, :, 31, 31] = np.nan  # nodata input: masked, not counted as the model's NaN
    return cube.copy(data=values).chunk({"y": 32, "x": 32, "time": 2})


def test_nan_from_finite_inputs_is_written_with_a_warning_giving_its_share(make_unit_cube, caplog):
    cube = negative_rows(make_unit_cube)
    out = apply_model(cube, Sqrt(), tile_size=16)
    with caplog.at_level(logging.WARNING, logger="eocube.models"):
        values = out.values
    assert np.isnan(values[:, 0, :8, :]).all() and np.isfinite(values[:, 0, 8:31, :]).all()
    warned = [r.getMessage() for r in caplog.records if "NaN from finite inputs" in r.getMessage()]
    assert len(warned) == 1, warned  # once per run and process
    assert "25.0% of the output pixels" in warned[0] and "chunk (0, 0, 0, 0)" in warned[0]
    from eocube.models._engine import run_nan_counts

    nan, total = run_nan_counts(out.data.name)
    assert (nan, total) == (2 * 8 * 32, 2 * 32 * 32)


def test_no_warning_when_the_model_gives_nan_only_where_the_input_is_nodata(make_unit_cube, caplog):
    from eocube.models._engine import run_nan_counts

    cube = negative_rows(make_unit_cube, rows=0)
    out = apply_model(cube, Sqrt(), tile_size=16)
    with caplog.at_level(logging.WARNING, logger="eocube.models"):
        values = out.values
    assert np.isnan(values[:, 0, 31, 31]).all()
    assert not [r for r in caplog.records if "NaN" in r.getMessage()]
    assert run_nan_counts(out.data.name) == (0, 2 * 32 * 32)


@pytest.mark.slow
def test_cli_prints_the_share_of_nan_of_the_whole_run_from_cluster_workers(tmp_path, make_unit_cube):
    code = tmp_path / "code"
    code.mkdir()
    name = f"nanmod_{uuid.uuid4().hex[:8]}"
    (code / f"{name}.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Sqrt(nn.Module):
            halo = 0

            def forward(self, x):
                return torch.sqrt(x[:, :1])
    """))
    weights = tmp_path / "w.pth"
    torch.save({}, weights)
    source = tmp_path / "cube.zarr"
    eocube.to_zarr(negative_rows(make_unit_cube).chunk({"y": 16, "x": 16, "time": 1}), source)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), EOCUBE_ROOT])}
    proc = subprocess.run(
        [sys.executable, "-m", "eocube", "apply", "--model", str(weights), "--factory", f"{name}:Sqrt", "--layout", "band",
         "--source", str(source), "--out", str(tmp_path / "out.zarr"), "--no-progress", "--cluster", "local",
         "--workers", "2", "--threads", "1", "--quicklook", str(tmp_path / "q.png")],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (f"WARNING: the model returned NaN from finite inputs on {2 * 8 * 32} of {2 * 32 * 32} output pixels "
            "(25.00%)") in proc.stderr, proc.stderr
    written = eocube.open_zarr(tmp_path / "out.zarr").values
    assert np.isnan(written[:, 0, :8]).all()


class PerPixel(nn.Module):
    """A per-pixel model: a linear layer on the band axis of (N, C, H, W)."""

    def __init__(self, bands: int = 4):
        super().__init__()
        self.lin = nn.Linear(bands, 2)

    def forward(self, x):
        return self.lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def test_per_pixel_model_fed_the_wrong_band_count_gets_the_channel_remedy(make_unit_cube):
    cube = make_unit_cube(t=1, h=16, w=16)  # 3 bands a, b, c
    with pytest.raises(ChannelMismatchError, match=r"expects 4 input channels \(first layer 'lin'\) but got 3.*"
                                                    r"bands=\[\.\.\.\]"):
        apply_model(cube, PerPixel(4))
    out = apply_model(cube, PerPixel(3))  # the right count runs
    assert out.shape == (1, 2, 16, 16)


def _bounded_export(path: Path, size_max: int = 64) -> nn.Module:
    net = nn.Conv2d(3, 2, 3, padding=1).eval()
    dims = {0: torch.export.Dim("N", max=1024), 2: torch.export.Dim("H", max=size_max),
            3: torch.export.Dim("W", max=size_max)}
    program = torch.export.export(net, (torch.zeros(2, 3, 32, 32),), dynamic_shapes=(dims,))
    torch.export.save(program, str(path))
    return net


def test_pt2_whose_guards_refuse_the_tile_size_is_refused_before_compute(tmp_path, make_unit_cube):
    path = tmp_path / "small.pt2"
    net = _bounded_export(path)
    cube = make_unit_cube(t=1, h=160, w=160, chunks={"y": 160, "x": 160})
    # both windows are 128 + 2 x 1 px (the edge tile's slides inward over the image: one shape per chunk)
    with pytest.raises(EOCubeError, match=r"refuses the sizes.*size\(\)\[2\] <= 64.*does not accept 130.*--tile"):
        apply_model(cube, path, tile_size=128, halo=1)
    out = apply_model(cube, path, tile_size=32, halo=1)  # 32 + 2 x 1 px of halo fit
    with torch.no_grad():
        expected = net(torch.from_numpy(cube.values)).numpy()
    np.testing.assert_allclose(out.values, expected, atol=1e-5)
