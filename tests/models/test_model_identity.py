"""A model's identity is its program: an edited model never resumes or reuses a store an older one wrote.

* a module from a file: editing ``forward`` or a helper it calls (same class name, same weights)
  makes a rerun into the finished store refuse; the same code reruns as "already complete";
* the token is the same in another process for the same code (a resumed run is a new process);
* a factory given to ``eocube apply --factory``: the same, through the command line;
* a post-processing callable: its code counts too;
* a class whose source cannot be read (``exec``) is never taken for the same computation, and the
  refusal names ``model_version``; with ``model_version=`` it resumes;
* ``.pt2`` and TorchScript: the program's content (entries of the archive, not the file's bytes).
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import eocube
from eocube.errors import ResumeMismatchError
from eocube.models import apply_model, from_state_dict
from eocube.models._loading import as_source

EOCUBE_ROOT = str(Path(eocube.__file__).resolve().parents[1])

NET = """
import torch
from torch import nn

OFFSET = 0.0


def shift(y):
    return y + OFFSET


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return shift(self.conv(x))


def build():
    return Net()


def post(y):
    return torch.tanh(y)
"""


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    """A folder on sys.path for model modules written by the test (no bytecode cache: edits are seen)."""
    folder = tmp_path / "code"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    return folder


def load(folder: Path, name: str, text: str):
    """Write ``name.py`` with ``text`` and import it afresh."""
    (folder / f"{name}.py").write_text(textwrap.dedent(text))
    sys.modules.pop(name, None)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def write(cube, model, store, **kw):
    return eocube.to_zarr(apply_model(cube, model, tile_size=16, **kw), store)


def test_edited_forward_or_helper_refuses_the_finished_store(module_dir, tmp_path, make_unit_cube):
    name = f"net_{uuid.uuid4().hex[:8]}"
    cube = make_unit_cube(t=2, h=24, w=20, chunks={"y": 12, "x": 10})
    store = tmp_path / "out.zarr"
    first = load(module_dir, name, NET).Net()
    assert write(cube, first, store).chunks_written > 0

    # the same code, imported again: the same computation
    same = load(module_dir, name, NET).Net()
    report = write(cube, same, store)
    assert report.chunks_written == 0 and "already complete" in str(report)

    # forward edited, same class name and the same weights
    edited = load(module_dir, name, NET.replace("return shift(self.conv(x))", "return shift(self.conv(x)) * 2.0")).Net()
    edited.load_state_dict(first.state_dict())
    with pytest.raises(ResumeMismatchError, match="different computation.*computed values"):
        write(cube, edited, store)

    # only a module-level helper that forward calls edited
    helper = load(module_dir, name, NET.replace("return y + OFFSET", "return y - OFFSET + 1.0")).Net()
    with pytest.raises(ResumeMismatchError, match="different computation"):
        write(cube, helper, store)

    # only a constant the helper reads
    constant = load(module_dir, name, NET.replace("OFFSET = 0.0", "OFFSET = 0.5")).Net()
    with pytest.raises(ResumeMismatchError, match="different computation"):
        write(cube, constant, store)


def test_edited_postprocess_callable_refuses_the_finished_store(module_dir, tmp_path, make_unit_cube):
    name = f"post_{uuid.uuid4().hex[:8]}"
    cube = make_unit_cube(t=2, h=16, w=16, chunks={"y": 8, "x": 8})
    store = tmp_path / "post.zarr"
    mod = load(module_dir, name, NET)
    net = mod.Net()
    write(cube, net, store, postprocess=mod.post)
    again = load(module_dir, name, NET)
    assert write(cube, net, store, postprocess=again.post).chunks_written == 0
    edited = load(module_dir, name, NET.replace("torch.tanh(y)", "torch.sigmoid(y)"))
    with pytest.raises(ResumeMismatchError, match="different computation"):
        write(cube, net, store, postprocess=edited.post)


def test_token_is_the_same_in_another_process(module_dir, tmp_path):
    name = f"proc_{uuid.uuid4().hex[:8]}"
    mod = load(module_dir, name, NET)
    torch.save(mod.Net().state_dict(), tmp_path / "w.pth")
    here = (as_source(mod.Net()).token, from_state_dict(mod.build, tmp_path / "w.pth").token)
    script = textwrap.dedent(f"""
        import {name} as mod
        from eocube.models import from_state_dict
        from eocube.models._loading import as_source
        print(as_source(mod.Net()).token)
        print(from_state_dict(mod.build, {str(tmp_path / "w.pth")!r}).token)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(module_dir), EOCUBE_ROOT]),
           "PYTHONHASHSEED": "12345"}  # another string-hash order than this process's
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert tuple(proc.stdout.split()) == here
    assert "unreadable" not in here[0]


