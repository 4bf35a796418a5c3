"""The multi-seed harness (statistics, pairing, checks, table, JSON) and the super-resolution scores
(fixed data range, nodata and saturated truth never scored)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eocube.evaluate import EvaluateError, collect, run_seeds, scorable, superres_scores

NET = {0: 0.60, 1: 0.40, 2: 0.70}
RF = {0: 0.50, 1: 0.45, 2: 0.55}
NET_RMSE = {0: 1.0, 1: 2.0, 2: 3.0}
RF_RMSE = {0: 2.0, 1: 1.5, 2: 4.0}


def _task(seed: int) -> dict:
    return {"network": {"macro_f1": NET[seed], "rmse": NET_RMSE[seed], "n": 100},
            "forest": {"macro_f1": RF[seed], "rmse": RF_RMSE[seed], "n": 100}}


def test_run_seeds_reports_mean_std_range_and_paired_differences():
    calls = []
    scores = run_seeds(lambda s: calls.append(s) or _task(s), 3, log=calls.append)
    assert [c for c in calls if isinstance(c, int)] == [0, 1, 2]          # one call per seed, in order
    assert scores.seeds == [0, 1, 2] and scores.methods == ["network", "forest"] and scores.n_scored == {0: 100, 1: 100, 2: 100}
    s = scores.summary().set_index(["method", "metric"])
    net = np.array(list(NET.values()))
    assert s.loc[("network", "macro_f1"), "mean"] == pytest.approx(net.mean())
    assert s.loc[("network", "macro_f1"), "std"] == pytest.approx(net.std(ddof=1))
    assert (s.loc[("network", "macro_f1"), "min"], s.loc[("network", "macro_f1"), "max"]) == (0.40, 0.70)
    p = scores.paired().set_index(["baseline", "metric"])
    d = np.array([NET[k] - RF[k] for k in NET])                          # 0.10, -0.05, 0.15
    row = p.loc[("forest", "macro_f1")]
    assert row["diffs"] == pytest.approx(list(d))
    assert row["mean"] == pytest.approx(d.mean()) and row["std"] == pytest.approx(d.std(ddof=1))
    assert row["min"] == pytest.approx(-0.05) and row["max"] == pytest.approx(0.15)
    assert row["wins"] == 2 and row["seeds"] == 3
    # RMSE: lower wins; the network is lower on seeds 0 and 2
    assert p.loc[("forest", "rmse"), "wins"] == 2
    assert p.loc[("forest", "rmse"), "mean"] == pytest.approx(np.mean([-1.0, 0.5, -1.0]))
    # an explicit direction overrides the default
    flipped = run_seeds(_task, [0, 1, 2], higher_is_better={"rmse": True}).paired().set_index(["baseline", "metric"])
    assert flipped.loc[("forest", "rmse"), "wins"] == 1


def test_seeds_may_be_given_as_a_list_and_one_seed_has_no_std():
    scores = run_seeds(_task, [2])
    s = scores.summary().set_index(["method", "metric"])
    assert scores.seeds == [2] and np.isnan(s.loc[("network", "macro_f1"), "std"])
    assert s.loc[("network", "macro_f1"), "mean"] == pytest.approx(0.70)
    with pytest.raises(EvaluateError, match="no seed"):
        run_seeds(_task, 0)
    with pytest.raises(EvaluateError, match="repeat"):
        run_seeds(_task, [1, 1])


def test_methods_scored_on_different_pixels_are_refused():
    """The paired comparison only means something on the same pixels: a differing count is an error."""
    bad = {0: {"network": {"oa": 0.5, "n": 100}, "forest": {"oa": 0.4, "n": 99}}}
    with pytest.raises(EvaluateError, match="different numbers of pixels"):
        collect(bad, reference="network")
    with pytest.raises(EvaluateError, match="reference method 'network'"):
        collect({0: {"forest": {"oa": 0.4}}}, reference="network")


def test_markdown_table_and_json_with_date_machine_command(tmp_path):
    scores = run_seeds(_task, 3)
    text = scores.to_markdown(["macro_f1"], labels={"macro_f1": "macro-F1"})
    assert "| method (3 seeds: 0, 1, 2) | macro-F1 mean ± std (min .. max) |" in text
    assert f"| network | {np.mean(list(NET.values())):.3f} ± {np.std(list(NET.values()), ddof=1):.3f} (0.400 .. 0.700) |" in text
    assert "| vs forest | +0.067 (-0.050 .. +0.150), 2/3 |" in text
    path = scores.save(tmp_path / "seeds.json", command="python demo.py --seeds 3", machine="2 CPU cores")
    doc = json.loads(path.read_text())
    assert doc["command"] == "python demo.py --seeds 3" and doc["machine"] == "2 CPU cores"
    assert doc["date"].endswith("+00:00") and doc["seeds"] == [0, 1, 2]
    assert doc["per_seed"]["1"]["forest"]["macro_f1"] == 0.45
    assert doc["higher_is_better"] == {"macro_f1": True, "rmse": False}
    assert {r["baseline"] for r in doc["paired"]} == {"forest"}


def test_superres_scores_never_score_nodata_or_saturated_truth():
    """A wildly wrong prediction at a nodata (0) or saturated truth pixel changes no score."""
    rng = np.random.default_rng(0)
    truth = rng.uniform(500, 3000, size=(3, 24, 24))
    pred = truth + rng.normal(0, 50, size=truth.shape)
    base = superres_scores(pred, truth, data_range=10000, valid=scorable(truth, saturation=10000), scale=10000)
    t2, p2 = truth.copy(), pred.copy()
    t2[1, 3, 4] = 0                     # nodata in one band: the pixel is left out for all bands
    t2[:, 20, 5] = 28000                # a hot spot above the reflectance scale
    p2[:, 3, 4] = p2[:, 20, 5] = 9000
    valid = scorable(t2, nodata=0, saturation=10000)
    assert valid.sum() == 24 * 24 - 2 and not valid[3, 4] and not valid[20, 5]
    got = superres_scores(p2, t2, data_range=10000, valid=valid, scale=10000)
    assert got["n"] == [24 * 24 - 2] and base["n"] == [24 * 24]
    keep = valid.ravel()
    d = (p2 - t2).reshape(3, -1)[:, keep]
    np.testing.assert_allclose(got["rmse"][:3], np.sqrt((d ** 2).mean(1)) / 10000)
    np.testing.assert_allclose(got["psnr"][:3], 10 * np.log10(10000 ** 2 / (d ** 2).mean(1)))
    assert got["rmse"][3] == pytest.approx(np.mean(got["rmse"][:3]))
    for k in ("rmse", "psnr", "ssim", "sam"):
        assert got[k][-1] == pytest.approx(base[k][-1], rel=0.05)   # the other pixels score as before
    # the default `valid` leaves out nodata as well
    assert superres_scores(p2, t2, data_range=10000)["n"] == [24 * 24 - 1]


def test_superres_psnr_uses_the_fixed_data_range_not_the_test_truth():
    """One bright, perfectly predicted pixel must not move PSNR (it did with the range of the test truth)."""
    rng = np.random.default_rng(3)
    truth = rng.uniform(500, 3000, size=(2, 16, 16))
    pred = truth + 40.0
    bright_t, bright_p = truth.copy(), pred.copy()
    bright_t[:, 0, 0] = bright_p[:, 0, 0] = 9000.0
    a = superres_scores([pred], [truth], data_range=10000)["psnr"][-1]
    b = superres_scores([bright_p], [bright_t], data_range=10000)["psnr"][-1]
    assert a == pytest.approx(10 * np.log10(10000 ** 2 / 40.0 ** 2))
    assert b == pytest.approx(10 * np.log10(10000 ** 2 / (40.0 ** 2 * 255 / 256)))


def test_superres_scores_check_their_inputs():
    t = np.ones((2, 8, 8))
    with pytest.raises(EvaluateError, match="data_range must be positive"):
        superres_scores(t, t, data_range=0)
    with pytest.raises(EvaluateError, match="must match box by box"):
        superres_scores(t, t[:, :4], data_range=1)
    with pytest.raises(EvaluateError, match="no valid pixel"):
        superres_scores(t, np.zeros((2, 8, 8)), data_range=1)


def test_seed_files_of_one_job_per_seed_merge_into_the_same_table(tmp_path):
    from eocube.evaluate import merge_seed_files

    whole = run_seeds(_task, 3)
    paths = [run_seeds(_task, [s]).save(tmp_path / f"s{s}" / "seeds.json", command=f"demo --seed {s}") for s in (2, 0, 1)]
    merged = merge_seed_files(paths)
    assert merged.seeds == [0, 1, 2] and merged.n_scored == {0: 100, 1: 100, 2: 100}
    assert merged.to_markdown(["macro_f1", "rmse"]) == whole.to_markdown(["macro_f1", "rmse"])
    with pytest.raises(EvaluateError, match="seed 2 is already in an earlier file"):
        merge_seed_files([paths[0], paths[0]])
    other = collect({3: {"network": {"macro_f1": 0.5}, "boosting": {"macro_f1": 0.4}}}, reference="network")
    with pytest.raises(EvaluateError, match="merge runs of the same task only"):
        merge_seed_files([paths[0], other.save(tmp_path / "other.json")])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(EvaluateError, match="not a seeds file"):
        merge_seed_files([tmp_path / "bad.json"])


def test_merge_seeds_script_writes_the_merged_file(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "merge_seeds", Path(__file__).resolve().parents[2] / "benchmarks" / "merge_seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths = [str(run_seeds(_task, [s]).save(tmp_path / f"s{s}.json", command=f"demo --seed {s}")) for s in (0, 1)]
    assert module.main([*paths, "--out", str(tmp_path / "merged.json")]) == 0
    doc = json.loads((tmp_path / "merged.json").read_text())
    assert doc["seeds"] == [0, 1] and [r["command"] for r in doc["runs"]] == ["demo --seed 0", "demo --seed 1"]
    assert "| vs forest |" in capsys.readouterr().out
    assert module.main([paths[0], paths[0]]) == 2


def test_a_lower_is_better_word_in_a_longer_metric_name_counts():
    scores = collect({0: {"network": {"rmse_far": 1.0, "psnr_far": 30.0}, "guided": {"rmse_far": 2.0, "psnr_far": 29.0}}},
                     reference="network")
    paired = scores.paired().set_index(["baseline", "metric"])
    assert paired.loc[("guided", "rmse_far"), "wins"] == 1 and paired.loc[("guided", "psnr_far"), "wins"] == 1
