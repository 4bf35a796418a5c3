"""``benchmarks/bench_gapfill_accuracy.py --dataset``: options, the Landsat cube it trains on, the ratios it prints."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_gapfill_accuracy
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return bench_gapfill_accuracy


def test_dataset_option_defaults_to_sentinel2_and_takes_landsat(bench):
    assert bench.parse_args([]).dataset == "sentinel2"
    args = bench.parse_args(["--dataset", "landsat", "--out", "x", "--seeds", "2"])
    assert (args.dataset, args.out, args.seeds) == ("landsat", "x", 2)


@pytest.mark.parametrize("argv", [["--dataset", "modis"], ["--seeds", "0"]])
def test_bad_options_stop_with_usage(bench, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    assert "modis" in capsys.readouterr().err or argv[0] == "--seeds"


def test_landsat_training_cube_carries_the_qa_pixel_clear_mask(bench):
    from eocube.datasets import landsat_sample
    from eocube.learn.config import load_config
    from eocube.masks import clear_from_cloud_band, clear_from_qa_pixel

    ds = bench.load_dataset("landsat")
    assert list(ds.cube.band.values) == ["NDVI", "CLOUD", "IS_DATA"] and ds.cube.rio.crs.to_epsg() == 32613
    raw = landsat_sample()
    expected = clear_from_qa_pixel(raw).values & np.isfinite(raw.sel(band="NDVI").values)
    assert (ds.clear.values == expected).all()
    # what the trainer computes from the config's mask bands is the same mask
    cfg = load_config(None, ds.overrides)
    trainer_clear = clear_from_cloud_band(ds.cube, cfg.data["cloud_band"], data_band=cfg.data["data_band"]).values
    assert (trainer_clear == expected).all()
    # only the mask names and the block size differ from the default config
    assert set(ds.overrides) == {"data", "split"} and ds.overrides["split"] == {"block_size": 31}
    assert cfg.raw["network"] == load_config().raw["network"] and cfg.raw["train"] == load_config().raw["train"]
    # SLC-off scan gaps are no data, not clouds (they must not become artificial cloud masks)
    fill = raw.sel(band="FMASK").values == 255
    assert fill.any() and not ds.cube.sel(band="CLOUD").values[fill].any()


def test_ratios_compare_the_network_with_linear_and_the_best_classical_method_per_seed(bench):
    from eocube.evaluate.seeds import collect

    results = {0: {"network": {"rmse": 0.06, "n": 10}, "linear": {"rmse": 0.10, "n": 10},
                   "harmonic": {"rmse": 0.08, "n": 10}},
               1: {"network": {"rmse": 0.09, "n": 12}, "linear": {"rmse": 0.10, "n": 12},
                   "harmonic": {"rmse": 0.12, "n": 12}}}
    r = bench.ratios(collect(results, reference="network"))
    assert r["network/linear"]["per_seed"] == pytest.approx({0: 0.6, 1: 0.9})
    assert r["network/best classical"]["per_seed"] == pytest.approx({0: 0.75, 1: 0.9})
    assert r["network/best classical"]["best_classical_per_seed"] == {0: "harmonic", 1: "linear"}
    assert r["network/linear"]["mean"] == pytest.approx(0.75)
    assert r["network/linear"]["std"] == pytest.approx(np.std([0.6, 0.9], ddof=1))
