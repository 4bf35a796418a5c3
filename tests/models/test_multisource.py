"""Several sources per model: nested grids (10 m and 20 m), own dates (Sentinel-2 and Sentinel-1 like).

Each case runs chunk-wise on chunks and tiles that do not divide the image and must equal one
whole-image forward pass with every source whole (max abs difference <= 1e-5). Bad inputs
raise errors that say what to do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

import eocube
from eocube.models import (
    GridError,
    ModelSpec,
    SourceError,
    SourceSpec,
    apply_model,
    pair_dates,
)


def _cube(t: int, bands: tuple[str, ...], h: int, w: int, res: float, dates: pd.DatetimeIndex | None = None,
          seed: int = 0, x0: float = 465000.0, y0: float = 5080000.0, crs: str = "EPSG:32633") -> xr.DataArray:
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((t, len(bands), h, w)).astype("float32")
    dates = pd.date_range("2021-03-01", periods=t, freq="7D") if dates is None else dates
    return eocube.make_cube(data, time=dates, band=list(bands), y=y0 - res * (np.arange(h) + 0.5),
                            x=x0 + res * (np.arange(w) + 0.5), crs=crs)


class TwoResolutions(nn.Module):
    """forward(x10, x20): the 20 m input convolved, upsampled x2, cropped to the 10 m size, fused."""

    def __init__(self, c10: int, c20: int, out: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c20 = nn.Conv2d(c20, 4, 3, padding=1)
        self.c10 = nn.Conv2d(c10, 4, 3, padding=1)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(8, out, 3, padding=1))

    def forward(self, x10: torch.Tensor, x20: torch.Tensor) -> torch.Tensor:
        up = nn.functional.interpolate(self.c20(x20), scale_factor=2.0, mode="nearest")
        up = up[..., : x10.shape[-2], : x10.shape[-1]]
        return self.head(torch.cat([self.c10(x10), up], 1))


def _whole(net: nn.Module, *arrays: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]).numpy()


def test_two_sources_at_10_and_20_m_are_seamless():
    b10 = _cube(3, ("B02", "B03", "B04"), 41, 37, 10.0).chunk({"y": 9, "x": 8, "time": 2})
    b20 = _cube(3, ("B05", "B11"), 21, 19, 20.0, seed=1).chunk({"y": 7, "x": 5})  # its own chunks: rechunked
    net = TwoResolutions(3, 2)
    out = apply_model({"s10": b10, "s20": b20}, net, tile_size=6, batch_size=4)
    assert out.shape == (3, 2, 41, 37) and out.attrs["model_sources"] == ["s10", "s20"]
    assert out.attrs["model_halo"] % 2 == 0 and len(out.chunks[2]) * len(out.chunks[3]) >= 12
    np.testing.assert_array_equal(out["x"].values, b10["x"].values)
    assert out.rio.transform() == b10.rio.transform()
    ref = _whole(net, b10.values, b20.values)
    np.testing.assert_allclose(out.values, ref, atol=1e-5, rtol=0)
    # the same with a list in the spec's order, and a spec naming the bands
    spec = ModelSpec(sources=(SourceSpec("s10", bands=("B02", "B03", "B04")), SourceSpec("s20", bands=("B05", "B11"))))
    again = apply_model([b10, b20], net, spec, tile_size=10)
    np.testing.assert_allclose(again.values, ref, atol=1e-5, rtol=0)


def test_coarser_source_extending_beyond_is_cropped_to_the_finest_footprint():
    b10 = _cube(1, ("a",), 40, 36, 10.0).chunk({"y": 11, "x": 13})
    wide = _cube(1, ("b",), 24, 22, 20.0, seed=2, x0=465000.0 - 40.0, y0=5080000.0 + 20.0)  # 2 cols, 1 row more
    net = TwoResolutions(1, 1)
    out = apply_model({"s10": b10, "s20": wide}, net, tile_size=8)
    ref = _whole(net, b10.values, wide.values[:, :, 1:21, 2:20])
    np.testing.assert_allclose(out.values, ref, atol=1e-5, rtol=0)


def test_grids_that_do_not_nest_say_how_to_fix_them():
    b10 = _cube(1, ("a",), 40, 36, 10.0)
    net = TwoResolutions(1, 1)
    shifted = _cube(1, ("b",), 20, 18, 20.0, x0=465005.0)
    with pytest.raises(GridError, match=r"not an integer.*open_stac\(\.\.\., resolution=.*reproject_match"):
        apply_model({"s10": b10, "s20": shifted}, net)
    with pytest.raises(GridError, match=r"pixel width .* \(15\) / the finest \(10\) is 1\.5"):
        apply_model({"s10": b10, "s20": _cube(1, ("b",), 27, 24, 15.0)}, net)
    with pytest.raises(GridError, match="must share the CRS"):
        apply_model({"s10": b10, "s20": _cube(1, ("b",), 20, 18, 20.0, crs="EPSG:32632")}, net)
    with pytest.raises(GridError, match="does not cover"):
        apply_model({"s10": b10, "s20": _cube(1, ("b",), 19, 18, 20.0)}, net)


def test_a_source_missing_from_the_call_and_bands_the_cube_lacks():
    b10, b20 = _cube(1, ("a",), 40, 36, 10.0), _cube(1, ("b",), 20, 18, 20.0)
    spec = ModelSpec(sources=(SourceSpec("s10"), SourceSpec("s20")))
    net = TwoResolutions(1, 1)
    with pytest.raises(SourceError, match=r"missing from the call: \['s20'\].*pass \{'s10': cube, 's20': cube\}"):
        apply_model({"s10": b10}, net, spec)
    with pytest.raises(SourceError, match="takes 2 source"):
        apply_model(b10, net, spec)
    with pytest.raises(SourceError, match=r"not the model's: \['s30'\]"):
        apply_model({"s10": b10, "s20": b20, "s30": b20}, net, spec)
    lacking = ModelSpec(sources=(SourceSpec("s10", bands=("B08",)), SourceSpec("s20")))
    with pytest.raises(SourceError, match=r"source 's10': the model needs the band\(s\) \['B08'\].*has \['a'\]"):
        apply_model({"s10": b10, "s20": b20}, net, lacking)


S2_DATES = pd.DatetimeIndex(["2021-05-01", "2021-05-06", "2021-05-11", "2021-05-16", "2021-06-20"])
S1_DATES = pd.DatetimeIndex(["2021-05-02", "2021-05-08", "2021-05-13", "2021-05-26", "2021-05-31", "2021-06-06"])


class Fusion(nn.Module):
    """forward(s2 (N, T2*C2, H, W), s1 (N, T1*C1, H, W)): one map from two series (layout 'time_band')."""

    def __init__(self, c2: int, c1: int) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.a, self.b = nn.Conv2d(c2, 4, 3, padding=1), nn.Conv2d(c1, 4, 5, padding=2)
        self.head = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, s2: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(torch.cat([self.a(s2), self.b(s1)], 1)))


def test_sentinel2_and_sentinel1_series_on_different_days_temporal_layout():
    s2 = _cube(5, ("B04", "B08"), 33, 29, 10.0, dates=S2_DATES).chunk({"y": 10, "x": 7})
    s1 = _cube(6, ("VV", "VH"), 17, 15, 20.0, dates=S1_DATES, seed=4)
    net = TwoResolutionsSeries(Fusion(5 * 2, 6 * 2))
    out = apply_model({"s2": s2, "s1": s1}, net, layout="time_band", tile_size=6, out_bands=["p", "q", "r"])
    assert out.shape == (1, 3, 33, 29)
    assert pd.Timestamp(out["time"].values[0]) == S2_DATES[-1]
    ref = _whole(net, s2.values.reshape(1, 10, 33, 29), s1.values.reshape(1, 12, 17, 15))
    np.testing.assert_allclose(out.values, ref, atol=1e-5, rtol=0)


class TwoResolutionsSeries(nn.Module):
    """The fusion model with the 20 m series upsampled inside (as the engine must feed it)."""

    def __init__(self, inner: Fusion) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, s2: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        return self.inner(s2, _up(s1, s2))


def _up(coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    return nn.functional.interpolate(coarse, scale_factor=2, mode="nearest")[..., : fine.shape[-2], : fine.shape[-1]]


class PerDate(nn.Module):
    """forward(s2 (N, 2, H, W), doy (N,), s1 (N, 2, H/2, W/2)): one S2 date with its S1 partner."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.a, self.b = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(2, 4, 3, padding=1)
        self.head = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, s2: torch.Tensor, doy: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        fused = torch.cat([self.a(s2), _up(self.b(s1), s2)], 1)
        return self.head(torch.relu(fused)) + doy[:, None, None, None] / 1000


