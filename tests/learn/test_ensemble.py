"""A small seed ensemble exported as one program (train.ensemble, eocube.learn.ensemble): the mean of the members'
softmax, each member with its own band statistics, composable with test-time augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import eocube
from eocube.learn.checkpoint import load_checkpoint
from eocube.learn.config import load_config
from eocube.learn.ensemble import Ensemble, export_ensemble
from eocube.learn.errors import CheckpointError, LearnError
from eocube.learn.export import Dihedral
from eocube.learn.networks import SegNet, build_network
from eocube.learn.normalisation import Normaliser
from eocube.learn.trainer import train

SMALL = {"split": {"block_size": 96}, "sampler": {"patch_size": 16},
         "network": {"hidden": 8, "depth": 2},
         "train": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 4, "progress": False, "lr": 0.01, "keep": "last"}}


def _nets(n: int = 3) -> list[SegNet]:
    nets = []
    for k in range(n):
        torch.manual_seed(k)
        nets.append(SegNet([4, 2], 3, [1, 2], hidden=8, depth=2 + (k == 2)).eval())
    return nets


def test_the_ensemble_is_the_mean_of_the_members_softmax():
    nets = _nets()
    x, y = torch.randn(2, 4, 16, 16), torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        out = Ensemble(nets).eval()(x, y)
        mean = torch.stack([torch.softmax(n(x, y), 1) for n in nets]).mean(0)
        torch.testing.assert_close(torch.exp(out), mean, atol=1e-6, rtol=1e-5)
        assert torch.equal(out.argmax(1), mean.argmax(1))
        regression = Ensemble(nets, probabilities=False).eval()(x, y)
        torch.testing.assert_close(regression, torch.stack([n(x, y) for n in nets]).mean(0))
    assert Ensemble(nets).halo == max(n.halo for n in nets) > min(n.halo for n in nets)


def test_each_member_sees_the_inputs_in_its_own_band_statistics():
    nets = _nets(2)
    raw10, raw20 = torch.rand(1, 4, 16, 16) * 3 + 1, torch.rand(1, 2, 8, 8) + 0.5
    stats = [[Normaliser(["a"] * 4, [1.0, 2.0, 3.0, 4.0], [1.0, 0.5, 2.0, 1.0]), Normaliser(["b"] * 2, [0.5, 1.0], [1.0, 1.0])],
             [Normaliser(["a"] * 4, [1.5, 2.5, 2.0, 4.5], [0.8, 0.7, 1.5, 1.2]), Normaliser(["b"] * 2, [0.7, 0.9], [0.5, 2.0])]]

    def z(x, nrm):
        return (x - torch.tensor(nrm.mean).view(1, -1, 1, 1)) / torch.tensor(nrm.std).view(1, -1, 1, 1)

    from eocube.learn.ensemble import _rescale

    rescale = [[_rescale(stats[0][j], stats[i][j]) for j in range(2)] for i in range(2)]
    with torch.no_grad():
        out = Ensemble(nets, rescale=rescale).eval()(z(raw10, stats[0][0]), z(raw20, stats[0][1]))
        mean = torch.stack([torch.softmax(n(z(raw10, s[0]), z(raw20, s[1])), 1) for n, s in zip(nets, stats)]).mean(0)
    torch.testing.assert_close(torch.exp(out), mean, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("value", [0, -1, "3", 1.5, True])
def test_bad_ensemble_sizes_are_refused_before_training(value):
    with pytest.raises(LearnError, match=r"train\.ensemble"):
        load_config(task="segmentation", overrides={"train": {"ensemble": value}})
    assert load_config(task="segmentation").train["ensemble"] == 1
    assert load_config(task="superres", overrides={"train": {"ensemble": 3}}).train["ensemble"] == 3


@pytest.mark.slow
def test_train_ensemble_trains_seeded_members_and_exports_one_program(tmp_path, synth):
    s10, s20, lab, _ = synth.scene(192)
    cfg = load_config(task="segmentation", overrides={**SMALL, "train": {**SMALL["train"], "ensemble": 2,
                                                                              "tta": True, "seed": 4}})
    result = train(cfg, source={"s10": s10, "s20": s20}, target=lab, out=tmp_path / "ens")
    assert [m.out.name for m in result.members] == ["member-0", "member-1"] and result.epochs == 2
    members = [load_checkpoint(tmp_path / "ens" / f"member-{k}" / "last.pt") for k in range(2)]
    assert [m["config"]["train"]["seed"] for m in members] == [4, 5]
    assert not (tmp_path / "ens" / "member-0" / "model.pt2").exists()  # one program, for the whole ensemble
    card = json.loads((tmp_path / "ens" / "model.json").read_text())
    assert "ensemble of 2 networks" in json.dumps(card) and "test-time augmentation" in json.dumps(card)

    # member 0 is the single network trained with the same seed
    single = load_config(task="segmentation", overrides={**SMALL, "train": {**SMALL["train"], "seed": 4, "export": False}})
    train(single, source={"s10": s10, "s20": s20}, target=lab, out=tmp_path / "one")
    one = load_checkpoint(tmp_path / "one" / "last.pt")
    assert all(torch.equal(one["model"][k], members[0]["model"][k]) for k in one["model"])

    # the saved program (loaded under torch.export's rules) is the ensemble of the members' TTA, in member 0's scaling
    program = torch.export.load(str(tmp_path / "ens" / "model.pt2")).module()
    nets = []
    for m in members:
        net = build_network(m["network"])
        net.load_state_dict(m["model"])
        nets.append(Dihedral(net.eval()).eval())
    norms = [[Normaliser.from_dict(m["meta"]["normalisers"][n]) for n in ("s10", "s20")] for m in members]
    g = torch.Generator().manual_seed(1)
    raw = [torch.rand(1, 4, 32, 32, generator=g) * 0.6, torch.rand(1, 2, 16, 16, generator=g) * 0.4]

    def z(x, nrm):
        return (x - torch.tensor(nrm.mean).view(1, -1, 1, 1)) / torch.tensor(nrm.std).view(1, -1, 1, 1)

    with torch.no_grad():
        scores = program(*[z(r, nrm) for r, nrm in zip(raw, norms[0])])
        mean = torch.stack([torch.softmax(n(*[z(r, nrm) for r, nrm in zip(raw, s)]), 1) for n, s in zip(nets, norms)]).mean(0)
    values = synth.CLASS_VALUES
    torch.testing.assert_close(torch.exp(scores[:, values]), mean, atol=1e-4, rtol=1e-3)
    assert torch.equal(scores.argmax(1), torch.tensor(values)[mean.argmax(1)])

    classes = eocube.apply_model({"s10": s10, "s20": s20}, tmp_path / "ens" / "model.pt2").values
    assert classes.shape == (1, 1, 192, 192) and set(np.unique(classes)) <= set(values)


def test_members_of_other_inputs_are_refused(tmp_path, synth):
    s10, s20, lab, _ = synth.scene(192)
    for name, bands in (("a", ["B02", "B03", "B04", "B08"]), ("b", ["B02", "B03", "B04"])):
        cfg = load_config(task="segmentation", overrides={**SMALL, "train": {**SMALL["train"], "epochs": 1, "export": False}})
        train(cfg, source={"s10": s10.sel(band=bands), "s20": s20}, target=lab, out=tmp_path / name)
    with pytest.raises(CheckpointError, match="member 1 differs from member 0 in its sources"):
        export_ensemble([tmp_path / "a", tmp_path / "b"], tmp_path / "model.pt2", checkpoint="last.pt")
    with pytest.raises(CheckpointError, match="at least one"):
        export_ensemble([], tmp_path / "model.pt2")
