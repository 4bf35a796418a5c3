"""`eocube gapfill` new options: mask kinds, dilation, methods, time grid and the quality store."""

from __future__ import annotations

from pathlib import Path

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
    assert list(q.band.values) == ["days_to_clear_NDVI", "bounded_NDVI"] and q.sizes["time"] == filled.sizes["time"]
    days, acted = q.sel(band="days_to_clear_NDVI").values, q.sel(band="bounded_NDVI").values
    assert np.isfinite(filled.values).all() and np.nanmax(days) > 0
    # the smoother's bound acts on filled values only, never on an observation (0 days to a clear one)
    assert set(np.unique(acted[np.isfinite(acted)])) <= {0.0, 1.0} and not (acted[days == 0] == 1).any()
    import zarr

    assert zarr.open_group(str(out), mode="r").metadata.zarr_format == 2  # --zarr-format auto: small and local


def test_default_quicklook_and_locations_keep_urls_as_urls(tmp_path):
    from eocube.cli._common import default_quicklook, same_location, shown_location, store_is_complete

    assert default_quicklook("s3://bucket/runs/out.zarr") == Path("out.zarr.png")
    assert default_quicklook(tmp_path / "out.zarr/") == Path(f"{tmp_path}/out.zarr.png")
    assert shown_location("s3://bucket/out.zarr") == "s3://bucket/out.zarr"
    assert same_location("s3://b/x.zarr/", "s3://b/x.zarr") and not same_location("s3://b/x.zarr", "x.zarr")
    assert not store_is_complete(tmp_path / "missing.zarr")


def test_unknown_mask_kind_is_refused(tmp_path):
    result = CliRunner().invoke(gapfill, ["--out", str(tmp_path / "x.zarr"), "--mask", "fmask", *SMALL])
    assert result.exit_code != 0 and "fmask" in result.output
