"""Each error of the engine: what it says and when it is raised."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from eocube.models import (
    ChannelMismatchError,
    DeviceError,
    ModelLoadError,
    ModelRuntimeError,
    OutputShapeError,
    apply_model,
    from_state_dict,
)


def test_channel_mismatch_names_expected_got_and_dims(make_cnn, make_unit_cube):
    net = make_cnn(5)
    with pytest.raises(ChannelMismatchError) as info:
        apply_model(make_unit_cube(bands=("a", "b", "c")), net)
    msg = str(info.value)
    assert "expects 5 input channels" in msg and "got 3" in msg and "layout 'band'" in msg and "[a, b, c]" in msg
    with pytest.raises(ChannelMismatchError, match=r"4 dates x \(3 band\(s\) \[a, b, c\] \+ 1 validity flag\) = 16"):
        apply_model(make_unit_cube(t=4), make_cnn(12), layout="time_band", valid_input="channel")


def test_output_the_engine_cannot_map_back(make_unit_cube):
    with pytest.raises(OutputShapeError, match="same batch size .* and spatial size"):
        apply_model(make_unit_cube(), nn.Conv2d(3, 2, 3, stride=2))  # downsamples
    with pytest.raises(OutputShapeError, match="multiple of 3 \\(dates\\)"):
        apply_model(make_unit_cube(t=3), nn.Conv2d(9, 4, 1), layout="time_band", output="per_date")
    with pytest.raises(OutputShapeError, match="out_bands has 3 name"):
        apply_model(make_unit_cube(), nn.Conv2d(3, 2, 1), out_bands=["a", "b", "c"])

    class Flat(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)

    with pytest.raises(OutputShapeError, match=r"returned an output of shape \(2, 768\).*maps back \(N, K, H, W\)"):
        apply_model(make_unit_cube(), Flat())


class _FailsOnMarker(nn.Module):
    """Raises where the input holds the value 999 (only in one chunk)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x == 999).any():
            raise ValueError("cannot handle 999")
        return x[:, :1]


def test_model_error_inside_a_task_names_the_chunk(make_unit_cube):
    cube = make_unit_cube(chunks={"y": 10, "x": 10, "time": 1})
    data = cube.values.copy()
    data[2, 0, 25, 15] = 999  # chunk (2, 0, 2, 1)
    cube = cube.copy(data=data).chunk({"y": 10, "x": 10, "time": 1})
    out = apply_model(cube, _FailsOnMarker(), halo=0)
    with pytest.raises(ModelRuntimeError) as info:
        out.compute()
    msg = str(info.value)
    assert "chunk (2, 0, 2, 1)" in msg and "rows 20..29" in msg and "cols 10..19" in msg
    assert "2021-03-15" in msg and "cannot handle 999" in msg
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
def test_device_requested_but_absent(make_cnn, make_unit_cube):
    with pytest.raises(DeviceError, match="torch sees no CUDA device"):
        apply_model(make_unit_cube(), make_cnn(3), device="cuda")
    with pytest.raises(DeviceError, match="not a torch device"):
        apply_model(make_unit_cube(), make_cnn(3), device="gpu please")


class _Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_weights_are_never_unpickled_as_arbitrary_objects(tmp_path, make_unit_cube):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2, 3, 1, 1), "payload": _Evil()}, path)
    with pytest.raises(ModelLoadError, match="weights_only=True"):
        apply_model(make_unit_cube(), from_state_dict(nn.Conv2d, path, in_channels=3, out_channels=2, kernel_size=1))


def test_weights_that_do_not_fit_the_factory(tmp_path, make_unit_cube):
    path = tmp_path / "weights.pt"
    torch.save(nn.Conv2d(3, 4, 1).state_dict(), path)
    with pytest.raises(ModelLoadError, match="do not fit the module"):
        apply_model(make_unit_cube(), (lambda: nn.Conv2d(3, 2, 1), path))
    with pytest.raises(ModelLoadError, match="not a TorchScript file"):
        apply_model(make_unit_cube(), path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        apply_model(make_unit_cube(), tmp_path / "missing.pt")


def test_model_file_changed_after_the_graph_was_built(tmp_path, make_unit_cube):
    from eocube.models import clear_cache

    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(nn.Conv2d(3, 2, 1)), str(path))
    out = apply_model(make_unit_cube(chunks={"y": 20}), path)
    torch.jit.save(torch.jit.script(nn.Conv2d(3, 2, 1)), str(path))  # new random weights
    clear_cache()  # as in a fresh worker process
    with pytest.raises(ModelLoadError, match="changed after the computation was set up"):
        out.compute()


def test_bad_arguments_say_what_is_allowed(make_cnn, make_unit_cube):
    cube, net = make_unit_cube(), make_cnn(3)
    with pytest.raises(ValueError, match="layout must be one of"):
        apply_model(cube, net, layout="bands")
    with pytest.raises(ValueError, match="autocast must be"):
        apply_model(cube, net, autocast="int8")
    with pytest.raises(ModelLoadError, match="expected a torch.nn.Module"):
        apply_model(cube, {"weight": 1})
    with pytest.raises(ValueError, match="halo must be"):
        apply_model(cube, net, halo=-1)
    assert np.isfinite(apply_model(cube, net, halo=0).values).all()
