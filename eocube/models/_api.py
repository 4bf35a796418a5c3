"""``apply_model``: check the request, probe the model once, build the lazy graph, label the result."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Literal, Sequence

import dask
import dask.array as da
import numpy as np
import pandas as pd
import torch
import xarray as xr
from dask.base import tokenize

from ..cube import check_time_axis, select_bands, validate_cube
from ._device import check_autocast, check_device_early, gpu_resources
from ._engine import BlockPlan, forward_canonical, run_block
from ._errors import HaloError, OutputShapeError
from ._layout import LAYOUTS, Layout, time_features
from ._loading import as_source, get_model
from ._probe import args_builder, probe_output, resolve_halo

DEFAULT_SPATIAL_CHUNK = 512


def _spatial_chunks(chunks: tuple[int, ...], halo: int) -> tuple[int, ...]:
    """Merge chunks smaller than the halo into a neighbour (dask's overlap needs depth <= chunk)."""
    out: list[int] = []
    for c in chunks:
        if out and (c < halo or out[-1] < halo):
            out[-1] += c
        else:
            out.append(c)
    return tuple(out)


def _out_names(out_bands: Any, k: int, bands: tuple[str, ...], post: Any) -> list[str]:
    if out_bands is None:
        return ["class"] if post == "argmax" and k == 1 else [f"out_{i}" for i in range(k)]
    names = list(bands) if isinstance(out_bands, str) and out_bands == "input" else (
        [out_bands] if isinstance(out_bands, str) else [str(b) for b in out_bands]
    )
    if len(names) != k:
        raise OutputShapeError(
            f"out_bands has {len(names)} name(s) {names} but the model gives {k} output channel(s) per "
            f"{'date' if k else 'map'}: pass {k} names, or out_bands=None for out_0..out_{k - 1}"
        )
    return names


def _out_dtype_nodata(out_dtype: Any, out_nodata: Any, post: Any) -> tuple[np.dtype, Any]:
    if out_dtype is None:
        out_dtype = "uint8" if post == "argmax" else "float32"
    dtype = np.dtype(out_dtype)
    if out_nodata is None:
        if np.issubdtype(dtype, np.floating):
            out_nodata = np.nan
        elif np.issubdtype(dtype, np.unsignedinteger):
            out_nodata = int(np.iinfo(dtype).max)
        else:
            out_nodata = -1
    return dtype, out_nodata


def apply_model(
    cube: xr.DataArray,
    model: Any,
    *,
    layout: Literal["band", "time_band", "sequence"] = "band",
    bands: Sequence[str] | None = None,
    out_bands: Sequence[str] | str | None = None,
    output: Literal["auto", "per_date", "map"] = "auto",
    out_time: Any = None,
    postprocess: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
    out_dtype: Any = None,
    out_nodata: float | int | None = None,
    halo: int | Literal["auto", "probe"] = "auto",
    tile_size: int | None = 256,
    batch_size: int = 8,
    chunks: dict[str, int] | None = None,
    size_multiple: int = 1,
    fill_value: float = 0.0,
    valid_input: Literal["channel", "argument"] | None = None,
    time_input: str | Callable[[pd.DatetimeIndex], np.ndarray] | None = None,
    mask_output: Literal["any", "all"] | None = "any",
    device: str = "auto",
    autocast: Literal["bf16", "fp16"] | None = None,
    torch_threads: int | None = None,
    resources: dict[str, float] | Literal["auto"] | None = "auto",
    name: str | None = None,
) -> xr.DataArray:
    """Apply a PyTorch model to a cube, chunk by chunk, lazily and without seams.

    The model is probed once here (output shape, channel count, receptive field) and then
    runs in the dask tasks: each worker process loads it once and reuses it, tiles are cut
    with a halo of context and batched, and each output pixel is computed as in one forward
    pass over the whole image.

    Parameters
    ----------
    cube
        The input cube ``(time, band, y, x)``; dask-backed (lazy) or in memory.
    model
        A ``torch.nn.Module``; the path of a TorchScript file (``torch.jit.save``); a tuple
        ``(factory, state_dict_path)``; or :func:`eocube.models.from_state_dict` /
        :func:`eocube.models.from_torchscript`. Files are loaded without unpickling
        arbitrary objects (TorchScript, or ``torch.load(weights_only=True)``). An in-memory
        module is sent once to each worker process by the scheduler and copied there; it is
        never modified.
    layout
        How the cube feeds the model's input ``x`` (``F`` = bands, plus 1 with
        ``valid_input="channel"``; ``T`` = dates of the cube):

        * ``"band"``: each date is a sample, ``x`` is ``(N, F, H, W)``;
        * ``"time_band"``: the whole series is one sample, time folded into channels
          time-major (channel ``t * F + f``), ``x`` is ``(N, T*F, H, W)``;
        * ``"sequence"``: the whole series is one sample, ``x`` is ``(N, T, F, H, W)``.
    bands
        Bands to feed, in channel order (default: all).
    out_bands
        Names of the output bands: a list, ``"input"`` (the input band names, for models that
        return one value per input band, e.g. gap filling) or None (``out_0``, ``out_1``, ...;
        ``class`` for ``postprocess="argmax"``).
    output
        What the output holds. ``"per_date"``: a value per date, output cube with the input's
        dates; ``"map"``: one map for the whole series (temporal layouts), output cube with
        a single date ``out_time``. ``"auto"``: ``"band"`` -> per date; ``"sequence"`` -> per date
        for a 5-D ``(N, T, K, H, W)`` model output, map for 4-D ``(N, K, H, W)``;
        ``"time_band"`` -> per date when ``out_bands`` has ``L`` names and the model returns
        ``T*L`` channels (time-major), else map.
    out_time
        Date of a ``"map"`` output (default: the last date of the cube).
    postprocess
        Applied to the model output's channel axis before storing: ``"argmax"`` (a class map,
        one band), ``"softmax"``, ``"sigmoid"``, a callable on a ``(N, t, K, H, W)`` tensor, or None.
    out_dtype, out_nodata
        Output element type (default float32; uint8 for ``argmax``) and nodata value (default
        NaN for floats, the largest value for unsigned integers, -1 for signed ones).
    halo
        Pixels of context added on each side of a tile. ``"auto"``: the module's integer ``halo``
        attribute if it has one, else probed; ``"probe"``: always probed (the receptive field
        is found from input gradients, exactly); an int: used as given.
    tile_size
        Edge of the tiles cut inside each chunk (without halo); None: one tile per chunk.
        Bounds the memory of one forward pass.
    batch_size
        Samples per forward pass (dates x tiles for ``"band"``, tiles otherwise). Results do
        not depend on it (beyond float rounding).
    chunks
        Rechunk the cube first, e.g. ``{"y": 1024, "x": 1024, "time": 8}``. Band (and, for the
        temporal layouts, time) is always one chunk. In-memory cubes get 512 x 512.
    size_multiple
        Tiles are padded (reflect) at their bottom/right to a multiple of this size before
        the model (U-Nets that need sizes divisible by ``2**depth``); outputs are cropped back.
    fill_value
        Value given to the model where the input is nodata (NaN, or ``cube.rio.nodata``).
    valid_input
        How the model learns where the input was nodata: ``"channel"`` appends a validity
        channel (1 valid, 0 nodata in any band) after the bands of each date;
        ``"argument"`` passes a boolean tensor shaped like ``x`` (True where valid) as the next
        positional argument; None: not at all.
    time_input
        Per-date features passed as the next positional argument: ``"days"`` (days since
        1970-01-01), ``"doy"`` (day of year), or a callable ``f(DatetimeIndex) -> (T,) or (T, k)``;
        float32 tensors of shape ``(N,)``/``(N, k)`` for ``"band"``, ``(N, T)``/``(N, T, k)``
        otherwise. The model is thus called as ``model(x[, valid][, time])``.
    mask_output
        Which output values are set to ``out_nodata``. ``"any"``: where any band of the output's
        own date was nodata (any date and band for a map); ``"all"``: where every input value
        that reaches the output was nodata (the bands of its date for ``"band"``; every date and
        band of the pixel for the temporal layouts, i.e. never observed). None keeps every
        model output. Gap filling wants ``"all"`` or None.
    device
        ``"auto"`` (CUDA when torch sees it in the worker, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    autocast
        ``"bf16"`` or ``"fp16"`` mixed precision (``torch.autocast``), mainly for GPUs.
    torch_threads
        Torch threads per task on the CPU; None: the process's cores divided by its dask threads.
    resources
        Dask resources of the model tasks; ``"auto"``: ``{"GPU": 1}`` when the device may be a
        GPU and the distributed cluster's workers declare a ``GPU`` resource.
    name
        Name of the output DataArray (default ``"prediction"``).

    Returns
    -------
    xarray.DataArray
        A lazy cube ``(time, band, y, x)`` on the input's grid (same ``y``/``x``, CRS and
        transform), with the output bands and dates described above.

    Raises
    ------
    ChannelMismatchError
        The model does not accept the layout's channel count (says which dims produced it).
    OutputShapeError
        The model output cannot be mapped back (other spatial size, unexpected rank).
    HaloError
        A bad halo, or a receptive field too wide to probe.
    DeviceError
        The device is absent (here without a distributed client, else in the worker).
    ModelRuntimeError
        The model raised in a task; the message names the chunk, the cause is chained.
    ModelLoadError
        A model file is missing, unsafe or does not fit its factory.

    Examples
    --------
    A per-date segmentation network saved as TorchScript, as a class map per date:

    >>> classes = eocube.apply_model(cube, "unet.ts", bands=["B02", "B03", "B04", "B08"],
    ...                              postprocess="argmax", size_multiple=16)  # doctest: +SKIP

    A temporal gap-filling network with ``forward(values (N, T, C, H, W), valid (same, bool),
    days (N, T))`` returning ``(N, T, C, H, W)``, clouds masked to NaN first:

    >>> filled = eocube.apply_model(
    ...     ndvi.where(clear), net, layout="sequence", valid_input="argument", time_input="days",
    ...     out_bands="input", mask_output="all")  # doctest: +SKIP

    Notes
    -----
    **Seams and borders.** Chunks overlap by ``halo`` pixels inside the image and not at all
    beyond it (dask overlap with ``boundary="none"``): a tile at the image border sees the
    true border, so the model's own padding applies there exactly as in a whole-image pass.
    With ``halo`` at least the receptive-field radius, the result equals the whole-image
    forward pass to float rounding everywhere, borders included, for models that are
    translation-equivariant (stride 1, or upsampled back). For strided models (U-Nets) the
    tile origins and ``size_multiple`` padding make results near tile edges approximate.
    """
    validate_cube(cube, name="cube")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if valid_input not in (None, "channel", "argument"):
        raise ValueError(f"valid_input must be None, 'channel' or 'argument', got {valid_input!r}")
    if mask_output not in (None, "any", "all"):
        raise ValueError(f"mask_output must be None, 'any' or 'all', got {mask_output!r}")
    if output not in ("auto", "per_date", "map"):
        raise ValueError(f"output must be 'auto', 'per_date' or 'map', got {output!r}")
    if batch_size < 1 or (tile_size is not None and tile_size < 1) or size_multiple < 1:
        raise ValueError("batch_size, tile_size and size_multiple must be positive integers")
    check_autocast(autocast)
    check_device_early(device)
    if layout != "band":
        check_time_axis(cube)

    cube = select_bands(cube, bands)
    band_names = tuple(str(b) for b in cube["band"].values)
    times = pd.DatetimeIndex(cube["time"].values)
    lay = Layout(
        kind=layout,
        bands=band_names,
        n_time=len(times) if layout != "band" else 1,
        flag=valid_input == "channel",
        valid_arg=valid_input == "argument",
        time_arg=time_input is not None,
    )
    tfeat = time_features(times, time_input)
    source = as_source(model)
    module = get_model(source, torch.device("cpu"))

    build = args_builder(lay, tfeat)
    probe_t = len(times) if lay.temporal else min(2, len(times))
    kind, k, k_final = probe_output(module, lay, build, probe_t, size_multiple, output, out_bands, postprocess)
    names = _out_names(out_bands, k_final, band_names, postprocess)
    dtype, nodata_out = _out_dtype_nodata(out_dtype, out_nodata, postprocess)
    h = resolve_halo(halo, module, build, lambda a: forward_canonical(module, list(a), lay, kind, k, None),
                      probe_t, len(band_names), size_multiple)

    # ---- chunks, overlap and the graph ----
    want: dict[str, Any] = {"band": -1}
    if lay.temporal:
        want["time"] = -1
    if not isinstance(cube.data, da.Array):
        cube = cube.chunk({"time": -1 if lay.temporal else min(len(times), 8),
                           "y": DEFAULT_SPATIAL_CHUNK, "x": DEFAULT_SPATIAL_CHUNK})
    cube = cube.chunk({**(chunks or {}), **want})
    data = cube.data
    ychunks, xchunks = _spatial_chunks(data.chunks[2], h), _spatial_chunks(data.chunks[3], h)
    if (ychunks, xchunks) != data.chunks[2:]:
        data = data.rechunk((data.chunks[0], data.chunks[1], ychunks, xchunks))
    if h and (min(ychunks) < h or min(xchunks) < h):
        raise HaloError(
            f"the halo ({h} px) is larger than the image ({sum(ychunks)} x {sum(xchunks)} px): pass a smaller halo"
        )
    ov = da.overlap.overlap(data, depth={0: 0, 1: 0, 2: h, 3: h}, boundary="none") if h else data
    raw_nodata = cube.rio.nodata
    plan = BlockPlan(
        layout=lay, out_kind=kind, n_out=k, n_final=k_final, halo=h, tile_size=tile_size,
        batch_size=int(batch_size), device=str(device), autocast=autocast, torch_threads=torch_threads,
        nodata=None if raw_nodata is None else raw_nodata.item() if hasattr(raw_nodata, "item") else raw_nodata,
        fill_value=float(fill_value), mask_output=mask_output, postprocess=postprocess, out_dtype=dtype.str,
        out_nodata=nodata_out, time_features=tfeat, dates=times.values.astype("datetime64[ns]"),
        chunks=(data.chunks[0], ychunks, xchunks), multiple=int(size_multiple),
    )
    if kind == "map":
        tchunks: tuple[int, ...] = (1,)
    elif lay.temporal:
        tchunks = (len(times),)
    else:
        tchunks = data.chunks[0]
    src = dask.delayed(source, name=f"eocube-model-{source.token}", traverse=False, pure=True)
    res = gpu_resources(str(device), resources)
    with dask.annotate(resources=res) if res else contextlib.nullcontext():
        out = da.map_blocks(
            run_block, ov, source=src, plan=plan, dtype=dtype, chunks=(tchunks, (k_final,), ychunks, xchunks),
            meta=np.empty((0, 0, 0, 0), dtype=dtype),
            name=f"apply-model-{tokenize(ov.name, source.token, plan)}",
        )

    # ---- label ----
    if kind == "map":
        out_times = pd.DatetimeIndex([pd.Timestamp(out_time) if out_time is not None else times[-1]])
    else:
        out_times = times
    result = xr.DataArray(
        out,
        dims=("time", "band", "y", "x"),
        coords={
            "time": out_times.values.astype("datetime64[ns]"),
            "band": np.asarray(names, dtype=object),
            "y": cube["y"].values,
            "x": cube["x"].values,
        },
        name=name or "prediction",
        attrs={
            "model": source.describe(),
            "model_layout": lay.describe(),
            "model_output": kind,
            "model_halo": h,
        },
    )
    result = result.rio.write_crs(cube.rio.crs).rio.write_transform(cube.rio.transform())
    return result.rio.write_nodata(nodata_out, encoded=False)
