"""Model cards (STAC MLM items): round trip, a published-style item, clear errors, value scaling."""

from __future__ import annotations

import copy
import json
import math
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from eocube.models._spec import ClassInfo, ModelSpec, OutputSpec, Scaling, SourceSpec
from eocube.models.card import (
    MLM_SCHEMA,
    CardError,
    artifact_type,
    card_model_path,
    find_card,
    load_card,
    scale_values,
    write_card,
)

DATA = Path(__file__).parent / "data"
PUBLISHED = DATA / "unet_s2_landcover_mlm.json"  # hand-written to the MLM v1.4 spec, see its "$comment"


def _full_spec() -> ModelSpec:
    """A spec that sets every field away from its default."""
    s2 = SourceSpec(
        name="s2", bands=("B02", "B03", "B04", "B08"), layout="sequence", valid_input="channel", time_input="doy",
        fill_value=-1.0, resolution=(10.0, 10.0),
        scaling=(Scaling("z-score", mean=1000.0, stddev=500.0),),
    )
    s1 = SourceSpec(
        name="s1", bands=("VV", "VH"), layout="time_band", valid_input="argument", time_input="days",
        scaling=(Scaling("offset", value=1.5), Scaling("clip", minimum=0.0, maximum=1.0)), resolution=(20.0, 20.0),
    )
    output = OutputSpec(
        bands=("class",), kind="map", time=pd.Timestamp("2021-05-01"), postprocess="argmax", dtype="uint8",
        nodata=255, mask="all", scale=Fraction(1, 4),
        classes=(ClassInfo(0, "water", "0000ff"), ClassInfo(1, "forest", "00ff00", "trees")),
    )
    return ModelSpec(sources=(s2, s1), output=output, reference="s2", halo=12, size_multiple=16,
                     pairing="nearest", tolerance="3D", name="demo")


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(),
        _full_spec(),
        ModelSpec(sources=(SourceSpec(bands=("a", "b")),), output=OutputSpec(bands="input", scale=Fraction(4)),
                  halo="probe"),
        ModelSpec(output=OutputSpec(bands=("ndvi",), kind="per_date", mask=None, postprocess="sigmoid",
                                    scale=Fraction(1))),
    ],
    ids=["defaults", "every-field", "super-resolution", "per-date"],
)
def test_write_then_load_gives_the_same_spec(tmp_path, spec):
    model = tmp_path / "net.pt2"
    model.write_bytes(b"")
    card = write_card(spec, model)
    assert card == tmp_path / "net.json"  # the primary name
    assert find_card(model) == card
    assert load_card(card) == (spec if spec.name else spec.replace(name="net"))  # mlm:name is required


def test_written_card_is_an_mlm_item_pystac_reads(tmp_path):
    pystac = pytest.importorskip("pystac")
    from pystac.extensions.mlm import MLMExtension

    model = tmp_path / "demo.pt2"
    model.write_bytes(b"")
    card = write_card(_full_spec(), model, architecture="UNet", bbox=[5.0, 45.0, 6.0, 46.0])
    item = pystac.Item.from_dict(json.loads(card.read_text()))
    assert MLM_SCHEMA in item.stac_extensions and MLMExtension.has_extension(item)
    mlm = MLMExtension.ext(item)
    assert (mlm.mlm_name, mlm.architecture, mlm.tasks, mlm.framework) == (
        "demo", "UNet", ["semantic-segmentation"], "PyTorch")
    s2, s1 = mlm.input
    assert (s2.name, s2.bands, s2.input.shape) == ("s2", ["B02", "B03", "B04", "B08"], [-1, -1, 5, -1, -1])
    assert s2.input.dim_order == ["batch", "time", "channel", "height", "width"]
    assert s1.input.dim_order == ["batch", "channel", "height", "width"]
    assert s1.properties["eocube:layout"] == "time_band"
    assert s1.properties["value_scaling"] == [{"type": "offset", "value": 1.5},
                                              {"type": "clip", "minimum": 0.0, "maximum": 1.0}]
    (out,) = mlm.output
    assert [c.value for c in out.classes] == [0, 1] and out.result.shape == [-1, 2, -1, -1]
    assert out.properties["eocube:scale"] == "1/4"
    assert item.geometry["type"] == "Polygon" and item.bbox == [5.0, 45.0, 6.0, 46.0]
    assert card_model_path(card) == model.resolve()


