"""Issue 16: the command line starts fast (lazy imports), checks inputs first, and sizes the execution to the job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

HEAVY = ("torch", "matplotlib", "numba", "pystac_client", "distributed", "rioxarray", "dask.array", "zarr")
"""Modules a quick command must not import (the ones it may need only when it works)."""


def modules_after(args: list[str]) -> tuple[int, list[str], str]:
    """Run ``eocube ARGS`` in a fresh interpreter; its exit status, the heavy modules it imported, its stderr."""
    code = textwrap.dedent(f"""
        import json, sys
        from eocube.cli import main
        try:
            main({args!r}, prog_name="eocube")
            status = 0
        except SystemExit as exc:
            status = exc.code
        print(json.dumps([status, [m for m in {HEAVY!r} if m in sys.modules]]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    status, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    return status, loaded, proc.stderr


def test_help_imports_no_command_and_nothing_heavy():
    status, loaded, _ = modules_after(["--help"])
    assert status == 0 and loaded == []


def test_a_missing_source_is_reported_without_importing_torch_or_the_kernels(tmp_path):
    status, loaded, stderr = modules_after(["gapfill", "--source", "does-not-exist.zarr", "--out",
                                            str(tmp_path / "out.zarr")])
    assert status == 2 and "no Zarr store at does-not-exist.zarr" in stderr
    assert loaded == []  # no torch, numba, matplotlib, distributed, dask.array
    assert not (tmp_path / "out.zarr").exists()


def test_a_linear_fill_imports_no_torch_and_starts_no_cluster(tmp_path):
    status, loaded, stderr = modules_after(["gapfill", "--out", str(tmp_path / "f.zarr"), "--no-progress",
                                            "--quicklook", str(tmp_path / "f.png")])
    assert status == 0, stderr
    assert "torch" not in loaded and "pystac_client" not in loaded
    assert "numba" in loaded  # the kernels did run, in this process


def test_import_eocube_is_light_and_registers_the_accessors_lazily():
    code = textwrap.dedent(f"""
        import json, sys
        import eocube
        light = [m for m in {HEAVY!r} if m in sys.modules]
        import numpy as np, xarray as xr
        a = xr.DataArray(np.zeros((1, 1, 2, 2), "float32"), dims=("time", "band", "y", "x"))
        a = a.rio.write_crs("EPSG:32633")
        print(json.dumps([light, str(a.rio.crs), hasattr(a.eocube, "gapfill")]))
    """)
    proc = subprocess.run([sys.executable, "-W", "error::Warning", "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    light, crs, accessor = json.loads(proc.stdout.strip().splitlines()[-1])
    assert light == [] and crs == "EPSG:32633" and accessor


@pytest.fixture
def no_cluster(monkeypatch):
    """Make starting a cluster fail the test."""
    import distributed

    import eocube.cluster

    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(eocube.cluster, "connect", refuse)
    monkeypatch.setattr(distributed.LocalCluster, "__init__", refuse)


def test_an_unwritable_output_is_reported_before_any_cluster_starts(tmp_path, no_cluster):
    from eocube.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(main, ["gapfill", "--out", str(blocker / "out.zarr"), "--cluster", "local"])
    assert result.exit_code == 2, result.output
    assert "cannot write --out" in result.output and "a file, not a folder" in result.output


def test_a_completed_output_ends_the_command_without_starting_a_cluster(tmp_path, monkeypatch):
    from eocube.cli import main

    out = tmp_path / "f.zarr"
    first = CliRunner().invoke(main, ["gapfill", "--out", str(out), "--no-progress", "--tile", "64"])
    assert first.exit_code == 0, first.output
    assert "dask threads in this process" in first.output and "dashboard" not in first.output
    import distributed

    import eocube.cluster

    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(eocube.cluster, "connect", refuse)
    monkeypatch.setattr(distributed.LocalCluster, "__init__", refuse)
    again = CliRunner().invoke(main, ["gapfill", "--out", str(out), "--no-progress", "--tile", "64",
                                      "--cluster", "local"])
    assert again.exit_code == 0, again.output
    assert "already complete" in again.output and "no cluster started" in again.output


def test_small_jobs_run_on_threads_larger_ones_and_asked_for_ones_on_a_cluster():
    from eocube.cli._common import CLUSTER_OPTIONS, choose_compute, threads_below

    none = dict.fromkeys(CLUSTER_OPTIONS.values())
    limit = threads_below()
    assert limit == 2**30
    assert choose_compute(none, 10 * 2**20)[0] == "threads"
    where, line = choose_compute(none, 670 * 2**20)  # 64x the sample's area: threads were faster (measured)
    assert where == "threads"
    assert "dask threads in this process: the job's arrays (670.0 MiB) are under 1.0 GiB" in line
    assert "--cluster local starts a Dask cluster" in line
    where, line = choose_compute(none, limit + 1)
    assert where == "cluster" and "over 1.0 GiB" in line
    assert choose_compute({**none, "cluster": "local"}, 1)[0] == "cluster"
    assert choose_compute({**none, "n_workers": 1}, 1)[0] == "cluster"
    assert choose_compute({**none, "threads_per_worker": 1}, 1)[0] == "threads"


def test_the_configured_kind_decides_when_no_cluster_is_given(monkeypatch):
    import dask

    from eocube.cli._common import CLUSTER_OPTIONS, choose_compute

    none = dict.fromkeys(CLUSTER_OPTIONS.values())
    with dask.config.set({"eocube.cluster.kind": "local"}):
        assert choose_compute(none, 1)[0] == "cluster"
    with dask.config.set({"eocube.cluster.threads-below": "1KiB"}):
        assert choose_compute(none, 2048)[0] == "cluster"


@pytest.mark.parametrize("times, h, w, expected", [(68, 101, 100, 101), (48, 1024, 1024, 512),
                                                   (200, 10980, 10980, 256), (10, 20000, 20000, 1024),
                                                   (2000, 100, 100, 64)])
def test_the_default_tile_keeps_chunks_within_zarr_guidance(times, h, w, expected):
    from eocube.cli.gapfill import TILE_TARGET, default_tile

    tile = default_tile(times, h, w, 4)
    assert tile == expected
    assert times * min(tile, h) * min(tile, w) * 4 <= TILE_TARGET
    if tile < min(h, w):
        assert times * tile * tile * 4 * 4 > TILE_TARGET  # the next power of two would be too big
        assert times * tile * tile * 4 >= 10 * 2**20 or tile == 2048 or tile == 16


def test_compute_into_equals_compute_and_reuses_the_destination(make_cube):
    import eocube

    cube = make_cube(t=6, h=8, w=10, chunks={"time": -1, "band": 1, "y": 4, "x": 5}) + 1
    expected = cube.compute()
    first = eocube.compute_into(cube)
    np.testing.assert_array_equal(first.values, expected.values)
    assert first.dims == expected.dims and first.attrs == expected.attrs
    again = eocube.compute_into(cube * 2, out=first.values)
    assert again.values is first.values or np.shares_memory(again.values, first.values)
    np.testing.assert_array_equal(again.values, 2 * expected.values)
    with pytest.raises(ValueError, match="shape"):
        eocube.compute_into(cube, out=np.empty((1, 2), cube.dtype))


def test_method_names_are_the_methods():
    from eocube.fill import METHOD_NAMES, METHODS

    assert tuple(METHODS) == METHOD_NAMES


def test_fill_composite_stays_the_function_after_its_module_is_imported():
    code = ("import importlib; importlib.import_module('eocube.fill.composite'); from eocube.fill import composite; "
            "print(callable(composite) and composite.__name__ == 'composite' and not hasattr(composite, '__path__') "
            "and type(composite).__name__ == 'function')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.stdout.strip() == "True", proc.stderr


def test_the_warm_up_covers_the_command_lines_cases():
    from eocube.fill._warmup import CASES

    assert ("float32", None, True) in CASES and ("uint16", 0, True) in CASES
    assert Path(os.path.dirname(__file__)).parents[1].joinpath("scripts", "setup-env.sh").read_text().count(
        "eocube.fill._warmup") == 1


def test_the_evaluate_command_s_default_methods_are_the_library_s():
    from eocube.cli.evaluate import DEFAULT_METHODS
    from eocube.evaluate import DEFAULT_METHODS as LIBRARY

    assert DEFAULT_METHODS == LIBRARY


def test_evaluate_refuses_a_missing_source_without_heavy_imports(tmp_path):
    status, loaded, stderr = modules_after(["evaluate", "--source", "nope.zarr", "--quicklook", str(tmp_path / "p.png")])
    assert status == 2 and "no Zarr store at nope.zarr" in stderr and loaded == []


def test_local_workers_of_a_linear_fill_import_no_torch(tmp_path):
    """The workers import what their tasks need: eocube's fill and Zarr code, not torch."""
    code = textwrap.dedent(f"""
        import json, sys
        import eocube
        from eocube.cluster import close, connect
        from eocube.datasets import sentinel2_sample
        from eocube.fill import fill_gaps
        from eocube.masks import clear_from_cloud_band

        if __name__ == "__main__":
            client = connect("local", n_workers=1, threads_per_worker=1, dashboard_address=None, processes=True)
            try:
                cube = sentinel2_sample(chunks={{"time": -1, "band": 1, "y": 64, "x": 64}})
                clear = clear_from_cloud_band(cube, "CLM", data_band="IS_DATA")
                eocube.to_zarr(fill_gaps(cube.sel(band=["NDVI"]), clear), {str(tmp_path / "f.zarr")!r}, progress=False)
                seen = list(client.run(lambda: [m for m in ("torch", "matplotlib", "pystac_client", "eocube.fill.temporal")
                                                 if m in sys.modules]).values())[0]
            finally:
                close(client)
            print(json.dumps(seen))
    """)
    script = tmp_path / "job.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["eocube.fill.temporal"]
