"""DDP training across hosts: `eocube train` on 2 nodes x 1 rank, killed and resumed, as 1 node x 1 rank.

The multi-node test Slurm (scripts/slurm/multinode-start.sh: compute hosts cn1 and cn2, each a
network namespace with its own hostname and address) runs ``eocube train`` as an sbatch job of
2 nodes x 1 task: ``srun`` starts one rank per node, gloo on CPU, the rendezvous on the job's
first host (``MASTER_ADDR`` from ``scontrol show hostnames``), each rank reading
``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``. The job is held one step after a checkpoint
written in the middle of an epoch (a test hook in the job's Python: it waits there until killed),
cancelled, then resumed with ``--resume``; its final weights must equal those of a 1 node x 1 rank
job with the same global batch (2 ranks x 2 examples = 1 rank x 4), for gap filling and
segmentation. The segmentation job sets ``MASTER_ADDR``/``MASTER_PORT`` in its script; the gap-filling job
leaves them to eocube (the first host of ``SLURM_JOB_NODELIST``, a port from the job id).

Equal within :data:`TOLERANCE`, not bit for bit: the two jobs add the same numbers in another
order (each rank reduces its half of the batch, then the gradients are summed), so the last bits
of the weights differ (up to 5e-6 after 8 steps). A resumed run itself is bit-identical to an
uninterrupted one of as many ranks (tests/learn/test_tasks.py, one process). Nothing waits on
a timing: the test waits for files (checkpoint, hold marks) and for Slurm's job states.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from eocube.learn.checkpoint import load_checkpoint

from .conftest import MultiNode, job_name, processes_in

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(900)]

TOLERANCE = 1e-4
"""Largest difference allowed between the two jobs' weights, per tensor: the largest absolute difference and the
relative difference in norm (6e-8 seen for segmentation, 5e-6 for gap filling, whose Adam steps carry the last
bits further; a batch skipped or repeated on resume, or the ranks' masked means averaged with equal weights as
before the global-batch loss, move them by 1e-2)."""

EPOCHS, STEPS, EVERY = 2, 4, 2
HOLD_AT = STEPS + EVERY + 1
"""Global step the killed job is held at: epoch 2, one step after its mid-epoch checkpoint (epoch 1 + 2 steps)."""

SBATCH = """#!/bin/bash
#SBATCH --job-name={name}
#SBATCH --partition={partition}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=2G
#SBATCH --time=00:10:00
#SBATCH --chdir={folder}
#SBATCH --output={folder}/slurm-%j.out
# eocube train with DDP: one rank per node (srun), gloo on CPU, the rendezvous on the job's first host
set -euo pipefail
{rendezvous}
export OMP_NUM_THREADS=1
srun --label --kill-on-bad-exit=1 {python} {entry} train --config {config} --out {out} "$@"
"""

HOLD = r'''
"""`eocube train` that stops after global step EOCUBE_TEST_HOLD_AT and waits there until it is killed."""
import os, socket, sys, threading
from pathlib import Path

from eocube.learn import trainer

hold_at, marks = int(os.environ["EOCUBE_TEST_HOLD_AT"]), Path(os.environ["EOCUBE_TEST_HOLD_MARKS"])


def _after_step(step):
    if step == hold_at:
        mark = marks / f"held-rank{os.environ.get('SLURM_PROCID', '0')}"
        mark.with_suffix(".tmp").write_text(socket.gethostname())
        mark.with_suffix(".tmp").rename(mark)
        threading.Event().wait()  # until scancel


trainer._after_step = _after_step
from eocube.cli import main

sys.argv[0] = "eocube"
main()
'''

RENDEZVOUS = {
    "scontrol": 'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"\n'
                "export MASTER_PORT=$(( 20000 + SLURM_JOB_ID % 20000 ))",
    "eocube": "# MASTER_ADDR, MASTER_PORT unset: eocube takes the job's first host and a port from the job id",
}
"""The script's rendezvous lines: set as on most clusters' recipes, or left to eocube.learn.distributed.detect."""

DDP_LINE = re.compile(r"^0: (\d+) processes \(slurm, gloo\), rendezvous ([\w.-]+):(\d+): (.*)$", re.M)


def _config(task: str, data: Path, batch: int) -> dict:
    """A run of 2 epochs x 4 steps of tiny patches, 1 thread, no DataLoader worker, a checkpoint every 2 steps."""
    train = {"epochs": EPOCHS, "steps_per_epoch": STEPS, "batch_size": batch, "checkpoint_every": EVERY, "lr": 0.01,
             "seed": 0, "threads": 1, "num_workers": 0, "device": "cpu", "progress": False, "export": False}
    if task == "gapfill":  # the bundled Sentinel-2 sample
        return {"sampler": {"patch_size": 12, "min_clear_fraction": 0.3},
                "network": {"hidden": 8, "depth": 2, "kernel_t": 3}, "train": {**train, "val_windows": 4}}
    return {"task": "segmentation",
            "data": {"sources": {"s10": {"path": str(data / "s10.zarr"), "bands": ["B02", "B03", "B04", "B08"]}},
                     "target": {"path": str(data / "labels.zarr")}},
            "split": {"block_size": 32}, "sampler": {"patch_size": 16}, "network": {"hidden": 8, "depth": 2},
            "train": train}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 96 x 96 px scene of 4 bands and its labels (3 classes, 20 % unlabelled), as Zarr stores on /tmp (shared)."""
    from scipy import ndimage

    from eocube.cube import make_cube
    from eocube.io import to_zarr

    folder = tmp_path_factory.mktemp("scene")
    size, rng = 96, np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), 6)
    classes = np.digitize(field, np.quantile(field, [0.4, 0.7]))
    labels = np.asarray([1, 3, 7], dtype="uint8")[classes]
    labels[rng.random((size, size)) < 0.2] = 0
    level = np.array([[0.1, 0.3, 0.2, 0.6], [0.05, 0.08, 0.04, 0.02], [0.2, 0.25, 0.3, 0.35]])
    bands = level[classes].transpose(2, 0, 1) + 0.03 * rng.normal(size=(4, size, size))
    y, x = 5800000.0 - 10 * (np.arange(size) + 0.5), 500000.0 + 10 * (np.arange(size) + 0.5)
    grid = {"time": ["2024-06-01"], "y": y, "x": x, "crs": "EPSG:32633"}
    to_zarr(make_cube(bands[None].astype("float32"), band=["B02", "B03", "B04", "B08"], **grid), folder / "s10.zarr",
            progress=False)
    to_zarr(make_cube(labels[None, None], band=["label"], nodata=0, **grid,
                      attrs={"class_values": [1, 3, 7], "class_names": ["forest", "water", "farm"]}),
            folder / "labels.zarr", progress=False)
    return folder


