"""``apply_model``: resolve the spec, check the sources, probe the model once, build the lazy graph, label it."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import torch
import xarray as xr
from dask.base import tokenize

from ..cube import check_time_axis, select_bands, validate_cube
from ..errors import GridError
from ..grid import Grid
from ..nodata import cube_nodata
from ._device import gpu_resources
from ._engine import BlockPlan, SourcePlan, forward_canonical, identified, run_block
from ._errors import HaloError, OutputShapeError, SourceError
from ._guards import FedSizes, check_size_limits
from ._identity import unreadable_message
from ._keywords import resolve
from ._layout import Layout, time_features
from ._loading import ExportedProgramSource, as_source, get_model, settle_identity
from ._probe import Probe, ProbeInputs, make_builder, probe_output, resolve_halo
from ._scaling import check_scaling
from ._sources import lcm, match_sources, nest_grids, pair_dates
from ._spec import ModelSpec, OutputSpec, RunOptions, SourceSpec
from ._tile_windows import tile_windows
from ._tiling import OutScale, aligned_chunks, output_chunks, round_up, source_chunks
from ._validate import check_spec

DEFAULT_SPATIAL_CHUNK = 512


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


def _select(cube: xr.DataArray, src: SourceSpec) -> xr.DataArray:
    what = f"source {src.name!r}" if src.name != "input" else "cube"
    validate_cube(cube, name=what)
    if cube.sizes["time"] == 0:
        raise SourceError(f"the {what} has no dates (0 along time): there is nothing to apply the model to; "
                          "select a time range that holds dates")
    if np.issubdtype(cube.dtype, np.complexfloating):
        raise SourceError(f"the {what} holds complex values ({cube.dtype}): the model takes real numbers and the "
                          "imaginary part would be dropped; pass the part you mean (cube.real, abs(cube), or both "
                          "as bands)")
    if src.bands is not None:
        have = [str(b) for b in cube["band"].values]
        missing = [b for b in src.bands if b not in have]
        if missing:
            raise SourceError(
                f"source {src.name!r}: the model needs the band(s) {missing}, which the cube lacks; the cube has "
                f"{have}: pass a cube with them, or map the names (cube.assign_coords(band=[...]))"
            )
    cube = select_bands(cube, list(src.bands) if src.bands is not None else None)
    if src.layout != "band":
        check_time_axis(cube, name=f"source {src.name!r}")
    check_scaling(src.scaling, cube.sizes["band"], src.name)
    if src.resolution is not None:
        got = Grid.of(cube).pixel_size
        if any(abs(g - w) > 1e-6 * abs(w) for g, w in zip(got, src.resolution)):
            raise GridError(
                f"source {src.name!r}: the model expects pixels of {src.resolution[0]:g} x {src.resolution[1]:g}, the "
                f"cube has {got[0]:g} x {got[1]:g}: open it at that resolution (open_stac(..., resolution="
                f"{src.resolution[0]:g})) or cube.rio.reproject_match(ref) onto a cube at that resolution"
            )
    return cube


@dataclass
class _Source:
    """One source while the graph is built."""

    spec: SourceSpec
    cube: xr.DataArray
    times: pd.DatetimeIndex
    ratio: int = 1
    layout: Layout | None = None
    tfeat: np.ndarray | None = None


def apply_model(
    sources: xr.DataArray | Sequence[xr.DataArray] | Mapping[str, xr.DataArray],
    model: Any,
    spec: ModelSpec | str | Path | None = None,
    *,
    run: RunOptions | None = None,
    **keywords: Any,
) -> xr.DataArray:
    """Apply a PyTorch model to one or several cubes, chunk by chunk, lazily and without seams.

    The model is probed once here (output shape, channel count, output scale, receptive
    field) on small random tensors, and then runs in the dask tasks: each worker process
    loads it once and reuses it, tiles are cut with a halo of context and batched, and each
    output pixel is computed as in one forward pass over the whole image.

    What describes the model (its sources, layouts, validity and time inputs, outputs, halo,
    scale) is one :class:`~eocube.models.ModelSpec`, usually loaded from the model card beside
    the model file; how to run it (tiles, batches, device, precision, threads, resources) is
    one :class:`~eocube.models.RunOptions`. The keywords of earlier versions
    (``apply_model(cube, net, layout=..., bands=..., tile_size=...)``) still override fields of
    either, each with a :class:`DeprecationWarning` naming the field to set instead.

    Parameters
    ----------
    sources
        The input cube(s) ``(time, band, y, x)``, dask-backed (lazy) or in memory: one cube, a
        list in the spec's source order, or a dict ``{source name: cube}``. Several sources may
        have their own bands, grids and dates. Grids must nest: one CRS, pixel sizes integer
        multiples of the finest, the finest grid's top-left corner on a pixel corner of every
        other grid (coarser sources are cropped to the finest one's footprint).
    model
        A ``torch.nn.Module``; the path of a model file (TorchScript; ``.pt2`` where
        supported); a tuple ``(factory, state_dict_path)``; or :func:`eocube.models.from_state_dict` /
        :func:`eocube.models.from_torchscript`. Files are loaded without unpickling arbitrary
        objects. An in-memory module is sent once to each worker process and copied there;
        it is never modified.
    spec
        How the model consumes and produces data: a :class:`~eocube.models.ModelSpec`, the path of
        a model card, or None: the card found beside a model file
        (:func:`eocube.models.card.find_card`), else one source described by the keywords.
    run
        How to run it (:class:`~eocube.models.RunOptions`; default ``RunOptions()``).
    **keywords
        Deprecated shorthand (each one warns, naming the field to set instead): override fields
        of the spec and of ``run``:

        * of each source (a value for all sources, or a dict ``{source name: value}``):
          ``layout`` (``"band"``: each date a sample ``(N, F, H, W)``; ``"time_band"``: the series
          folded into channels time-major, ``(N, T*F, H, W)``; ``"sequence"``: ``(N, T, F, H, W)``),
          ``bands`` (fed in channel order), ``valid_input`` (``"channel"``: a validity channel after
          each date's bands; ``"argument"``: a boolean tensor like ``x`` as the next argument),
          ``time_input`` (``"days"``, ``"doy"`` or a callable ``f(DatetimeIndex) -> (T,) or (T, k)``,
          passed after ``valid``), ``fill_value`` (given to the model where the input is nodata);
        * of the output: ``out_bands`` (names, ``"input"`` for the reference's band names, or None:
          ``out_0``, ... / ``class``), ``output`` (``"per_date"``, ``"map"``, ``"auto"``), ``out_time``
          (date of a map; default the reference's last date), ``postprocess`` (``"argmax"``,
          ``"softmax"``, ``"sigmoid"``, a callable on ``(N, t, K, H, W)``), ``out_dtype`` /
          ``out_nodata`` (default float32 / NaN; uint8 / 255 for argmax), ``mask_output``
          (``"any"``: nodata where any band of the output's own date was nodata in the reference;
          ``"all"``: where every reference value reaching it was; None: never), ``scale`` (output
          pixels per reference pixel: 4, ``"1/4"``, ``Fraction(1, 4)``; default probed);
        * of the model: ``halo`` (reference pixels; ``"auto"``: the module's ``halo`` attribute or
          probed; ``"probe"``), ``size_multiple`` (tiles padded, reflect, to a multiple of it),
          ``reference`` (source whose grid the scale refers to and whose dates the output has;
          default the finest), ``pairing`` / ``tolerance`` (layout ``"band"`` with several sources:
          ``"same"`` calendar day, ``"nearest"`` or ``"previous"`` date within ``tolerance``, e.g. ``"6D"``);
        * of the run: ``tile_size`` (reference pixels, without halo; None: one tile per chunk),
          ``batch_size``, ``chunks`` (rechunk the reference first, ``{"y": 1024, "x": 1024}``),
          ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``), ``autocast`` (``"bf16"``,
          ``"fp16"``), ``torch_threads``, ``resources`` (``"auto"``: ``{"GPU": 1}`` on GPU
          clusters), ``prefetch`` (CUDA: copy the next batch while the current one runs),
          ``name`` (of the output, default ``"prediction"``).

    Returns
    -------
    xarray.DataArray
        A lazy cube ``(time, band, y, x)`` on the output grid: the reference grid scaled by the
        output scale (pixel size divided by it, same corner, coordinates at pixel centres, CRS
        kept); the reference's dates (per-date outputs) or one date (maps).

    Raises
    ------
    SourceError
        A source the model takes is missing from the call, one is not the model's, a cube lacks
        the bands the spec names, has no dates, or holds complex values.
    OptionError
        A run option or spec field out of range (``tile_size``, ``batch_size`` or ``size_multiple``
        not a whole number >= 1, ``chunks`` with an unknown dim or a size below 1), named.
    GridError
        The sources' grids do not nest (the message says how to put them on nesting grids).
    ChannelMismatchError
        The model does not accept the layout's channel count (says which dims produced it).
    OutputShapeError
        The model output cannot be mapped back (its scale is not an integer ratio, another rank,
        another batch size, a scale other than the declared one).
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
    A model with its card beside it (``unet.pt2`` and ``unet.json``):

    >>> classes = eocube.apply_model(cube, "unet.pt2")  # doctest: +SKIP

    A per-date segmentation network on four bands, as a class map per date, 512-pixel tiles:

    >>> from eocube.models import ModelSpec, OutputSpec, RunOptions, SourceSpec
    >>> spec = ModelSpec(sources=(SourceSpec(bands=("B02", "B03", "B04", "B08")),),
    ...                  output=OutputSpec(postprocess="argmax"), size_multiple=16)
    >>> classes = eocube.apply_model(cube, "unet.ts", spec, run=RunOptions(tile_size=512))  # doctest: +SKIP

    Two sources, Sentinel-2 10 m and 20 m bands (``forward(x10, x20)``), x2 finer output:

    >>> sr = eocube.apply_model({"s10": b10, "s20": b20}, net, spec)  # doctest: +SKIP

    Sentinel-2 dates with the nearest Sentinel-1 date within 6 days (``forward(s2, s1)``):

    >>> spec = ModelSpec(sources=(SourceSpec(name="s2"), SourceSpec(name="s1")), pairing="nearest", tolerance="6D")
    >>> out = eocube.apply_model({"s2": s2, "s1": s1}, net, spec)  # doctest: +SKIP

    A temporal gap-filling network with ``forward(values (N, T, C, H, W), valid, days (N, T))``:

    >>> spec = ModelSpec(sources=(SourceSpec(layout="sequence", valid_input="argument", time_input="days"),),
    ...                  output=OutputSpec(bands="input", mask="all"))
    >>> filled = eocube.apply_model(ndvi.where(clear), net, spec)  # doctest: +SKIP

    Notes
    -----
    **Model call.** ``model(x_1[, valid_1][, time_1], x_2[, valid_2][, time_2], ...)``: each source's
    tensor and its own optional validity and time arguments, sources in the spec's order.

    **Seams and borders.** Tiles are cut on the finest grid. Chunk boundaries, tile origins, tile
    sizes and the halo are multiples of the alignment ``lcm(resolution ratios, output stride)``,
    so a coarser source's window covers exactly its tile's footprint and a strided model's output
    pixels start where a whole-image pass puts them; each source is read with the halo in its own
    pixels (``halo / ratio``). Chunks overlap inside the image and not beyond it (dask overlap
    with ``boundary="none"``): a tile at the border sees the true border, so the model's own
    padding applies there as in a whole-image pass. With the halo at least the receptive field,
    the result equals the whole-image forward pass to float rounding everywhere, borders
    included, for models whose receptive field is finite (stride-1, strided or upsampling).
    When the image is not a multiple of the output stride, the output has as many pixels as the
    model gives for the whole image (probed: ``ceil`` for strided convolutions with ``padding =
    kernel // 2``, ``floor`` for kernel = stride). ``size_multiple`` padding makes results near
    tile edges approximate.

    **Dates of several sources.** Temporal layouts give each source its whole time axis. With
    layout ``"band"`` each date of the reference is paired with one date of every other source
    (``pairing``); a reference date without a partner in some source gets a nodata output (the
    model is not run on it); no partner at all is an error.
    """
    spec, run = resolve(sources, model, spec, run, keywords)
    check_spec(spec, run)
    cubes = match_sources(sources, spec)
    srcs = [_Source(sp, c, pd.DatetimeIndex([])) for sp, c in zip(spec.sources, cubes)]
    for src in srcs:
        src.cube = _select(src.cube, src.spec)
    names = [src.spec.name for src in srcs]
    try:
        ref = None if spec.reference is None else names.index(spec.reference)
    except ValueError:
        raise SourceError(f"reference {spec.reference!r} is not a source of the model; its sources are {names}") from None
    nesting, nested = nest_grids([src.cube for src in srcs], names, ref)
    ref = nesting.base if ref is None else ref
    for src, cube, r in zip(srcs, nested, nesting.ratios):
        src.cube, src.ratio = cube, r
        src.times = pd.DatetimeIndex(cube["time"].values)
    temporal = srcs[ref].spec.layout != "band"
    rsrc = srcs[ref]

    # ---- date pairing (layout "band" with several sources) ----
    paired: np.ndarray | None = None
    if not temporal and len(srcs) > 1:
        paired = np.ones(len(rsrc.times), bool)
        for i, src in enumerate(srcs):
            if i == ref:
                continue
            check_time_axis(src.cube, name=f"source {src.spec.name!r}")
            idx = pair_dates(rsrc.times, src.times, spec.pairing, spec.tolerance)
            paired &= idx >= 0
            src.cube = src.cube.isel(time=np.where(idx >= 0, idx, 0))
            src.times = pd.DatetimeIndex(src.cube["time"].values)
        if not paired.any():
            raise SourceError(
                f"no date of the reference {rsrc.spec.name!r} has a partner in every other source with pairing="
                f"{spec.pairing!r}" + (f" and tolerance={spec.tolerance!r}" if spec.tolerance else "")
                + ": use pairing='nearest' or 'previous' with a tolerance (e.g. tolerance='6D')"
            )

    for src in srcs:
        sp = src.spec
        src.layout = Layout(
            kind=sp.layout, bands=tuple(str(b) for b in src.cube["band"].values),
            n_time=len(src.times) if temporal else 1, flag=sp.valid_input == "channel",
            valid_arg=sp.valid_input == "argument", time_arg=sp.time_input is not None,
        )
        src.tfeat = time_features(src.times, sp.time_input)

    source = as_source(model, spec.version)
    module = get_model(source, torch.device("cpu"))
    source = settle_identity(source, module, torch.device("cpu"))
    post = identified(spec.output.postprocess, spec.version)
    unreadable = [*getattr(source, "unreadable", ()), *getattr(post, "unreadable", ())]
    if unreadable:
        warnings.warn(unreadable_message("the model", unreadable), UserWarning, stacklevel=2)

    # ---- probe: output kind, channels, scale; then the halo ----
    ratios = tuple(src.ratio for src in srcs)
    layouts = tuple(src.layout for src in srcs)
    assert all(lay is not None for lay in layouts)
    probe_t = len(rsrc.times) if temporal else min(2, len(rsrc.times))
    m_base = spec.size_multiple * srcs[ref].ratio
    multiple = lcm(m_base, *ratios) if m_base > 1 else 1
    inputs = ProbeInputs(
        layouts=layouts, build=make_builder(layouts, [src.tfeat for src in srcs]),  # type: ignore[arg-type]
        shapes=tuple((len(src.times) if temporal else probe_t, lay.per_date_channels - int(lay.flag))  # type: ignore[union-attr]
                     for src, lay in zip(srcs, layouts)),
        ratios=ratios, reference=ref, multiple=multiple,
    )
    probe = probe_output(module, inputs, spec.output)  # type: ignore[arg-type]
    kind, k, scale = probe.kind, probe.n_out, probe.scale
    align = lcm(*ratios, scale.scale.denominator)
    ref_scale = OutScale(scale.scale * rsrc.ratio, scale.partial)
    output = _resolved_output(spec.output, probe, ref_scale, rsrc.layout.bands, post)  # type: ignore[union-attr]
    lay_ref = rsrc.layout
    assert lay_ref is not None

    def forward(per_source: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
        return forward_canonical(module, [a for arrays in per_source for a in arrays], lay_ref, kind, k, None)

    h = round_up(resolve_halo(spec.halo, module, inputs, forward, scale, lcm(align, multiple)), align)

    # ---- chunks, overlap and the graph ----
    base = srcs[nesting.base]
    user = dict(run.chunks or {})
    for dim in ("y", "x"):
        if dim in user and user[dim] not in (-1, None):
            user[dim] = int(user[dim]) * rsrc.ratio // base.ratio
    with _narrow_rechunks():
        bcube, ychunks, xchunks, tchunks_ref, arrays, plans = _overlapped_sources(
            srcs, nesting.base, base, rsrc, user, temporal, align, h)
    tile = None if run.tile_size is None else round_up(int(run.tile_size) * rsrc.ratio, align)
    plan = BlockPlan(
        sources=tuple(plans), reference=ref, base=nesting.base, n_out=k, n_final=probe.n_final, halo=h,
        run=replace(run, tile_size=tile, batch_size=int(run.batch_size), device=str(run.device),
                    prefetch=bool(run.prefetch), chunks=None, resources=None, name=None),
        output=output, dates=rsrc.times.values.astype("datetime64[ns]"), scale=scale, ref_scale=ref_scale,
        multiple=multiple, paired=paired,
    )
    if isinstance(source, ExportedProgramSource) and source.size_limits:
        check_size_limits(source.size_limits, _fed_sizes(srcs, plan, temporal, tchunks_ref, align),
                          source.path, run.tile_size, h, int(run.batch_size))
    if kind == "map":
        tchunks: tuple[int, ...] = (1,)
    elif temporal:
        tchunks = (len(rsrc.times),)
    else:
        tchunks = tchunks_ref
    out_y, out_x = output_chunks(ychunks, scale), output_chunks(xchunks, scale)
    model_key = dask.delayed(source, name=f"eocube-model-{source.token}", traverse=False, pure=True)
    name = f"apply-model-{tokenize([a.name for a in arrays], source.token, plan)}"
    plan = replace(plan, run_name=name)
    res = gpu_resources(str(run.device), run.resources)
    dtype = np.dtype(output.dtype)
    with dask.annotate(resources=res) if res else contextlib.nullcontext():
        result_data = da.map_blocks(
            run_block, *arrays, source=model_key, plan=plan, dtype=dtype,
            chunks=(tchunks, (probe.n_final,), out_y, out_x), meta=np.empty((0, 0, 0, 0), dtype=dtype), name=name,
        )
    return _label(result_data, srcs[ref], srcs, bcube, plan, spec, run, source.describe())


def _resolved_output(out: OutputSpec, probe: Probe, ref_scale: OutScale, ref_bands: tuple[str, ...],
                     post: Any) -> OutputSpec:
    """The output spec with what the probe found and the defaults filled in (what the tasks and the labels use).

    ``kind`` the probed one, ``bands`` the output's band names, ``dtype`` (a numpy dtype string) and
    ``nodata`` given, ``postprocess`` as a plan holds it (a callable with its code's identity),
    ``scale`` the output pixels per reference pixel.
    """
    names = _out_names(out.bands, probe.n_final, ref_bands, out.postprocess)
    dtype, nodata = _out_dtype_nodata(out.dtype, out.nodata, out.postprocess)
    return replace(out, kind=probe.kind, bands=tuple(names), dtype=dtype.str, nodata=nodata, postprocess=post,
                   scale=ref_scale.scale)


def _fed_sizes(srcs: list[_Source], plan: BlockPlan, temporal: bool, tchunks: tuple[int, ...],
               align: int = 1) -> list[FedSizes]:
    """The batch and spatial sizes the chunk tasks will feed each tensor argument of the model (as :mod:`._engine` cuts them)."""
    _, ychunks, xchunks = plan.chunks
    halo, multiple, batch_size = plan.halo, plan.multiple, plan.run.batch_size
    size = plan.run.tile_size or max(max(ychunks), max(xchunks))
    spans = set()
    for chunks in (ychunks, xchunks):
        for i, core in enumerate(chunks):
            lead = halo if i > 0 else 0
            block = core + lead + (halo if i < len(chunks) - 1 else 0)
            spans |= {w1 - w0 for _, _, w0, w1 in tile_windows(core, lead, block, halo, size, align)}
    # samples of one window shape in a chunk: its dates (layout "band") times its tiles; batches of up to batch_size
    tiles = -(-max(ychunks) // size) * -(-max(xchunks) // size)
    most = min(batch_size, tiles * (1 if temporal else max(tchunks)))
    batches = sorted({1, most})
    fed, arg = [], 0
    for src in srcs:
        lay = src.layout
        assert lay is not None
        sizes = sorted({-(-round_up(n, multiple) // src.ratio) for n in spans})
        for _ in range(1 + int(lay.valid_arg)):
            fed.append(FedSizes(argument=arg, batch=sorted(batches), spatial=sizes))
            arg += 1
        arg += int(lay.time_arg)
    return fed


@contextlib.contextmanager
def _narrow_rechunks():
    """Rechunks made here as plain tasks, never as a p2p shuffle.

    Each block of the model's input gathers whole pieces of a few input blocks (the bands of a
    pixel block, a block split into model blocks). dask picks p2p for large graphs once a client
    exists, which writes the cube through a disk shuffle and logs each partial shuffle as a
    warning; on the 1/16 tile-year slice of ``benchmarks/bench_scale.py`` tasks ran in 218 s
    against 242 s for p2p, with the same peak memory.
    """
    with dask.config.set({"array.rechunk.method": "tasks"}):
        yield


def _overlapped_sources(srcs: list[_Source], base_index: int, base: _Source, rsrc: _Source, user: dict[str, Any],
                        temporal: bool, align: int, h: int) -> tuple:
    """Each source rechunked onto the base blocks (band and, for temporal layouts, time whole) and overlapped by its halo."""
    bcube = base.cube
    if not isinstance(bcube.data, da.Array):
        bcube = bcube.chunk({"time": -1 if temporal else min(len(base.times), 8),
                             "y": DEFAULT_SPATIAL_CHUNK, "x": DEFAULT_SPATIAL_CHUNK})
    want: dict[str, Any] = {"band": -1, **({"time": -1} if temporal else {})}
    bcube = bcube.chunk({**{d: v for d, v in user.items() if d in ("y", "x")}, **want})
    ychunks = aligned_chunks(bcube.data.chunks[2], align, max(h, align))
    xchunks = aligned_chunks(bcube.data.chunks[3], align, max(h, align))
    if h and (min(ychunks) < h or min(xchunks) < h):
        raise HaloError(
            f"the halo ({h} px) is larger than the image ({sum(ychunks)} x {sum(xchunks)} px): pass a smaller halo"
        )
    if temporal:
        tchunks_ref: tuple[int, ...] = (len(rsrc.times),)
    else:
        rcube = rsrc.cube if isinstance(rsrc.cube.data, da.Array) else rsrc.cube.chunk({"time": min(len(rsrc.times), 8)})
        if "time" in user:
            rcube = rcube.chunk({"time": user["time"]})
        tchunks_ref = rcube.data.chunks[0]
    arrays, plans = [], []
    for i, src in enumerate(srcs):
        cube = bcube if i == base_index else src.cube
        data = cube.data if isinstance(cube.data, da.Array) else da.from_array(cube.values, chunks=-1)
        ny, nx = data.shape[2:]
        tch = (len(src.times),) if temporal else tchunks_ref
        chunks = (tch, (data.shape[1],), source_chunks(ychunks, src.ratio, ny), source_chunks(xchunks, src.ratio, nx))
        if data.chunks != chunks:
            data = data.rechunk(chunks)
        hs = h // src.ratio
        arrays.append(da.overlap.overlap(data, depth={0: 0, 1: 0, 2: hs, 3: hs}, boundary="none") if hs else data)
        plans.append(SourcePlan(
            layout=src.layout, ratio=src.ratio, halo=hs, nodata=cube_nodata(src.cube),  # type: ignore[arg-type]
            fill_value=float(src.spec.fill_value), time_features=src.tfeat, chunks=(tch, chunks[2], chunks[3]),
            scaling=tuple(src.spec.scaling),
        ))
    return bcube, ychunks, xchunks, tchunks_ref, arrays, plans


def _label(data: da.Array, rsrc: _Source, srcs: list[_Source], bcube: xr.DataArray, plan: BlockPlan,
           spec: ModelSpec, run: RunOptions, described: str) -> xr.DataArray:
    """The output cube: dates, band names, coordinates at pixel centres of the scaled grid, CRS, transform.

    ``rsrc`` is the reference source, ``bcube`` the base source's cube; the plan's output spec is
    the resolved one (kind, band names, nodata), ``spec`` gives the classes and the version.
    """
    out, scale = plan.output, plan.scale
    if out.kind == "map":
        out_times = pd.DatetimeIndex([pd.Timestamp(out.time) if out.time is not None else rsrc.times[-1]])
    else:
        out_times = rsrc.times
    grid = Grid.of(bcube)
    if scale.scale == 1:
        ys, xs = bcube["y"].values, bcube["x"].values
    else:
        grid = grid.scaled(scale.scale, shape=data.shape[2:])
        ys, xs = grid.coords
    layouts = "; ".join(f"{s.spec.name}: {s.layout.describe()}" if len(srcs) > 1 else s.layout.describe()  # type: ignore[union-attr]
                        for s in srcs)
    attrs: dict[str, Any] = {"model": described, "model_layout": layouts, "model_output": out.kind,
                             "model_halo": plan.halo, "model_scale": str(scale.scale * rsrc.ratio)}
    if spec.version is not None:
        attrs["model_version"] = spec.version
    if len(srcs) > 1:
        attrs["model_sources"] = [s.spec.name for s in srcs]
        attrs["model_reference"] = rsrc.spec.name
    if out.classes:
        attrs["class_values"] = [int(c.value) for c in out.classes]
        attrs["class_names"] = [str(c.name) for c in out.classes]
    result = xr.DataArray(
        data, dims=("time", "band", "y", "x"),
        coords={"time": out_times.values.astype("datetime64[ns]"), "band": np.asarray(list(out.bands), dtype=object),
                "y": ys, "x": xs},
        name=run.name or "prediction", attrs=attrs,
    )
    result = result.rio.write_crs(bcube.rio.crs).rio.write_transform(grid.transform)
    return result.rio.write_nodata(out.nodata, encoded=False)
