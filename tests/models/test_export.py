"""torch.export programs (.pt2): dynamic sizes, safety checks, export_model and its card."""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from eocube.models import ModelLoadError, apply_model, clear_cache
from eocube.models._loading import (
    SAFE_FORMATS,
    ExportedProgramSource,
    TorchScriptSource,
    as_source,
    from_exported,
    get_model,
    model_file_format,
)
from eocube.models._spec import ModelSpec, OutputSpec, SourceSpec
from eocube.models.card import artifact_type, export_model, find_card, load_card

TORCHSCRIPT_DEPRECATED = r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning"


class MaskedNet(nn.Module):
    """Two inputs of the same size (data and a validity mask): their sizes must stay tied."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x * valid, valid], 1))


def _export_static(net: nn.Module, path: Path, *example: torch.Tensor) -> Path:
    torch.export.save(torch.export.export(net.eval(), example), str(path))
    return path


def test_pt2_with_dynamic_sizes_matches_the_eager_net(tmp_path, make_cnn):
    net = make_cnn(3)
    path = export_model(net, torch.zeros(2, 3, 32, 32), tmp_path / "net.pt2")
    assert model_file_format(path) == "torch.export" and artifact_type(path) == "torch.export.save"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        source = as_source(str(path))
        module = get_model(source, torch.device("cpu"))
        with torch.no_grad():
            outs = [(module(x), net(x)) for x in (torch.randn(1, 3, 41, 37), torch.randn(5, 3, 8, 100))]
    assert isinstance(source, ExportedProgramSource) and source.token.startswith("export-")
    for got, expected in outs:
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    deprecations = [w for w in seen if issubclass(w.category, DeprecationWarning)]
    assert not deprecations, [str(w.message) for w in deprecations]  # no torch.jit on this path
    assert net.training is False  # make_cnn's eval mode is kept


def test_apply_model_runs_a_pt2_file(tmp_path, make_cnn, make_unit_cube):
    clear_cache()
    net = make_cnn(3)
    path = export_model(net, torch.zeros(2, 3, 32, 32), tmp_path / "net.pt2")
    cube = make_unit_cube(chunks={"y": 20, "x": 20})
    np.testing.assert_allclose(apply_model(cube, str(path), halo=4).values, apply_model(cube, net, halo=4).values,
                               atol=1e-6, rtol=0)


def test_several_inputs_with_tied_sizes_export(tmp_path):
    net = MaskedNet()
    path = export_model(net, (torch.zeros(2, 3, 16, 16), torch.ones(2, 1, 16, 16)), tmp_path / "masked.pt2")
    module = from_exported(path).build()
    x, valid = torch.randn(3, 3, 9, 21), (torch.rand(3, 1, 9, 21) > 0.5).float()
    torch.testing.assert_close(module(x, valid), net(x, valid), atol=1e-6, rtol=0)


def test_static_program_is_refused_with_export_advice(tmp_path, make_cnn):
    path = _export_static(make_cnn(3), tmp_path / "static.pt2", torch.zeros(2, 3, 32, 32))
    with pytest.raises(ModelLoadError, match=r"exported with static sizes \(input 'input' has static dims \[0, 2, 3\]"
                       ) as info:
        as_source(path)
    message = str(info.value)
    assert "torch.export.Dim" in message and "batch of 2, not 1" in message and "export_model" in message
    half = tmp_path / "batch-only.pt2"
    torch.export.save(torch.export.export(make_cnn(3), (torch.zeros(2, 3, 32, 32),),
                                          dynamic_shapes=({0: torch.export.Dim.DYNAMIC},)), str(half))
    with pytest.raises(ModelLoadError, match=r"static dims \[2, 3\]"):
        from_exported(half)


def test_changed_pt2_file_is_refused(tmp_path, make_cnn):
    path = export_model(make_cnn(3), torch.zeros(2, 3, 16, 16), tmp_path / "net.pt2")
    source = as_source(path)
    export_model(make_cnn(3, seed=1), torch.zeros(2, 3, 16, 16), path)  # other weights, same name
    with pytest.raises(ModelLoadError, match=r"changed after the computation was set up"):
        source.build()


def test_pt2_detected_by_content_and_by_extension(tmp_path, make_cnn):
    path = export_model(make_cnn(3), torch.zeros(2, 3, 16, 16), tmp_path / "net.pt2")
    renamed = shutil.copy(path, tmp_path / "net.model")
    assert isinstance(as_source(renamed), ExportedProgramSource)
    (tmp_path / "fake.pt2").write_bytes(b"not an archive")
    with pytest.raises(ModelLoadError, match=r"fake\.pt2' is not a torch.export program"):
        as_source(tmp_path / "fake.pt2")


def _rewrite(src: Path, dst: Path, change) -> Path:
    """A copy of a zip archive with some members changed (``change(name, data) -> data``) or added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for name in zin.namelist():
            zout.writestr(name, change(name, zin.read(name)))
        extra = change(None, b"")
        if extra:
            zout.writestr(f"{root}/{extra[0]}", extra[1])
    return dst


