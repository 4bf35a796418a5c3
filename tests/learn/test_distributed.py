"""Multi-process training: 2 CPU processes with gloo through torchrun, and Slurm variable parsing."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
import yaml

from eocube.learn.checkpoint import load_checkpoint
from eocube.learn.distributed import DistEnv, detect, first_slurm_host


def test_ddp_trains_with_two_gloo_processes(tmp_path, tiny_config):
    cfg = tiny_config.to_dict()
    cfg["train"].update({"epochs": 1, "steps_per_epoch": 2, "threads": 1})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "WORLD_SIZE", "RANK", "MASTER_"))}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "eocube.learn.cli", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["epoch"] == 1
    assert ckpt["history"][-1]["world_size"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert "2 process(es)" in proc.stdout + proc.stderr


def test_torchrun_and_slurm_environments_are_recognised():
    assert detect({}) == DistEnv()
    assert detect({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == DistEnv(3, 1, 4, "torchrun")
    env = {"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456",
           "SLURM_JOB_NODELIST": "gpu[07-08,11],login1"}
    assert detect(env) == DistEnv(5, 1, 8, "slurm")
    assert env["MASTER_ADDR"] == "gpu07" and env["MASTER_PORT"] == str(20000 + 123456 % 20000)
    single = {"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}
    assert detect(single) == DistEnv()  # one task: no process group
    assert first_slurm_host("node1") == "node1"
    assert first_slurm_host("a[3-4]") == "a3"
