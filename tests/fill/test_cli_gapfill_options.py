"""`eocube gapfill` new options: mask kinds, dilation, methods, time grid and the quality store."""

from __future__ import annotations

import numpy as np
import pandas as pd
from click.testing import CliRunner

from eocube.cli.gapfill import gapfill
from eocube.io import open_zarr

SMALL = ["--workers", "1", "--threads", "1", "--no-progress", "--tile", "64"]


def test_probability_mask_dilation_whittaker_monthly_with_quality(tmp_path):
    out, quality = tmp_path / "f.zarr", tmp_path / "q.zarr"
    result = CliRunner().invoke(gapfill, ["--out", str(out), "--cloud-band", "CLP", "--mask", "probability",
                                          "--threshold", "0.5", "--dilate", "1", "--method", "whittaker",
                                          "--time-grid", "MS", "--quality", str(quality), *SMALL])
    assert result.exit_code == 0, result.output
    filled, q = open_zarr(out), open_zarr(quality)
    assert (pd.DatetimeIndex(filled.time.values).day == 1).all()
    assert list(q.band.values) == ["days_to_clear"] and q.sizes["time"] == filled.sizes["time"]
    assert np.isfinite(filled.values).all() and float(q.max()) > 0


def test_unknown_mask_kind_is_refused(tmp_path):
    result = CliRunner().invoke(gapfill, ["--out", str(tmp_path / "x.zarr"), "--mask", "fmask", *SMALL])
    assert result.exit_code != 0 and "fmask" in result.output