def test_pt2_holding_pickles_or_compiled_code_is_refused(tmp_path, make_cnn):
    path = export_model(make_cnn(3), torch.zeros(2, 3, 16, 16), tmp_path / "net.pt2")

    def pickled_weight(name, data):
        if name and name.endswith("_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        return data if name else None

    def aoti(name, data):
        return data if name else ("data/aotinductor/model/model.so", b"\x7fELF")

    bad_weights = _rewrite(path, tmp_path / "pickled.pt2", pickled_weight)
    with pytest.raises(ModelLoadError, match=r"is a pickled object.*torch\.export\.save"):
        as_source(bad_weights)
    with pytest.raises(ModelLoadError, match=r"holds compiled code \(data/aotinductor/"):
        as_source(_rewrite(path, tmp_path / "aoti.pt2", aoti))


def test_whole_module_torch_save_is_still_refused(tmp_path, make_cnn, recwarn):
    path = tmp_path / "whole.pt"
    torch.save(make_cnn(3), path)
    source = as_source(path)
    assert isinstance(source, TorchScriptSource)
    with pytest.raises(ModelLoadError, match="arbitrary pickled Python objects") as info:
        source.build()
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]  # torch.jit.load not called
    assert SAFE_FORMATS in str(info.value) and ".pt2" in SAFE_FORMATS and "weights_only=False" not in str(info.value)
    named_pt2 = shutil.copy(path, tmp_path / "whole.pt2")
    with pytest.raises(ModelLoadError, match=r"is not a torch.export program"):
        as_source(named_pt2)
    (tmp_path / "junk.ts").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match=r"junk\.ts' is not a TorchScript file \(RuntimeError: its content"):
        as_source(tmp_path / "junk.ts").build()


@pytest.mark.filterwarnings(TORCHSCRIPT_DEPRECATED)
def test_torchscript_files_still_load(tmp_path, make_cnn):
    net = make_cnn(3)
    path = tmp_path / "net.ts"
    torch.jit.save(torch.jit.script(net), str(path))
    assert model_file_format(path) == "torchscript" and artifact_type(path) == "torch.jit.save"
    module = as_source(path).build()
    x = torch.randn(1, 3, 12, 9)
    torch.testing.assert_close(module(x), net(x))


def test_export_model_writes_the_card_and_restores_the_mode(tmp_path, make_cnn):
    net = make_cnn(3).train()
    spec = ModelSpec(sources=(SourceSpec(name="s2", bands=("a", "b", "c")),),
                     output=OutputSpec(bands=("p", "q")), halo=4, name="tiny")
    path = export_model(net, torch.zeros(2, 3, 16, 16), tmp_path / "tiny.pt2", spec=spec,
                        properties={"mlm:pretrained": False})
    assert net.training  # exported in eval mode, mode restored
    card = find_card(path)
    assert card == tmp_path / "tiny.json" and load_card(card) == spec
    item = json.loads(card.read_text())
    assert item["properties"]["mlm:architecture"] == "Sequential" and item["properties"]["mlm:pretrained"] is False
    assert item["assets"]["model"]["href"] == "./tiny.pt2"
    assert item["assets"]["model"]["mlm:artifact_type"] == "torch.export.save"


def test_export_model_refuses_examples_of_size_one(tmp_path, make_cnn):
    with pytest.raises(ValueError, match=r"example input 0 has shape \(1, 3, 16, 16\): use a batch of at least 2"):
        export_model(make_cnn(3), torch.zeros(1, 3, 16, 16), tmp_path / "net.pt2")
    assert not (tmp_path / "net.pt2").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch (CPU build or no GPU)")
def test_pt2_program_moves_to_cuda(tmp_path, make_cnn):
    net = make_cnn(3)
    path = export_model(net, torch.zeros(2, 3, 16, 16), tmp_path / "net.pt2")
    module = get_model(as_source(path), torch.device("cuda"))
    x = torch.randn(3, 3, 33, 17)
    with torch.no_grad():
        got = module(x.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), net(x), atol=1e-4, rtol=1e-4)
    clear_cache()
