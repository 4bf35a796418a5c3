"""Throughput of ``eocube.apply_model`` against a plain torch loop over the same pixels (the limit).

Both run in this process on the same in-memory cube and model, interleaved, best of
``--repeats``. The reference is what a user would write by hand with the whole image in
memory: ``model(x[i:i + batch])`` over the dates, no chunks, no halo, no nodata handling, torch
using every core. ``apply_model`` runs on a chunked cube with the dask threaded scheduler
(halo overlap, tiles, batching, nodata policy, stitching), which is the overhead measured.

Prints pixels per second (one pixel = one date x one y x one x position) and the ratio;
the issue's target on CPU is 0.85 or better. Where CUDA is present the same is done on the GPU
(the reference then includes the host <-> device copies, as apply_model does).

Usage: ``python benchmarks/bench_apply_model.py [--size 512] [--dates 16] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import time

import dask
import numpy as np
import pandas as pd
import torch
from torch import nn

import eocube
from eocube.models import apply_model


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image edge in pixels")
    parser.add_argument("--dates", type=int, default=16)
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=256, help="spatial chunk of the cube")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

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
        lazy = apply_model(cube, model, device=device.type, batch_size=args.batch, tile_size=args.chunk)
        threads = torch.get_num_threads()
        # warm-up (first calls allocate, load the model in the cache, pick kernels)
        reference(dev_model, data[: args.batch], args.batch, device)
        with dask.config.set(scheduler="threads"):
            lazy.isel(time=slice(0, args.batch)).compute()
            t_ref = t_eng = float("inf")
            for _ in range(args.repeats):  # interleaved, so that other load on the machine hits both
                torch.set_num_threads(threads)
                t0 = time.perf_counter()
                ref = reference(dev_model, data, args.batch, device)
                t1 = time.perf_counter()
                got = lazy.values
                t2 = time.perf_counter()
                t_ref, t_eng = min(t_ref, t1 - t0), min(t_eng, t2 - t1)
        err = float(np.abs(got - ref).max())
        tag = f"[{device.type}]"
        print(f"{tag} plain torch loop  : {pixels / t_ref / 1e6:8.2f} Mpx/s  ({t_ref:.2f} s, best of {args.repeats})")
        print(f"{tag} eocube.apply_model: {pixels / t_eng / 1e6:8.2f} Mpx/s  ({t_eng:.2f} s, "
              f"halo {lazy.attrs['model_halo']}, {lazy.data.npartitions} chunks)")
        print(f"{tag} ratio apply_model / plain loop = {t_ref / t_eng:.3f}  (target >= 0.85); "
              f"max |difference| {err:.2e}")


if __name__ == "__main__":
    main()
