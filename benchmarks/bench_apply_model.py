"""Throughput of ``eocube.apply_model`` against a plain torch loop over the same pixels (the limit).

Both run in this process on the same in-memory cube and model, interleaved, best of
``--repeats``. The reference is what a user would write by hand with the whole image in
memory: ``model(x[i:i + batch])`` over the dates, no chunks, no halo, no nodata handling, torch
using every core. ``apply_model`` runs on a chunked cube with the dask threaded scheduler
(halo overlap, tiles, batching, nodata policy, stitching), which is the overhead measured.

Prints pixels per second (one pixel = one date x one y x one x position) and the ratio;
the issue's target on CPU is 0.85 or better. Where CUDA is present the same is done on the GPU
(the reference then includes the host <-> device copies, as apply_model does).

Two more cases compare ``apply_model`` with a plain torch loop over *the same tiles* (same
tile size and halo, cut from the whole in-memory arrays, batched over the dates and stitched):
``sr``, a x4 super-resolution network (PixelShuffle), and ``two-source``, a network fed with a
10 m and a 20 m source (``forward(x10, x20)``). The issue's target for both on CPU is 0.95;
issue 25's for ``sr`` is apply_model's time <= 1.0x the loop's, on 4 dates x 4 bands x 512²
(``--cases sr --dates 4 --sr-size 512``). ``--tile`` cuts tiles smaller than the chunks (both
sides use the same tiles); the forward calls and samples of each side are printed, and each side's
CPU time (all threads, the kernel's share apart) and minor page faults: under other load the CPU
time and the median of the rounds' ratios move less than the best wall times.

Where CUDA is present, the ``cnn`` case also prints the share of the wall time the GPU was busy
(union of the kernel and copy intervals in torch's profiler) with the next batch prefetched to the
device and without; on a CPU-only machine that line says it was skipped and why.

Usage: ``python benchmarks/bench_apply_model.py [--size 512] [--dates 16] [--repeats 3]
[--cases cnn,sr,two-source] [--sr-size 128] [--tile N]``
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import dask
import numpy as np
import pandas as pd
import torch
from torch import nn

import eocube
from eocube.models import ModelSpec, OutputSpec, RunOptions, SourceSpec, apply_model


def make_model(bands: int, hidden: int) -> nn.Module:
    """A 3-layer CNN (3 x 3 kernels, receptive-field radius 3): a typical per-date segmentation head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(bands, hidden, 3, padding=1), nn.ReLU(),
        nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
        nn.Conv2d(hidden, bands, 3, padding=1),
    ).eval()


def reference(model: nn.Module, x: np.ndarray, batch: int, device: torch.device) -> np.ndarray:
    """The limit: one plain forward loop over the whole in-memory image."""
    out = np.empty_like(x)
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch):
            y = model(torch.from_numpy(x[i:i + batch]).to(device))
            out[i:i + batch] = y.cpu().numpy()
    return out


