"""Gap-filling training windows (``sampler.halo``): where they may lie, what they read, how their edges are padded.

With ``sampler.halo: edge`` (``inside``, the default, keeps the halo inside the block) a training window may
reach the edge of its block: it is read alone, so the context beyond it is the network's own padding, exactly what ``apply_model``
gives at a scene edge; nothing outside the window, hence nothing outside its block, is read.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from eocube.learn.config import load_config
from eocube.learn.errors import LearnError
from eocube.learn.export import GapFillModule
from eocube.learn.split import BlockSplit
from eocube.learn.tasks import make_task, window_halo
from eocube.models import ModelSpec, OutputSpec, SourceSpec, apply_model

from .conftest import TINY

POISON = 1.0e4
"""An NDVI value far outside the real range: any window that read it would show it."""


def _task(source, **sections):
    sections = {**sections, "sampler": {"halo": "edge", **sections.get("sampler", {})}}
    over = {k: {**TINY.get(k, {}), **v} for k, v in sections.items()}
    task = make_task(load_config(overrides={**TINY, **over}))
    task.build(source, None, 1)
    return task


def _split(seed: int = 0, buffer: int = 0) -> BlockSplit:
    cfg = load_config().split
    return BlockSplit.make((101, 100), block_size=int(cfg["block_size"]), fractions=cfg["fractions"],
                           buffer=buffer, seed=seed)


def _grown_inside(code: np.ndarray, part: int, y0: int, x0: int, size: int, m: int) -> bool:
    return bool((code[max(0, y0 - m):y0 + size + m, max(0, x0 - m):x0 + size + m] == part).all())


@pytest.mark.parametrize("buffer", [0, 3])
def test_edge_windows_cover_their_whole_block_and_keep_the_buffer(buffer):
    split, size, halo = _split(1, buffer), 12, 6
    code = split.mask()
    for part, name in ((0, "train"), (1, "val")):
        edge = split.windows(name, size, halo=window_halo("edge", halo), stride=1)
        inside = split.windows(name, size, halo=window_halo("inside", halo), stride=1)
        assert {tuple(w) for w in inside} < {tuple(w) for w in edge}  # the old windows, and more
        assert all(_grown_inside(code, part, int(y), int(x), size, buffer) for y, x in edge)
        covered = np.zeros(code.shape, bool)
        for y, x in edge:
            covered[y:y + size, x:x + size] = True
        # every pixel of the part farther than the buffer from another part is in some window
        far = np.array([[_grown_inside(code, part, y, x, 1, buffer) for x in range(code.shape[1])]
                        for y in range(code.shape[0])])
        assert covered[far].all() and not covered[code != part].any()
        # some window reaches exactly the buffer's distance from another part: the halo no longer counts
        assert any(not _grown_inside(code, part, int(y), int(x), size, buffer + 1) for y, x in edge)
        assert all(_grown_inside(code, part, int(y), int(x), size, buffer + halo) for y, x in inside)


def test_edge_windows_read_nothing_outside_their_training_block(sample):
    split = _split(0)
    code = split.mask()
    poisoned = sample.copy(deep=True)
    ndvi = poisoned.sel(band="NDVI").values
    ndvi[:, code != 0] = POISON  # every validation and test pixel, clear or not
    poisoned.loc[{"band": "NDVI"}] = ndvi
    task = _task(poisoned)
    clean = _task(sample)
    assert task.cfg.sampler["halo"] == "edge" and task.window_halo == 0 and task.halo > 0
    np.testing.assert_array_equal(task.train_windows, clean.train_windows)
    # windows reach their block's edge (closer than the halo to another part) ...
    size = task.size
    assert any(not _grown_inside(code, 0, int(y), int(x), size, task.halo) for y, x in task.train_windows)
    # ... and no training window, statistic or example holds a pixel of another part
    for y0, x0 in task.train_windows:
        assert (code[y0:y0 + size, x0:x0 + size] == 0).all()
        raw = task.ps.read(int(y0), int(x0), size)[0][0]
        assert not (raw == POISON).any()
    assert task.normaliser.to_dict() == clean.normaliser.to_dict()  # statistics of the training windows only
    for i in range(len(task.train)):
        ex = task.train[i]
        y0, x0 = (int(v) for v in ex["corner"])
        assert (code[y0:y0 + size, x0:x0 + size] == 0).all()
        assert float(ex["values"].abs().max()) < 50  # a read poison would be ~ (1e4 - mean) / std
        torch.testing.assert_close(ex["values"], clean.train[i]["values"])


def test_a_training_window_edge_is_padded_as_a_scene_edge_at_inference(sample):
    task = _task(sample)
    code, size, halo = task.split.mask(), task.size, task.halo
    # an example whose window comes within the network's halo of another part
    near = [w for w in task.train_windows if not _grown_inside(code, 0, int(w[0]), int(w[1]), size, halo)]
    task.train.windows = np.asarray(near[:1])  # the training dataset draws its examples from this window
    ex = task.train[0]
    y0, x0 = (int(v) for v in ex["corner"])
    torch.manual_seed(3)
    net = task.network()
    torch.nn.init.normal_(net.head.weight, std=0.5)  # a network that uses its spatial context
    net.eval()
    with torch.no_grad():
        trained = net(ex["values"][None], ex["valid"][None], ex["days"][None])[0].numpy()
    # the same observations through the inference path: the cube's clear NDVI, the example's hidden ones as gaps
    ndvi = sample.sel(band=["NDVI"]).astype("float32")
    clear = task.ps.sources[0].reader.read(slice(0, 101), slice(0, 100))
    win = (slice(y0, y0 + size), slice(x0, x0 + size))
    visible = np.isfinite(clear)[:, None]
    visible[..., win[0], win[1]] = ex["valid"].numpy()
    gappy = ndvi.where(visible)
    src = SourceSpec(name="input", bands=("NDVI",), layout="sequence", valid_input="argument", time_input="days",
                     fill_value=0.0)
    spec = ModelSpec(sources=(src,), output=OutputSpec(bands=("NDVI",), mask=None, scale=Fraction(1)), halo=halo,
                     name="test-gapfill")
    module = GapFillModule(net, task.normaliser, keep_clear=False).eval()
    alone = apply_model(gappy.isel(y=win[0], x=win[1]), module, spec).values  # a scene that ends at the window
    whole = apply_model(gappy, module, spec).values[..., win[0], win[1]]  # real context beyond the window
    mean, std = task.normaliser.mean[0], task.normaliser.std[0]
    np.testing.assert_allclose((alone - mean) / std, trained, rtol=1e-4, atol=1e-4)
    core = (Ellipsis, slice(halo, size - halo), slice(halo, size - halo))
    np.testing.assert_allclose(whole[core], alone[core], rtol=1e-4, atol=1e-4)  # the core: the same context
    assert np.abs(whole - alone).max() > 1e-3  # at the window's edge the padding stands for the unread context


def test_sampler_halo_is_checked():
    with pytest.raises(LearnError, match=r"sampler.halo: 'none' is not accepted: give one of \['edge', 'inside', 'context'\]"):
        load_config(overrides={"sampler": {"halo": "none"}})
    with pytest.raises(LearnError, match="sampler.halo"):
        window_halo("none", 6)
    assert window_halo("edge", 6) == 0 and window_halo("inside", 6) == 6
