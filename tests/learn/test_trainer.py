"""Training: the loss goes down, resume continues exactly, the CLI runs, config errors are clear."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader

from eocube.cli.train import train_command
from eocube.learn.checkpoint import load_checkpoint, load_model
from eocube.learn.config import load_config
from eocube.learn.errors import LearnError
from eocube.learn.networks import GapFillNet
from eocube.learn.tasks import make_task, masked_mse
from eocube.learn.trainer import resume_state, train


def _val_loss(net, data):
    net.eval()
    num = den = 0.0
    with torch.no_grad():
        for b in DataLoader(data.val, batch_size=4):
            pred = net(b["values"], b["valid"], b["days"])
            m = b["target_mask"].float()
            num += float(((pred - b["values"]) ** 2 * m).sum())
            den += float(m.sum())
    return num / den


def test_a_few_steps_lower_the_loss(tmp_path, sample, tiny_config):
    cfg = load_config(overrides={**tiny_config.to_dict(), "train": {**tiny_config.train, "epochs": 3, "steps_per_epoch": 4}})
    data = make_task(cfg)
    data.build(sample, None, 1)
    untrained = GapFillNet(n_bands=1, **cfg.network)  # = linear interpolation
    result = train(cfg, source=sample, out=tmp_path)
    net, _ = load_model(tmp_path / "last.pt")
    before, after = _val_loss(untrained, data), _val_loss(net, data)
    assert after < before
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[-1]["val_loss"] == pytest.approx(after, rel=1e-4)


def test_masked_mse_scores_hidden_observations_only():
    pred, target = torch.zeros(2, 3), torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, False, False], [False, False, True]])
    assert float(masked_mse(pred, target, mask)) == pytest.approx((1 + 36) / 2)


def test_resume_continues_from_saved_epoch_with_identical_state(tmp_path, sample, tiny_config):
    straight = train(tiny_config, source=sample, out=tmp_path / "a")
    first = train(tiny_config, source=sample, out=tmp_path / "b", until_epoch=1)
    assert first.epochs == 1
    saved = load_checkpoint(tmp_path / "b")
    assert saved["epoch"] == 1

    # the optimiser state put back by resume is the saved one, tensor for tensor
    net = GapFillNet(n_bands=1, **tiny_config.network)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    epoch, history = resume_state(tmp_path / "b", net, opt, torch.device("cpu"))
    assert epoch == 1 and len(history) == 1
    for pid, state in saved["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(opt.state_dict()["state"][pid][key], value)

    with pytest.raises(LearnError, match="--resume"):
        train(tiny_config, source=sample, out=tmp_path / "b")
    resumed = train(tiny_config, source=sample, out=tmp_path / "b", resume=True)
    assert resumed.start_epoch == 1 and [h["epoch"] for h in resumed.history] == [1, 2]
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert b["epoch"] == 2
    for k in a["model"]:  # interrupted + resumed == uninterrupted
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b["optimizer"]["state"], a["optimizer"]["state"], rtol=1e-5, atol=1e-6)
    assert straight.history[-1]["val_loss"] == pytest.approx(resumed.history[-1]["val_loss"], rel=1e-4)


def test_resume_with_another_network_is_refused(tmp_path, sample, tiny_config):
    train(tiny_config, source=sample, out=tmp_path, until_epoch=1)
    other = load_config(overrides={**tiny_config.to_dict(), "network": {"hidden": 4, "depth": 2, "kernel_t": 3}})
    with pytest.raises(LearnError, match=r"network\.hidden \(8 -> 4\)"):  # named by the run's fingerprint
        train(other, source=sample, out=tmp_path, resume=True)


def test_cli_trains_from_a_config_file_on_a_zarr_store(tmp_path, tiny_config):
    import yaml

    cfg = tiny_config.to_dict()
    cfg["train"]["epochs"] = 1
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    from eocube.datasets import SAMPLES

    result = CliRunner().invoke(
        train_command, ["--config", str(tmp_path / "c.yaml"), "--source", str(SAMPLES["sentinel2"].path),
                        "--out", str(tmp_path / "run")],
    )
    assert result.exit_code == 0, result.output
    assert "val loss" in result.output
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 1
    again = CliRunner().invoke(train_command, ["--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")])
    assert again.exit_code != 0 and "--resume" in again.output


def test_config_errors_name_the_key(tmp_path):
    (tmp_path / "bad.yaml").write_text("train:\n  epoch: 3\n")
    with pytest.raises(LearnError, match=r"unknown config key 'train.epoch'.*epochs"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(LearnError, match="no config file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(LearnError, match=r"'data.train_region' is from an earlier eocube.*split.block_size"):
        load_config(overrides={"data": {"train_region": {"y": [50, 40], "x": [0, 10]}}})


