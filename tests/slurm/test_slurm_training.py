"""DDP training launched by Slurm itself: `srun -n 2` runs two ranks that find each other from Slurm's variables."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
import yaml

from eocube.learn.checkpoint import load_checkpoint

TINY = {
    "sampler": {"patch_size": 12, "min_clear_fraction": 0.3},
    "network": {"hidden": 8, "depth": 2, "kernel_t": 3},
    "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "val_windows": 4, "num_workers": 0,
              "progress": False, "threads": 1, "export": False},
}


def test_srun_launches_two_ddp_ranks(tmp_path, slurm):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    # Rendezvous and gloo on loopback: the ranks share this single node.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_"))}
    env.update({"MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"})
    proc = subprocess.run(
        ["srun", "-p", slurm.partition, "-N", "1", "-n", "2", "--cpus-per-task", "1", "--mem-per-cpu", "1500M",
         "-t", "5", "--export", "ALL", sys.executable, "-m", "eocube", "train",
         "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["epoch"] == 1
    assert ckpt["history"][-1]["world_size"] == 2  # both Slurm tasks joined one process group
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
