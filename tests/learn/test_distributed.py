"""Multi-process training: 2 CPU processes with gloo through torchrun, and Slurm variable parsing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

from eocube.learn.checkpoint import load_checkpoint
from eocube.learn.config import load_config
from eocube.learn.distributed import DistEnv, detect, first_slurm_host, gloo_interface
from eocube.learn.trainer import train

TOLERANCE = 1e-4
"""Largest difference allowed between the weights of N processes x batch B and 1 process x batch N*B: each
tensor's largest absolute difference and its relative difference in norm. The two runs add the same numbers in
another order (each process reduces its half of the batch, then the gradients are summed), so the last bits
differ and Adam's steps carry that along (1e-7 to 5e-6 seen); before the global-batch loss the processes'
masked means were averaged with equal weights and the weights differed by 1e-2."""


def assert_same_weights(a: dict, b: dict, tolerance: float = TOLERANCE) -> None:
    """Every tensor of state dict ``a`` equals ``b``'s within ``tolerance`` (absolute, and relative in norm)."""
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k].double(), b[k].double()
        worst = float((x - y).abs().max())
        rel = float((x - y).norm() / y.norm().clamp_min(1e-12))
        assert worst <= tolerance and rel <= tolerance, f"{k}: max |diff| {worst:.2e}, relative (norm) {rel:.2e}"


def test_ddp_with_two_gloo_processes_trains_as_one_process_with_their_global_batch(tmp_path, tiny_config):
    cfg = tiny_config.to_dict()
    cfg["train"].update({"epochs": 1, "steps_per_epoch": 2, "threads": 1, "device": "cpu"})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "WORLD_SIZE", "RANK", "MASTER_"))}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "eocube", "train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["epoch"] == 1
    assert ckpt["history"][-1]["world_size"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert "2 process(es)" in proc.stdout + proc.stderr
    assert "2 processes (torchrun, gloo)" in proc.stderr and "rank 1 on " in proc.stderr
    # one process with the global batch (2 x 2 examples): the same weights, the same mean loss
    cfg["train"]["batch_size"] *= 2
    threads = torch.get_num_threads()
    try:
        one = train(load_config(overrides=cfg), out=tmp_path / "one")
    finally:
        torch.set_num_threads(threads)
    assert_same_weights(ckpt["model"], load_checkpoint(tmp_path / "one")["model"])
    assert ckpt["history"][-1]["train_loss"] == pytest.approx(one.history[-1]["train_loss"], rel=TOLERANCE)


def test_gloo_keeps_its_default_unless_the_host_name_is_loopback_and_the_rendezvous_is_elsewhere():
    assert gloo_interface({"MASTER_ADDR": "127.0.0.1"}, hostname="localhost") is None  # all on this host
    assert gloo_interface({"MASTER_ADDR": "10.1.2.3", "GLOO_SOCKET_IFNAME": "ib0"}, hostname="localhost") is None
    assert gloo_interface({}, hostname="localhost") is None
    # (a host name that resolves to a reachable address keeps gloo's default: tests/slurm/test_multinode_ddp.py)


def test_torchrun_and_slurm_environments_are_recognised():
    assert detect({}) == DistEnv()
    assert detect({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == DistEnv(3, 1, 4, "torchrun")
    env = {"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456",
           "SLURM_JOB_NODELIST": "gpu[07-08,11],login1", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "8"}
    assert detect(env) == DistEnv(5, 1, 8, "slurm")
    assert env["MASTER_ADDR"] == "gpu07" and env["MASTER_PORT"] == str(20000 + 123456 % 20000)
    single = {"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}
    assert detect(single) == DistEnv()  # one task: no process group
    assert first_slurm_host("node1") == "node1"
    # a step of 2 tasks in a job of 8: the step's count
    assert detect({**env, "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"}).world_size == 2


def test_the_batch_script_of_a_job_of_several_tasks_trains_alone(caplog):
    """What sbatch gives its script (seen on the multi-node test Slurm): SLURM_NTASKS=2 and SLURM_PROCID=0 but no
    step id; eocube train started there without srun used to wait for a rank 1 that nothing starts."""
    batch = {"SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "253",
             "SLURM_JOB_NODELIST": "cn[1-2]", "SLURM_NTASKS_PER_NODE": "1"}
    with caplog.at_level("WARNING"):
        assert detect(batch) == DistEnv()
    assert "not started by srun" in caplog.text and "srun eocube train" in caplog.text
    assert "MASTER_ADDR" not in batch
    assert first_slurm_host("a[3-4]") == "a3"
