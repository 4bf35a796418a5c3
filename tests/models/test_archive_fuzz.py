"""Crafted model archives never run code (issue 21, item 1).

Every archive below is built from a legitimate file of its format (a ``.pt2`` of
:func:`eocube.models.card.export_model`, a TorchScript file, a ``state_dict``, an eocube training
checkpoint) and made hostile: a duplicated entry whose copy torch reads holds a pickled payload,
``use_pickle`` or pickled objects in the configs, pickled sample inputs, a shape expression that
``sympy.sympify`` evaluates as Python, path traversal names, zip bombs, truncated, damaged and
garbage files, entries torch would read that the format does not have. Each payload, when run,
creates a marker file; each test loads the file the way eocube does and asserts that the load
is refused with a :class:`~eocube.models.ModelLoadError` of one line naming the file and the
reason, and that the marker never appears. Legitimate files of every format still load.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import eocube
from eocube.learn.checkpoint import load_checkpoint, save_checkpoint
from eocube.learn.networks import GapFillNet
from eocube.models import ModelLoadError, from_state_dict, from_torchscript
from eocube.models._loading import as_source, from_exported
from eocube.models.card import export_model

TORCHSCRIPT_DEPRECATED = r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning"
pytestmark = pytest.mark.filterwarnings(TORCHSCRIPT_DEPRECATED)


class Payload:
    """Unpickling it creates ``marker`` (``open(marker, "w")``): harmless, and visible."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def torch_payload(marker: Path) -> bytes:
    """A ``torch.save`` archive whose unpickling (``weights_only=False``) creates ``marker``."""
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    return buffer.getvalue()


def pickle_payload(marker: Path) -> bytes:
    import pickle

    return pickle.dumps(Payload(marker))


