"""Issue 21, items 3 and 4: an input's identity is its content, and a resume checks what it skips.

* a derived store is reused only while its input stores hold what they held: a chunk of an input
  rewritten in place (an xarray region write into a plain Zarr store, a zarr write into an eocube
  store) makes the rerun refuse, naming the input; an identical rerun is "already complete";
* a resume after a kill recomputes the finished units (shards or chunks) deleted or damaged since,
  and says so; an all-nodata unit, which zarr stores no object for, is not taken for a deleted one;
* a complete store some of whose units were deleted is never read as complete: open_zarr refuses
  it, and rerunning the command that wrote it recomputes only those units.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import dask
import numpy as np
import pytest
import xarray as xr
import zarr

import eocube
from eocube.errors import CorruptChunkError, ResumeMismatchError
from eocube.io import _ledger

from ._kill import Killed, doubled, kill_after
from .conftest import object_keys, s3_client

CHUNKS = {"time": -1, "band": 1, "y": 8, "x": 10}  # 16 x 20 cube: 2 bands x 2 x 2 = 8 units


def plain_store(path, cube: xr.DataArray) -> None:
    """``cube`` written by xarray alone: a Zarr store eocube did not write (no write record)."""
    ds = cube.to_dataset(name="refl")
    ds["band"] = ds["band"].astype(str)
    ds.to_zarr(path, zarr_format=2, mode="w")


def region_write(path, variable: str, value: float) -> None:
    """An xarray region write: the first 8 x 10 pixels of every time and band set to ``value``."""
    ds = xr.open_zarr(path, consolidated=False)
    patch = ds[[variable]].isel(y=slice(0, 8), x=slice(0, 10)).load()
    patch[variable][:] = value
    patch = patch.drop_vars(list(patch.coords))
    patch.to_zarr(path, region={"time": slice(None), "band": slice(None), "y": slice(0, 8), "x": slice(0, 10)})


def derived(store) -> xr.DataArray:
    """A computation reading the input store (the same dask name whenever the input is the same)."""
    return eocube.open_zarr(store) * 2


# ---------------------------------------------------------------------------------------------- item 3


def test_a_region_write_into_a_plain_zarr_input_makes_the_rerun_refuse(tmp_path, make_cube):
    source = tmp_path / "plain.zarr"
    plain_store(source, make_cube(h=16, w=20))
    out = tmp_path / "out.zarr"
    eocube.to_zarr(derived(source), out, chunks=None, progress=False)
    again = eocube.to_zarr(derived(source), out, progress=False)  # nothing changed: reused
    assert "already complete" in str(again) and again.chunks_written == 0
    region_write(source, "refl", 7.0)  # the input updated in place between two runs
    with pytest.raises(ResumeMismatchError, match=r"input data: the content of .*plain\.zarr \[refl\] changed.*overwrite"):
        eocube.to_zarr(derived(source), out, progress=False)
    report = eocube.to_zarr(derived(source), out, mode="overwrite", progress=False)
    assert report.chunks_written == report.chunks_total
    back = eocube.open_zarr(out)
    assert float(back.isel(y=slice(0, 8), x=slice(0, 10)).max()) == 14.0  # the new input, doubled


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_an_in_place_edit_of_an_eocube_input_makes_the_rerun_refuse(tmp_path, make_cube, zarr_format):
    source = tmp_path / "in.zarr"
    eocube.to_zarr(make_cube(h=16, w=20, chunks=CHUNKS), source, zarr_format=zarr_format, progress=False)
    out = tmp_path / "out.zarr"
    eocube.to_zarr(derived(source), out, progress=False)
    assert eocube.to_zarr(derived(source), out, progress=False).chunks_written == 0
    array = zarr.open_array(str(source), path="synthetic", mode="r+")  # the complete input store edited
    array[:, :, 8:16, 10:20] = np.float32(3.0)  # one unit per band, rewritten whole
    with pytest.raises(ResumeMismatchError, match=r"content of .*in\.zarr \[synthetic\] changed since it was written"):
        eocube.to_zarr(derived(source), out, progress=False)


def test_the_content_token_is_the_same_in_a_new_process(tmp_path, make_cube):
    plain, ours = tmp_path / "plain.zarr", tmp_path / "ours.zarr"
    plain_store(plain, make_cube(h=16, w=20))
    eocube.to_zarr(make_cube(h=16, w=20, chunks=CHUNKS), ours, progress=False)
    script = textwrap.dedent(
        """
        import sys
        import eocube
        print(" ".join(eocube.open_zarr(p).data.name for p in sys.argv[1:]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script, str(plain), str(ours)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    names = proc.stdout.split()
    assert names == [eocube.open_zarr(plain).data.name, eocube.open_zarr(ours).data.name]
    region_write(plain, "refl", 1.0)
    assert eocube.open_zarr(plain).data.name != names[0]


# ---------------------------------------------------------------------------------------------- item 4


def nodata_cube(make_cube) -> xr.DataArray:
    """8 units, the 4 with x block 0 all nodata (zarr stores no object for them)."""
    cube = make_cube(h=16, w=20, nodata=np.nan)
    values = cube.values.copy()
    values[..., :10] = np.nan
    return cube.copy(data=values).chunk(CHUNKS)


def killed_write(cube: xr.DataArray, store, after: int, **kwargs) -> None:
    with dask.config.set(scheduler="synchronous"), kill_after(after), pytest.raises(Killed):
        eocube.to_zarr(cube, store, progress=False, **kwargs)


def marked(names: list[str]) -> list[tuple[int, ...]]:
    """Unit indices of the ledger's markers (``0.1.0.1``, followed by what was stored)."""
    return sorted({tuple(int(p) for p in name.split("_")[0].split(".")) for name in names if not name.startswith(".")})


def local_markers(store) -> list[tuple[int, ...]]:
    return marked([p.name for p in (store / _ledger.LEDGER_DIR / "synthetic").iterdir()])


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_a_resume_recomputes_finished_units_deleted_or_damaged_since(tmp_path, make_cube, caplog, assert_same_cube,
                                                                     zarr_format):
    cube = doubled(nodata_cube(make_cube))
    kwargs = {"zarr_format": zarr_format, "provenance": {"job": "kill"}}
    if zarr_format == 3:
        kwargs["chunks"] = {"y": 4, "x": 5}  # 4 inner chunks per shard
    eocube.to_zarr(cube, tmp_path / "ref.zarr", progress=False, **kwargs)
    store = tmp_path / "k.zarr"
    killed_write(cube, store, 6, **kwargs)
    done = local_markers(store)
    array = zarr.open_array(str(store), path="synthetic", mode="r")
    files = [store / "synthetic" / array.metadata.encode_chunk_key(i) for i in done]
    stored = [f for f in files if f.exists()]
    assert len(done) == 6 and 2 <= len(stored) < 6  # some finished units are all nodata: zarr stored no object
    files = stored[:2]
    files[0].unlink()  # a finished unit deleted before the rerun
    files[1].write_bytes(files[1].read_bytes()[:-7])  # another truncated
    unit = "shards" if zarr_format == 3 else "chunks"
    with caplog.at_level(logging.WARNING, logger="eocube"):
        report = eocube.to_zarr(cube, store, progress=False, **kwargs)
    assert (report.chunks_written, report.chunks_skipped) == (2 + 2, 6 - 2)
    assert f"2 marked {unit} were missing or damaged and were recomputed" in report.note
    assert "missing" in report.note and "bytes instead of" in report.note
    assert f"2 marked {unit} were missing or damaged" in caplog.text
    assert_same_cube(eocube.open_zarr(tmp_path / "ref.zarr"), eocube.open_zarr(store))


def test_a_unit_changed_after_its_marker_with_the_same_size_is_caught_by_its_checksum(tmp_path, make_cube):
    cube = doubled(make_cube(h=16, w=20, chunks=CHUNKS))
    store = tmp_path / "k.zarr"
    killed_write(cube, store, 3, zarr_format=2)
    index = local_markers(store)[0]
    array = zarr.open_array(str(store), path="synthetic", mode="r")
    path = store / "synthetic" / array.metadata.encode_chunk_key(index)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # same size, other bytes, written after the marker
    path.write_bytes(bytes(data))
    report = eocube.to_zarr(cube, store, zarr_format=2, progress=False)
    assert report.chunks_written == 8 - 3 + 1 and "checksum" in report.note
    np.testing.assert_array_equal(eocube.open_zarr(store).values, cube.values)


def test_a_complete_store_with_a_deleted_unit_is_refused_by_open_zarr_and_repaired_by_a_rerun(
        tmp_path, make_cube, assert_same_cube, caplog):
    cube = doubled(nodata_cube(make_cube))
    store = tmp_path / "c.zarr"
    eocube.to_zarr(cube, store, zarr_format=3, chunks={"y": 4, "x": 5}, progress=False)
    again = eocube.to_zarr(cube, store, progress=False)
    assert "already complete" in str(again)
    shard = next(p for p in sorted((store / "synthetic" / "c").rglob("*")) if p.is_file())
    shard.unlink()
    key = shard.relative_to(store / "synthetic").as_posix()
    with pytest.raises(CorruptChunkError,
                       match=rf"1 of 4 objects \({key}\) of 'synthetic' that its writer stored are missing"
                             r".*allow_incomplete=True"):
        eocube.open_zarr(store)
    with caplog.at_level(logging.WARNING, logger="eocube"):
        holes = eocube.open_zarr(store, allow_incomplete=True)  # looked at anyway: said
    assert "are missing" in caplog.text and not np.array_equal(holes.values, cube.values)
    report = eocube.to_zarr(cube, store, progress=False)  # the same command again: only the deleted unit
    assert (report.chunks_written, report.chunks_skipped) == (1, 7)
    assert "1 marked shards were missing or damaged and were recomputed" in report.note
    assert_same_cube(cube, eocube.open_zarr(store))
    assert "already complete" in str(eocube.to_zarr(cube, store, progress=False))


# ---------------------------------------------------------------------------------------------- S3


def test_on_s3_a_resume_recomputes_a_deleted_shard_and_an_edited_input_is_refused(moto, s3, make_cube,
                                                                                  assert_same_cube):
    cube = doubled(nodata_cube(make_cube))
    kwargs = {"chunks": {"y": 4, "x": 5}, "provenance": {"job": "s3"}}
    ref, store = f"s3://{s3}/ref.zarr", f"s3://{s3}/k.zarr"
    eocube.to_zarr(cube, ref, progress=False, **kwargs)
    killed_write(cube, store, 6, **kwargs)
    keys = object_keys(moto, s3, "k.zarr/")
    done = marked([k.rsplit("/", 1)[-1] for k in keys if "/.eocube-progress/" in k])
    array = zarr.open_array(eocube.io._stores.resolve(store).zarr_store(read_only=True), path="synthetic", mode="r")
    stored = [i for i in done if f"k.zarr/synthetic/{array.metadata.encode_chunk_key(i)}" in keys]
    assert len(done) == 6 and 2 <= len(stored) < 6
    key = f"k.zarr/synthetic/{array.metadata.encode_chunk_key(stored[0])}"
    client = s3_client(moto)
    client.delete_object(Bucket=s3, Key=key)  # a finished shard deleted before the rerun
    report = eocube.to_zarr(cube, store, progress=False, **kwargs)
    assert (report.chunks_written, report.chunks_skipped) == (3, 5)
    assert "1 marked shards were missing or damaged and were recomputed" in report.note
    assert_same_cube(eocube.open_zarr(ref), eocube.open_zarr(store))
    # the finished store as an input: a shard rewritten in place is seen (ETag), a derived output refuses
    out = f"s3://{s3}/out.zarr"
    eocube.to_zarr(derived(store), out, progress=False)
    assert eocube.to_zarr(derived(store), out, progress=False).chunks_written == 0
    body = client.get_object(Bucket=s3, Key=key)["Body"].read()
    other = f"k.zarr/synthetic/{array.metadata.encode_chunk_key(stored[1])}"
    client.put_object(Bucket=s3, Key=other, Body=body)  # another shard's bytes in its place
    with pytest.raises(ResumeMismatchError, match=r"content of s3://.*k\.zarr \[synthetic\] changed"):
        eocube.to_zarr(derived(store), out, progress=False)
