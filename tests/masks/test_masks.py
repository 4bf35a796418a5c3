"""Clear-sky masks: SCL classes, QA_PIXEL bits, probability, any boolean mask, dilation; bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import eocube
from eocube.masks import (
    SCL_CLASSES,
    MaskError,
    align_mask,
    check_mask_band,
    clear_from_cloud_band,
    clear_from_mask,
    clear_from_probability,
    clear_from_qa_pixel,
    clear_from_scl,
    dilate_clouds,
    summarise_band,
)


def cube_with(band: str, values: np.ndarray) -> xr.DataArray:
    t, h, w = values.shape
    return eocube.make_cube(values[:, None].astype("float32"), time=np.arange(t).astype("datetime64[D]"),
                            band=[band], y=100.0 - 10 * np.arange(h), x=10 * np.arange(w) + 5.0, crs="EPSG:32633")


def test_scl_default_classes_and_snow():
    values = np.arange(12, dtype=float).reshape(1, 3, 4)  # every SCL class once
    clear = clear_from_scl(cube_with("SCL", values)).values[0].ravel()
    assert [v for v in range(12) if clear[v]] == [2, 4, 5, 6, 7, 11]
    clear = clear_from_scl(cube_with("SCL", values), snow=True).values[0].ravel()
    assert not clear[SCL_CLASSES["snow"]]
    custom = clear_from_scl(cube_with("SCL", values), classes=["water", 9]).values[0].ravel()
    assert [v for v in range(12) if not custom[v]] == [6, 9]


def test_scl_nan_is_not_clear_and_lazy():
    values = np.full((2, 3, 4), 4.0)
    values[0, 0, 0] = np.nan
    cube = cube_with("SCL", values).chunk({"y": 2})
    clear = clear_from_scl(cube)
    assert clear.chunks is not None  # lazy
    assert not bool(clear[0, 0, 0]) and bool(clear.sum() == 23)


def test_unknown_scl_class_is_a_clear_error():
    cube = cube_with("SCL", np.zeros((1, 3, 4)))
    with pytest.raises(MaskError, match="unknown SCL class 'clouds'.*cloud_high_probability"):
        clear_from_scl(cube, classes=["clouds"])
    with pytest.raises(MaskError, match="unknown SCL class 12"):
        clear_from_scl(cube, classes=[12])


def test_qa_pixel_bits():
    # 21824 = clear land (bit 6 + bits 8/10/12/14 confidences); 22280 = cloud (bit 3); 23888 = shadow
    # (bit 4); 1 = fill; 21826 = dilated cloud; 30048 = snow (bit 5)
    codes = np.array([21824, 22280, 23888, 1, 21826, 21824 | 32, 21824 | 4, 21952], dtype=float).reshape(1, 2, 4)
    cube = cube_with("QA_PIXEL", codes)
    got = clear_from_qa_pixel(cube).values.ravel().tolist()
    assert got == [True, False, False, False, False, True, False, True]
    assert clear_from_qa_pixel(cube, snow=True).values.ravel().tolist()[5] is False
    with pytest.raises(MaskError, match="unknown QA_PIXEL flag"):
        clear_from_qa_pixel(cube, flags=["clouds"])


def test_probability_threshold():
    probs = np.array([0.0, 0.39, 0.4, np.nan, 0.9, 0.1]).reshape(1, 2, 3)
    got = clear_from_probability(cube_with("CLP", probs), threshold=0.4).values.ravel().tolist()
    assert got == [True, True, False, False, False, True]


def test_any_boolean_mask_and_dims_that_do_not_match(make_cube):
    cube = make_cube()
    cloud = xr.zeros_like(cube.isel(band=0, drop=True), dtype=bool)
    cloud[0, 0, 0] = True
    clear = clear_from_mask(cloud.transpose("y", "x", "time"), cube, cloudy=True)
    assert clear.dims == ("time", "y", "x") and int((~clear).sum()) == 1
    with pytest.raises(MaskError, match=r"dims \('time', 'y'\)"):
        align_mask(cloud.isel(x=0, drop=True), cube)
    with pytest.raises(MaskError, match="x coordinate does not match"):
        align_mask(cloud.isel(x=slice(0, 5)), cube)
    with pytest.raises(MaskError, match="must be a boolean"):
        align_mask(cloud.astype(int), cube)


def test_dilation_grows_clouds_by_a_disk_lazily():
    values = np.zeros((2, 9, 9))
    values[0, 4, 4] = 1  # one cloudy pixel
    cube = cube_with("CLM", values).chunk({"y": 3, "x": 3})  # the disk crosses chunk borders
    clear = dilate_clouds(clear_from_cloud_band(cube), 2)
    assert clear.chunks is not None
    cloud = ~clear.values
    expected = np.zeros((9, 9), dtype=bool)
    yy, xx = np.mgrid[:9, :9]
    expected[(yy - 4) ** 2 + (xx - 4) ** 2 <= 4] = True
    np.testing.assert_array_equal(cloud[0], expected)
    assert not cloud[1].any()
    with pytest.raises(MaskError, match="whole number"):
        dilate_clouds(clear, -1)


def test_real_sample_masks_agree(sample):
    clm = clear_from_cloud_band(sample, "CLM")
    clp = clear_from_probability(sample, "CLP", threshold=0.4)
    agree = float((clm == clp).mean())
    assert agree > 0.9  # s2cloudless CLM is CLP >= 0.4 smoothed and dilated
    assert float(dilate_clouds(clm, 1).mean()) < float(clm.mean())


@pytest.mark.parametrize(
    "kind, message",
    [
        ("scl", r"band 'M' holds only 0 and 1: that is a 0/1 cloud mask, not Sentinel-2 SCL classes 0..11"),
        ("qa_pixel", r"band 'M' holds only 0 and 1: that is a 0/1 cloud mask, not Landsat QA_PIXEL"),
        ("probability", r"band 'M' holds only 0 and 1: that is a boolean cloud mask, not a cloud probability"),
    ],
)
def test_a_0_1_band_is_refused_as_scl_qa_pixel_or_probability(kind, message):
    values = np.zeros((3, 4, 5))
    values[1, :2] = 1
    values[2, 0, 0] = np.nan  # NaN is nodata, never a value
    cube = cube_with("M", values)
    with pytest.raises(MaskError, match=message):
        check_mask_band(cube, "M", kind)
    assert check_mask_band(cube, "M", "boolean").is_zero_one


def test_check_mask_band_accepts_what_each_kind_can_hold_and_names_the_range():
    scl = cube_with("SCL", np.arange(12, dtype=float).reshape(1, 3, 4))
    assert check_mask_band(scl, "SCL", "scl").values == tuple(float(v) for v in range(12))
    qa = cube_with("QA_PIXEL", np.array([21824, 22280, 23888, 1.0]).reshape(1, 2, 2))
    check_mask_band(qa, "QA_PIXEL", "qa_pixel")
    prob = cube_with("CLP", np.linspace(0, 1, 24).reshape(2, 3, 4))
    check_mask_band(prob, "CLP", "probability", threshold=0.4)
    with pytest.raises(MaskError, match=r"band 'CLP' holds 0..1 \(fractional values\): a boolean cloud mask"):
        check_mask_band(prob, "CLP", "boolean")
    with pytest.raises(MaskError, match=r"holds 0..1 \(fractional values\): Sentinel-2 SCL holds whole-number"):
        check_mask_band(prob, "CLP", "scl")
    with pytest.raises(MaskError, match=r"16-bit bit-packed"):
        check_mask_band(cube_with("Q", np.array([-1.0, 70000.0, 2.0, 4.0]).reshape(1, 2, 2)), "Q", "qa_pixel")
    scaled = cube_with("CLP", np.linspace(0, 100, 24).round().reshape(2, 3, 4))
    check_mask_band(scaled, "CLP", "probability", threshold=40)
    with pytest.raises(MaskError, match=r"threshold 0.4 is in 0..1 units.*e.g. 40 for 0..100"):
        check_mask_band(scaled, "CLP", "probability", threshold=0.4)
    with pytest.raises(MaskError, match="unknown mask kind 'fmask'"):
        check_mask_band(scaled, "CLP", "fmask")


def test_check_mask_band_leaves_the_nodata_value_out():
    values = np.array([0, 1, 255, 255], dtype="uint8").reshape(1, 2, 2)
    cube = eocube.make_cube(values[:, None], time=np.arange(1).astype("datetime64[D]"), band=["CLM"],
                            y=[15.0, 5.0], x=[5.0, 15.0], crs="EPSG:32633", nodata=255)
    assert check_mask_band(cube, "CLM", "boolean").values == (0.0, 1.0)


def test_check_mask_band_takes_an_encoded_nodata_of_an_integer_band():
    values = np.array([0, 1, 255, 255], dtype="uint8").reshape(1, 2, 2)
    cube = eocube.make_cube(values[:, None], time=np.arange(1).astype("datetime64[D]"), band=["CLM"],
                            y=[15.0, 5.0], x=[5.0, 15.0], crs="EPSG:32633")
    cube = cube.rio.write_nodata(255, encoded=True)  # rio.nodata raises on this for integer bands
    assert check_mask_band(cube, "CLM", "boolean").values == (0.0, 1.0)


def test_the_mask_check_reads_a_few_chunks_of_the_mask_band_only(sample):
    lazy = sample.chunk({"time": 1, "band": 1, "y": 16, "x": 16})  # 68 x 7 x 7 chunks of 1 KiB
    summary = summarise_band(lazy, "CLM", max_bytes=4 * 16 * 16 * 4)
    assert summary.is_zero_one and 0 < summary.count <= 4 * 16 * 16
    assert summarise_band(sample, "CLM", max_bytes=2**30).count == 68 * 101 * 100  # within budget: everything
    big = summarise_band(sample.chunk({"time": -1, "band": 1, "y": -1, "x": -1}), "CLP", max_bytes=2**12)
    assert 0 < big.count <= 2**10 and 0 <= big.vmin and big.vmax <= 1  # one chunk over budget: a window