@pytest.mark.parametrize("how", ["relative", "file-uri", "url"])
def test_card_model_path_of_each_href(tmp_path, how):
    model = tmp_path / "models" / "net.pt2"
    model.parent.mkdir()
    model.write_bytes(b"")
    card = write_card(ModelSpec(), model, path=tmp_path / "net.json")
    item = json.loads(card.read_text())
    assert item["assets"]["model"]["href"] == "./models/net.pt2"
    href = {"relative": "./models/net.pt2", "file-uri": model.resolve().as_uri(),
            "url": "https://example.com/models/net.pt2"}[how]
    item["assets"]["model"]["href"] = href  # write_card writes a file:// URI for a model on another drive
    card.write_text(json.dumps(item))
    assert card_model_path(card) == (None if how == "url" else model.resolve())


def test_published_mlm_item_loads_as_is():
    spec = load_card(PUBLISHED)
    (src,) = spec.sources
    assert spec.name == "unet-resnet34-s2l2a-landcover"
    assert src.bands == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    assert src.layout == "band" and src.valid_input is None and src.time_input is None
    assert len(src.scaling) == 12 and {s.type for s in src.scaling} == {"z-score"}
    assert src.scaling[1] == Scaling("z-score", mean=1150.0, stddev=330.0)
    out = spec.output
    assert [c.name for c in out.classes] == ["no-data", "water", "cropland", "forest", "built-up"]
    assert out.classes[3].color == "006400"
    assert out.postprocess == "argmax"  # class scores with classes: the class map
    assert out.nodata == 0  # the class marked nodata
    assert out.scale == "probe" and spec.halo == "auto" and spec.size_multiple == 1


def test_find_card_names_and_precedence(tmp_path):
    model = tmp_path / "m.pt2"
    model.write_bytes(b"")
    assert find_card(model) is None
    (tmp_path / "m.json").write_text('{"learning_rate": 0.01}')  # a config, not a card: ignored
    assert find_card(model) is None
    shutil.copy(PUBLISHED, tmp_path / "m.json")
    assert find_card(model) == tmp_path / "m.json"
    shutil.copy(PUBLISHED, tmp_path / "m.card.json")
    assert find_card(model) == tmp_path / "m.card.json"
    shutil.copy(PUBLISHED, tmp_path / "m.pt2.json")
    assert find_card(model) == tmp_path / "m.pt2.json"
    (tmp_path / "m.json").unlink()
    (tmp_path / "m.card.json").unlink()
    (tmp_path / "m.pt2.json").write_text("{ broken")  # a broken card is found, and reported by load_card
    assert find_card(model) == tmp_path / "m.pt2.json"
    with pytest.raises(CardError, match=r"m\.pt2\.json: not valid JSON"):
        load_card(find_card(model))


def _edit(path: Path, change) -> Path:
    item = json.loads(PUBLISHED.read_text())
    change(item)
    path.write_text(json.dumps(item))
    return path


def _inp(item):
    return item["properties"]["mlm:input"][0]


def _out(item):
    return item["properties"]["mlm:output"][0]


