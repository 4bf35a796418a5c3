"""Issue 13, "no silent wrong result", on the Zarr side: each test is named after its case.

* case 2: a store is reused or resumed only by the same computation (dask graph, data, method);
* case 3: a store whose creation was killed is created again, never resumed without coordinates;
* case 4: cubes read from either Zarr format write to either format, and round-trip exactly;
* case 8: cubes with unsorted or repeated times are refused before anything is written;
* case 21: a damaged chunk of an input store is named (store, variable, chunk key), in Python and the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import eocube
from eocube.datasets import sentinel2_sample
from eocube.errors import (
    CorruptChunkError,
    CubeError,
    IncompleteStoreError,
    ResumeMismatchError,
)
from eocube.fill import fill_gaps
from eocube.io.zarr_writer import WRITE_ATTR
from eocube.masks import clear_from_cloud_band, has_data

SMALL = {"time": -1, "band": 1, "y": 16, "x": 16}


def small_sample() -> tuple[xr.DataArray, xr.DataArray]:
    """NDVI of a 32 x 32 corner of the bundled sample, and its clear mask."""
    cube = sentinel2_sample(chunks=SMALL).isel(y=slice(0, 32), x=slice(0, 32))
    clear = clear_from_cloud_band(cube, "CLM") & has_data(cube, "IS_DATA")
    return cube.sel(band=["NDVI"]), clear


# ---------------------------------------------------------------------------------------------- case 2


def test_case2_another_method_into_a_finished_store_is_refused(tmp_path):
    observed, clear = small_sample()
    linear = fill_gaps(observed, clear, method="linear")
    whittaker = fill_gaps(observed, clear, method="whittaker")
    provenance = {"source": "sample"}  # the same provenance: only the graph tells them apart
    eocube.to_zarr(linear, tmp_path / "p.zarr", provenance=provenance, progress=False)
    with pytest.raises(ResumeMismatchError, match=r"computed values.*overwrite"):
        eocube.to_zarr(whittaker, tmp_path / "p.zarr", provenance=provenance, progress=False)
    np.testing.assert_array_equal(eocube.open_zarr(tmp_path / "p.zarr").values, linear.values)
    report = eocube.to_zarr(whittaker, tmp_path / "p.zarr", provenance=provenance, progress=False, mode="overwrite")
    assert report.chunks_written == report.chunks_total
    np.testing.assert_array_equal(eocube.open_zarr(tmp_path / "p.zarr").values, whittaker.values)
    # the same computation, built again, still reuses the finished store
    again = fill_gaps(observed, clear, method="whittaker")
    report = eocube.to_zarr(again, tmp_path / "p.zarr", provenance=provenance, progress=False)
    assert report.chunks_written == 0 and report.chunks_skipped == report.chunks_total


def test_case2_in_memory_cubes_are_told_apart_by_their_values(tmp_path, make_cube):
    cube = make_cube()  # numpy-backed
    eocube.to_zarr(cube, tmp_path / "m.zarr", progress=False)
    with pytest.raises(ResumeMismatchError, match="computed values"):
        eocube.to_zarr(cube + 1, tmp_path / "m.zarr", progress=False)
    assert eocube.to_zarr(cube.copy(deep=True), tmp_path / "m.zarr", progress=False).chunks_written == 0


def test_case2_an_unfinished_store_is_not_resumed_by_other_input_data(tmp_path, make_cube):
    cube = make_cube(chunks={"time": -1, "band": 1, "y": 8, "x": 5})
    eocube.to_zarr(cube, tmp_path / "c.zarr", progress=False)
    group = zarr.open_group(str(tmp_path / "c.zarr"), mode="r+")
    group.attrs[WRITE_ATTR] = dict(group.attrs[WRITE_ATTR], status="in-progress")  # as if killed
    with pytest.raises(ResumeMismatchError):
        eocube.to_zarr(make_cube(seed=1, chunks={"time": -1, "band": 1, "y": 8, "x": 5}), tmp_path / "c.zarr",
                       progress=False)


def test_case2_other_model_weights_are_refused(tmp_path, make_cube):
    torch = pytest.importorskip("torch")
    from eocube.models import apply_model

    cube = make_cube(chunks={"time": -1, "band": 1, "y": 8, "x": 10}).sel(band=["red"])

    def predict(seed: int) -> xr.DataArray:
        torch.manual_seed(seed)
        return apply_model(cube, torch.nn.Conv2d(1, 1, 3, padding=1), layout="band", halo=1)

    eocube.to_zarr(predict(0), tmp_path / "m.zarr", provenance={"model": "conv.pt"}, progress=False)
    assert eocube.to_zarr(predict(0), tmp_path / "m.zarr", provenance={"model": "conv.pt"},
                          progress=False).chunks_written == 0  # the same weights: reused
    with pytest.raises(ResumeMismatchError, match="model weights"):
        eocube.to_zarr(predict(1), tmp_path / "m.zarr", provenance={"model": "conv.pt"}, progress=False)


class _Opaque:
    """A block function dask cannot tokenize deterministically (it holds a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, block: np.ndarray) -> np.ndarray:
        return block


