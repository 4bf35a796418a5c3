"""Issue 13: the CLI refuses inputs that cannot work (before any cluster starts) and says what it did.

Cheap checks run through click's CliRunner: they fail before ``connect()``, so no
cluster starts (the output says nothing of a dashboard). The few end-to-end runs use
one worker with one thread, like ``tests/fill/test_cli_gapfill_options.py``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import eocube
from eocube.cli import main
from eocube.cli._common import InputError, check_output_writable
from eocube.cli.evaluate import evaluate
from eocube.cli.gapfill import gapfill
from eocube.io import open_zarr

SMALL = ["--workers", "1", "--threads", "1", "--no-progress"]


def refused(args: list[str], command=gapfill) -> str:
    """Run a command that must be refused: exit 2, one line on stderr, no cluster; return that line."""
    start = time.monotonic()
    result = CliRunner().invoke(command, [*args, *SMALL] if command is gapfill else args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "dashboard" not in result.output and "Traceback" not in result.output
    assert time.monotonic() - start < 30  # nothing heavy ran
    return lines[0]


# Case 5: a mask kind that does not fit its band


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mask", "scl", "--cloud-band", "CLM"],
         r"band 'CLM' holds only 0 and 1: that is a 0/1 cloud mask, not Sentinel-2 SCL classes 0..11.*--mask boolean"),
        (["--mask", "scl"], r"--mask scl needs --cloud-band: the sample sentinel2 has no SCL band"),
        (["--mask", "qa_pixel", "--cloud-band", "CLM"], r"band 'CLM' holds only 0 and 1: .*not Landsat QA_PIXEL"),
        (["--mask", "probability", "--cloud-band", "CLM"],
         r"band 'CLM' holds only 0 and 1: that is a boolean cloud mask, not a cloud probability.*--cloud-band CLP"),
        (["--mask", "boolean", "--cloud-band", "CLP"],
         r"band 'CLP' holds 0.00107\d*..0.99\d* \(fractional values\).*use --mask probability"),
        (["--mask", "probability", "--threshold", "40"], r"threshold 40 is above 1.*--threshold in 0..1"),
        (["--mask", "scl", "--cloud-band", "NDVI"], r"band 'NDVI' holds -0.151\d*..0.860\d* .*SCL holds whole-number"),
    ],
)
def test_a_mask_kind_that_does_not_fit_its_band_is_refused(tmp_path, args, message):
    out = tmp_path / "out.zarr"
    line = refused(["--out", str(out), *args])
    assert re.search(message, line), line
    assert not out.exists()


def test_probability_defaults_to_the_probability_band_and_a_time_grid_gets_a_quicklook(tmp_path):
    out = tmp_path / "f.zarr"
    result = CliRunner().invoke(gapfill, ["--out", str(out), "--mask", "probability", "--time-grid", "MS", *SMALL])
    assert result.exit_code == 0, result.output
    assert "mask: probability on band CLP (the default of the sample sentinel2 for --mask probability" in result.output
    assert "cloudy at >= 0.4" in result.output
    filled = open_zarr(out)
    assert filled.attrs["eocube_provenance"]["cloud_band"] == "CLP"
    assert np.isfinite(filled.values).all()
    # case 7b: the quicklook is no longer skipped with --time-grid
    png = Path(str(out) + ".png")
    assert "quicklook:" in result.output and png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000
    assert "never observed: 0.0 % of the pixels" in result.output and "WARNING" not in result.stderr


@pytest.fixture(scope="module")
def gappy_cube(tmp_path_factory) -> Path:
    """NDVI only (no cloud band): NaN where the sample is cloudy, and never observed in the first 30 rows."""
    from eocube.datasets import sentinel2_sample

    cube = sentinel2_sample().compute()
    cloudy = (cube.sel(band="CLM") != 0).values
    ndvi = cube.sel(band=["NDVI"]).copy()
    values = ndvi.values
    values[:, 0][cloudy] = np.nan
    values[:, :, :30] = np.nan  # 30 of 101 rows: 29.7 % of the pixels never observed
    path = tmp_path_factory.mktemp("gappy") / "ndvi.zarr"
    eocube.to_zarr(ndvi.copy(data=values).chunk({"time": -1, "band": 1, "y": 64, "x": 64}), path, progress=False)
    return path


def test_no_cloud_band_quality_works_and_never_observed_pixels_warn(tmp_path, gappy_cube):
    out, quality = tmp_path / "f.zarr", tmp_path / "q.zarr"
    result = CliRunner().invoke(gapfill, ["--source", str(gappy_cube), "--out", str(out),
                                          "--quality", str(quality), *SMALL])
    assert result.exit_code == 0, result.output
    assert "mask: none (no --cloud-band): only missing (NaN) values are filled" in result.output
    # case 7a: --quality without a cloud band is written (per band, from the missing values)
    q = open_zarr(quality)
    assert list(q.band.values) == ["days_to_clear_NDVI"]
    assert np.isnan(q.values[:, 0, :30]).all() and float(q.isel(y=slice(30, None)).max()) > 0
    assert (q.isel(y=slice(30, None)).values >= 0).all()
    # case 5: a result that is largely never observed warns loudly
    warning = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warning) == 1 and "29.7 % of the pixels (3,000 of 10,100) have no clear observation" in warning[0]
    assert "stay NaN" in warning[0] and "--warn-never-observed 5 %" in warning[0]
    quiet = CliRunner().invoke(gapfill, ["--source", str(gappy_cube), "--out", str(tmp_path / "g.zarr"),
                                         "--warn-never-observed", "0.5", *SMALL])
    assert quiet.exit_code == 0 and "WARNING" not in quiet.stderr
    assert "never observed: 29.7 %" in quiet.output


def test_without_a_mask_integer_nodata_counts_as_never_observed(tmp_path):
    """uint16 digital numbers, nodata 0 on every date of the first 30 rows: those pixels stay NaN and warn."""
    from eocube.datasets import sentinel2_sample

    ndvi = sentinel2_sample().sel(band=["NDVI"]).compute()
    values = np.round((ndvi.values + 1) * 1000).astype("uint16")
    values[:, :, :30] = 0
    source = tmp_path / "dn.zarr"
    eocube.to_zarr(ndvi.copy(data=values).rio.write_nodata(0, encoded=False).chunk(
        {"time": -1, "band": 1, "y": 64, "x": 64}), source, progress=False)
    out = tmp_path / "f.zarr"
    result = CliRunner().invoke(gapfill, ["--source", str(source), "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    assert "only missing (NaN) values are filled, and values equal to the cube's nodata value 0" in result.output
    assert np.isnan(open_zarr(out).values[:, :, :30]).all()
    warning = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warning) == 1 and "29.7 % of the pixels (3,000 of 10,100) have no clear observation" in warning[0]


# Case 6: evaluate --model scores the held-out test region only


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A network trained for a few steps (seconds) with the default split (one test block of 51 px)."""
    from eocube.learn.config import load_config
    from eocube.learn.trainer import train

    out = tmp_path_factory.mktemp("run")
    train(load_config(overrides={
        "sampler": {"patch_size": 12},
        "network": {"hidden": 4, "depth": 1, "kernel_t": 3},
        "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "val_windows": 2, "num_workers": 0,
                  "progress": False, "device": "cpu"},
    }), out=out)
    return out