def make_sr(bands: int, hidden: int, factor: int = 4) -> nn.Module:
    """A x4 super-resolution network: two 3 x 3 convolutions, PixelShuffle, a 3 x 3 head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(bands, hidden, 3, padding=1), nn.ReLU(),
        nn.Conv2d(hidden, bands * factor * factor, 3, padding=1), nn.PixelShuffle(factor),
        nn.Conv2d(bands, bands, 3, padding=1),
    ).eval()


class TwoSource(nn.Module):
    """forward(x10, x20): the 20 m input convolved and upsampled x2, fused with the 10 m one."""

    def __init__(self, c10: int, c20: int, hidden: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(c10, hidden, 3, padding=1)
        self.b = nn.Conv2d(c20, hidden, 3, padding=1)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(2 * hidden, hidden, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(hidden, 1, 3, padding=1))

    def forward(self, x10: torch.Tensor, x20: torch.Tensor) -> torch.Tensor:
        up = nn.functional.interpolate(self.b(x20), scale_factor=2, mode="nearest")[..., : x10.shape[-2], : x10.shape[-1]]
        return self.head(torch.cat([self.a(x10), up], 1))


def tile_loop(model: nn.Module, arrays: list[np.ndarray], ratios: list[int], tile: int, halo: int,
              scale: Fraction, batch: int, device: torch.device) -> np.ndarray:
    """The same tiles as apply_model (tile + halo, clipped at the image), batched over dates, stitched."""
    t, _, h, w = arrays[0].shape
    out: np.ndarray | None = None
    with torch.inference_mode():
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
                wy0, wy1, wx0, wx1 = max(0, y0 - halo), min(h, y1 + halo), max(0, x0 - halo), min(w, x1 + halo)
                win = [a[:, :, wy0 // r: -(-wy1 // r), wx0 // r: -(-wx1 // r)] for a, r in zip(arrays, ratios)]
                for i in range(0, t, batch):
                    y = model(*[torch.from_numpy(np.ascontiguousarray(a[i:i + batch])).to(device) for a in win])
                    y = y.cpu().numpy()
                    if out is None:
                        out = np.empty((t, y.shape[1], int(h * scale), int(w * scale)), np.float32)
                    oy, ox = int((y0 - wy0) * scale), int((x0 - wx0) * scale)
                    ny, nx = int((y1 - y0) * scale), int((x1 - x0) * scale)
                    out[i:i + batch, :, int(y0 * scale):int(y1 * scale), int(x0 * scale):int(x1 * scale)] = \
                        y[:, :, oy:oy + ny, ox:ox + nx]
    assert out is not None
    return out


def _cube(data: np.ndarray, res: float, dates: pd.DatetimeIndex) -> eocube.xr.DataArray:  # type: ignore[name-defined]
    n = data.shape[-1]
    coords = res * (np.arange(n) + 0.5)
    return eocube.make_cube(data, time=dates, band=[f"b{i}" for i in range(data.shape[1])], y=5e6 - coords,
                            x=4e5 + coords, crs="EPSG:32633")


def tiled_case(case: str, args: argparse.Namespace) -> None:
    """``sr`` or ``two-source``: apply_model against the plain loop over the same tiles, on the CPU."""
    rng = np.random.default_rng(0)
    size = args.sr_size if case == "sr" else args.size
    dates = pd.date_range("2022-01-01", periods=args.dates, freq="5D")
    d10 = rng.standard_normal((args.dates, args.bands, size, size)).astype("float32")
    if case == "sr":
        model, arrays, ratios, scale = make_sr(args.bands, args.hidden), [d10], [1], Fraction(4)
        sources = _cube(d10, 10.0, dates).chunk({"time": args.batch, "y": args.chunk, "x": args.chunk})
    else:
        d20 = rng.standard_normal((args.dates, 2, size // 2, size // 2)).astype("float32")
        model, arrays, ratios, scale = TwoSource(args.bands, 2, args.hidden), [d10, d20], [1, 2], Fraction(1)
        sources = {"s10": _cube(d10, 10.0, dates).chunk({"time": args.batch, "y": args.chunk, "x": args.chunk}),
                   "s20": _cube(d20, 20.0, dates)}
    device = torch.device("cpu")
    tile = args.tile or args.chunk
    calls = [0, 0]  # forward calls and samples (the hook travels with the module into apply_model's cache)
    model.register_forward_hook(lambda _m, inputs, _out: calls.__setitem__(slice(0, 2), [calls[0] + 1,
                                                                                          calls[1] + inputs[0].shape[0]]))
    names = list(sources) if isinstance(sources, dict) else ["input"]
    spec = ModelSpec(sources=tuple(SourceSpec(name=n) for n in names), output=OutputSpec(mask=None))
    lazy = apply_model(sources, model, spec, run=RunOptions(device="cpu", batch_size=args.batch, tile_size=tile))
    halo = int(lazy.attrs["model_halo"])
    threads = torch.get_num_threads()
    pixels = args.dates * size * size
    n_best = threads
    with dask.config.set(scheduler="threads"):
        tile_loop(model, [a[: args.batch] for a in arrays], ratios, tile, halo, scale, args.batch, device)
        lazy.isel(time=slice(0, args.batch)).compute()
        rounds: list[tuple[Cost, Cost]] = []
        best_threads = threads
        counts = {}
        for r in range(args.repeats):
            # the plain loop at its best thread count (torch's default, or 1: on a loaded machine
            # intra-op threads on small tiles can be several times slower than one thread)
            loop_cost: Cost | None = None
            for n in sorted({threads, 1}):
                torch.set_num_threads(n)
                calls[:] = [0, 0]
                ref, cost = measured(lambda: tile_loop(model, arrays, ratios, tile, halo, scale, args.batch, device))
                if loop_cost is None or cost.wall < loop_cost.wall:
                    loop_cost, n_best = cost, n
                counts["loop"] = tuple(calls)
            assert loop_cost is not None
            if not rounds or loop_cost.wall < min(lc.wall for lc, _ in rounds):
                best_threads = n_best
            torch.set_num_threads(threads)
            calls[:] = [0, 0]
            got, eng_cost = measured(lambda: lazy.values)
            counts["eocube"] = tuple(calls)
            rounds.append((loop_cost, eng_cost))
            print(f"[cpu {case}] round {r + 1}: loop {loop_cost.wall:.2f} s, apply_model {eng_cost.wall:.2f} s "
                  f"({eng_cost.wall / loop_cost.wall:.3f}x); load {os.getloadavg()[0]:.1f}", flush=True)
    t_ref, t_eng = min(lc.wall for lc, _ in rounds), min(ec.wall for _, ec in rounds)
    per_round = float(np.median([ec.wall / lc.wall for lc, ec in rounds]))
    err = float(np.abs(got - ref).max())
    tag = f"[cpu {case}]"
    print(f"{tag} {args.dates} dates x {size}^2 px (reference grid), chunks {args.chunk} px, tiles {tile} px, "
          f"halo {halo}, output scale {lazy.attrs['model_scale']}, {lazy.data.npartitions} chunks; load average "
          f"{os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} cores")
    for who, (n_calls, n_samples) in counts.items():
        print(f"{tag} forward calls, {who:6}: {n_calls} ({n_samples} samples, {n_samples / max(n_calls, 1):.1f} per call)")
    for who, i in (("loop", 0), ("eocube", 1)):
        cpu = float(np.median([rd[i].cpu for rd in rounds]))
        sys_ = float(np.median([rd[i].sys for rd in rounds]))
        faults = float(np.median([rd[i].faults for rd in rounds]))
        print(f"{tag} CPU time, {who:6}: {cpu:.2f} s (of which kernel {sys_:.2f} s), {faults / 1e3:.0f} k page faults "
              "(medians over the rounds, all threads)")
    print(f"{tag} torch's huge pages (THP_MEM_ALLOC_ENABLE): {os.environ.get('THP_MEM_ALLOC_ENABLE')}, both sides")
    print(f"{tag} plain loop, same tiles: {pixels / t_ref / 1e6:8.2f} Mpx/s  ({t_ref:.2f} s, best of {args.repeats}, "
          f"{best_threads} torch thread(s) of {threads})")
    print(f"{tag} eocube.apply_model    : {pixels / t_eng / 1e6:8.2f} Mpx/s  ({t_eng:.2f} s)")
    print(f"{tag} ratio apply_model / plain loop = {t_ref / t_eng:.3f}  (target >= 0.95); max |difference| {err:.2e}")
    print(f"{tag} time apply_model / plain loop = {t_eng / t_ref:.3f}x best of each, {per_round:.3f}x median of the "
          "rounds' ratios" + ("  (issue 25 target <= 1.0x)" if case == "sr" else ""))


@dataclass(frozen=True)
class Cost:
    """Wall seconds, CPU seconds of the process (all threads; ``sys`` the kernel's share) and minor page faults."""

    wall: float
    cpu: float
    sys: float
    faults: int


def measured(run: Callable[[], np.ndarray]) -> tuple[np.ndarray, Cost]:
    """``run()``'s result and what it cost.

    The CPU time and the page faults are less sensitive to other load on the machine than the wall
    time. Each forward pass allocates its large intermediate tensors afresh (glibc maps allocations
    over 32 MB with ``mmap`` and unmaps them when freed), so the kernel faults in and zeroes new
    pages for every batch: about half of both sides' CPU time in the ``sr`` case with 4 KiB pages
    (2026-12-06). ``import eocube`` asks torch for 2 MiB pages (``THP_MEM_ALLOC_ENABLE``, printed
    with the CPU times; ``benchmarks/bench_torch_hugepages.py`` compares off and on).
    """
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = run()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    sys_ = r1.ru_stime - r0.ru_stime
    return out, Cost(wall, r1.ru_utime - r0.ru_utime + sys_, sys_, r1.ru_minflt - r0.ru_minflt)


def gpu_busy_fraction(run: Callable[[], object]) -> tuple[float, float]:
    """Share of the wall time of ``run()`` during which the GPU executed kernels or copies, and the wall time.

    The GPU's busy time is the union of the device intervals recorded by torch's profiler (kernels and
    memory copies, on every stream), so overlapping copies and kernels count once.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        run()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    spans = sorted(
        (e.time_range.start, e.time_range.end) for e in prof.events()
        if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA and e.time_range.end > e.time_range.start
    )
    busy, end = 0.0, float("-inf")
    for start, stop in spans:  # union of the intervals, in microseconds
        if start > end:
            busy += stop - start
            end = stop
        elif stop > end:
            busy += stop - end
            end = stop
    return min(1.0, busy / 1e6 / wall), wall


def gpu_feeding(cube: eocube.xr.DataArray, model: nn.Module, args: argparse.Namespace) -> None:  # type: ignore[name-defined]
    """GPU busy / wall of apply_model with and without prefetching the next batch (issue 14, deliverable 6)."""
    if not torch.cuda.is_available():
        print("[cuda] GPU feeding (busy / wall, prefetch on and off): skipped, no CUDA device visible to torch")
        return
    for prefetch in (True, False):
        lazy = apply_model(cube, model, run=RunOptions(device="cuda", batch_size=args.batch, tile_size=args.chunk,
                                                       prefetch=prefetch))
        with dask.config.set(scheduler="threads"):
            lazy.isel(time=slice(0, args.batch)).compute()  # warm-up: model cached on the device, kernels chosen
            best = max((gpu_busy_fraction(lambda: lazy.values) for _ in range(args.repeats)), key=lambda r: r[0])  # noqa: B023 - called within this iteration
        print(f"[cuda] GPU busy / wall with prefetch={prefetch!s:5}: {best[0]:.3f}  ({best[1]:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image edge in pixels")
    parser.add_argument("--dates", type=int, default=16)
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=256, help="spatial chunk of the cube")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="cnn,sr,two-source", help="comma-separated: cnn, sr, two-source")
    parser.add_argument("--sr-size", type=int, default=128, help="input edge of the x4 super-resolution case")
    parser.add_argument("--tile", type=int, default=None, help="tile edge of the sr and two-source cases (default: --chunk)")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for case in cases:
        if case in ("sr", "two-source"):
            tiled_case(case, args)
    if "cnn" not in cases:
        return

    rng = np.random.default_rng(0)
    data = rng.standard_normal((args.dates, args.bands, args.size, args.size)).astype("float32")
    coords = 10.0 * (np.arange(args.size) + 0.5)
    cube = eocube.make_cube(
        data, time=pd.date_range("2022-01-01", periods=args.dates, freq="5D"),
        band=[f"b{i}" for i in range(args.bands)], y=5e6 - coords, x=4e5 + coords, crs="EPSG:32633",
    ).chunk({"time": args.batch, "y": args.chunk, "x": args.chunk})
    model = make_model(args.bands, args.hidden)
    pixels = args.dates * args.size * args.size
    cores = len(os.sched_getaffinity(0))
    print(f"cube {args.dates} dates x {args.bands} bands x {args.size}^2 px, "
          f"chunks {args.chunk}^2 x {args.batch} dates; CNN {args.bands}-{args.hidden}-{args.hidden}-{args.bands} "
          f"(3x3); {cores} cores; torch {torch.__version__}")

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        dev_model = model.to(device)
        lazy = apply_model(cube, model, run=RunOptions(device=device.type, batch_size=args.batch, tile_size=args.chunk))
        threads = torch.get_num_threads()
        # warm-up (first calls allocate, load the model in the cache, pick kernels)
        reference(dev_model, data[: args.batch], args.batch, device)
        with dask.config.set(scheduler="threads"):
            lazy.isel(time=slice(0, args.batch)).compute()
            t_ref = t_eng = float("inf")
            ratios = []
            for _ in range(args.repeats):  # interleaved, so that other load on the machine hits both
                torch.set_num_threads(threads)
                t0 = time.perf_counter()
                ref = reference(dev_model, data, args.batch, device)
                t1 = time.perf_counter()
                got = lazy.values
                t2 = time.perf_counter()
                t_ref, t_eng = min(t_ref, t1 - t0), min(t_eng, t2 - t1)
                ratios.append((t1 - t0) / (t2 - t1))
        err = float(np.abs(got - ref).max())
        tag = f"[{device.type}]"
        print(f"{tag} plain torch loop  : {pixels / t_ref / 1e6:8.2f} Mpx/s  ({t_ref:.2f} s, best of {args.repeats})")
        print(f"{tag} eocube.apply_model: {pixels / t_eng / 1e6:8.2f} Mpx/s  ({t_eng:.2f} s, "
              f"halo {lazy.attrs['model_halo']}, {lazy.data.npartitions} chunks)")
        print(f"{tag} ratio apply_model / plain loop = {t_ref / t_eng:.3f} best of each, {np.median(ratios):.3f} median "
              f"of the rounds' ratios  (target >= 0.85); max |difference| {err:.2e}; load average "
              f"{os.getloadavg()[0]:.1f}")
    gpu_feeding(cube, model, args)


if __name__ == "__main__":
    main()
