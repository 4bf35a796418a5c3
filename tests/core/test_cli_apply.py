"""`eocube apply` end to end: model files with their cards on the bundled sample and the real scene.

* a ``torch.export`` program (``.pt2``, exported with :func:`eocube.models.card.export_model`,
  which writes its card) on the bundled Sentinel-2 sample, one source, unnamed;
* a TorchScript class map with a card (:func:`eocube.models.card.write_card`) and classes;
* the real Sentinel-2 L1C scene as three sources (10, 20, 60 m) through a ``.pt2`` network, and
  its 20 m bands through a TorchScript x2 network: both on the 10 m grid of the B02 file;
* a state_dict with ``--factory`` and ``--layout`` (no card);
* STAC sources: an items file, and a search YAML (here with ``items:`` and ``resolution: 20``);
* killed mid-write and run again: the same output, only the missing chunks computed;
* bad inputs: one line on stderr, exit status 2, nothing written.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

import eocube
from eocube.datasets import SCENES, sentinel2_l1c_scene
from eocube.models import (
    ClassInfo,
    ModelSpec,
    OutputSpec,
    Scaling,
    SourceSpec,
    apply_model,
)
from eocube.models.card import export_model, write_card

EOCUBE = [sys.executable, "-m", "eocube", "apply", "--model"]
QUIET = ["--no-progress"]
SCENE = SCENES["sentinel2_l1c"]
B02 = SCENE.path / SCENE.pattern.format(band="B02")
SCENE_SOURCES = ["--source", "10m=sentinel2_l1c:10m", "--source", "20m=sentinel2_l1c:20m",
                 "--source", "60m=sentinel2_l1c:60m"]
pytestmark = pytest.mark.timeout(600)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*EOCUBE, *args], check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def chunks_line(stdout: str) -> tuple[int, int, int]:
    """(computed, total, already done) from the CLI's report line."""
    m = re.search(r"(\d+) of (\d+) chunks computed(?:, (\d+) already done)?", stdout)
    assert m, stdout
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


# ----------------------------------------------------------------------------- models and cards


class Smoother(nn.Module):
    """Two sample bands in, one out (a small random CNN, receptive field 2 px)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ThreeResolutions(nn.Module):
    """forward(x10, x20, x60): each source through its own conv, brought to the 10 m grid, fused."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c10 = nn.Conv2d(4, 4, 3, padding=1)
        self.c20 = nn.Conv2d(6, 4, 3, padding=1)
        self.c60 = nn.Conv2d(3, 2, 1)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(10, 2, 3, padding=1))

    def forward(self, x10: torch.Tensor, x20: torch.Tensor, x60: torch.Tensor) -> torch.Tensor:
        h, w = x10.shape[-2], x10.shape[-1]
        up20 = nn.functional.interpolate(self.c20(x20), scale_factor=2.0, mode="nearest")[..., :h, :w]
        up60 = nn.functional.interpolate(self.c60(x60), scale_factor=6.0, mode="nearest")[..., :h, :w]
        return self.head(torch.cat([self.c10(x10), up20, up60], 1))


REFLECTANCE = (Scaling("scale", value=10000.0),)
SMOOTH_SPEC = ModelSpec(sources=(SourceSpec(name="s2", bands=("NDVI", "CLP")),), output=OutputSpec(bands=("smooth",)),
                        name="smoother")
CLASSES = (ClassInfo(0, "water", "1f78b4"), ClassInfo(1, "crop", "ffff33"), ClassInfo(2, "forest", "33a02c"))
SEG_SPEC = ModelSpec(sources=(SourceSpec(name="s2", bands=("NDVI",)),),
                     output=OutputSpec(postprocess="argmax", classes=CLASSES), name="segmenter")
THREE_SPEC = ModelSpec(
    sources=tuple(SourceSpec(name=g, bands=SCENE.groups[g], scaling=REFLECTANCE) for g in ("10m", "20m", "60m")),
    output=OutputSpec(bands=("a", "b")), name="three-resolutions",
)
SR_SPEC = ModelSpec(sources=(SourceSpec(name="20m", bands=SCENE.groups["20m"], scaling=REFLECTANCE),),
                    output=OutputSpec(bands="input", mask=None), name="sr-x2")


