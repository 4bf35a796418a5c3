"""Tiles of one shape per chunk, full batches, and the output written into place (issue 25, item 1).

A tile on the image's edge or a chunk's short last tile used to get a smaller window than the
others, so that a chunk's tiles fell into several small batches. Now every window of a chunk is
slid inward to one length (:mod:`eocube.models._tile_windows`): the forward calls per chunk are
``ceil(tiles x dates / batch_size)``. The outputs must be exactly those of a straightforward
reference, a loop over the same tiles one tile at a time (bit for bit), within 1e-6 of the tiles
with the clipped windows cut before (a halo covering the receptive field: the kept pixels see the
same values; the last bits may differ where a batch of one sample was run, which PyTorch's CPU
convolutions round differently), and equal a whole-image pass (1e-5), for a CNN, x2 and x4
super-resolution, a /4 classifier and two sources, on odd sizes, edge chunks and several dates.
"""

from __future__ import annotations

import itertools
from collections import Counter
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

import eocube
from eocube.models import apply_model
from eocube.models._tile_windows import tile_windows
from eocube.models._tiling import OutScale, aligned_chunks, output_chunks, round_up, windows

CALLS: Counter[str] = Counter()
"""Forward calls per model name (the engine runs a copy of the module: a hook on the original would not fire)."""


class Counted(nn.Sequential):
    """A sequential network that counts its forward calls and the samples it is fed under its name."""

    def __init__(self, name: str, *layers: nn.Module) -> None:
        super().__init__(*layers)
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CALLS[self.name] += 1
        CALLS[self.name + ":samples"] += x.shape[0]
        return super().forward(x)


def cnn(name: str, c: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return Counted(name, nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 5, padding=2), nn.ReLU(),
                   nn.Conv2d(8, 2, 3, padding=1)).eval()


def super_resolution(name: str, factor: int, c: int = 3) -> nn.Module:
    torch.manual_seed(1)
    return Counted(name, nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, c * factor * factor, 3, padding=1),
                   nn.PixelShuffle(factor), nn.Conv2d(c, 2, 3, padding=1)).eval()


def strided(name: str, kernel: int = 3, c: int = 3) -> nn.Module:
    torch.manual_seed(2)
    pad = kernel // 2 if kernel % 2 else 0
    return Counted(name, nn.Conv2d(c, 8, kernel, stride=2, padding=pad), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                   nn.ReLU(), nn.Conv2d(8, 4, kernel, stride=2, padding=pad)).eval()


class TwoResolutions(nn.Module):
    """forward(x10, x20): the 20 m input convolved, upsampled x2, cropped to the 10 m size, fused."""

    def __init__(self, name: str) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.name = name
        self.c20 = nn.Conv2d(2, 4, 3, padding=1)
        self.c10 = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1))

    def forward(self, x10: torch.Tensor, x20: torch.Tensor) -> torch.Tensor:
        CALLS[self.name] += 1
        CALLS[self.name + ":samples"] += x10.shape[0]
        up = nn.functional.interpolate(self.c20(x20), scale_factor=2.0, mode="nearest")
        return self.head(torch.cat([self.c10(x10), up[..., : x10.shape[-2], : x10.shape[-1]]], 1))