BAD_CARDS = {
    "unknown-layout": (lambda i: _inp(i).update({"eocube:layout": "pixels"}),
                       r"mlm:input\[0\]\.eocube:layout: unknown value \"pixels\""),
    "layout-vs-dims": (lambda i: _inp(i).update({"eocube:layout": "sequence"}),
                       r"mlm:input\[0\]\.input\.dim_order: .* does not fit eocube:layout 'sequence'"),
    "channels-last": (lambda i: _inp(i)["input"].update({"dim_order": ["batch", "height", "width", "channel"]}),
                      r"mlm:input\[0\]\.input\.dim_order: eocube feeds channels-first"),
    "no-input": (lambda i: i["properties"].pop("mlm:input"), r": mlm:input: expected a list, got null"),
    "input-without-structure": (lambda i: _inp(i).pop("input"), r"mlm:input\[0\]\.input: expected an object"),
    "bands-wrong-type": (lambda i: _inp(i).update({"bands": "B02,B03"}), r"mlm:input\[0\]\.bands: expected a list"),
    "shape-vs-bands": (lambda i: _inp(i)["input"].update({"shape": [-1, 13, 256, 256]}),
                       r"mlm:input\[0\]\.input\.shape: the channel size 13 does not match the bands: 12 bands"),
    "shape-vs-dim-order": (lambda i: _inp(i)["input"].update({"shape": [-1, 12, 256]}),
                           r"mlm:input\[0\]\.input: shape \[-1, 12, 256\] has 3 dims but dim_order"),
    "shape-wrong-type": (lambda i: _inp(i)["input"].update({"shape": [-1, "12", 256, 256]}),
                         r"mlm:input\[0\]\.input\.shape: expected a list of sizes"),
    "scaling-wrong-type": (lambda i: _inp(i).update({"value_scaling": "z-score"}),
                           r"mlm:input\[0\]\.value_scaling: expected a list"),
    "scaling-count": (lambda i: _inp(i)["value_scaling"].pop(), r"value_scaling: 11 scalings for 12 bands"),
    "scaling-missing-stddev": (lambda i: _inp(i)["value_scaling"][2].pop("stddev"),
                               r"mlm:input\[0\]\.value_scaling\[2\]: z-score needs stddev"),
    "scaling-not-a-number": (lambda i: _inp(i)["value_scaling"][0].update({"mean": "1380"}),
                             r"mlm:input\[0\]\.value_scaling\[0\]\.mean: expected a number"),
    "scaling-processing": (lambda i: _inp(i)["value_scaling"].__setitem__(
        0, {"type": "processing", "format": "gdal-calc", "expression": "A*2"}),
        r"value_scaling\[0\]\.type: eocube does not run 'processing' expressions"),
    "band-expression": (lambda i: _inp(i)["bands"].__setitem__(
        0, {"name": "NDVI", "format": "rio-calc", "expression": "(B08-B04)/(B08+B04)"}),
        r"mlm:input\[0\]\.bands\[0\]\.expression: eocube does not compute bands"),
    "class-value-type": (lambda i: _out(i)["classification:classes"][1].update({"value": "1"}),
                         r"mlm:output\[0\]\.classification:classes\[1\]\.value: expected an integer"),
    "output-bands-vs-shape": (lambda i: _out(i).update({"eocube:bands": ["a", "b"], "eocube:postprocess": None}),
                              r"mlm:output\[0\]\.result\.shape: the channel size 5 does not match the 2 output"),
    "scale": (lambda i: _out(i).update({"eocube:scale": 0.3}), r"eocube:scale: 0.3 is not an integer ratio"),
    "scale-two-thirds": (lambda i: _out(i).update({"eocube:scale": "2/3"}), r"eocube:scale: \"2/3\" is not an integer ratio"),
    "scale-type": (lambda i: _out(i).update({"eocube:scale": [4]}), r"eocube:scale: expected \"probe\", an integer"),
    "halo": (lambda i: i["properties"].update({"eocube:halo": -2}), r"eocube:halo: expected \"auto\""),
    "reference": (lambda i: i["properties"].update({"eocube:reference": "s1"}),
                  r"eocube:reference: 's1' is not one of the inputs"),
    "tolerance": (lambda i: i["properties"].update({"eocube:tolerance": "three days"}),
                  r"eocube:tolerance: expected a pandas Timedelta"),
    "two-outputs": (lambda i: i["properties"]["mlm:output"].append(copy.deepcopy(_out(i))),
                    r"mlm:output: eocube runs models with one output"),
}


@pytest.mark.parametrize("name", list(BAD_CARDS))
def test_bad_cards_name_the_file_and_the_field(tmp_path, name):
    change, message = BAD_CARDS[name]
    card = _edit(tmp_path / f"{name}.json", change)
    with pytest.raises(CardError, match=message) as info:
        load_card(card)
    assert str(info.value).startswith(f"model card {card}: ")


def test_card_that_is_not_an_object_or_missing(tmp_path):
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(CardError, match=r"list\.json: expected a JSON object"):
        load_card(tmp_path / "list.json")
    with pytest.raises(CardError, match=r"absent\.json: the file does not exist"):
        load_card(tmp_path / "absent.json")


def test_unsupported_processing_functions_warn_but_load(tmp_path):
    def change(item):
        _inp(item)["pre_processing_function"] = {"format": "python", "expression": "pkg.module:normalise"}
        _out(item)["post_processing_function"] = {"format": "python", "expression": "pkg.module:smooth"}

    with pytest.warns(UserWarning, match="pre_processing_function is not run by eocube"), \
            pytest.warns(UserWarning, match="post_processing_function .* is not run by eocube"):
        spec = load_card(_edit(tmp_path / "c.json", change))
    assert spec.output.postprocess == "argmax"
    known = _edit(tmp_path / "k.json", lambda i: _out(i).update(
        {"post_processing_function": {"format": "python", "expression": "torch.softmax"}}))
    assert load_card(known).output.postprocess == "softmax"