@pytest.mark.slow
def test_edited_factory_refuses_the_finished_store_in_the_cli(module_dir, tmp_path, make_unit_cube):
    name = f"fac_{uuid.uuid4().hex[:8]}"
    mod = load(module_dir, name, NET)
    weights = tmp_path / "net.pth"
    torch.save(mod.Net().state_dict(), weights)
    source = tmp_path / "cube.zarr"
    eocube.to_zarr(make_unit_cube(t=2, h=16, w=16, chunks={"y": 16, "x": 16}), source)
    out = tmp_path / "out.zarr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(module_dir), EOCUBE_ROOT]),
           "PYTHONDONTWRITEBYTECODE": "1"}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "eocube", "apply", "--model", str(weights), "--factory", f"{name}:build", "--layout", "band",
             "--source", str(source), "--out", str(out), "--no-progress", "--quicklook", str(tmp_path / "q.png")],
            capture_output=True, text=True, env=env, timeout=300, check=False)

    first = run()
    assert first.returncode == 0, first.stdout + first.stderr
    again = run()
    assert again.returncode == 0 and "already complete" in again.stdout, again.stdout + again.stderr
    (module_dir / f"{name}.py").write_text(NET.replace("return shift(self.conv(x))", "return shift(self.conv(x)) * 2.0"))
    edited = run()
    assert edited.returncode != 0, edited.stdout
    assert "different computation" in edited.stderr and "Traceback" not in edited.stderr, edited.stderr


EXEC_NET = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.conv(x)
"""


def test_model_without_readable_source_is_refused_then_named_by_model_version(tmp_path, make_unit_cube):
    namespace: dict = {"__name__": f"exec_{uuid.uuid4().hex[:8]}"}
    exec(compile(EXEC_NET, "<generated>", "exec"), namespace)  # no file: its source cannot be read
    net = namespace["Net"]()
    cube = make_unit_cube(t=2, h=16, w=16, chunks={"y": 8, "x": 8})
    store = tmp_path / "exec.zarr"
    with pytest.warns(UserWarning, match="model_version"):
        write(cube, net, store)
    with pytest.warns(UserWarning, match="model_version"), \
            pytest.raises(ResumeMismatchError, match=r"cannot be read.*model_version='v1'.*--model-version"):
        write(cube, net, store)

    named = tmp_path / "named.zarr"
    first = write(cube, net, named, model_version="v1")
    assert first.chunks_written > 0
    report = write(cube, net, named, model_version="v1")
    assert report.chunks_written == 0 and "already complete" in str(report)
    assert eocube.open_zarr(named).attrs["model_version"] == "v1"
    with pytest.raises(ResumeMismatchError, match="different computation"):
        write(cube, net, named, model_version="v2")


class Plain(nn.Module):
    def __init__(self, gain: float = 1.0):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class Doubled(Plain):
    def forward(self, x):
        return self.conv(x) * 2


def _rezip(src: Path, dst: Path, root: str) -> None:
    """The same entries under another root folder, zipped again (stored, as torch writes them)."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as b:
        for info in a.infolist():
            b.writestr(f"{root}/{info.filename.split('/', 1)[1]}", a.read(info))


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")
def test_program_files_are_identified_by_their_program(tmp_path):
    from eocube.models.card import export_model

    plain, doubled = Plain().eval(), Doubled().eval()
    example = torch.zeros(2, 3, 16, 16)
    export_model(plain, example, tmp_path / "plain.pt2")
    export_model(doubled, example, tmp_path / "doubled.pt2")
    shutil.copy(tmp_path / "plain.pt2", tmp_path / "copy.pt2")
    _rezip(tmp_path / "plain.pt2", tmp_path / "rezipped.pt2", "other")
    tokens = {n: as_source(tmp_path / f"{n}.pt2").token for n in ("plain", "doubled", "copy", "rezipped")}
    assert tokens["plain"] != tokens["doubled"]  # same weights, another graph
    assert tokens["plain"] == tokens["copy"] == tokens["rezipped"]  # the program, not the zip's bytes
    assert (tmp_path / "plain.pt2").read_bytes() != (tmp_path / "rezipped.pt2").read_bytes()

    for net, n in ((plain, "plain"), (doubled, "doubled")):
        torch.jit.save(torch.jit.script(net), str(tmp_path / f"{n}.ts"))
    _rezip(tmp_path / "plain.ts", tmp_path / "renamed.ts", "renamed")
    ts = {n: as_source(tmp_path / f"{n}.ts").token for n in ("plain", "doubled", "renamed")}
    assert ts["plain"] != ts["doubled"] and ts["plain"] == ts["renamed"]


def test_module_attributes_and_weights_count(make_unit_cube):
    a, b = Plain(), Plain()
    assert as_source(a).token == as_source(b).token
    b.gain = 2.0  # a plain attribute forward could read
    assert as_source(a).token != as_source(b).token
    c = Plain()
    with torch.no_grad():
        c.conv.weight[0, 0, 0, 0] += 1
    assert as_source(a).token != as_source(c).token
    out = apply_model(make_unit_cube(t=1, h=8, w=8), a, model_version="v7")
    assert out.attrs["model_version"] == "v7" and "version v7" in out.attrs["model"]
    np.testing.assert_array_equal(out.values, apply_model(make_unit_cube(t=1, h=8, w=8), a).values)