def _torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13
        torch.jit.trace(module.eval(), example).save(str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The model files of these tests, each with its card beside it (model.pt2 -> model.json)."""
    folder = tmp_path_factory.mktemp("models")
    smooth = export_model(Smoother(), torch.rand(2, 2, 16, 16), folder / "smooth.pt2", spec=SMOOTH_SPEC)
    three = export_model(ThreeResolutions(), (torch.rand(2, 4, 12, 12), torch.rand(2, 6, 6, 6), torch.rand(2, 3, 2, 2)),
                         folder / "three.pt2", spec=THREE_SPEC)
    torch.manual_seed(2)
    seg = _torchscript(nn.Conv2d(1, 3, 3, padding=1), torch.rand(2, 1, 8, 8), folder / "seg.ts")
    write_card(SEG_SPEC, seg)
    torch.manual_seed(3)
    sr = _torchscript(nn.Sequential(nn.Conv2d(6, 24, 3, padding=1), nn.PixelShuffle(2)), torch.rand(2, 6, 8, 8),
                      folder / "sr.ts")
    write_card(SR_SPEC, sr)
    identity = folder / "identity.pth"
    torch.save(nn.Identity().state_dict(), identity)
    nocard = folder / "nocard.pt2"
    export_model(Smoother(), torch.rand(2, 2, 16, 16), nocard)  # no spec: no card
    return {"smooth": smooth, "three": three, "seg": seg, "sr": sr, "identity": identity, "nocard": nocard}


def _sample_args(models: dict[str, Path], out: Path) -> list[str]:
    return [str(models["smooth"]), "--source", "sentinel2", "--out", str(out), "--chunk", "16", *QUIET]


@pytest.fixture(scope="module")
def reference(models, tmp_path_factory) -> Path:
    """An uninterrupted run of the .pt2 model on the bundled sample (7 x 7 chunks of 16 px)."""
    out = tmp_path_factory.mktemp("ref") / "smooth.zarr"
    proc = run_cli(*_sample_args(models, out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert chunks_line(proc.stdout) == (49, 49, 0)
    assert f"zarr: {out}" in proc.stdout and "quicklook:" in proc.stdout
    return out


# ----------------------------------------------------------------------------- end to end


def test_pt2_with_its_card_on_the_bundled_sample(reference, models, sample):
    result = eocube.open_zarr(reference)
    assert list(result.band.values) == ["smooth"] and result.shape == (68, 1, 101, 100)
    expected = apply_model(sample, str(models["smooth"]))  # the card beside the file, in this process
    np.testing.assert_allclose(result.values, expected.values, atol=1e-5, rtol=0, equal_nan=True)
    prov = result.attrs["eocube_provenance"]
    assert prov["command"] == "eocube apply" and prov["sources"] == {"s2": "sentinel2"}
    assert prov["model"] == str(models["smooth"].resolve()) and len(prov["model_sha256"]) == 64
    assert prov["card"] == str(models["smooth"].with_suffix(".json").resolve()) and len(prov["card_sha256"]) == 64
    png = Path(str(reference) + ".png")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    with rasterio.open(f'ZARR:"{reference}":/prediction') as src:
        assert src.crs.to_epsg() == 32633 and src.transform.almost_equals(result.rio.transform(), precision=1e-9)


def test_a_complete_output_is_not_computed_again(reference, models):
    again = run_cli(*_sample_args(models, reference))
    assert again.returncode == 0, again.stderr
    assert "no cluster started" in again.stdout and "nothing to compute" in again.stdout


def test_torchscript_class_map_with_its_card(models, sample, tmp_path):
    out = tmp_path / "classes.zarr"
    proc = run_cli(str(models["seg"]), "--source", "s2=sentinel2", "--out", str(out), "--tile", "40", *QUIET)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = eocube.open_zarr(out)
    assert result.dtype == np.uint8 and list(result.band.values) == ["class"]
    assert set(np.unique(result.values)) <= {0, 1, 2}
    assert result.attrs["class_names"] == ["water", "crop", "forest"]
    expected = apply_model(sample, str(models["seg"]))
    np.testing.assert_array_equal(result.values, expected.values)
    assert Path(str(out) + ".png").stat().st_size > 10_000


def test_three_sources_of_the_real_scene_with_a_pt2(models, tmp_path):
    out = tmp_path / "three.zarr"
    proc = run_cli(str(models["three"]), *SCENE_SOURCES, "--out", str(out), "--chunk", "384", "--tile", "128", *QUIET)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert chunks_line(proc.stdout)[1] == 2 * 4  # 768 x 1536 px in 384-px chunks
    result = eocube.open_zarr(out)
    assert result.shape == (1, 2, 768, 1536) and result.attrs["model_sources"] == ["10m", "20m", "60m"]
    with rasterio.open(B02) as b02, rasterio.open(f'ZARR:"{out}":/prediction') as written:
        assert written.transform.almost_equals(b02.transform, precision=1e-9)
    scene = sentinel2_l1c_scene()
    with torch.no_grad():
        ref = ThreeResolutions()(*[torch.from_numpy(scene[g].values.astype("float32") / 1e4)
                                   for g in ("10m", "20m", "60m")]).numpy()
    np.testing.assert_allclose(result.values, ref, atol=1e-5, rtol=0)
    assert result.attrs["eocube_provenance"]["sources"] == {g: f"sentinel2_l1c:{g}" for g in ("10m", "20m", "60m")}


def test_x2_torchscript_on_the_20_m_bands_gives_the_10_m_grid(models, tmp_path):
    out = tmp_path / "sr.zarr"
    proc = run_cli(str(models["sr"]), "--source", "20m=sentinel2_l1c:20m", "--out", str(out), *QUIET)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = eocube.open_zarr(out)
    assert result.shape == (1, 6, 768, 1536) and result.attrs["model_scale"] == "2"
    with rasterio.open(B02) as b02, rasterio.open(f'ZARR:"{out}":/prediction') as written:
        assert written.transform.almost_equals(b02.transform, precision=1e-9)


def test_state_dict_with_factory_and_layout_without_a_card(models, sample, tmp_path):
    out = tmp_path / "identity.zarr"
    proc = run_cli(str(models["identity"]), "--factory", "torch.nn:Identity", "--layout", "band",
                   "--source", "sentinel2", "--out", str(out), *QUIET)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = eocube.open_zarr(out)
    assert result.shape == sample.shape
    np.testing.assert_array_equal(result.values, sample.values)
    assert result.attrs["eocube_provenance"]["card"] is None


NIR_RED_SPEC = ModelSpec(sources=(SourceSpec(name="s2", bands=("B04", "B08"), scaling=REFLECTANCE),),
                         output=OutputSpec(bands=("smooth",)), name="nir-red")


def _write_cog(path: Path, data: np.ndarray, transform) -> None:
    with rasterio.open(path, "w", driver="COG", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype,
                       crs="EPSG:32633", transform=transform, nodata=0, compress="deflate") as dst:
        dst.write(data, 1)


@pytest.fixture(scope="module")
def stac_items(tmp_path_factory) -> tuple[Path, object]:
    """A STAC items file (one item, B04 and B08 of a 200 x 240 px crop of the scene as local COGs), and the crop."""
    folder = tmp_path_factory.mktemp("stac")
    crop = sentinel2_l1c_scene()["10m"].isel(y=slice(0, 200), x=slice(0, 240)).sel(band=["B04", "B08"])
    transform = crop.rio.transform()
    assets = {}
    for band, common in (("B04", "red"), ("B08", "nir")):
        _write_cog(folder / f"{band}.tif", crop.sel(band=band).values[0], transform)
        assets[band] = {"href": str(folder / f"{band}.tif"), "roles": ["data"],
                        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                        "eo:bands": [{"name": band, "common_name": common}],
                        "raster:bands": [{"data_type": "uint16", "nodata": 0, "spatial_resolution": 10}],
                        "proj:shape": [200, 240], "proj:transform": list(transform)[:6]}
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "s2-crop", "links": [], "assets": assets,
            "stac_extensions": [f"https://stac-extensions.github.io/{e}/schema.json"
                                for e in ("projection/v1.1.0", "eo/v1.1.0", "raster/v1.1.0")],
            "geometry": {"type": "Polygon", "coordinates": [[[12.5, 52.5], [12.6, 52.5], [12.6, 52.6], [12.5, 52.6],
                                                             [12.5, 52.5]]]},
            "bbox": [12.5, 52.5, 12.6, 52.6], "properties": {"datetime": "2017-02-16T10:21:01Z", "proj:epsg": 32633}}
    path = folder / "items.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    return path, crop


def test_stac_items_file_and_search_yaml_sources(stac_items, tmp_path):
    items, crop = stac_items
    model = export_model(Smoother(), torch.rand(2, 2, 16, 16), tmp_path / "nirred.pt2", spec=NIR_RED_SPEC)
    out = tmp_path / "items.zarr"
    proc = run_cli(str(model), "--source", str(items), "--out", str(out), *QUIET)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = eocube.open_zarr(out)
    assert result.shape == (1, 1, 200, 240) and result.rio.transform() == crop.rio.transform()
    expected = apply_model(crop, str(model))
    np.testing.assert_allclose(result.values, expected.values, atol=1e-5, rtol=0)
    search = tmp_path / "search.yaml"
    search.write_text(f"items: {items}\nassets: [B04, B08]\nresolution: 20\n")
    out20 = tmp_path / "search.zarr"
    proc = run_cli(str(model), "--source", f"s2={search}", "--out", str(out20), *QUIET)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    at20 = eocube.open_zarr(out20)
    assert at20.shape == (1, 1, 100, 120) and at20.rio.transform().a == 20.0
    assert at20.attrs["eocube_provenance"]["sources"] == {"s2": str(search.resolve())}
    bad = tmp_path / "bad.yaml"
    bad.write_text("url: https://example.invalid\nbbox: [1, 2, 3, 4]\nclouds: 10\n")
    proc = run_cli(str(model), "--source", str(bad), "--out", str(tmp_path / "bad.zarr"), *QUIET)
    assert proc.returncode == 2 and "unknown key(s) ['clouds'] in the STAC search" in proc.stderr, proc.stderr


def test_killed_then_rerun_finishes_with_the_same_output(models, reference, tmp_path):
    out = tmp_path / "killed.zarr"
    ledger = out / ".eocube-progress" / "prediction"
    slow = {"DASK_EOCUBE__TESTING__CHUNK_DELAY": "0.25"}
    proc = subprocess.Popen([*EOCUBE, *_sample_args(models, out)], env={**os.environ, **slow},
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(list(ledger.glob("[0-9]*"))) < 5:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and anything it started, like a walltime kill
        proc.wait()
    done_before = len(list(ledger.glob("[0-9]*")))
    assert 5 <= done_before < 49, "the kill should land mid-way"
    with pytest.raises(eocube.IncompleteStoreError):
        eocube.open_zarr(out)
    again = run_cli(*_sample_args(models, out))
    assert again.returncode == 0, again.stdout + again.stderr
    computed, total, skipped = chunks_line(again.stdout)
    assert total == 49 and computed + skipped == total
    assert skipped >= done_before and computed < total
    np.testing.assert_array_equal(eocube.open_zarr(out).values, eocube.open_zarr(reference).values)


def test_dry_run_prints_and_writes_nothing(models, tmp_path):
    out = tmp_path / "dry.zarr"
    proc = run_cli(str(models["smooth"]), "--source", "sentinel2", "--out", str(out), "--cluster", "local",
                   "--workers", "2", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "eocube dry run" in proc.stdout and not out.exists()


# ----------------------------------------------------------------------------- bad inputs


@pytest.fixture(scope="module")
def shifted(tmp_path_factory) -> Path:
    """A Zarr cube of the 20 m bands moved by 5 m: its grid does not nest in the 10 m grid."""
    cube = sentinel2_l1c_scene()["20m"].isel(y=slice(0, 64), x=slice(0, 64))
    moved = cube.assign_coords(x=cube["x"] + 5.0)
    moved = moved.rio.write_transform(eocube.cube.transform_from_coords(moved["x"].values, moved["y"].values))
    path = tmp_path_factory.mktemp("shifted") / "shifted20.zarr"
    eocube.to_zarr(moved, path, progress=False)
    return path


def _bad_cases(models: dict[str, Path], shifted: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    afile = tmp / "a-file"
    afile.write_text("x")
    remote_items = tmp / "remote-items.yaml"
    remote_items.write_text("items: https://example.invalid/items.json\n")
    scene2 = ["--source", "10m=sentinel2_l1c:10m", "--source", "20m=sentinel2_l1c:20m"]
    return {
        "missing model": ([str(tmp / "nope.pt2"), "--source", "sentinel2"], r"model .*nope\.pt2: no such file"),
        "no card, no layout": ([str(models["nocard"]), "--source", "sentinel2"],
                               r"no model card beside .*nocard\.pt2 .*nocard\.json.*and no --layout"),
        "missing --card": ([str(models["smooth"]), "--card", str(tmp / "c.json"), "--source", "sentinel2"],
                           r"--card .*c\.json: no such file"),
        "source missing": ([str(models["three"]), *scene2],
                           (r"the model takes the source\(s\) 10m, 20m, 60m .*missing from the call: 60m: "
                           r"add --source 60m=SPEC")),
        "unnamed for several": ([str(models["three"]), "--source", "sentinel2_l1c:10m"],
                                r"has no name, but the model takes 3 source\(s\) \(10m, 20m, 60m"),
        "unknown name": ([str(models["smooth"]), "--source", "s3=sentinel2"], r"the model has no source 's3'"),
        "bands the cube lacks": ([str(models["three"]), "--source", "10m=sentinel2", *scene2[2:],
                                  "--source", "60m=sentinel2_l1c:60m"],
                                 (r"source '10m': the model needs the band\(s\) \['B02', 'B03', 'B04', 'B08'\], "
                                 r"which the cube lacks")),
        "grids do not nest": ([str(models["three"]), "--source", "10m=sentinel2_l1c:10m",
                               "--source", f"20m={shifted}", "--source", "60m=sentinel2_l1c:60m"],
                              r"not an integer: the grids do not nest; .*reproject_match"),
        "unknown source": ([str(models["smooth"]), "--source", str(tmp / "none.zarr")],
                           r"no Zarr store at .*none\.zarr and no bundled sample of that name"),
        "unwritable output": ([str(models["smooth"]), "--source", "sentinel2", "--out", str(afile / "out.zarr")],
                              r"cannot write --out .*a-file is a file, not a folder"),
        "STAC items at a URL": ([str(models["smooth"]), "--source", "https://example.invalid/items.json"],
                                (r"the STAC items file https://example\.invalid/items\.json is a URL, but STAC items "
                                 r"files and search YAMLs are read from local files")),
        "search items at a URL": ([str(models["smooth"]), "--source", str(remote_items)],
                                  r"the STAC items file https://example\.invalid/items\.json is a URL"),
    }


CASES = ["missing model", "no card, no layout", "missing --card", "source missing", "unnamed for several",
         "unknown name", "bands the cube lacks", "grids do not nest", "unknown source", "unwritable output",
         "STAC items at a URL", "search items at a URL"]


@pytest.mark.parametrize("case", CASES)
def test_bad_inputs_fail_clearly_and_write_nothing(case, models, shifted, tmp_path):
    args, message = _bad_cases(models, shifted, tmp_path)[case]
    out = tmp_path / "out.zarr"
    if "--out" not in args:
        args = [*args, "--out", str(out)]
    proc = run_cli(*args, *QUIET)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists() and not Path(str(out) + ".png").exists()


def test_a_card_beside_the_model_is_json_stac_mlm(models):
    card = json.loads(models["three"].with_suffix(".json").read_text())
    assert [i["name"] for i in card["properties"]["mlm:input"]] == ["10m", "20m", "60m"]
    assert card["assets"]["model"]["mlm:artifact_type"] == "torch.export.save"
