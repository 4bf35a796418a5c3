"""Issue 21 item 9: hostile inputs of to_zarr, open_zarr, apply_model, plan_chunks, eocube apply and eocube gapfill.

Found by the audit of the entry points (reproductions in helper F's audit, fixes in eocube.io, eocube.models,
eocube.cli and eocube.plan). Each test fails on the code before issue 21 (f16d111), except the Zarr format 2
case of the empty cube, which wrote there and broke during issue 21 (the content-identity writer).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import eocube
from eocube.cube import make_cube
from eocube.errors import EOCubeError
from eocube.io import check_target


def small(t: int = 3, b: int = 2, h: int = 16, w: int = 16, dtype: str = "float32", **kwargs) -> xr.DataArray:
    data = np.random.default_rng(0).random((t, b, h, w)).astype(dtype)
    coords = {"time": pd.date_range("2020-01-01", periods=t, freq="10D"), "band": [f"b{i}" for i in range(b)],
              "y": 5000000 - 10 * np.arange(h) - 5.0, "x": 400005 + 10 * np.arange(w, dtype=float), "crs": "EPSG:32633"}
    return make_cube(data, **{**coords, **kwargs})


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eocube", *args], capture_output=True, text=True, timeout=timeout)


def one_line_exit_2(proc: subprocess.CompletedProcess, pattern: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and re.search(pattern, proc.stderr), proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]


def same_values(a: xr.DataArray, b: xr.DataArray) -> bool:
    return bool(np.array_equal(a.values, b.values, equal_nan=True))


# ============================================================================ a write never destroys its input


@pytest.fixture
def stored(tmp_path) -> tuple[Path, xr.DataArray]:
    cube = small()
    eocube.to_zarr(cube, tmp_path / "src.zarr", progress=False)
    return tmp_path / "src.zarr", cube


@pytest.mark.parametrize("mode", ["overwrite", "resume", "fail"])
def test_to_zarr_refuses_to_write_the_store_the_cube_reads(stored, mode):
    """f16d111: mode="overwrite" deleted the input store, then wrote what the deleted input read as (exit 0);
    "resume" / "fail" said "holds a store written by a different computation" / "already exists"."""
    from eocube.errors import TargetIsInputError

    path, cube = stored
    derived = eocube.open_zarr(path) * 2
    with pytest.raises(TargetIsInputError, match=r"is the store the cube reads .*src\.zarr"):
        eocube.to_zarr(derived, path, mode=mode, progress=False)
    with pytest.raises(TargetIsInputError):
        check_target(derived, str(path) + "/", mode=mode)  # the same store, spelled otherwise
    assert same_values(eocube.open_zarr(path), cube)


@pytest.mark.parametrize("where, pattern", [("inside", r"lies inside the store the cube reads"),
                                            ("contains", r"contains the store the cube reads")])
def test_to_zarr_refuses_a_store_inside_or_around_its_input(stored, where, pattern):
    """f16d111: an output inside the input store was written there (changing the input's listing); an output
    around it with mode="overwrite" deleted it."""
    from eocube.errors import TargetIsInputError

    path, cube = stored
    derived = eocube.open_zarr(path) + 1
    target = path / "out.zarr" if where == "inside" else path.parent
    with pytest.raises(TargetIsInputError, match=pattern):
        eocube.to_zarr(derived, target, mode="overwrite", progress=False)
    assert not (path / "out.zarr").exists()
    assert same_values(eocube.open_zarr(path), cube)


def test_to_zarr_refuses_the_store_of_a_cube_opened_with_xarray(stored):
    """The guard reads the dask graph: a cube xarray.open_zarr reads from the store is protected too."""
    from eocube.errors import TargetIsInputError

    path, cube = stored
    plain = xr.open_zarr(path)["cube"].rio.write_crs("EPSG:32633")
    with pytest.raises(TargetIsInputError, match="src.zarr"):
        eocube.to_zarr(plain.rio.write_nodata(np.nan, encoded=False), path, mode="overwrite", progress=False)
    assert same_values(eocube.open_zarr(path), cube)


@pytest.fixture(scope="module")
def smoother(tmp_path_factory) -> Path:
    import torch
    from torch import nn

    from eocube.models import ModelSpec, OutputSpec, SourceSpec
    from eocube.models.card import export_model

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    spec = ModelSpec(sources=(SourceSpec(name="s2", bands=("NDVI", "CLP")),), output=OutputSpec(bands=("smooth",)),
                     name="smoother")
    return export_model(net, torch.rand(2, 2, 16, 16), tmp_path_factory.mktemp("m") / "smooth.pt2", spec=spec)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    from eocube.datasets import sentinel2_sample

    path = tmp_path_factory.mktemp("src") / "src.zarr"
    eocube.to_zarr(sentinel2_sample().isel(time=slice(0, 2)), path, progress=False)
    return path


def test_eocube_apply_refuses_to_overwrite_its_own_source(smoother, source, tmp_path):
    """f16d111: exit 0; the input store deleted before it was read, and replaced by the output."""
    victim = tmp_path / "victim.zarr"
    shutil.copytree(source, victim)
    proc = cli("apply", "--model", str(smoother), "--source", str(victim), "--out", str(victim), "--overwrite", "--no-progress")
    one_line_exit_2(proc, r"--out .*is also the --source")
    assert list(eocube.open_zarr(victim)["band"].values) == ["NDVI", "CLP", "CLM", "IS_DATA"]


def test_eocube_apply_refuses_an_output_inside_its_source(smoother, source, tmp_path):
    """f16d111: exit 0, the output store written inside the input store's folder."""
    inner = tmp_path / "src.zarr"
    shutil.copytree(source, inner)
    proc = cli("apply", "--model", str(smoother), "--source", str(inner), "--out", str(inner / "out.zarr"), "--no-progress")
    one_line_exit_2(proc, r"lies inside the --source")
    assert not (inner / "out.zarr").exists()


def test_eocube_apply_refuses_a_quicklook_that_would_replace_the_model_file(smoother, source, tmp_path):
    """f16d111: exit 0, the model file replaced by the quicklook PNG."""
    folder = tmp_path / "model"
    shutil.copytree(smoother.parent, folder)
    model = folder / smoother.name
    before = model.read_bytes()
    proc = cli("apply", "--model", str(model), "--source", str(source), "--out", str(tmp_path / "o.zarr"), "--quicklook",
               str(model), "--no-progress")
    one_line_exit_2(proc, r"quicklook.*is the file")
    assert model.read_bytes() == before and not (tmp_path / "o.zarr").exists()


def test_eocube_gapfill_refuses_to_overwrite_its_own_source(source, tmp_path):
    """f16d111: exit 0; the input deleted first, the 'filled' store all NaN ('100 % never observed')."""
    victim = tmp_path / "victim.zarr"
    shutil.copytree(source, victim)
    before = eocube.open_zarr(victim).compute()
    proc = cli("gapfill", "--source", str(victim), "--out", str(victim), "--overwrite", "--no-progress")
    one_line_exit_2(proc, r"is the store the cube reads")
    assert same_values(eocube.open_zarr(victim), before)


def test_eocube_apply_on_a_source_without_dates_is_one_line(smoother, tmp_path):
    """f16d111: exit 1 and a traceback ending 'ValueError: NaTType does not support strftime'."""
    from eocube.datasets import sentinel2_sample

    empty = tmp_path / "nodates.zarr"
    eocube.to_zarr(sentinel2_sample().isel(time=slice(0, 0)), empty, progress=False)
    proc = cli("apply", "--model", str(smoother), "--source", str(empty), "--out", str(tmp_path / "o.zarr"), "--no-progress")
    one_line_exit_2(proc, r"no dates")


def test_eocube_gapfill_on_a_source_without_dates_is_one_line(tmp_path):
    """f16d111: exit 1 and a traceback ending 'ValueError: NaTType does not support strftime'."""
    from eocube.datasets import sentinel2_sample

    empty = tmp_path / "nodates.zarr"
    eocube.to_zarr(sentinel2_sample().isel(time=slice(0, 0)), empty, progress=False)
    proc = cli("gapfill", "--source", str(empty), "--out", str(tmp_path / "o.zarr"), "--no-progress")
    one_line_exit_2(proc, r"no dates")
    assert not (tmp_path / "o.zarr").exists()


# ============================================================================ to_zarr / open_zarr arguments


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("empty", ["time", "band"])
def test_a_cube_without_dates_or_bands_round_trips(empty, zarr_format, tmp_path):
    """xarray writes empty arrays, so does eocube: metadata and coordinates, no chunk. f16d111: format 3 raised a
    ZeroDivisionError (layout of a 0-chunk); during issue 21 format 2 failed with '... not stored as written'."""
    cube = small(t=0, time=[]) if empty == "time" else small(b=0, band=[])
    path = tmp_path / "x.zarr"
    report = eocube.to_zarr(cube, path, zarr_format=zarr_format, progress=False)
    assert report.chunks_total == 0 and "empty cube" in str(report)
    back = eocube.open_zarr(path)
    assert back.shape == cube.shape and back.dtype == cube.dtype
    assert list(back["band"].values) == list(cube["band"].values)
    assert back["time"].dtype.kind == "M" and back.rio.crs == cube.rio.crs
    again = eocube.to_zarr(cube, path, zarr_format=zarr_format, progress=False)  # a rerun: nothing to do
    assert again.chunks_written == 0


@pytest.mark.timeout(60)
def test_to_zarr_refuses_a_declared_cube_of_petabytes_before_allocating(tmp_path):
    """f16d111: numpy MemoryError 'Unable to allocate 71.1 GiB ... data type object' from dask's rechunk."""
    huge = xr.DataArray(da.zeros((1000, 10, 10**6, 10**6), chunks=(1, 1, 1024, 1024), dtype="float32"),
                        dims=("time", "band", "y", "x"),
                        coords={"time": pd.date_range("2000-01-01", periods=1000), "band": [f"b{i}" for i in range(10)],
                                "y": np.arange(10**6)[::-1] * 10.0 + 5, "x": np.arange(10**6) * 10.0 + 5})
    huge = huge.rio.write_crs("EPSG:32633")
    with pytest.raises(EOCubeError, match=r"PiB .*9,545,290,000 dask chunks, more than 2,000,000.*larger chunks"):
        eocube.to_zarr(huge, tmp_path / "huge.zarr", progress=False)
    assert not (tmp_path / "huge.zarr").exists()


@pytest.mark.parametrize("variable, pattern", [("a/b", r"variable='a/b'.*nested"), ("time", r"coordinates"),
                                               (".hidden", r"metadata keys"), ("spatial_ref", r"coordinates")])
def test_to_zarr_refuses_a_variable_name_it_cannot_store_naming_it(variable, pattern, tmp_path):
    """f16d111: 'a/b' -> "array 'a/b' is missing; check the disk"; 'time' -> xarray's ValueError; '.hidden' was
    written as a hidden array."""
    from eocube.errors import StoreOptionError

    with pytest.raises(StoreOptionError, match=pattern) as info:
        eocube.to_zarr(small(), tmp_path / "x.zarr", variable=variable, progress=False)
    assert "check the disk" not in str(info.value)
    assert not (tmp_path / "x.zarr").exists()
    with pytest.raises(StoreOptionError, match=r"the cube's name .*pass variable="):  # the default variable=
        eocube.to_zarr(small().rename(variable), tmp_path / "x.zarr", progress=False)


@pytest.mark.parametrize("value", [pd.Timestamp("2020-01-01"), object(), {1, 2}])
def test_to_zarr_names_an_attribute_it_cannot_store(value, tmp_path):
    """f16d111: TypeError 'Invalid attribute in Dataset.attrs.' (xarray), naming neither attribute nor remedy;
    check_target (called before a cluster starts) let it through."""
    cube = small()
    cube.attrs["acquired"] = value
    with pytest.raises(EOCubeError, match=r"cube.attrs\['acquired'\] holds a .*isoformat"):
        check_target(cube, tmp_path / "x.zarr")
    with pytest.raises(EOCubeError, match=r"acquired"):
        eocube.to_zarr(cube, tmp_path / "x.zarr", progress=False)


def test_to_zarr_still_stores_attributes_json_holds(tmp_path):
    cube = small()
    cube.attrs.update(note="ok", values=np.arange(3), nested={"a": [1, 2.5]}, missing=float("nan"), flag=True)
    eocube.to_zarr(cube, tmp_path / "x.zarr", progress=False)
    back = eocube.open_zarr(tmp_path / "x.zarr")
    assert back.attrs["nested"] == {"a": [1, 2.5]} and list(back.attrs["values"]) == [0, 1, 2]


@pytest.mark.parametrize("kwargs, name", [({"memory_budget": "4 parsecs"}, "memory_budget"),
                                          ({"memory_budget": -1}, "memory_budget"),
                                          ({"compression_level": 99}, "compression_level"),
                                          ({"compression_level": 2.5}, "compression_level"),
                                          ({"chunks": {"y": 2.5}}, "chunks"), ({"chunks": {"y": 0}}, "chunks"),
                                          ({"zarr_format": 4}, "zarr_format")])
def test_to_zarr_refuses_meaningless_options(kwargs, name, tmp_path):
    """f16d111: accepted silently (format 2 ignores memory_budget; zstd clamps level 99; chunks y=2.5 taken as 2),
    or a builtins.ValueError (chunks y=0, zarr_format=4), not an eocube error."""
    with pytest.raises(EOCubeError, match=name):
        eocube.to_zarr(small(), tmp_path / "x.zarr", progress=False, **kwargs)
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.parametrize("call, pattern", [
    (lambda p: eocube.to_zarr(small(), None, progress=False), r"store=None: give the store's local path"),
    (lambda p: eocube.open_zarr(123), r"store=123"),
    (lambda p: eocube.to_zarr(small(), p, provenance="job 7", progress=False), r"provenance='job 7': give a dict"),
    (lambda p: eocube.to_zarr(small(), "s3://b/x.zarr", storage_options="key", progress=False),
     r"storage_options=str: give a dict"),
])
def test_a_store_argument_of_the_wrong_type_is_named(call, pattern, tmp_path):
    """f16d111: Python's TypeError 'expected str, bytes or os.PathLike object, not NoneType' and ValueError
    'dictionary update sequence element #0 has length 1', naming no argument."""
    with pytest.raises(EOCubeError, match=pattern):
        call(tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.parametrize("chunks, pattern", [({"y": 0}, r"chunks\['y'\]=0"), ({"z": 3}, r"chunks names the dim 'z'"),
                                             ({"x": 2.5}, r"chunks\['x'\]=2.5")])
def test_open_zarr_refuses_chunks_it_cannot_take_naming_them(chunks, pattern, tmp_path):
    """f16d111: {'y': 0} -> ZeroDivisionError from dask; {'z': 3} -> xarray's ValueError."""
    eocube.to_zarr(small(), tmp_path / "ok.zarr", progress=False)
    with pytest.raises(EOCubeError, match=pattern):
        eocube.open_zarr(tmp_path / "ok.zarr", chunks=chunks)
    assert eocube.open_zarr(tmp_path / "ok.zarr", chunks={"y": 8, "x": -1}).chunks[2] == (8, 8)


# ============================================================================ apply_model


def _net():
    import torch

    torch.manual_seed(0)
    return torch.nn.Conv2d(2, 1, 3, padding=1)


def test_apply_model_on_a_cube_without_dates_is_one_clear_error():
    """f16d111: IndexError 'index -1 is out of bounds for axis 0 with size 0' in models/_engine.py."""
    from eocube.models import SourceError

    with pytest.raises(SourceError, match=r"has no dates"):
        eocube.apply_model(small(t=0, time=[]), _net(), layout="band")


@pytest.mark.parametrize("chunks, pattern", [({"y": 0}, r"chunks=.*y must be a whole number"),
                                             ({"z": 64}, r"unknown dim"), ({"x": -3}, r"x must be")])
def test_apply_model_chunks_it_cannot_take_are_refused_naming_chunks(chunks, pattern):
    """f16d111: {'y': 0} -> ZeroDivisionError from dask (normalize_chunks)."""
    from eocube.models import OptionError

    with pytest.raises(OptionError, match=pattern):
        eocube.apply_model(small(), _net(), layout="band", chunks=chunks)


@pytest.mark.parametrize("name, value", [("tile_size", 0), ("batch_size", 0), ("tile_size", -8), ("tile_size", 2.5)])
def test_apply_model_names_the_run_option_that_is_not_positive(name, value):
    """f16d111: builtins.ValueError 'batch_size, tile_size and size_multiple must be positive integers'
    (which one?); tile_size=2.5 was accepted."""
    with pytest.raises(EOCubeError, match=rf"{name}={value}: give a whole number >= 1"):
        eocube.apply_model(small(), _net(), layout="band", **{name: value})


@pytest.mark.parametrize("kwargs, pattern", [
    ({"out_dtype": object}, r"out_dtype=.*numeric dtype"),       # f16d111: an object-dtype output, nodata -1
    ({"out_dtype": "floaty"}, r"out_dtype='floaty' is not a numpy dtype"),  # numpy TypeError
    ({"out_dtype": "uint8", "out_nodata": -1}, r"out_nodata=-1 cannot be held by out_dtype uint8"),  # OverflowError
    ({"out_nodata": "x"}, r"out_nodata='x' is not a number"),    # ValueError from float()
    ({"scale": "abc"}, r"scale='abc' is not a ratio"),           # ValueError 'Invalid literal for Fraction'
    ({"scale": 0}, r"must be > 0"),                              # "the spec declares x0: fix the card's scale"
    ({"torch_threads": -1}, r"torch_threads=-1"),                # RuntimeError from torch in the first task
    ({"fill_value": "x"}, r"fill_value='x'"),                    # ValueError from float()
    ({"postprocess": "max"}, r"postprocess must be"),            # builtins.ValueError, not an eocube error
    ({"autocast": "int8"}, r"autocast must be"),
])
def test_apply_model_names_an_output_or_run_option_it_cannot_take(kwargs, pattern):
    with pytest.raises(EOCubeError, match=pattern):
        eocube.apply_model(small(), _net(), layout="band", **kwargs).compute()


def test_apply_model_refuses_complex_input():
    """f16d111: the imaginary part dropped; only numpy's ComplexWarning said so, and the output was written."""
    from eocube.models import SourceError

    with pytest.raises(SourceError, match=r"complex values \(complex64\).*cube.real"):
        eocube.apply_model(small().astype("complex64"), _net(), layout="band")


# ============================================================================ plan_chunks


@pytest.mark.parametrize("dtype", [object, "U4", "datetime64[ns]"])
def test_plan_chunks_refuses_a_dtype_that_is_not_numeric(dtype):
    """f16d111: object -> planned as 8 bytes per pixel, silently."""
    from eocube.plan import ChunkPlanError

    with pytest.raises(ChunkPlanError, match=r"dtype=.*not a numeric type"):
        eocube.plan_chunks((50, 10, 1000, 1000), dtype)
    assert eocube.plan_chunks((50, 10, 1000, 1000), "complex64") is not None


@pytest.mark.parametrize("kwargs, name", [
    ({"model_bands": -3}, "model_bands"),        # f16d111: plan with band=-3, tasks write=-3, files=-1
    ({"out_bands": -1}, "out_bands"),            # tasks write=-1, files=5
    ({"model_factor": -1}, "model_factor"),      # model blocks of the whole grid
    ({"model_factor": 0}, "model_factor"),
    ({"load_itemsize": -4}, "load_itemsize"),    # load task memory 0
    ({"min_side": 0}, "min_side"),               # ignored
    ({"min_side": -64}, "min_side"),
    ({"threads_per_worker": -2}, "threads_per_worker"),  # taken as 1
    ({"worker_memory": "-4GB"}, "worker_memory"),        # "a worker thread's -3815 MiB ... time=-7500000"
    ({"shard_bytes": 0}, "shard_bytes"),         # taken as the default 512 MiB
    ({"dtype": "floaty"}, "dtype"),              # numpy TypeError
])
def test_plan_chunks_refuses_meaningless_arguments_naming_them(kwargs, name):
    """Regression tests of item 7's argument checks for the audit's cases (all accepted or a traceback on f16d111)."""
    from eocube.plan import ChunkPlanError

    with pytest.raises(ChunkPlanError, match=name):
        eocube.plan_chunks((50, 10, 1000, 1000), **kwargs)


def test_plan_chunks_refuses_a_fractional_shape():
    """f16d111: (50.7, 10, 1000.9, 1000) planned as (50, 10, 1000, 1000), silently."""
    from eocube.plan import ChunkPlanError

    with pytest.raises(ChunkPlanError, match=r"shape"):
        eocube.plan_chunks((50.7, 10, 1000.9, 1000))


@pytest.mark.parametrize("target, other, expected", [
    ("s3://b/a.zarr", "s3://b/a.zarr/", "same"), ("s3a://b/a.zarr", "s3://b/a.zarr", "same"),
    ("s3://b/a.zarr/o.zarr", "s3://b/a.zarr", "inside"), ("s3://b", "s3://b/a.zarr", "contains"),
    ("s3://b/a.zarr2", "s3://b/a.zarr", None), ("gs://b/a.zarr", "s3://b/a.zarr", None),
    ("/data/a.zarr", "/data/a.zarr/../a.zarr", "same"), ("/data/a.zarr.out", "/data/a.zarr", None),
])
def test_a_target_and_an_input_store_overlap_by_path_components(target, other, expected):
    from eocube.io._overlap import relation
    from eocube.io._stores import resolve

    assert relation(resolve(target), resolve(other)) == expected