def _sbatch(mn: MultiNode, folder: Path, *, nodes: int, config: Path, out: Path, name: str, entry: str = "-m eocube",
            args: tuple[str, ...] = (), wait: bool = True, env: dict[str, str] | None = None,
            rendezvous: str = "scontrol") -> str:
    """Submit the job script from the login host; with ``wait``, until the job ends (it must succeed). Its id."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / f"train-{len(list(folder.glob('train-*.sh')))}.sh"
    script.write_text(SBATCH.format(name=name, partition=mn.partition, nodes=nodes, folder=folder, python=sys.executable,
                                    entry=entry, config=config, out=out, rendezvous=RENDEZVOUS[rendezvous]))
    cmd = ["sbatch", "--parsable", *(["--wait"] if wait else []), str(script), *args]
    env = {k: v for k, v in (env or os.environ).items() if not k.startswith(("WORLD_SIZE", "RANK", "LOCAL_RANK",
                                                                               "MASTER_", "GLOO_", "SLURM_"))}
    done = mn.run("login", cmd, timeout=600, cwd=folder, env=env)
    job = done.stdout.strip().split(";")[0].splitlines()[0] if done.stdout.strip() else "?"
    log = folder / f"slurm-{job}.out"
    assert done.returncode == 0, (f"sbatch {' '.join(args)} (job {job}) exited {done.returncode}: {done.stderr[-2000:]}\n"
                                  + (log.read_text(errors="replace")[-5000:] if log.is_file() else ""))
    return job


def _ddp_hosts(log: Path) -> tuple[str, dict[int, str]]:
    """(rendezvous host, rank -> host) from rank 0's line in a job's log."""
    text = log.read_text(errors="replace")
    m = DDP_LINE.search(text)
    assert m, f"no rendezvous line of 2 ranks in {log}:\n{text[-3000:]}"
    ranks = dict(re.findall(r"rank (\d+) on ([\w.-]+)", m.group(4)))
    assert int(m.group(1)) == 2, m.group(0)
    return m.group(2), {int(r): h for r, h in ranks.items()}


def _wait_for(predicate, what: str, mn: MultiNode, name: str, timeout: float = 400) -> None:
    """Wait until ``predicate()``; fail early when no job named ``name`` is left (it ended without it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if not mn.jobs(name) and not predicate():
            pytest.fail(f"the job {name} ended before {what}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what} (jobs {mn.jobs(name)})")


def _wait_until_gone(mn: MultiNode, name: str, folder: Path, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not mn.jobs(name) and not processes_in(folder):
            return
        time.sleep(0.5)
    pytest.fail(f"jobs {mn.jobs(name)} named {name} or processes {processes_in(folder)} in {folder} are still there")


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k].double(), b[k].double()
        worst, rel = float((x - y).abs().max()), float((x - y).norm() / y.norm().clamp_min(1e-12))
        assert worst <= TOLERANCE and rel <= TOLERANCE, f"{k}: max |diff| {worst:.2e}, relative (norm) {rel:.2e}"


def test_gloo_listens_toward_the_rendezvous_host(multinode: MultiNode) -> None:
    """The interface toward MASTER_ADDR, from each side; used when a host's name resolves to loopback only."""
    code = ("import sys; from eocube.learn.distributed import gloo_interface as g, interface_toward as t\n"
            "print(t(sys.argv[1]), g({'MASTER_ADDR': sys.argv[1]}, hostname='localhost'), "
            "g({'MASTER_ADDR': sys.argv[1]}))")
    for host, expected in (("cn2", "eth0 eth0 None"), ("cn1", "eth0 eth0 None"), ("login", "eth0 eth0 None")):
        done = multinode.run(host, [sys.executable, "-c", code, "cn1"])
        assert done.stdout.split() == expected.split(), f"on {host}: {done.stdout}{done.stderr[-2000:]}"


@pytest.mark.parametrize(("task", "rendezvous"), [("segmentation", "scontrol"), ("gapfill", "eocube")])
def test_ddp_on_two_hosts_killed_and_resumed_ends_as_one_host_with_the_global_batch(
        multinode: MultiNode, scene: Path, task: str, rendezvous: str, tmp_path: Path) -> None:
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(yaml.safe_dump(_config(task, scene, batch=4)))
    two.write_text(yaml.safe_dump(_config(task, scene, batch=2)))
    name = job_name(f"ddp-{task}")

    # 1 node x 1 rank, batch 4
    ref_job = _sbatch(multinode, tmp_path / "one", nodes=1, config=one, out=tmp_path / "one" / "run", name=f"{name}-1")
    ref = load_checkpoint(tmp_path / "one" / "run")
    assert ref["world_size"] == 1 and ref["epoch"] == EPOCHS, ref["history"]
    assert not DDP_LINE.search((tmp_path / "one" / f"slurm-{ref_job}.out").read_text())

    # 2 nodes x 1 rank, batch 2 each: held at step HOLD_AT, after last.pt of epoch 1 + EVERY steps, then cancelled
    folder, out, marks = tmp_path / "two", tmp_path / "two" / "run", tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "hold.py"
    script.write_text(HOLD)
    env = dict(os.environ, EOCUBE_TEST_HOLD_AT=str(HOLD_AT), EOCUBE_TEST_HOLD_MARKS=str(marks))
    held = _sbatch(multinode, folder, nodes=2, config=two, out=out, name=f"{name}-2", entry=str(script), wait=False,
                   env=env, rendezvous=rendezvous)
    try:
        _wait_for(lambda: len(list(marks.glob("held-rank?"))) == 2, "both ranks held", multinode, f"{name}-2")
    finally:
        multinode.run("login", ["scancel", held])
    _wait_until_gone(multinode, f"{name}-2", folder)
    held_on = {p.name[-1]: p.read_text() for p in marks.glob("held-rank?")}
    assert sorted(held_on.values()) == ["cn1", "cn2"], held_on  # one rank on each host
    mid = load_checkpoint(out)
    assert (mid["epoch"], mid["meta"]["position"]["step"], mid["world_size"]) == (1, EVERY, 2), mid["meta"]["position"]
    master, ranks = _ddp_hosts(folder / f"slurm-{held}.out")
    assert master == ranks[0] and sorted(ranks.values()) == ["cn1", "cn2"], (master, ranks)

    # resumed from last.pt on 2 nodes x 1 rank: ends with the weights of the 1-node run
    resumed = _sbatch(multinode, folder, nodes=2, config=two, out=out, name=f"{name}-3", args=("--resume",),
                      rendezvous=rendezvous)
    log = (folder / f"slurm-{resumed}.out").read_text(errors="replace")
    assert f"resuming from {out / 'last.pt'} at epoch 1, step {EVERY}" in log, log[-3000:]
    master, ranks = _ddp_hosts(folder / f"slurm-{resumed}.out")
    assert master == ranks[0] and sorted(ranks.values()) == ["cn1", "cn2"], (master, ranks)
    final = load_checkpoint(out)
    assert final["epoch"] == EPOCHS and final["world_size"] == 2 and final["meta"]["position"] is None
    _assert_same_weights(final["model"], ref["model"])
    for a, b in zip(final["history"], ref["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=TOLERANCE), (final["history"], ref["history"])
    worst = max(float((final["model"][k].double() - ref["model"][k].double()).abs().max()) for k in ref["model"])
    print(f"{task}: 2 nodes x 1 rank (cancelled at step {HOLD_AT}, resumed) vs 1 node x 1 rank: max |diff| {worst:.1e}")
    assert all(torch.isfinite(v).all() for v in final["model"].values())
