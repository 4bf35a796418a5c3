"""Checkpoints load with weights_only=True, reproduce the model's output and are written atomically."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eocube.learn.checkpoint import load_checkpoint, load_model, save_checkpoint
from eocube.learn.errors import CheckpointError
from eocube.learn.networks import GapFillNet
from eocube.learn.normalisation import Normaliser


def _gap(norm):  # the gap-filling part of a checkpoint's meta
    return {"normaliser": norm.to_dict()}


def predict_window(net, norm, values, clear, days):
    ok = clear[:, None] & np.isfinite(values)
    x = torch.from_numpy(np.where(ok, norm.normalise(np.nan_to_num(values)), 0).astype("float32"))[None]
    with torch.no_grad():
        return norm.denormalise(net(x, torch.from_numpy(ok)[None], torch.from_numpy(days)[None])[0].numpy())


def _trained_like_net():
    net = GapFillNet(n_bands=1, hidden=8, depth=2, kernel_t=3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def test_saved_model_loads_weights_only_and_predicts_the_same(tmp_path, sample, tiny_config):
    net = _trained_like_net()
    norm = Normaliser(("NDVI",), (0.5,), (0.2,))
    opt = torch.optim.AdamW(net.parameters(), lr=0.01)
    net(torch.zeros(1, 4, 1, 5, 5), torch.ones(1, 4, 1, 5, 5, dtype=torch.bool), torch.arange(4.0)[None]).sum().backward()
    opt.step()  # optimiser with state
    values = sample.sel(band=["NDVI"]).values[:, :, :20, :20]
    clear = sample.sel(band="CLM").values[:, :20, :20] == 0
    days = np.arange(68, dtype="float64") * 12 + 16600
    before = predict_window(net, norm, values, clear, days)

    path = save_checkpoint(tmp_path / "m.pt", model=net, task="gapfill", meta=_gap(norm), config=tiny_config.to_dict(),
                           epoch=3, optimizer=opt, history=[{"epoch": 3, "val_loss": 0.1}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary file left behind
    raw = torch.load(path, weights_only=True)  # plain tensors and Python values only
    assert raw["epoch"] == 3 and raw["meta"]["normaliser"]["bands"] == ["NDVI"] and raw["format"] == "eocube.learn/1"
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(raw["optimizer"]["state"][0][k], v)
    loaded, lnorm = load_model(path)
    assert lnorm == norm
    after = predict_window(loaded, lnorm, values, clear, days)
    np.testing.assert_array_equal(after, before)


def test_atomic_write_keeps_previous_checkpoint_on_failure(tmp_path, tiny_config, monkeypatch):
    net = _trained_like_net()
    norm = Normaliser(("NDVI",), (0.0,), (1.0,))
    path = save_checkpoint(tmp_path / "last.pt", model=net, task="gapfill", meta=_gap(norm), config=tiny_config.to_dict(),
                           epoch=1)
    with pytest.raises(CheckpointError, match="plain values"):  # would not load with weights_only=True
        save_checkpoint(path, model=net, task="gapfill", meta=_gap(norm), config={"bad": object()}, epoch=2)

    def crash_midway(obj, f):  # a write that dies half-way (full disk, killed job)
        f.write(b"partial bytes")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, model=net, task="gapfill", meta=_gap(norm), config=tiny_config.to_dict(), epoch=2)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an eocube"):
        load_checkpoint(tmp_path / "other.pt")


def test_an_old_gap_filling_checkpoint_is_refused_with_how_to_retrain(tmp_path, tiny_config):
    """Checkpoints of the second data path (format eocube.learn.gapfill/1, pixel boxes) do not load silently."""
    net = _trained_like_net()
    torch.save({"format": "eocube.learn.gapfill/1", "model": net.state_dict(), "network": {"n_bands": 1, "hidden": 8,
                "depth": 2, "kernel_t": 3}, "normaliser": {"bands": ["NDVI"], "mean": [0.5], "std": [0.2]},
                "config": {"data": {"train_region": {"y": [0, 76], "x": [0, 64]}}}, "epoch": 5},
               tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match=r"earlier eocube .*retrain .*eocube train --out NEW_RUN.*split"):
        load_checkpoint(tmp_path / "best.pt")
