"""`eocube gapfill` end to end on the real sample, resume after a kill, and bad inputs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

import eocube

EOCUBE = [sys.executable, "-m", "eocube"]
SMALL_CLUSTER = ["--workers", "1", "--threads", "1", "--no-progress"]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*EOCUBE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def chunks_line(stdout: str) -> tuple[int, int, int]:
    """(computed, total, already done) from the CLI's report line."""
    m = re.search(r"(\d+) of (\d+) chunks computed(?:, (\d+) already done)?", stdout)
    assert m, stdout
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of the main job on the bundled sample."""
    out = tmp_path_factory.mktemp("ref") / "filled.zarr"
    proc = run_cli("gapfill", "--out", str(out), "--tile", "16", *SMALL_CLUSTER)
    assert proc.returncode == 0, proc.stderr
    assert f"zarr: {out}" in proc.stdout and "quicklook:" in proc.stdout and "dashboard" in proc.stdout
    return out


def test_main_job_fills_the_sample(reference, sample):
    filled = eocube.open_zarr(reference)
    assert list(filled.band.values) == ["NDVI"] and filled.sizes["time"] == 68
    values = filled.values
    assert np.isfinite(values).all()  # every pixel of the sample has clear observations
    clear = ((sample.sel(band="CLM") == 0) & (sample.sel(band="IS_DATA") == 1)).values
    ndvi = sample.sel(band="NDVI").values
    np.testing.assert_array_equal(values[:, 0][clear], ndvi[clear])  # observations kept
    assert not np.allclose(values[:, 0][~clear], ndvi[~clear])  # clouds replaced
    assert filled.attrs["eocube_provenance"]["method"] == "linear"
    png = Path(str(reference) + ".png")
    assert png.stat().st_size > 20_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_output_opens_in_xarray_and_gdal(reference):
    ds = xr.open_zarr(reference, decode_coords="all")
    assert ds["sentinel2"].rio.crs.to_epsg() == 32633
    with rasterio.open(f'ZARR:"{reference}":/sentinel2') as src:
        assert src.crs.to_epsg() == 32633
        assert src.transform.almost_equals(ds["sentinel2"].rio.transform(), precision=1e-6)


def test_killed_write_resumes_to_the_same_result(tmp_path, reference):
    out = tmp_path / "killed.zarr"
    ledger = out / ".eocube-progress" / "sentinel2"
    slow = {"DASK_EOCUBE__TESTING__CHUNK_DELAY": "0.25"}
    proc = subprocess.Popen([*EOCUBE, "gapfill", "--out", str(out), "--tile", "16", *SMALL_CLUSTER],
                            env={**os.environ, **slow}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(ledger.glob("[0-9]*"))) < 5:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its dask workers, like a walltime kill
        proc.wait()
    done_before = len(list(ledger.glob("[0-9]*")))
    assert 5 <= done_before < 49, "the kill should land mid-way"
    with pytest.raises(eocube.IncompleteStoreError):
        eocube.open_zarr(out)
    again = run_cli("gapfill", "--out", str(out), "--tile", "16", *SMALL_CLUSTER)
    assert again.returncode == 0, again.stderr
    computed, total, skipped = chunks_line(again.stdout)
    assert total == 49 and skipped >= done_before and computed == total - skipped < total
    np.testing.assert_array_equal(eocube.open_zarr(out).values, eocube.open_zarr(reference).values)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "does-not-exist.zarr"], "no Zarr store at does-not-exist.zarr"),
        (["--bands", "B04"], r"band\(s\) \['B04'\] not in the cube; available bands"),
        (["--cloud-band", "SCL"], r"band\(s\) \['SCL'\] not in the cube"),
    ],
)
def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "out.zarr"
    proc = run_cli("gapfill", "--out", str(out), *args, *SMALL_CLUSTER)
    assert proc.returncode == 2
    assert re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_a_store_that_is_not_a_cube_is_refused(tmp_path):
    plain = tmp_path / "plain.zarr"
    xr.Dataset({"t2m": (("time", "y", "x"), np.zeros((2, 3, 3)))}).to_zarr(plain, zarr_format=2)
    out = tmp_path / "out.zarr"
    proc = run_cli("gapfill", "--source", str(plain), "--out", str(out), *SMALL_CLUSTER)
    assert proc.returncode == 2 and "holds no cube" in proc.stderr and not out.exists()
