"""The training recipes' options: the guided super-resolution prior, input clipping, test-time augmentation,
the exported checkpoint (best or last), label smoothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import eocube
from eocube.baselines.superres import area_mean, guided_highpass
from eocube.learn.checkpoint import load_checkpoint
from eocube.learn.config import load_config
from eocube.learn.errors import LearnError
from eocube.learn.export import Dihedral
from eocube.learn.networks import SegNet, SuperResNet, build_network, guided_upsample
from eocube.learn.trainer import train

SMALL = {"split": {"block_size": 96}, "sampler": {"patch_size": 16},
         "network": {"hidden": 8, "depth": 2},
         "train": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 4, "progress": False, "lr": 0.01}}


def _smooth_guides(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(4, 64, 64)).cumsum(1).cumsum(2) / 20
    gl = area_mean(g, 2)
    low = np.stack([0.3 * gl[0] - 0.2 * gl[3] + 0.1, gl[1] * gl[2] * 0.1]) + rng.normal(size=(2, 32, 32)) * 0.05
    return low, g


def test_guided_upsample_is_the_guided_baseline_away_from_the_edges():
    low, g = _smooth_guides()
    ours = guided_upsample(torch.tensor(low[None]), torch.tensor(g[None]), 7, eps=0.0).numpy()[0]
    baseline = guided_highpass(low, g, window=7, eps=0.0)
    # scipy reflects the edge pixel, torch does not: only the outer windows differ
    np.testing.assert_allclose(ours[:, 20:-20, 20:-20], baseline[:, 20:-20, 20:-20], atol=1e-6)
    assert np.abs(ours - baseline).max() < 0.1 * np.abs(baseline).max()


def test_an_untrained_guided_network_is_the_guided_prior_and_exports():
    low, g = _smooth_guides(1)
    net = SuperResNet([4, 2], 1, [1, 2], hidden=8, depth=3, prior="guided", window=5, clip=4.0).eval()
    x, y = torch.tensor(g[None], dtype=torch.float32), torch.tensor(low[None], dtype=torch.float32)
    out = net(x, y)
    prior = guided_upsample(y, x, 5)
    assert torch.equal(out, prior)  # the head starts at zero
    # the halo covers the prior's reach: two 5 px means, the bilinear and bicubic steps, the layers
    assert net.halo == 3 + (2 * 2 + 3) * 2
    rebuilt = build_network(net.config.to_dict())
    assert rebuilt.prior == "guided" and rebuilt.window == 5 and rebuilt.clip == 4.0
    program = torch.export.export(net, (x, y))
    torch.testing.assert_close(program.module()(x, y), out)


def test_clipping_bounds_what_a_hot_spot_does_to_the_residual():
    torch.manual_seed(0)
    clipped = SuperResNet([4, 2], 1, [1, 2], hidden=8, depth=3, clip=3.0).eval()
    torch.nn.init.normal_(clipped.body[-1].weight, std=0.1)
    plain = SuperResNet([4, 2], 1, [1, 2], hidden=8, depth=3).eval()
    plain.load_state_dict(clipped.state_dict())
    x, y = torch.rand(1, 4, 32, 32) * 2 - 1, torch.rand(1, 2, 16, 16) * 2 - 1
    hot = y.clone()
    hot[0, :, 8, 8] = 1000.0  # far outside the normalised range seen in training

    def resid(net, b):
        with torch.no_grad():
            return (net(x, b) - torch.nn.functional.interpolate(b, size=(32, 32), mode="bicubic")).abs().max()

    assert resid(clipped, y) == resid(plain, y)  # inputs inside the range: clipping changes nothing
    assert resid(clipped, hot) < 10 * resid(clipped, y)
    assert resid(plain, hot) > 100 * resid(plain, y)


def test_the_fallback_returns_the_prior_near_out_of_range_inputs_only():
    from scipy import ndimage

    torch.manual_seed(0)
    net = SuperResNet([4, 2], 1, [1, 2], hidden=8, depth=3, clip=3.0, fallback=True).eval()
    torch.nn.init.normal_(net.body[-1].weight, std=0.1)
    same = SuperResNet([4, 2], 1, [1, 2], hidden=8, depth=3, clip=3.0).eval()
    same.load_state_dict(net.state_dict())
    x, y = torch.rand(1, 4, 48, 48) * 2 - 1, torch.rand(1, 2, 24, 24) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(net(x, y), same(x, y))  # nothing out of range: the residual everywhere
        hot = y.clone()
        hot[0, 1, 12, 12] = 50.0  # a saturated low-resolution pixel
        out, clipped_only = net(x, hot), same(x, hot)
        prior = torch.nn.functional.interpolate(hot, size=(48, 48), mode="bicubic")
    wild = (prior.abs() > 3.0).any(1)[0].numpy()  # the guide bands stay in range
    near = torch.from_numpy(ndimage.binary_dilation(wild, np.ones((7, 7), bool)))  # the layers' reach: 3 px
    assert 0 < int(near.sum()) < 48 * 48 // 4
    torch.testing.assert_close(out[..., near], prior[..., near])  # within the layers' reach: the prior alone
    torch.testing.assert_close(out[..., ~near], clipped_only[..., ~near])  # elsewhere: as without the fallback
    assert not torch.equal(out[..., ~near], prior[..., ~near])
    bright = x.clone()
    bright[0, 3, 20, 20] = 50.0  # out of range in a guide band only: not a band to sharpen, no fallback
    with torch.no_grad():
        torch.testing.assert_close(net(bright, y), same(bright, y))
    rebuilt = build_network(net.config.to_dict())
    assert rebuilt.fallback and rebuilt.clip == 3.0
    program = torch.export.export(net, (x, hot))
    torch.testing.assert_close(program.module()(x, hot), out)
    with pytest.raises(LearnError, match="network.fallback needs network.clip"):
        SuperResNet([4, 2], 1, [1, 2], fallback=True)


def test_old_superres_configs_build_the_same_network():
    net = SuperResNet([4, 2], 1, [1, 2], hidden=8, depth=2)
    assert "prior" not in net.config and "fallback" not in net.config and net.prior == "bicubic" and net.clip is None
    assert not net.fallback
    assert net.halo == 2 + 3 * 2


def test_dihedral_is_the_mean_over_turns_and_is_invariant():
    torch.manual_seed(0)
    net = SegNet([4, 2], 3, [1, 2], hidden=8, depth=2).eval()
    tta = Dihedral(net).eval()
    x, y = torch.randn(1, 4, 16, 16), torch.randn(1, 2, 8, 8)
    out = tta(x, y)
    turned = tta(torch.rot90(x, 1, (-2, -1)), torch.rot90(y, 1, (-2, -1)))
    torch.testing.assert_close(torch.rot90(turned, -1, (-2, -1)), out, atol=1e-5, rtol=1e-5)
    flipped = tta(torch.flip(x, (-1,)), torch.flip(y, (-1,)))
    torch.testing.assert_close(torch.flip(flipped, (-1,)), out, atol=1e-5, rtol=1e-5)
    assert tta.halo == net.halo
    assert not torch.allclose(out, net(x, y))  # the plain network is not invariant


@pytest.mark.parametrize("key, value, words", [
    (("network", "prior"), "lanczos", "network.prior"),
    (("network", "window"), 4, "network.window"),
    (("network", "clip"), -1, "network.clip"),
    (("train", "keep"), "median", "train.keep"),
    (("train", "tta"), "yes", "train.tta"),
])
def test_bad_recipe_values_are_refused_before_training(key, value, words):
    with pytest.raises(LearnError, match=words.replace(".", r"\.")):
        load_config(task="superres", overrides={key[0]: {key[1]: value}})


def test_label_smoothing_is_checked_and_must_stay_below_one():
    with pytest.raises(LearnError, match=r"loss\.label_smoothing"):
        load_config(task="segmentation", overrides={"loss": {"label_smoothing": 1.5}})
    assert load_config(task="segmentation").loss["label_smoothing"] == 0.0


def test_keep_last_and_tta_reach_the_exported_model(tmp_path, synth):
    s10, s20, lab, _ = synth.scene(192)
    cfg = load_config(task="segmentation", overrides={
        **SMALL, "loss": {"label_smoothing": 0.1}, "train": {**SMALL["train"], "keep": "last", "tta": True}})
    train(cfg, source={"s10": s10, "s20": s20}, target=lab, out=tmp_path)
    card = json.loads((tmp_path / "model.json").read_text())
    assert "(epoch 2), test-time augmentation" in json.dumps(card)
    last = load_checkpoint(tmp_path / "last.pt")
    net = build_network(last["network"])
    net.load_state_dict(last["model"])
    classes = eocube.apply_model({"s10": s10, "s20": s20}, tmp_path / "model.pt2").values
    assert classes.shape == (1, 1, 192, 192) and set(np.unique(classes)) <= set(synth.CLASS_VALUES)
