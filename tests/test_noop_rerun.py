"""A rerun into an output that is already complete ends without heavy imports (issue 25 item 3).

Users resubmit finished jobs: ``eocube gapfill`` and ``eocube apply`` run again into their
complete output must say "already complete", exit 0, leave the store as it was, and import
neither ``distributed`` (no cluster check through it), numba (no kernel called to infer a
block's type: every ``map_blocks`` of eocube gives ``meta=``) nor torch (the model is not
loaded: the request key stamps the model file, its card and the sources, see
:mod:`eocube.io.complete`). What the rerun imports is read from ``sys.modules`` in the rerun's
own process (a wrapper that runs the CLI, then prints them); no time is asserted.

And the shortcut never hides a change: another option, an input edited in place, or a unit of
the output deleted all go through the full path (refused, or recomputed), as before.
"""

from __future__ import annotations

import ast
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

HEAVY = ("distributed", "numba", "torch")

WRAPPER = f"""
import json, sys
sys.argv = ["eocube", *sys.argv[1:]]
from eocube.cli import main
try:
    main()
finally:
    print("HEAVY=" + json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
"""Runs the CLI, then prints which heavy modules this process imported."""


def eocube(*args: str | os.PathLike[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eocube", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600, check=False)


def rerun(*args: str | os.PathLike[str], cwd: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the CLI through :data:`WRAPPER`; also return the heavy modules it imported."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600, check=False)
    line = [x for x in proc.stdout.splitlines() if x.startswith("HEAVY=")]
    assert line, proc.stdout + proc.stderr
    return proc, json.loads(line[-1].removeprefix("HEAVY="))


def snapshot(store: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file of a store: size, mtime and content."""
    return {str(p.relative_to(store)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(store.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_gapfill_rerun_into_a_complete_output_imports_no_cluster_kernels_or_torch(tmp_path):
    out = tmp_path / "filled.zarr"
    first = eocube("gapfill", "--out", out, "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "chunks computed" in first.stdout
    before = snapshot(out)

    again, heavy = rerun("gapfill", "--out", out, "--no-progress", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stdout and "made by the same computation" in again.stdout, again.stdout
    assert "no cluster started" in again.stdout
    assert heavy == [], f"a complete rerun imported {heavy}"
    assert snapshot(out) == before

    # another option: not the same request, so the full path decides (and refuses another computation)
    other, _ = rerun("gapfill", "--out", out, "--no-progress", "--dilate", "1", cwd=tmp_path)
    assert other.returncode == 2, other.stdout + other.stderr
    assert "different computation" in other.stderr
    assert snapshot(out) == before


@pytest.mark.slow
def test_an_input_edited_in_place_is_not_taken_for_complete(tmp_path):
    import shutil

    from eocube.datasets import SAMPLES

    source = tmp_path / "source.zarr"
    shutil.copytree(SAMPLES["sentinel2"].path, source)
    out = tmp_path / "filled.zarr"
    args = ("gapfill", "--source", source, "--bands", "NDVI", "--cloud-band", "CLM", "--out", out, "--no-progress")
    assert eocube(*args, cwd=tmp_path).returncode == 0
    assert "already complete" in rerun(*args, cwd=tmp_path)[0].stdout

    chunk = source / "sentinel2" / "0.0.0.0"  # a chunk of the input
    chunk.write_bytes(chunk.read_bytes())  # the same bytes, written again: a new mtime
    edited, _ = rerun(*args, cwd=tmp_path)
    assert edited.returncode == 2, edited.stdout + edited.stderr
    assert "different computation" in edited.stderr and "changed since it was written" in edited.stderr


@pytest.mark.slow
def test_a_deleted_output_chunk_is_recomputed_not_skipped(tmp_path):
    out = tmp_path / "filled.zarr"
    args = ("gapfill", "--out", out, "--no-progress", "--tile", "64")
    assert eocube(*args, cwd=tmp_path).returncode == 0
    chunk = next(p for p in sorted((out / "sentinel2").iterdir()) if p.name[0].isdigit())
    chunk.unlink()
    again, _ = rerun(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already complete" not in again.stdout
    assert "1 of 4 chunks computed, 3 already done" in again.stdout, again.stdout
    assert chunk.exists()


@pytest.mark.slow
def test_apply_rerun_into_a_complete_output_does_not_import_torch(tmp_path):
    torch = pytest.importorskip("torch")
    import warnings

    from eocube.models import ModelSpec, OutputSpec, SourceSpec
    from eocube.models.card import write_card

    model = tmp_path / "net.pt"
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13
        torch.jit.trace(torch.nn.Conv2d(1, 2, 3, padding=1).eval(), torch.rand(2, 1, 8, 8)).save(str(model))
    torch.jit.load(str(model)).save(str(model))  # as saved from a loaded model (below: the same size)
    card = write_card(ModelSpec(sources=(SourceSpec(name="s2", bands=("NDVI",)),), output=OutputSpec(bands=("a", "b")),
                                name="noop"), model)
    out = tmp_path / "applied.zarr"
    args = ("apply", "--model", model, "--source", "s2=sentinel2", "--out", out, "--no-progress")
    first = eocube(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = snapshot(out)

    again, heavy = rerun(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stdout and "no cluster started" in again.stdout, again.stdout
    assert heavy == [], f"a complete rerun imported {heavy}"
    assert snapshot(out) == before

    # the card named with --card: another request; the full path loads the model and finds the same computation
    named, heavy = rerun(*args, "--card", card, cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    assert "already complete" in named.stdout and "torch" in heavy

    # other weights in a file of the same size and mtime: the model's content is checked, not its stamp
    stat = model.stat()
    _flip_weight_byte(model)  # torch's own re-save may change the archive's size: edit the bytes in place
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert model.stat().st_size == stat.st_size and model.stat().st_mtime_ns == stat.st_mtime_ns
    other, _ = rerun(*args, cwd=tmp_path)
    assert other.returncode == 2, other.stdout + other.stderr
    assert "different computation" in other.stderr
    assert snapshot(out) == before


def _flip_weight_byte(path: Path) -> None:
    """Change one byte of the first weight tensor inside a stored ZIP archive in place, CRCs updated.

    The file keeps its size (a torch re-save may not: the archive's padding depends on its records),
    and stays a valid archive whose weights differ.
    """
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if "/data/" in i.filename and i.file_size >= 4)
        data = bytearray(zf.read(info))
    assert info.compress_type == zipfile.ZIP_STORED
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    assert raw[start:start + len(data)] == data
    data[0] ^= 0x40
    raw[start:start + len(data)] = data
    crc = zlib.crc32(data)
    struct.pack_into("<I", raw, info.header_offset + 14, crc)
    central = raw.find(b"PK\x01\x02")
    while central != -1:
        n, e, c = struct.unpack_from("<HHH", raw, central + 28)
        if raw[central + 46:central + 46 + n].decode() == info.filename:
            struct.pack_into("<I", raw, central + 16, crc)
            break
        central = raw.find(b"PK\x01\x02", central + 46 + n + e + c)
    else:
        raise AssertionError(f"no central directory entry for {info.filename}")
    if info.flag_bits & 0x08:  # a data descriptor after the data repeats the CRC
        after = start + len(data)
        struct.pack_into("<I", raw, after + (4 if raw[after:after + 4] == b"PK\x07\x08" else 0), crc)
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None


SAME_WORK_IN_PYTHON = """
import json, sys
import dask
import eocube
from eocube.datasets import open_sample
from eocube.fill import fill_gaps
from eocube.masks import clear_from_cloud_band

# dask's own rechunk imports distributed to look for a client (p2p rechunking) unless told the method
dask.config.set({"array.rechunk.method": "tasks"})
cube = open_sample("sentinel2", chunks={"time": -1, "band": 1, "y": 64, "x": 64})
clear = clear_from_cloud_band(cube, "CLM", data_band="IS_DATA")
filled = fill_gaps(cube.sel(band=["NDVI"]), clear, method=sys.argv[2])
print(eocube.to_zarr(filled, sys.argv[1], progress=False))
print("HEAVY=" + json.dumps(sorted(m for m in ("distributed", "numba", "torch") if m in sys.modules)))
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["linear", "whittaker"])
def test_python_rerun_builds_the_graph_without_kernels_or_distributed(tmp_path, method):
    out = tmp_path / "filled.zarr"
    first = subprocess.run([sys.executable, "-c", SAME_WORK_IN_PYTHON, str(out), method], capture_output=True,
                           text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stderr
    again = subprocess.run([sys.executable, "-c", SAME_WORK_IN_PYTHON, str(out), method], capture_output=True,
                           text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stdout
    assert json.loads(again.stdout.splitlines()[-1].removeprefix("HEAVY=")) == []


DASK_BUILDERS = {"map_blocks", "blockwise", "map_overlap"}


def test_every_dask_block_function_eocube_calls_is_given_meta():
    """Without ``meta=`` dask calls the function on empty blocks to infer the output type: a
    kernel, numba and its compilation at graph build time."""
    import eocube

    package = Path(eocube.__file__).parent
    missing = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in DASK_BUILDERS
                    and not any(k.arg == "meta" for k in node.keywords)):
                missing.append(f"{path.relative_to(package.parent)}:{node.lineno} {node.func.attr}")
    assert not missing, f"calls without meta=: {missing}"


@pytest.mark.parametrize("zarr_format, shards", [(2, None), (3, None), (3, {"time": 6, "band": 1, "y": 8, "x": 10})])
def test_already_complete_reads_the_record_and_the_units_of_either_format(tmp_path, zarr_format, shards):
    import eocube
    from eocube.io.complete import already_complete
    from tests.conftest import synthetic_cube

    cube = synthetic_cube(chunks={"time": -1, "band": 1, "y": 4, "x": 5})
    store = tmp_path / "cube.zarr"
    kwargs = {"chunks": {"time": -1, "band": 1, "y": 4, "x": 5}, "shards": shards} if shards else {}
    written = eocube.to_zarr(cube, store, zarr_format=zarr_format, request="key-a", progress=False, **kwargs)
    report = already_complete(store, "key-a")
    assert report is not None and report.chunks_total == written.chunks_total and report.chunks_written == 0
    assert "already complete" in str(report) and report.zarr_format == zarr_format
    assert already_complete(store, "key-b") is None  # another request: the full path decides
    assert already_complete(tmp_path / "nothing.zarr", "key-a") is None
    unit = next(p for p in sorted((store / "synthetic").rglob("*")) if p.is_file() and p.name[0] in "0123456789c"
                and p.name not in ("zarr.json",))
    unit.unlink()
    assert already_complete(store, "key-a") is None  # a unit deleted: recomputed by the full path, not skipped


def test_the_chunk_keys_read_from_the_metadata_are_zarrs(tmp_path):
    import itertools

    import zarr

    from eocube.io.complete import chunk_key_encoder

    layouts = [(2, None), (2, {"name": "v2", "separator": "/"}), (3, None), (3, {"name": "v2", "separator": "."}),
               (3, {"name": "default", "separator": "."})]
    for i, (fmt, encoding) in enumerate(layouts):
        extra = {"chunk_key_encoding": encoding} if encoding else {}
        array = zarr.create_array(str(tmp_path / f"a{i}"), shape=(4, 3, 5, 5), chunks=(2, 1, 2, 2), dtype="f4",
                                  zarr_format=fmt, **extra)
        meta = json.loads((tmp_path / f"a{i}" / (".zarray" if fmt == 2 else "zarr.json")).read_text())
        encode = chunk_key_encoder(meta)
        for index in itertools.product(range(2), range(3), range(3), range(3)):
            assert encode(index) == array.metadata.encode_chunk_key(index), (fmt, encoding, index)
