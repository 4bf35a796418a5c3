"""Model sources, the per-process cache (one load per worker), torch threads and dask resources."""

from __future__ import annotations

import functools

import dask
import numpy as np
import pytest
import torch
from torch import nn

from eocube.models import (
    apply_model,
    clear_cache,
    from_state_dict,
    from_torchscript,
    load_counts,
)
from eocube.models._loading import from_exported
from eocube.models.card import export_model

# TorchScript is deprecated in torch 2.13: torch.jit.script/save/load warn; only these tests use it
TORCHSCRIPT_DEPRECATED = r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning"


@pytest.mark.filterwarnings(TORCHSCRIPT_DEPRECATED)
def test_model_files_give_the_module_results(tmp_path, make_cnn, make_unit_cube):
    net = make_cnn(3, kernels=(3, 3))
    cube = make_unit_cube(chunks={"y": 20, "x": 20})
    script = tmp_path / "net.ts"
    torch.jit.save(torch.jit.script(net), str(script))
    weights = tmp_path / "net.pth"
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, weights)  # a wrapped checkpoint
    program = export_model(net, torch.zeros(2, 3, 16, 16), tmp_path / "net.pt2")
    ref = apply_model(cube, net).values
    np.testing.assert_array_equal(apply_model(cube, str(script)).values, ref)
    np.testing.assert_array_equal(apply_model(cube, from_torchscript(script)).values, ref)
    np.testing.assert_allclose(apply_model(cube, str(program)).values, ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(apply_model(cube, from_exported(program)).values, ref, atol=1e-6, rtol=0)
    sd = from_state_dict(functools.partial(_factory, 3), weights)
    np.testing.assert_array_equal(apply_model(cube, sd).values, ref)
    assert net.training is False and next(net.parameters()).requires_grad  # the caller's module untouched


def _factory(in_ch: int) -> nn.Module:
    torch.manual_seed(123)  # other weights than the file's: the file must win
    return nn.Sequential(nn.Conv2d(in_ch, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1))


def test_model_is_built_once_per_process_not_per_chunk(make_cnn, make_unit_cube):
    clear_cache()
    net = make_cnn(3)
    cube = make_unit_cube(t=4, chunks={"y": 8, "x": 8, "time": 1})
    out = apply_model(cube, net)
    assert out.data.npartitions >= 80
    out.compute()
    apply_model(cube, net).compute()  # a second computation reuses it too
    counts = load_counts()
    assert list(counts.values()) == [1], counts
    # the model is one key of the graph, which every chunk task depends on
    graph = dict(out.data.__dask_graph__())
    model_keys = [k for k in graph if str(k).startswith("eocube-model-")]
    assert len(model_keys) == 1


def test_torch_threads_follow_dask_threads(make_unit_cube):
    seen: list[int] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return self.conv(x)

    import os

    cores = len(os.sched_getaffinity(0))
    cube = make_unit_cube(chunks={"y": 10, "x": 10})
    before = torch.get_num_threads()

    def threads_in_tasks(scheduler: str, **kwargs) -> set[int]:
        out = apply_model(cube, Probe(), halo=0, **kwargs)
        seen.clear()  # forget the probe's call on this thread
        with dask.config.set(scheduler=scheduler, num_workers=2):
            out.compute()
        return set(seen)

    assert threads_in_tasks("threads") == {max(1, cores // 2)}
    assert threads_in_tasks("synchronous") == {cores}
    assert threads_in_tasks("synchronous", torch_threads=1) == {1}
    assert torch.get_num_threads() == before  # the caller's setting is restored


@pytest.mark.slow
@pytest.mark.filterwarnings(TORCHSCRIPT_DEPRECATED)
def test_one_load_per_worker_process_on_a_real_cluster(tmp_path, make_cnn, make_unit_cube):
    distributed = pytest.importorskip("distributed")
    net = make_cnn(3)
    script = tmp_path / "net.ts"
    torch.jit.save(torch.jit.script(net), str(script))
    program = export_model(net, torch.zeros(2, 3, 16, 16), tmp_path / "net.pt2")
    cube = make_unit_cube(t=4, h=48, w=48, chunks={"y": 12, "x": 12, "time": 1})
    expected = apply_model(cube, net, device="cpu").values
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0",
        resources={"GPU": 1}, silence_logs=40,
    ) as cluster, distributed.Client(cluster) as client:
        for model in (net, script, program):
            out = apply_model(cube, model)  # device auto: may be a GPU, workers declare GPU -> annotated
            layer = out.data.__dask_graph__().layers[out.data.name]
            assert (layer.annotations or {}).get("resources") == {"GPU": 1}
            np.testing.assert_allclose(out.compute().values, expected, atol=1e-6, rtol=0)
        per_worker = client.run(load_counts)
    assert out.data.npartitions == 64
    assert len(per_worker) == 2
    for counts in per_worker.values():
        # each worker built each model at most once although it ran many of the 3 x 64 chunk tasks
        assert counts and all(v == 1 for v in counts.values()), per_worker
    tokens = set().union(*(c.keys() for c in per_worker.values()))
    assert {t.split("-")[0] for t in tokens} == {"module", "torchscript", "export"}


def test_resources_annotation_only_when_asked_or_declared(make_cnn, make_unit_cube):
    cube = make_unit_cube(chunks={"y": 20})
    out = apply_model(cube, make_cnn(3), resources={"GPU": 1}, device="cpu")
    assert out.data.__dask_graph__().layers[out.data.name].annotations == {"resources": {"GPU": 1}}
    plain = apply_model(cube, make_cnn(3))  # no distributed client: nothing to annotate
    assert not plain.data.__dask_graph__().layers[plain.data.name].annotations