def test_per_date_layout_pairs_each_sentinel2_date_with_the_nearest_sentinel1_date():
    s2 = _cube(5, ("B04", "B08"), 33, 29, 10.0, dates=S2_DATES).chunk({"y": 10, "x": 7, "time": 2})
    s1 = _cube(6, ("VV", "VH"), 17, 15, 20.0, dates=S1_DATES, seed=4)
    idx = pair_dates(S2_DATES, S1_DATES, "nearest", "3D")
    assert idx.tolist() == [0, 1, 2, 2, -1]  # 2021-06-20: the nearest S1 date is 14 days away
    net = PerDate()
    out = apply_model({"s2": s2, "s1": s1}, net, pairing="nearest", tolerance="3D", time_input={"s2": "doy"},
                      tile_size=7, batch_size=3)
    np.testing.assert_array_equal(out["time"].values, s2["time"].values)  # the reference's dates
    got = out.values
    doy = S2_DATES.dayofyear.values.astype("float32")
    for t, j in enumerate(idx):
        if j < 0:
            assert np.isnan(got[t]).all()  # no partner: nodata
            continue
        ref = _whole(net, s2.values[t:t + 1], doy[t:t + 1], s1.values[j:j + 1])
        np.testing.assert_allclose(got[t:t + 1], ref, atol=1e-5, rtol=0)
    with pytest.raises(SourceError, match="no date of the reference 's2' has a partner"):
        apply_model({"s2": s2, "s1": s1}, net, pairing="same", time_input={"s2": "doy"})


