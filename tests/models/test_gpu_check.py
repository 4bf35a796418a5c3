"""scripts/gpu-check.sh (the first GPU run, prepared): without CUDA it says so and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible: the script would run the GPU checks")
def test_without_cuda_the_gpu_check_says_so_and_exits_0(tmp_path):
    env = {**os.environ, "PY": sys.executable, "GPU_CHECK_OUT": str(tmp_path / "out")}
    env.pop("GPU_CHECK_FORCE", None)
    done = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gpu-check: no CUDA device visible to torch" in done.stdout and "nothing to check" in done.stdout
    assert not (tmp_path / "out").exists()  # nothing was run


def test_a_python_without_torch_is_named(tmp_path):
    env = {**os.environ, "PY": str(tmp_path / "no-such-python")}
    done = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "cannot import torch" in done.stdout and "set PY" in done.stdout