class Net(nn.Module):
    """A 1x1 convolution times a tensor constant (so the program has weights and constants)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 1)
        self.scale = torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale


def build_net() -> nn.Module:
    """Factory of :class:`Net` (for :func:`eocube.models.from_state_dict`)."""
    return Net().eval()


@pytest.fixture(scope="module")
def legit(tmp_path_factory) -> dict[str, Path]:
    """One legitimate file of each format eocube loads."""
    base = tmp_path_factory.mktemp("legit")
    net = build_net()
    files = {"pt2": export_model(net, torch.zeros(2, 3, 16, 16), base / "net.pt2")}
    torch.jit.save(torch.jit.script(net), str(base / "net.ts"))
    files["ts"] = base / "net.ts"
    torch.save(net.state_dict(), base / "weights.pt")
    files["sd"] = base / "weights.pt"
    gap = GapFillNet(n_bands=1, hidden=4, depth=1, kernel_t=3)
    files["ckpt"] = save_checkpoint(base / "last.pt", model=gap, config={"seed": 0}, epoch=1,
                                    optimizer=torch.optim.AdamW(gap.parameters()))
    return files


def entries(path: Path) -> list[tuple[str, bytes, int]]:
    """(name, data, compression) of every entry, in order."""
    with zipfile.ZipFile(path) as archive:
        return [(i.filename, archive.read(i.filename), i.compress_type) for i in archive.infolist()]


def write(path: Path, items: list[tuple[str, bytes, int]]) -> Path:
    """A zip archive of ``items`` (several entries may have one name)."""
    with zipfile.ZipFile(path, "w") as archive, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        for name, data, method in items:
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return path


def root(items: list[tuple[str, bytes, int]]) -> str:
    return items[0][0].split("/", 1)[0]


def named(items: list[tuple[str, bytes, int]], tail: str) -> tuple[str, bytes, int]:
    return next(item for item in items if item[0].endswith(tail))


def stealth_duplicate(src: Path, dst: Path, tail: str, evil: bytes, extra: list[tuple[str, bytes]] = ()) -> Path:
    """``src`` with a second entry named like the one ending in ``tail`` holding ``evil``, the two placed
    where torch's reader picks the evil copy while Python's ``zipfile`` (what eocube checked before)
    reads the original, the last one: the crafted file of the issue."""
    items = entries(src)
    original = named(items, tail)
    others = [item for item in items if item is not original]
    others += [(f"{root(items)}/{n}", d, zipfile.ZIP_STORED) for n, d in extra]
    name = original[0]
    for first in range(len(others) + 1):
        for second in range(first, len(others) + 1):
            crafted = list(others)
            crafted.insert(second, original)
            crafted.insert(first, (name, evil, zipfile.ZIP_STORED))
            write(dst, crafted)
            torch_reads = bytes(torch._C.PyTorchFileReader(str(dst)).get_record(name.split("/", 1)[1]))
            with zipfile.ZipFile(dst) as archive:
                zipfile_reads = archive.read(name)
            if torch_reads == evil and zipfile_reads != evil:
                return dst
    raise AssertionError(f"no placement of {tail} makes torch read the evil copy")


def with_config(items, tail: str, change: Callable[[dict], None]) -> list[tuple[str, bytes, int]]:
    """``items`` with the JSON entry ending in ``tail`` changed by ``change``."""
    out = []
    for name, data, method in items:
        if name.endswith(tail):
            config = json.loads(data)
            change(config)
            data = json.dumps(config).encode()
        out.append((name, data, method))
    return out


def pickled_weight(config: dict) -> None:
    meta = next(iter(config["config"].values()))
    meta.update(use_pickle=True, path_name="weight_9")


def pickled_constant(config: dict) -> None:
    meta = next(iter(config["config"].values()))
    meta.update(use_pickle=True, path_name="tensor_9")


def opaque_constant(config: dict) -> None:
    meta = next(iter(config["config"].values()))
    meta.update(path_name="opaque_obj_0", tensor_meta=None)


# ------------------------------------------------------------------------------------- the crafted files


def pt2_cases(legit: dict[str, Path], tmp: Path, marker: Path) -> dict[str, tuple[Path, str]]:
    """Crafted ``.pt2`` files: ``{case: (path, reason pattern)}``."""
    src = legit["pt2"]
    items = entries(src)
    r = root(items)
    evil = torch_payload(marker)
    cases: dict[str, tuple[Path, str]] = {}

    first = json.loads(named(items, "model_weights_config.json")[1])
    pickled_weight(first)
    cases["duplicate weights config (torch reads use_pickle)"] = (
        stealth_duplicate(src, tmp / "dup_weights.pt2", "data/weights/model_weights_config.json",
                          json.dumps(first).encode(), [("data/weights/weight_9", evil)]),
        r"two entries named '[^']*data/weights/model_weights_config\.json'")
    first = json.loads(named(items, "model_constants_config.json")[1])
    pickled_constant(first)
    cases["duplicate constants config (torch reads use_pickle)"] = (
        stealth_duplicate(src, tmp / "dup_constants.pt2", "data/constants/model_constants_config.json",
                          json.dumps(first).encode(), [("data/constants/tensor_9", evil)]),
        r"two entries named '[^']*model_constants_config\.json'")
    cases["duplicate sample inputs (torch reads a pickle)"] = (
        stealth_duplicate(src, tmp / "dup_inputs.pt2", "data/sample_inputs/model.pt", evil),
        r"two entries named '[^']*data/sample_inputs/model\.pt'")
    variant = f"{r}/data/weights/MODEL_weights_config.json"
    cases["entries differing only in case"] = (
        write(tmp / "case.pt2", [(variant, named(items, "model_weights_config.json")[1], 0), *items]),
        r"confuses \(it ignores case\)")
    cases["use_pickle in the weights config"] = (
        write(tmp / "weights_pickle.pt2", with_config(items, "model_weights_config.json", pickled_weight)
              + [(f"{r}/data/weights/weight_9", evil, 0)]),
        r"'conv\.weight' in data/weights/model_weights_config\.json is a pickled object")
    cases["use_pickle in the constants config"] = (
        write(tmp / "constants_pickle.pt2", with_config(items, "model_constants_config.json", pickled_constant)
              + [(f"{r}/data/constants/tensor_9", evil, 0)]),
        r"in data/constants/model_constants_config\.json is a pickled object")
    cases["opaque object constant (pickle.loads)"] = (
        write(tmp / "opaque.pt2", with_config(items, "model_constants_config.json", opaque_constant)
              + [(f"{r}/data/constants/opaque_obj_0", pickle_payload(marker), 0)]),
        r"it holds a pickled object \(data/constants/opaque_obj_0\)")
    cases["pickled sample inputs"] = (
        write(tmp / "inputs_pickle.pt2", [(n, evil if n.endswith("sample_inputs/model.pt") else d, m)
                                          for n, d, m in items]),
        r"sample inputs \(data/sample_inputs/model\.pt\) are pickled objects")
    program = named(items, "models/model.json")[1].decode()
    symbol = re.search(r"Symbol\('s\d+', positive=True, integer=True\)", program).group(0)
    payload = f"{symbol} if open({str(marker)!r}, 'w') else {symbol}"
    cases["shape expression that runs Python in sympify"] = (
        write(tmp / "sympy.pt2", [(n, program.replace(json.dumps(symbol), json.dumps(payload)).encode()
                                   if n.endswith("models/model.json") else d, m) for n, d, m in items]),
        r"shape expression .* not made of sympy constructors")
    cases["duplicate key in a JSON config"] = (
        write(tmp / "json_key.pt2", [(n, d.replace(b'"config": {', b'"config": {}, "config": {', 1)
                                      if n.endswith("model_weights_config.json") else d, m) for n, d, m in items]),
        r"repeats the key 'config'")
    for case, name in [("path traversal", f"{r}/data/../../evil.pkl"), ("absolute name", "/tmp/evil.pkl"),
                       ("backslashes", f"{r}\\data\\evil.pkl"), ("drive letter", "C:/evil.pkl")]:
        cases[f"{case} in an entry name"] = (
            write(tmp / f"{case.replace(' ', '_')}.pt2", [*items, (name, evil, 0)]), r"is a path out of its folder")
    cases["an entry in a second root folder"] = (
        write(tmp / "roots.pt2", [*items, ("other/extra/note.txt", b"hi", 0)]), r"in 2 root folders")
    cases["legacy pickled weights"] = (
        write(tmp / "legacy.pt2", [*items, (f"{r}/data/weights/model.pt", evil, 0)]),
        r"pickled weights in the legacy format")
    cases["compiled code (AOTInductor)"] = (
        write(tmp / "aoti.pt2", [*items, (f"{r}/data/aotinductor/model/model.so", b"\x7fELF", 0)]),
        r"holds compiled code \(data/aotinductor/")
    cases["zip bomb (40 MB of zeros deflated)"] = (
        write(tmp / "bomb.pt2", [*items, (f"{r}/extra/bomb.txt", bytes(40 << 20), zipfile.ZIP_DEFLATED)]),
        r"declare \d+ bytes in a file of \d+ bytes \(a zip bomb\)")
    cases["compressed weights"] = (
        write(tmp / "deflated.pt2", [(n, d, zipfile.ZIP_DEFLATED if n.endswith("weight_0") else m)
                                     for n, d, m in items]),
        r"'data/weights/weight_0' is compressed \(deflate\), torch writes it stored")
    data = src.read_bytes()
    (tmp / "truncated.pt2").write_bytes(data[: len(data) // 2])
    cases["truncated file"] = (tmp / "truncated.pt2", r"truncated or corrupt")
    (tmp / "prepended.pt2").write_bytes(b"\0" * 100 + data)
    cases["data prepended to the archive"] = (tmp / "prepended.pt2", r"torch's zip reader refuses it")
    damaged = bytearray(data)
    offset = torch._C.PyTorchFileReader(str(src)).get_record_offset("data/weights/weight_0")
    damaged[offset] ^= 0xFF
    (tmp / "damaged.pt2").write_bytes(bytes(damaged))
    cases["damaged weights (bad CRC)"] = (tmp / "damaged.pt2", r"'[^']*weight_0' is damaged \(BadZipFile")
    (tmp / "garbage.pt2").write_bytes(np.random.default_rng(0).bytes(5000))
    cases["garbage"] = (tmp / "garbage.pt2", r"not a zip archive")
    return cases


PT2_CASES = [
    "duplicate weights config (torch reads use_pickle)", "duplicate constants config (torch reads use_pickle)",
    "duplicate sample inputs (torch reads a pickle)", "entries differing only in case",
    "use_pickle in the weights config", "use_pickle in the constants config", "opaque object constant (pickle.loads)",
    "pickled sample inputs", "shape expression that runs Python in sympify", "duplicate key in a JSON config",
    "path traversal in an entry name", "absolute name in an entry name", "backslashes in an entry name",
    "drive letter in an entry name", "an entry in a second root folder", "legacy pickled weights",
    "compiled code (AOTInductor)", "zip bomb (40 MB of zeros deflated)", "compressed weights", "truncated file",
    "data prepended to the archive", "damaged weights (bad CRC)", "garbage",
]


def assert_refused(load: Callable[[], object], path: Path, reason: str, marker: Path,
                   error: type[BaseException] = ModelLoadError) -> str:
    """``load()`` raises ``error`` whose message is one line naming ``path`` and matching ``reason``;
    the payload never ran."""
    with pytest.raises(error) as caught:
        load()
    message = str(caught.value)
    assert not marker.exists(), f"the payload ran: {message}"
    assert isinstance(caught.value, ModelLoadError)
    assert "\n" not in message and message.strip() == message, message
    assert path.name in message, message
    assert re.search(reason, message), message
    return message


@pytest.mark.parametrize("case", PT2_CASES)
def test_crafted_pt2_is_refused_and_runs_no_code(case, legit, tmp_path):
    marker = tmp_path / "MARKER"
    path, reason = pt2_cases(legit, tmp_path, marker)[case]
    assert_refused(lambda: from_exported(path), path, reason, marker)
    assert_refused(lambda: as_source(str(path)), path, reason, marker)


def test_the_duplicate_pt2_of_the_issue_would_run_code_in_torch(legit, tmp_path):
    """The crafted file is dangerous: torch.export.load itself runs its payload (so the refusal matters)."""
    marker = tmp_path / "MARKER"
    path, _ = pt2_cases(legit, tmp_path, marker)["duplicate weights config (torch reads use_pickle)"]
    with pytest.raises(Exception):  # noqa: B017 - the program is broken after the payload ran
        torch.export.load(str(path))
    assert marker.exists()


def test_a_duplicate_pt2_is_refused_by_apply_model(legit, tmp_path):
    marker = tmp_path / "MARKER"
    path, reason = pt2_cases(legit, tmp_path, marker)["duplicate weights config (torch reads use_pickle)"]
    cube = eocube.make_cube(np.zeros((1, 3, 8, 8), "float32"), time=pd.date_range("2021-03-01", periods=1),
                            band=["a", "b", "c"], y=5e6 - 10 * np.arange(8), x=4e5 + 10 * np.arange(8),
                            crs="EPSG:32633")
    assert_refused(lambda: eocube.apply_model(cube, str(path), layout="band"), path, reason, marker)


def test_a_duplicate_pt2_is_one_line_and_exit_2_in_the_cli(legit, tmp_path):
    marker = tmp_path / "MARKER"
    path, _ = pt2_cases(legit, tmp_path, marker)["duplicate weights config (torch reads use_pickle)"]
    out = tmp_path / "x.zarr"
    result = subprocess.run([sys.executable, "-m", "eocube", "apply", "--model", str(path), "--layout", "band", "--source",
                             "sentinel2", "--out", str(out), "--no-progress"],
                            capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert path.name in errors[0] and "two entries named" in errors[0]
    assert not marker.exists() and not out.exists()


# ------------------------------------------------------------------------- TorchScript, state_dict, checkpoint


def other_cases(legit: dict[str, Path], tmp: Path, marker: Path) -> dict[str, tuple[str, Path, str]]:
    """Crafted TorchScript, state_dict and checkpoint files: ``{case: (format, path, reason)}``."""
    evil = torch_payload(marker)
    cases: dict[str, tuple[str, Path, str]] = {}
    ts = entries(legit["ts"])
    r = root(ts)
    cases["TorchScript with an extra pickled entry"] = (
        "ts", write(tmp / "extra.ts", [*ts, (f"{r}/evil.pkl", evil, 0)]),
        r"holds the entry 'evil\.pkl', which is not part of a TorchScript file")
    cases["TorchScript with a duplicate constants.pkl"] = (
        "ts", write(tmp / "dup.ts", [(f"{r}/constants.pkl", evil, 0), *ts]), r"two entries named '[^']*constants\.pkl'")
    cases["TorchScript with a deflated code bomb"] = (
        "ts", write(tmp / "bomb.ts", [*ts, (f"{r}/code/__torch__/bomb.py", bytes(40 << 20), zipfile.ZIP_DEFLATED)]),
        r"\(a zip bomb\)")
    data = legit["ts"].read_bytes()
    (tmp / "truncated.ts").write_bytes(data[: len(data) // 2])
    cases["truncated TorchScript"] = ("ts", tmp / "truncated.ts", r"truncated or corrupt")
    cases["state_dict with a duplicate data.pkl (torch reads a pickle)"] = (
        "sd", stealth_duplicate(legit["sd"], tmp / "dup_weights.pt", "data.pkl", evil),
        r"two entries named '[^']*data\.pkl'")
    sd = entries(legit["sd"])
    cases["state_dict with a case-variant DATA.PKL"] = (
        "sd", write(tmp / "case_weights.pt", [(f"{root(sd)}/DATA.PKL", evil, 0), *sd]), r"confuses \(it ignores case\)")
    cases["state_dict with an unexpected entry"] = (
        "sd", write(tmp / "extra_weights.pt", [*sd, (f"{root(sd)}/payload.pkl", evil, 0)]),
        r"holds the entry 'payload\.pkl', which is not part of a torch\.save file")
    cases["state_dict that is a pickle, not a zip"] = (
        "sd", _written(tmp / "pickle_weights.pt", pickle_payload(marker)), r"not a zip archive")
    cases["checkpoint with a duplicate data.pkl (torch reads a pickle)"] = (
        "ckpt", stealth_duplicate(legit["ckpt"], tmp / "dup_last.pt", "data.pkl", evil),
        r"two entries named '[^']*data\.pkl'")
    ck = entries(legit["ckpt"])
    cases["checkpoint with a traversal name"] = (
        "ckpt", write(tmp / "traversal_last.pt", [*ck, (f"{root(ck)}/../../evil.pkl", evil, 0)]),
        r"path out of its folder")
    data = legit["ckpt"].read_bytes()
    cases["truncated checkpoint"] = ("ckpt", _written(tmp / "truncated_last.pt", data[: len(data) // 2]),
                                     r"truncated or corrupt")
    return cases


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


OTHER_CASES = [
    "TorchScript with an extra pickled entry", "TorchScript with a duplicate constants.pkl",
    "TorchScript with a deflated code bomb", "truncated TorchScript",
    "state_dict with a duplicate data.pkl (torch reads a pickle)", "state_dict with a case-variant DATA.PKL",
    "state_dict with an unexpected entry", "state_dict that is a pickle, not a zip",
    "checkpoint with a duplicate data.pkl (torch reads a pickle)", "checkpoint with a traversal name",
    "truncated checkpoint",
]


@pytest.mark.parametrize("case", OTHER_CASES)
def test_crafted_torchscript_state_dict_and_checkpoint_are_refused(case, legit, tmp_path):
    marker = tmp_path / "MARKER"
    kind, path, reason = other_cases(legit, tmp_path, marker)[case]
    if kind == "ts":
        assert_refused(lambda: from_torchscript(path).build(), path, reason, marker)
        if "truncated" not in case:  # refused as soon as it is named (a truncated file is, when built)
            assert_refused(lambda: as_source(str(path)), path, reason, marker)
    elif kind == "sd":
        assert_refused(lambda: from_state_dict(build_net, path).build(), path, reason, marker)
    else:
        assert_refused(lambda: load_checkpoint(path), path, reason, marker)


def test_legitimate_files_of_every_format_still_load(legit):
    x = torch.randn(2, 3, 8, 8)
    expected = build_net()(x)
    torch.testing.assert_close(from_exported(legit["pt2"]).build()(x), expected)
    torch.testing.assert_close(from_torchscript(legit["ts"]).build()(x), expected)
    torch.testing.assert_close(from_state_dict(build_net, legit["sd"]).build()(x), expected)
    assert load_checkpoint(legit["ckpt"])["epoch"] == 1


def test_a_crafted_checkpoint_is_one_line_and_exit_2_in_train_resume(legit, tmp_path):
    from click.testing import CliRunner

    from eocube.cli.train import train_command

    marker = tmp_path / "MARKER"
    out = tmp_path / "run"
    out.mkdir()
    stealth_duplicate(legit["ckpt"], out / "last.pt", "data.pkl", torch_payload(marker))
    result = CliRunner().invoke(train_command, ["--resume", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: cannot read checkpoint") and result.output.count("\n") == 1, result.output
    assert "last.pt" in result.output and "two entries named" in result.output
    assert not marker.exists()


@pytest.mark.parametrize("text, plain", [
    ("Symbol('s31', positive=True, integer=True)", True),
    ("Mul(Integer(2), Symbol('s0', positive=True, integer=True), Symbol('s53', positive=True, integer=True))", True),
    ("Max(2, s0)", True), ("2*s0 + 1", True), ("CeilToInt(IntTrueDiv(s0, 2))", True), ("-oo", True),
    ("Float('1.5', precision=53)", True), ("Eq(s0, 1) & (s1 > 3)", True),
    ("Symbol('s0') if __import__('os').system('true') else 1", False),
    ("[S for S in ().__class__.__base__.__subclasses__()]", False), ("Symbol.__init__", False),
    ("Max('__import__(1)', 1)", False), ("sympify('1')", False), ("Max(lambdify, 1)", False), ("Max(hn1, s0)", False),
    ("(lambda: 1)()", False), ("Symbol('a b')", False), ("x[0]", False), ("f'{s0}'", False),
])
def test_shape_expressions_of_torch_pass_and_python_does_not(text, plain):
    """``torch.export.load`` hands these strings to ``sympy.sympify``, which evaluates Python."""
    from eocube.models._archive import _plain_sympy

    assert _plain_sympy(text) is plain