def test_pair_dates_same_day_and_previous():
    ref = pd.DatetimeIndex(["2021-05-02 10:00", "2021-05-08 10:00", "2021-05-20"])
    other = pd.DatetimeIndex(["2021-05-02 17:30", "2021-05-07 05:00", "2021-05-19"])
    assert pair_dates(ref, other, "same", None).tolist() == [0, -1, -1]
    assert pair_dates(ref, other, "previous", None).tolist() == [-1, 1, 2]
    assert pair_dates(ref, other, "previous", "1D").tolist() == [-1, -1, 2]
    assert pair_dates(ref, other, "nearest", "12h").tolist() == [0, -1, -1]


def test_graph_is_built_without_reading_pixels_and_value_scaling_applies():
    from eocube.models import Scaling

    b10 = _cube(1, ("a",), 40, 36, 10.0).chunk({"y": 20, "x": 18})
    b20 = _cube(1, ("b",), 20, 18, 20.0).chunk({"y": 10, "x": 9})

    def boom(block: np.ndarray) -> np.ndarray:
        raise RuntimeError("pixels were read")

    lazy = b20.copy(data=b20.data.map_blocks(boom, dtype="float32"))
    net = TwoResolutions(1, 1)
    out = apply_model({"s10": b10, "s20": lazy}, net, halo=4)  # nothing computed here
    with pytest.raises(RuntimeError, match="pixels were read"):
        out.compute()
    spec = ModelSpec(sources=(SourceSpec("s10", scaling=(Scaling("offset", value=1.0),)),
                              SourceSpec("s20", scaling=(Scaling("z-score", mean=2.0, stddev=4.0),))))
    scaled = apply_model({"s10": b10, "s20": b20}, net, spec)
    ref = _whole(net, b10.values - 1.0, (b20.values - 2.0) / 4.0)
    np.testing.assert_allclose(scaled.values, ref, atol=1e-5, rtol=0)


def test_unknown_keyword_lists_the_known_ones():
    with pytest.raises(TypeError, match=r"unexpected keyword\(s\) \['tile'\]; the keywords are"):
        apply_model(_cube(1, ("a",), 8, 8, 10.0), nn.Conv2d(1, 1, 1), tile=4)


def test_a_card_beside_the_model_file_is_all_apply_model_needs(tmp_path):
    from eocube.models.card import write_card

    b10 = _cube(2, ("B02", "B03", "B04"), 40, 36, 10.0).chunk({"y": 15, "x": 13})
    b20 = _cube(2, ("B05", "B11", "B12"), 20, 18, 20.0, seed=1)
    net = TwoResolutions(3, 2)
    path = tmp_path / "fusion.ts"
    torch.jit.save(torch.jit.script(net), str(path))
    spec = ModelSpec(sources=(SourceSpec("s10", bands=("B02", "B03", "B04")), SourceSpec("s20", bands=("B05", "B11"))))
    write_card(spec, path)
    out = apply_model({"s10": b10, "s20": b20}, path, tile_size=12)  # sources, bands: from the card
    ref = _whole(net, b10.values, b20.values[:, :2])
    np.testing.assert_allclose(out.values, ref, atol=1e-5, rtol=0)