def test_case2_a_graph_without_a_reproducible_name_is_not_resumed(tmp_path, make_cube):
    base = make_cube(chunks={"time": -1, "band": 1, "y": 8, "x": 5})

    def build() -> xr.DataArray:
        return base.copy(data=base.data.map_blocks(_Opaque(), dtype=base.dtype))

    eocube.to_zarr(build(), tmp_path / "o.zarr", progress=False)
    with pytest.raises(ResumeMismatchError, match="cannot name this cube's computation reproducibly"):
        eocube.to_zarr(build(), tmp_path / "o.zarr", progress=False)


FINGERPRINT_SCRIPT = textwrap.dedent(
    """
    import sys
    import eocube
    from eocube.datasets import sentinel2_sample
    from eocube.fill import fill_gaps
    from eocube.io.zarr_writer import _plan
    from eocube.masks import clear_from_cloud_band, has_data

    store, method = sys.argv[1], sys.argv[2]
    chunks = {"time": -1, "band": 1, "y": 16, "x": 16}
    cube = eocube.open_zarr(store, chunks=chunks) if store != "sample" else sentinel2_sample(chunks=chunks)
    clear = clear_from_cloud_band(cube, "CLM") & has_data(cube, "IS_DATA")
    filled = fill_gaps(cube.sel(band=["NDVI"]), clear, method=method)
    print(_plan(filled, "unused.zarr", None, None, "resume", {"job": 1}).record["fingerprint"])
    """
)


def _fingerprint_in_a_new_process(tmp_path: Path, store: str, method: str) -> str:
    script = tmp_path / "fingerprint.py"
    script.write_text(FINGERPRINT_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), store, method], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_case2_the_fingerprint_is_the_same_in_every_process(tmp_path):
    copy = tmp_path / "copy.zarr"
    eocube.to_zarr(sentinel2_sample().isel(x=slice(0, 40)), copy, progress=False)
    for store in ("sample", str(copy)):
        first = _fingerprint_in_a_new_process(tmp_path, store, "linear")
        assert first == _fingerprint_in_a_new_process(tmp_path, store, "linear")
        assert first != _fingerprint_in_a_new_process(tmp_path, store, "whittaker")


# ---------------------------------------------------------------------------------------------- case 3


class _Killed(BaseException):
    """Stands for a kill: nothing of eocube's may catch it."""


def test_case3_a_store_killed_during_creation_is_created_again(tmp_path, make_cube, monkeypatch, assert_same_cube):
    from xarray.backends.common import ArrayWriter
    from xarray.backends.zarr import ZarrStore

    cube = make_cube(chunks={"time": -1, "band": 1, "y": 8, "x": 5})
    set_variables, add = ZarrStore.set_variables, ArrayWriter.add

    def cube_array_first(self, variables, *args, **kwargs):  # xarray's order follows a set: fix it
        ordered = dict(sorted(variables.items(), key=lambda item: item[0] != "synthetic"))
        return set_variables(self, ordered, *args, **kwargs)

    def dies_after_the_array_metadata(self, source, target, region=None):
        if str(target.path).strip("/") != "synthetic":  # the cube's array exists, its coordinates do not
            raise _Killed(f"killed before writing coordinate {target.path}")
        return add(self, source, target, region)

    monkeypatch.setattr(ZarrStore, "set_variables", cube_array_first)
    monkeypatch.setattr(ArrayWriter, "add", dies_after_the_array_metadata)
    with pytest.raises(_Killed):
        eocube.to_zarr(cube, tmp_path / "k.zarr", progress=False)
    monkeypatch.undo()
    with pytest.raises(IncompleteStoreError):
        eocube.open_zarr(tmp_path / "k.zarr")
    report = eocube.to_zarr(cube, tmp_path / "k.zarr", progress=False)
    assert_same_cube(cube, eocube.open_zarr(tmp_path / "k.zarr"))
    assert report.chunks_written == report.chunks_total and "created again" in str(report)


def test_case3_a_resume_checks_the_coordinates_are_there(tmp_path, make_cube, assert_same_cube):
    import shutil

    cube = make_cube(chunks={"time": -1, "band": 1, "y": 8, "x": 5})
    eocube.to_zarr(cube, tmp_path / "c.zarr", progress=False)
    group = zarr.open_group(str(tmp_path / "c.zarr"), mode="r+")
    group.attrs[WRITE_ATTR] = dict(group.attrs[WRITE_ATTR], status="in-progress")
    shutil.rmtree(tmp_path / "c.zarr" / "spatial_ref")
    report = eocube.to_zarr(cube, tmp_path / "c.zarr", progress=False)
    assert "spatial_ref" in zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    assert_same_cube(cube, eocube.open_zarr(tmp_path / "c.zarr"))
    assert report.chunks_written == report.chunks_total and "spatial_ref" in str(report)


# ---------------------------------------------------------------------------------------------- case 4