def cube(t: int, bands: int, h: int, w: int, res: float = 10.0, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((t, bands, h, w)).astype("float32")
    return eocube.make_cube(data, time=pd.date_range("2021-03-01", periods=t, freq="7D"),
                            band=[f"b{i}" for i in range(bands)], y=5080000.0 - res * (np.arange(h) + 0.5),
                            x=465000.0 + res * (np.arange(w) + 0.5), crs="EPSG:32633")


def reference(net: nn.Module, arrays: list[np.ndarray], ratios: list[int], ychunks: tuple[int, ...],
              xchunks: tuple[int, ...], tile: int, halo: int, scale: OutScale, align: int, slid: bool) -> np.ndarray:
    """The same tiles one tile at a time (its dates in one batch), each written into a whole-image output.

    ``slid``: the windows apply_model cuts now (:func:`tile_windows`); otherwise the clipped ones
    it cut before (:func:`windows`).
    """
    t, _, h, w = arrays[0].shape
    out_h, out_w = scale.length(h), scale.length(w)

    def axis(chunks: tuple[int, ...], n: int):
        edges = np.cumsum((0, *chunks))
        for c0, c1 in itertools.pairwise(edges):
            b0, b1 = max(0, c0 - halo), min(n, c1 + halo)  # the overlapped block
            cut = tile_windows(c1 - c0, c0 - b0, b1 - b0, halo, tile, align) if slid else \
                windows(c1 - c0, c0 - b0, b1 - b0, halo, tile)
            for start, stop, w0, w1 in cut:
                yield c0 + start, c0 + stop, b0 + w0, b0 + w1

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the engine runs here (torch_threads=1): a thread count may change the rounding
    try:
        return _tiles(net, arrays, ratios, list(axis(ychunks, h)), list(axis(xchunks, w)), scale, (t, out_h, out_w))
    finally:
        torch.set_num_threads(threads)


def _tiles(net: nn.Module, arrays: list[np.ndarray], ratios: list[int], ywin: list, xwin: list, scale: OutScale,
           shape: tuple[int, int, int]) -> np.ndarray:
    t, out_h, out_w = shape
    out = None
    with torch.no_grad():
        for (ty0, ty1, wy0, wy1), (tx0, tx1, wx0, wx1) in itertools.product(ywin, xwin):
            args = [torch.from_numpy(np.ascontiguousarray(a[:, :, wy0 // r: -(-wy1 // r), wx0 // r: -(-wx1 // r)]))
                    for a, r in zip(arrays, ratios)]
            y = net(*args).numpy()
            if out is None:
                out = np.full((t, y.shape[1], out_h, out_w), np.nan, np.float32)
            y0, y1 = scale.length(ty0), min(out_h, scale.length(ty1))
            x0, x1 = scale.length(tx0), min(out_w, scale.length(tx1))
            oy, ox = scale.length(ty0 - wy0), scale.length(tx0 - wx0)
            out[:, :, y0:y1, x0:x1] = y[:, :, oy:oy + y1 - y0, ox:ox + x1 - x0]
    assert out is not None
    return out


def whole(net: nn.Module, *arrays: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]).numpy()


def run(name: str, src, net: nn.Module, **kw) -> tuple[np.ndarray, xr.DataArray]:
    lazy = apply_model(src, net, mask_output=None, torch_threads=1, **kw)
    CALLS[name] = CALLS[name + ":samples"] = 0  # the probes before compute are not counted
    return lazy.values, lazy


def tiles_per_chunk(chunks: tuple[int, ...], tile: int) -> list[int]:
    return [-(-c // tile) for c in chunks]


CASES = {
    # name: (model factory, scale, image edge, chunks, tile, batch, dates); chosen so that no batch holds a
    # single sample (which PyTorch's CPU convolutions round differently from the reference's batches)
    "cnn": (lambda n: cnn(n), OutScale(Fraction(1)), (53, 47), {"y": 24, "x": 20, "time": 4}, 8, 8, 6),
    "cnn-small-tiles": (lambda n: cnn(n), OutScale(Fraction(1)), (41, 37), {"y": 9, "x": 8, "time": 2}, 5, 3, 4),
    "sr-x2": (lambda n: super_resolution(n, 2), OutScale(Fraction(2)), (41, 37), {"y": 13, "x": 17, "time": 3}, 6, 4, 3),
    "sr-x4": (lambda n: super_resolution(n, 4), OutScale(Fraction(4)), (53, 47), {"y": 24, "x": 20, "time": 4}, 8, 8, 4),
    "classifier-/4": (lambda n: strided(n, 3), OutScale(Fraction(1, 4)), (53, 47), {"y": 24, "x": 20, "time": 4}, 8, 8,
                      4),
    "classifier-/4-floor": (lambda n: strided(n, 2), OutScale(Fraction(1, 4), "floor"), (41, 37),
                            {"y": 10, "x": 9, "time": 3}, 6, 3, 3),
}


def _geometry(case: str, lazy: xr.DataArray, c: xr.DataArray, tile_size: int) -> tuple:
    scale = CASES[case][1]
    align = scale.scale.denominator
    halo = int(lazy.attrs["model_halo"])
    ychunks, xchunks = (aligned_chunks(c.chunks[i], align, max(halo, align)) for i in (2, 3))
    assert lazy.chunks[2] == output_chunks(ychunks, scale) and lazy.chunks[3] == output_chunks(xchunks, scale)
    return ychunks, xchunks, round_up(tile_size, align), halo, align


@pytest.mark.parametrize("case", list(CASES))
def test_one_source_outputs_equal_a_tile_by_tile_reference(case):
    """Bit for bit against the same tiles one at a time; against the tiles apply_model cut before, and a
    whole-image pass, to the last bits (PyTorch's CPU kernels may round a pixel differently when the
    input's width changes)."""
    make, scale, (h, w), chunks, tile_size, batch, t = CASES[case]
    net = make(case)
    c = cube(t, 3, h, w).chunk(chunks)
    got, lazy = run(case, c, net, tile_size=tile_size, batch_size=batch)
    ychunks, xchunks, tile, halo, align = _geometry(case, lazy, c, tile_size)
    same = reference(net, [c.values], [1], ychunks, xchunks, tile, halo, scale, align, slid=True)
    np.testing.assert_array_equal(got, same)
    before = reference(net, [c.values], [1], ychunks, xchunks, tile, halo, scale, align, slid=False)
    np.testing.assert_allclose(got, before, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got, whole(net, c.values), atol=1e-5, rtol=0)


def test_two_sources_equal_a_tile_by_tile_reference():
    b10 = cube(4, 3, 53, 47).chunk({"y": 24, "x": 20, "time": 4})
    b20 = cube(4, 2, 27, 24, res=20.0, seed=1)
    net = TwoResolutions("two")
    got, lazy = run("two", {"s10": b10, "s20": b20}, net, tile_size=8, batch_size=8)
    calls, samples = CALLS["two"], CALLS["two:samples"]
    halo = int(lazy.attrs["model_halo"])
    ychunks, xchunks = lazy.chunks[2], lazy.chunks[3]
    one = OutScale(Fraction(1))
    same = reference(net, [b10.values, b20.values], [1, 2], ychunks, xchunks, 8, halo, one, 2, slid=True)
    np.testing.assert_array_equal(got, same)
    before = reference(net, [b10.values, b20.values], [1, 2], ychunks, xchunks, 8, halo, one, 2, slid=False)
    np.testing.assert_allclose(got, before, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got, whole(net, b10.values, b20.values), atol=1e-5, rtol=0)
    # 2 x 3 chunks of up to 3 x 3 tiles of 8 px, 4 dates: one shape per chunk, full batches of 8
    tiles = [ny * nx for ny in tiles_per_chunk(ychunks, 8) for nx in tiles_per_chunk(xchunks, 8)]
    assert samples == sum(n * 4 for n in tiles)
    assert calls == sum(-(-(n * 4) // 8) for n in tiles)


@pytest.mark.parametrize("case", ["cnn", "cnn-small-tiles", "sr-x4", "classifier-/4"])
def test_each_chunk_feeds_full_batches_of_one_tile_shape(case):
    """Forward calls per chunk = ceil(tiles x dates / batch): edge and short tiles share the batches."""
    make, scale, (h, w), chunks, tile_size, batch, t = CASES[case]
    c = cube(t, 3, h, w).chunk(chunks)
    name = case + "-calls"
    _, lazy = run(name, c, make(name), tile_size=tile_size, batch_size=batch)
    ychunks, xchunks, tile, _, _ = _geometry(case, lazy, c, tile_size)
    tiles = [ny * nx for ny in tiles_per_chunk(ychunks, tile) for nx in tiles_per_chunk(xchunks, tile)]
    assert CALLS[name + ":samples"] == sum(n * d for n in tiles for d in c.chunks[0])  # each tile and date once
    assert CALLS[name] == sum(-(-(n * d) // batch) for n in tiles for d in c.chunks[0])


def test_windows_have_one_length_per_block_and_contain_the_clipped_ones():
    for core, lead, trail, halo, tile, align in [(24, 0, 3, 3, 8, 1), (23, 3, 0, 3, 8, 1), (10, 0, 0, 3, 4, 1),
                                                 (29, 4, 4, 4, 8, 4), (17, 0, 0, 4, 8, 4), (7, 2, 2, 2, 16, 2)]:
        block = lead + core + trail
        new = list(tile_windows(core, lead, block, halo, tile, align))
        old = list(windows(core, lead, block, halo, tile))
        assert [n[:2] for n in new] == [o[:2] for o in old]  # the same tiles
        assert len({b - a for *_, a, b in new}) == 1  # one window length per block axis
        for (_, _, a, b), (_, _, w0, w1) in zip(new, old):
            assert 0 <= a <= w0 and w1 <= b <= block and a % align == 0  # holds the clipped window, on the grid
    # a 17 px block with starts on multiples of 4: windows of 17 (not 16) px, the last one ending on the block end
    assert [(a, b) for *_, a, b in tile_windows(17, 0, 17, 4, 8, 4)] == [(0, 17)] * 3
    assert [(a, b) for *_, a, b in tile_windows(40, 0, 44, 4, 8, 4)] == [(0, 16), (4, 20), (12, 28), (20, 36),
                                                                          (28, 44)]
    # before: the edge tile's window was clipped to 12 px, the inner ones 16 px
    assert [w1 - w0 for *_, w0, w1 in windows(40, 0, 44, 4, 8)] == [12, 16, 16, 16, 16]


def test_nodata_through_a_chunk_made_of_one_tile_and_one_batch():
    """One tile and one batch per chunk (the chunk's output is a view of the model's): the same values and
    nodata mask as with two batches per chunk (each tile written into the chunk's output)."""
    c = cube(4, 3, 40, 36)
    data = c.values.copy()
    data[1, 0, 5:9, 30:33] = np.nan
    data[:, 2, 38:, :3] = np.nan
    c = c.copy(data=data).chunk({"y": 20, "x": 18, "time": 4})
    net = super_resolution("sr-view", 4)
    one_batch = apply_model(c, net, batch_size=8, mask_output="any", torch_threads=1).values
    two_batches = apply_model(c, net, batch_size=2, mask_output="any", torch_threads=1).values
    np.testing.assert_array_equal(one_batch, two_batches)
    hole = np.zeros((4, 40, 36), bool)
    hole[1, 5:9, 30:33] = True
    hole[:, 38:, :3] = True
    fine = np.broadcast_to(np.repeat(np.repeat(hole, 4, axis=1), 4, axis=2)[:, None], one_batch.shape)
    assert np.isnan(one_batch[fine]).all() and np.isfinite(one_batch[~fine]).all()
    np.testing.assert_allclose(one_batch[~fine], whole(net, np.nan_to_num(data, nan=0.0))[~fine], atol=1e-5, rtol=0)


class Passthrough(nn.Module):
    """Returns its input (a view of the engine's own arrays): the engine must copy before masking."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_a_model_returning_its_input_does_not_alias_or_change_the_input():
    c = cube(2, 3, 20, 18)
    data = c.values.copy()
    data[0, 1, 2:4, 2:4] = np.nan
    c = c.copy(data=data)
    before = c.values.copy()
    out = apply_model(c, Passthrough(), halo=0, mask_output="all").compute()
    np.testing.assert_array_equal(c.values, before)  # the input is untouched
    assert not np.shares_memory(out.values, c.values)
    expect = np.nan_to_num(data, nan=0.0)
    expect[0, :, 2:4, 2:4] = np.where(np.isnan(data[0, :, 2:4, 2:4]).all(axis=0), np.nan, expect[0, :, 2:4, 2:4])
    np.testing.assert_array_equal(out.values, expect)


def test_a_model_returning_nan_is_counted_on_chunks_returned_as_views(caplog):
    class NanCorner(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x * 1.0
            y[:, :, :2, :2] = float("nan")
            return y

    c = cube(2, 3, 20, 18).chunk({"y": 10, "x": 9})
    lazy = apply_model(c, NanCorner(), halo=0, mask_output=None)
    with caplog.at_level("WARNING", logger="eocube.models"):
        out = lazy.values
    assert np.isnan(out).any() and "returned NaN from finite inputs" in caplog.text
    from eocube.models._engine import nan_counts

    _, nan, total = nan_counts(lazy.data.name)
    assert (nan, total) == (2 * 4 * 4, 2 * 20 * 18)  # 4 chunks x 2 dates x 2 x 2 px
