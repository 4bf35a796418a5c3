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
import subprocess
import sys
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
    card = write_card(ModelSpec(sources=(SourceSpec(name="s2", bands=("NDVI",)),), output=OutputSpec(bands=("a", "b")),
                                name="noop"), model)
    out = tmp_path / "applied.zarr"
    args = ("apply", model, "--source", "s2=sentinel2", "--out", out, "--no-progress")
    first = eocube(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = snapshot(out)

    again, heavy = rerun(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stdout and "no cluster started" in again.stdout, again.stdout
    assert heavy == [], f"a complete rerun imported {heavy}"
    assert snapshot(out) == before

    # the card edited: not the same request; the full path loads the model and decides
    card.write_text(card.read_text())
    edited, heavy = rerun(*args, cwd=tmp_path)
    assert edited.returncode == 0, edited.stderr
    assert "already complete" in edited.stdout and "torch" in heavy


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