def held_out(output: str) -> int:
    line = next(line for line in output.splitlines() if line.startswith("held out "))
    return int(line.split()[2])


def test_evaluate_model_scores_the_held_out_region_only(tiny_run):
    args = ["--methods", "linear", "--model", str(tiny_run), "--quicklook", "", "--fraction", "0.2"]
    result = CliRunner().invoke(evaluate, args)
    assert result.exit_code == 0, result.output
    assert ("scored region: the 1 test block(s) of 51 px of the network's training split (2,601 pixels), never "
            "read in training") in result.output
    rows = {line.split("|")[1].strip() for line in result.output.splitlines() if line.startswith("| ")}
    assert {"model", "linear"} <= rows
    everything = CliRunner().invoke(evaluate, [*args, "--all-pixels"])
    assert everything.exit_code == 0, everything.output
    assert "WARNING: --all-pixels: scoring the whole cube, including the pixels the network was trained on" \
        in everything.stderr
    assert "scored region" not in everything.output
    assert held_out(result.output) < 0.5 * held_out(everything.output)  # 2,601 of 10,100 pixels


# Case 19: outputs that cannot be written are refused before anything starts


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
@pytest.mark.parametrize("option", ["--out", "--quality", "--quicklook"])
def test_an_output_that_cannot_be_written_is_refused_first(tmp_path, where, option):
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("not a folder")
    name = "x.png" if option == "--quicklook" else "x.zarr"
    bad = str(blocker / name) if where == "under-a-file" else f"/proc/{name}"
    out = tmp_path / "out.zarr"
    args = [option, bad] if option == "--out" else ["--out", str(out), option, bad]
    line = refused(args)
    assert f"cannot write {option if option != '--quicklook' else 'the quicklook (--quicklook)'} {bad}" in line
    assert ("somefile.txt is a file, not a folder" if where == "under-a-file" else "/proc does not accept") in line
    assert not out.exists() and blocker.read_text() == "not a folder"


