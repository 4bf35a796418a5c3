"""Errors a user can meet are eocube errors (``EOCubeError``) and keep the built-in type they had (issue 22 item 4).

Each case calls a public function with a value a user could give and checks the error it raises:
an :class:`eocube.errors.EOCubeError` subclass (so ``except EOCubeError`` and the CLI's one-line
errors catch it) that is still the ``ValueError``/``KeyError`` it used to be (so existing
``except ValueError`` keeps working).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eocube.errors import EOCubeError


def _models_cases() -> list:
    from eocube.models import ModelSpec, OptionError, Scaling, SourceError, SourceSpec, pair_dates
    from eocube.models.card import scale_values

    spec = ModelSpec(sources=(SourceSpec(name="s2", bands=("B04",)),))
    days = pd.DatetimeIndex(["2024-01-01"])
    return [
        pytest.param(lambda: spec.source("s1"), (KeyError,), "no source 's1'", id="ModelSpec.source"),
        pytest.param(lambda: pair_dates(days, days, "closest", None), (SourceError, ValueError), "pairing must be",
                     id="pair_dates"),
        pytest.param(lambda: scale_values(np.zeros((2, 4, 4)), [Scaling(type="z-score", mean=0.0)]),
                     (OptionError, ValueError), "value scaling 0", id="scale_values-missing"),
        pytest.param(lambda: scale_values(np.zeros((2, 4, 4)), [Scaling(type="offset", value=1.0)] * 3),
                     (OptionError, ValueError), "3 value scalings", id="scale_values-count"),
    ]


def _fill_cases() -> list:
    from eocube.fill import METHODS, FillError

    values, valid = np.ones((3, 1), np.float32), np.ones((3, 1), bool)
    days = np.array([0.0, 10.0, 20.0])
    return [
        pytest.param(lambda: METHODS["linear"](values, valid, days, extrapolate="sideways"), (FillError, ValueError),
                     "extrapolate must be", id="linear-extrapolate"),
        pytest.param(lambda: METHODS["whittaker"](values, valid, days, lmbda=0), (FillError, ValueError),
                     "lmbda must be", id="whittaker-lmbda"),
        pytest.param(lambda: METHODS["linear"](values, valid, days, engine="cuda"), (FillError, ValueError),
                     "engine must be", id="engine"),
    ]


def _other_cases() -> list:
    from eocube.datasets import open_sample
    from eocube.errors import UnknownSampleError

    return [
        pytest.param(lambda: open_sample("sentinel3"), (UnknownSampleError, KeyError), "no bundled sample",
                     id="open_sample"),
    ]


@pytest.mark.parametrize(("call", "types", "message"), _models_cases() + _fill_cases() + _other_cases())
def test_a_user_error_is_an_eocube_error_of_its_old_builtin_type(call, types, message):
    with pytest.raises(EOCubeError, match=message) as info:
        call()
    assert isinstance(info.value, types), type(info.value).__mro__


def test_export_refuses_a_batch_of_one_with_an_eocube_error(tmp_path):
    torch = pytest.importorskip("torch")
    from eocube.models import ExportError
    from eocube.models.card import export_model

    with pytest.raises(ExportError, match="batch of at least 2") as info:
        export_model(torch.nn.Conv2d(2, 1, 1), torch.zeros(1, 2, 8, 8), tmp_path / "m.pt2")
    assert isinstance(info.value, (EOCubeError, ValueError))


def test_learn_refuses_a_network_config_and_a_missing_gpu_with_eocube_errors():
    torch = pytest.importorskip("torch")
    from eocube.learn.distributed import DistEnv, pick_device
    from eocube.learn.errors import LearnError
    from eocube.learn.networks import GapFillNet
    from eocube.models import DeviceError

    with pytest.raises(LearnError, match="kernel_t must be odd"):
        GapFillNet(n_bands=1, hidden=4, depth=1, kernel_t=4)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available") as info:
            pick_device("cuda", DistEnv())
        assert isinstance(info.value, (EOCubeError, RuntimeError))
