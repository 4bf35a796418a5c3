"""The time-series classification demo (``benchmarks/demo_timeseries.py``, notebook 05) over split seeds.

The quick run trains the TempCNN and both forests (full series; harmonic features) on one block-split
seed and prints the multi-seed table; the stored full 5-seed run (``docs/demo_timeseries_seeds.json``,
quoted in the README and notebook 05) is checked for what the README says it holds. Accuracy is not
asserted: the quick settings are for CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eocube.evaluate import collect

ROOT = Path(__file__).resolve().parents[2]
STORED = ROOT / "docs" / "demo_timeseries_seeds.json"

pytest.importorskip("sklearn")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_timeseries_demo_quick(tmp_path):
    """One quick seed: the three methods scored on the same test pixels, the table printed, seeds.json written."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "demo_timeseries.py"), "--quick", "--seeds", "1", "--out",
         str(tmp_path / "out"), "--plot-dir", str(tmp_path / "plots")],
        check=False, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    assert "| method (1 seed: 0) |" in text and "| vs random forest |" in text and "| vs harmonic forest |" in text
    assert "network best epoch" in text
    doc = json.loads((tmp_path / "out" / "seeds.json").read_text())
    assert doc["command"].startswith("python benchmarks/demo_timeseries.py --quick --seeds 1")
    assert doc["date"] and doc["machine"] and len(doc["load_average_1_5_15_min"]) == 3
    assert doc["methods"] == ["network", "random forest", "harmonic forest"]
    assert doc["n_scored"]["0"] > 1000  # every labelled pixel of the test blocks, the same for all methods
    for m in doc["methods"]:
        assert 0 < doc["per_seed"]["0"][m]["macro_f1"] <= 1
    assert (tmp_path / "plots" / "demo_timeseries_seeds.png").stat().st_size > 5_000


def test_stored_five_seed_run_is_complete():
    """The stored full run quoted by the README and notebook 05: 5 seeds, 3 methods, same pixels, its provenance."""
    doc = json.loads(STORED.read_text())
    assert doc["seeds"] == [0, 1, 2, 3, 4] and doc["methods"] == ["network", "random forest", "harmonic forest"]
    assert doc["command"].startswith("python benchmarks/demo_timeseries.py") and "--quick" not in doc["command"]
    assert doc["date"] and "CPU cores" in doc["machine"]
    per_seed = {int(s): v for s, v in doc["per_seed"].items()}
    scores = collect({s: {m: {**v, "n": doc["n_scored"][str(s)]} for m, v in ms.items()} for s, ms in per_seed.items()},
                     reference="network")
    table = scores.to_markdown(["macro_f1"])
    assert "| method (5 seeds: 0, 1, 2, 3, 4) |" in table and "| vs harmonic forest |" in table
    paired = {r["baseline"]: r for r in doc["paired"] if r["metric"] == "macro_f1"}
    assert paired["random forest"]["wins"] == int(scores.paired().set_index(["baseline", "metric"])
                                                  .loc[("random forest", "macro_f1"), "wins"])