def test_mlm_variants_eocube_accepts(tmp_path):
    def change(item):
        inp = _inp(item)
        inp["bands"] = [{"name": b} for b in inp["bands"]]  # Model Band Objects
        inp["value_scaling"] = [{"type": None}] * 12  # MLM: no scaling for these bands
        inp["input"] = {"shape": [12, -1, -1], "dim_order": ["channel", "height", "width"], "data_type": "uint16"}
        _out(item)["result"] = {"shape": [-1, -1, -1], "dim_order": ["batch", "height", "width"],
                                "data_type": "uint8"}  # already a class map: no argmax

    spec = load_card(_edit(tmp_path / "v.json", change))
    assert spec.sources[0].bands[:2] == ("B01", "B02") and spec.sources[0].layout == "band"
    assert spec.sources[0].scaling[0] == Scaling("offset", value=0.0)
    assert spec.output.postprocess is None
    single = _edit(tmp_path / "s.json", lambda i: _inp(i).update({"value_scaling": {"type": "scale", "value": 1e4}}))
    assert load_card(single).sources[0].scaling == (Scaling("scale", value=1e4),)  # one object, as pystac writes it


def test_artifact_types(tmp_path, make_cnn):
    net = make_cnn(3)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    assert artifact_type(tmp_path / "w.pth") == "torch.save"
    assert artifact_type(tmp_path / "absent.pt2") is None
    (tmp_path / "x.bin").write_bytes(b"not a model")
    assert artifact_type(tmp_path / "x.bin") is None


# --------------------------------------------------------------------------- scale_values

SCALINGS = (
    Scaling("z-score", mean=2.0, stddev=4.0),
    Scaling("min-max", minimum=0.0, maximum=10.0),
    Scaling("offset", value=1.0),
    Scaling("scale", value=2.0),
    Scaling("clip", minimum=0.0, maximum=3.0),
    Scaling("clip-min", minimum=2.0),
    Scaling("clip-max", maximum=2.0),
)
BAND = np.array([-2.0, 0.0, 2.0, 6.0, np.nan], dtype="float32")
EXPECTED = np.stack([
    (BAND - 2) / 4, BAND / 10, BAND - 1, BAND / 2, np.clip(BAND, 0, 3), np.maximum(BAND, 2), np.minimum(BAND, 2),
])


def test_scale_values_per_band_numpy_and_torch():
    x = np.broadcast_to(BAND, (len(SCALINGS), 5)).reshape(1, len(SCALINGS), 1, 5).copy()  # (N, F, H, W)
    before = x.copy()
    out = scale_values(x, SCALINGS)
    np.testing.assert_allclose(out[0, :, 0], EXPECTED, rtol=1e-6)
    assert out.dtype == np.float32 and np.isnan(out[..., -1]).all()
    np.testing.assert_array_equal(x, before)  # the input is not modified
    t = torch.from_numpy(x)
    out_t = scale_values(t, SCALINGS)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy()[0, :, 0], EXPECTED, rtol=1e-6)
    np.testing.assert_array_equal(t.numpy(), before)


def test_scale_values_broadcast_axis_and_integers():
    x = np.arange(2 * 3 * 2 * 4 * 4, dtype="uint16").reshape(2, 3, 2, 4, 4)  # (N, T, F, H, W)
    out = scale_values(x, (Scaling("scale", value=1e4),))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x / 1e4, rtol=1e-6)
    per_band = scale_values(x, (Scaling("offset", value=1), Scaling("offset", value=2)))  # band axis -3 of 5-d
    np.testing.assert_array_equal(per_band[:, :, 1], x[:, :, 1].astype("float32") - 2)
    chw = scale_values(torch.ones(3, 2, 2, dtype=torch.int32), SCALINGS[:3], axis=0)
    assert chw[:, 0, 0].tolist() == pytest.approx([-0.25, 0.1, 0.0])
    assert scale_values(x, ()) is x


def test_scale_values_errors():
    x = np.zeros((1, 2, 3, 3), dtype="float32")
    with pytest.raises(ValueError, match=r"3 value scalings for an array of shape \(1, 2, 3, 3\)"):
        scale_values(x, SCALINGS[:3])
    with pytest.raises(ValueError, match="value scaling 0: z-score needs stddev"):
        scale_values(x, (Scaling("z-score", mean=1.0),))
    with pytest.raises(ValueError, match="min-max needs maximum != minimum"):
        scale_values(x, (Scaling("min-max", minimum=1.0, maximum=1.0),))
    with pytest.raises(TypeError, match="NumPy array or a torch tensor"):
        scale_values([1.0, 2.0], SCALINGS[:1])
    assert math.isnan(float(scale_values(np.array([[[np.nan]]], "float32"), SCALINGS[:1])[0, 0, 0]))