def test_evaluate_refuses_an_unwritable_plot_or_csv(tmp_path):
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("")
    assert "cannot write the quicklook (--quicklook)" in refused(["--quicklook", str(blocker / "p.png")], evaluate)
    assert "cannot write --csv" in refused(["--quicklook", "", "--csv", str(blocker / "t.csv")], evaluate)


def test_check_output_writable(tmp_path):
    check_output_writable(tmp_path / "new" / "deeper" / "out.zarr")  # missing folders are fine ...
    assert not (tmp_path / "new").exists()  # ... and are not created
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind
    check_output_writable("s3://bucket/out.zarr")  # object stores are not checked here
    (tmp_path / "file.zarr").write_text("")
    with pytest.raises(InputError, match="it is a file, not a Zarr store"):
        check_output_writable(tmp_path / "file.zarr")
    with pytest.raises(InputError, match="it is a folder, not a file"):
        check_output_writable(tmp_path, what="--plot", folder=False)
    with pytest.raises(InputError, match="/proc does not accept new files"):
        check_output_writable("/proc/x.zarr")


# Case 20: tile sizes


@pytest.mark.parametrize("tile", ["0", "-5", "abc"])
def test_a_bad_tile_is_one_line(tmp_path, tile):
    line = refused(["--out", str(tmp_path / "o.zarr"), "--tile", tile])
    assert "Invalid value for '--tile'" in line and "(see 'eocube gapfill --help')" in line


def test_usage_errors_through_the_group_are_one_line_too(tmp_path):
    result = CliRunner().invoke(main, ["gapfill", "--out", str(tmp_path / "o.zarr"), "--tile", "0"])
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0 and "--tile" in result.stderr


# Case 22: unknown sample names list the samples


def test_an_unknown_sample_lists_the_samples(tmp_path):
    line = refused(["--out", str(tmp_path / "o.zarr"), "--source", "sentinel3"])
    assert "no Zarr store at sentinel3 and no bundled sample of that name: the bundled samples are sentinel2 (" in line
    assert "sentinel3" in refused(["--source", "sentinel3", "--quicklook", ""], evaluate)


def test_quality_must_not_be_the_output(tmp_path):
    out = tmp_path / "same.zarr"
    assert "is the same store as --out" in refused(["--out", str(out), "--quality", str(out)])


def test_a_store_with_a_0_1_scl_band_is_refused_by_name(tmp_path, make_cube):
    cube = make_cube(bands=("red", "SCL"))
    cube.loc[{"band": "SCL"}] = (cube.sel(band="SCL") > 500).astype("float32")
    source = tmp_path / "cube.zarr"
    eocube.to_zarr(cube.chunk({"time": -1, "band": 1, "y": 8, "x": 10}), source, progress=False)
    line = refused(["--source", str(source), "--out", str(tmp_path / "o.zarr"), "--mask", "scl"])
    assert "band 'SCL' holds only 0 and 1" in line
    assert xr.open_zarr(source) is not None  # the source is untouched