def test_case4_the_sample_writes_to_format_3(tmp_path, assert_same_cube):
    sample = sentinel2_sample().isel(x=slice(0, 30))
    eocube.to_zarr(sample, tmp_path / "s3.zarr", zarr_format=3, progress=False)
    back = eocube.open_zarr(tmp_path / "s3.zarr")
    assert_same_cube(sample, back)
    assert zarr.open_group(str(tmp_path / "s3.zarr"), mode="r").metadata.zarr_format == 3


@pytest.mark.parametrize("source_format, target_format", [(2, 2), (2, 3), (3, 2), (3, 3)])
@pytest.mark.parametrize(
    "dtype, nodata",
    [("float32", None), ("float32", -1.0), ("uint16", None), ("uint16", 0), ("int16", None), ("int16", -9999),
     ("uint8", None), ("uint8", 255)],
)
def test_case4_any_cube_round_trips_between_formats(tmp_path, make_cube, source_format, target_format, dtype, nodata,
                                                     assert_same_cube):
    cube = make_cube(dtype=dtype, nodata=nodata, chunks={"time": -1, "band": 1, "y": 4, "x": 5})
    cube.attrs["long_name"] = "synthetic reflectance"
    eocube.to_zarr(cube, tmp_path / "a.zarr", zarr_format=source_format, progress=False)
    read = eocube.open_zarr(tmp_path / "a.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("error", zarr.errors.UnstableSpecificationWarning)  # e.g. fixed-length UTF-32
        eocube.to_zarr(read, tmp_path / "b.zarr", zarr_format=target_format, progress=False,
                       provenance={"step": "copy"})
    back = eocube.open_zarr(tmp_path / "b.zarr")
    assert_same_cube(cube, back)
    assert back.attrs["units"] == "reflectance x 1000" and back.attrs["long_name"] == "synthetic reflectance"
    assert back.attrs["eocube_provenance"] == {"step": "copy"}
    assert zarr.open_group(str(tmp_path / "b.zarr"), mode="r").metadata.zarr_format == target_format
    assert zarr.open_array(str(tmp_path / "b.zarr"), path="band", mode="r").dtype.kind in ("O", "T")


# ---------------------------------------------------------------------------------------------- case 8


@pytest.mark.parametrize("order, message", [([1, 0, 2, 3], "not sorted"), ([0, 1, 1, 2], "duplicate dates")])
def test_case8_unsorted_or_repeated_times_are_refused(tmp_path, make_cube, order, message):
    cube = make_cube().isel(time=order)
    with pytest.raises(CubeError, match=message):
        eocube.to_zarr(cube, tmp_path / "t.zarr", progress=False)
    assert not (tmp_path / "t.zarr").exists()


# --------------------------------------------------------------------------------------------- case 21


def _damage(store: Path, variable: str, key: str) -> Path:
    chunk = store / variable / key
    assert chunk.is_file(), sorted(p.name for p in (store / variable).iterdir())
    chunk.write_bytes(b"\x00garbage, not a compressed chunk" * 8)
    return chunk


@pytest.mark.parametrize("zarr_format, key", [(2, "0.1.1.0"), (3, "c/0/1/1/0")])
def test_case21_a_damaged_input_chunk_is_named(tmp_path, make_cube, zarr_format, key):
    cube = make_cube(chunks={"time": -1, "band": 1, "y": 4, "x": 5})
    store = tmp_path / "in.zarr"
    eocube.to_zarr(cube, store, zarr_format=zarr_format, progress=False)
    _damage(store, "synthetic", key)
    read = eocube.open_zarr(store)  # still lazy: nothing read yet
    expected = rf"input store {store}, variable synthetic, chunk key {key} cannot be decoded .*damaged.*re-download"
    with pytest.raises(CorruptChunkError, match=expected):
        read.compute()
    with pytest.raises(CorruptChunkError, match=expected):  # rechunked and processed, written elsewhere
        eocube.to_zarr(eocube.open_zarr(store, chunks={"y": 8, "x": 10}) * 2, tmp_path / "out.zarr", progress=False)


def test_case21_the_cli_says_which_input_chunk_is_damaged_in_one_line(tmp_path):
    source = tmp_path / "in.zarr"
    sample = sentinel2_sample().isel(y=slice(0, 32), x=slice(0, 32))
    eocube.to_zarr(sample.chunk({"time": -1, "band": 1, "y": 16, "x": 16}), source, progress=False)
    _damage(source, "sentinel2", "0.0.1.1")  # NDVI, the lower right tile
    out = tmp_path / "out.zarr"
    proc = subprocess.run(
        [sys.executable, "-m", "eocube", "gapfill", "--source", str(source), "--out", str(out), "--bands", "NDVI",
         "--cloud-band", "CLM", "--data-band", "IS_DATA", "--tile", "16",
         "--workers", "1", "--threads", "1", "--no-progress"],
        capture_output=True, text=True, timeout=180, env={**os.environ}, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    assert f"input store {source}, variable sentinel2, chunk key 0.0.1.1 cannot be decoded" in errors[0]
    assert "while computing chunk" not in errors[0]  # the input chunk is named, not an output chunk
    with pytest.raises(IncompleteStoreError):
        eocube.open_zarr(out)
