"""``eocube apply``: a model file on one or several sources -> resumable Zarr (+ quicklook PNG).

The model card beside the model file (a STAC MLM item, :mod:`eocube.models.card`) says how to
feed the model and what it returns, so ``eocube apply --model model.pt2 --source SPEC --out out.zarr``
needs no other option. Only click and light modules are imported at the top (see
:mod:`eocube.cli`): outputs, the model file, the card's presence, every ``--source`` and the
cluster settings are checked first; an output already complete for the same request (options,
the model's and cards' SHA-256, the sources' stamps: :mod:`eocube.io.complete`) ends the command
there, without torch; otherwise torch and the model engine are imported, the card
read, the sources opened and bound to the card's sources, and the lazy graph built (which
checks bands, grids and the model's output scale); a completed output ends the command; only
then does a cluster start and the work run.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import EOCubeError
from ..names import AUTOCASTS, CARD_NAME_PATTERNS, LAYOUTS, MODEL_FILE, POSTPROCESS_NAMES
from ._apply_sources import (
    SourceArg,
    bind_sources,
    check_source_arg,
    open_source_arg,
    parse_source,
)
from ._common import (
    InputError,
    OneLineCommand,
    check_cluster,
    check_has_dates,
    check_out_not_source,
    check_output_writable,
    cluster_options,
    complete_outputs,
    compute_on,
    default_quicklook,
    friendly_errors,
    overlap,
    shown_location,
    source_stamp,
    store_is_complete,
    zarr_options,
)

if TYPE_CHECKING:
    import xarray as xr

    from ..models import ModelSpec, RunOptions



@click.command("apply", cls=OneLineCommand)
@click.argument("model_arg", metavar="[MODEL]", required=False, type=click.Path())
@click.option("--model", "model", default=None, type=click.Path(),
              help="The model: a torch.export program (.pt2), a TorchScript file, a state_dict file with --factory, "
                   "or a training folder of eocube train (its model.pt2); the card beside it says how to feed it. "
                   "Formerly the first argument MODEL (still read, with a warning).")
@click.option("--source", "sources", multiple=True, required=True, metavar="[NAME=]SPEC",
              help="An input of the model (repeatable): NAME is the card's source name (not needed for a "
                   "one-source model); SPEC a bundled sample (sentinel2, sentinel2_l1c:10m, sentinel2_l1c:20m, "
                   "sentinel2_l1c:60m), a Zarr cube, a STAC items file (.json, .geojson) or a STAC search "
                   "(.yaml: url, collections, bbox, datetime, query, assets, resolution, crs, nodata, dtype).")
@click.option("--out", "out", required=True, type=click.Path(),
              help="Zarr store to write (resumed if it holds an unfinished write of the same job).")
@click.option("--card", "card_path", default=None, type=click.Path(dir_okay=False),
              help="The model card (STAC MLM item); default: the one beside MODEL (MODEL.json, "
                   "<stem>.card.json or <stem>.json).")
@click.option("--factory", default=None, metavar="MODULE:CALLABLE",
              help="MODEL is a state_dict file: the importable callable that builds the module.")
@click.option("--model-version", "model_version", default=None, metavar="TEXT",
              help="With --factory: names the version of the factory's code, which then stands for its source "
                   "files in the output's identity (a rerun resumes or reuses the output only for the same version); "
                   "needed when the source cannot be read. Recorded in the provenance; a .pt2 or TorchScript file "
                   "is identified by its content whatever the version.")
@click.option("--layout", type=click.Choice(LAYOUTS), default=None,
              help="Without a card: how the model takes each source (band: one date per sample; time_band: dates "
                   "folded into channels; sequence: (N, T, C, H, W)); every band is fed.")
@click.option("--postprocess", type=click.Choice(POSTPROCESS_NAMES), default=None,
              help="Without a card (or to override it): what to do with the model's output.")
@click.option("--tile", type=click.IntRange(min=1), default=None,
              help="Tile edge in reference pixels fed to the model at once (default 256).")
@click.option("--chunk", type=click.IntRange(min=1), default=None,
              help="Chunk edge in reference pixels: one task and one Zarr chunk each (default: the reference "
                   "source's chunks).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Tiles per forward pass (default 8).")
@click.option("--device", default=None, help="auto (CUDA when the workers see it; default), cpu, cuda, cuda:N.")
@click.option("--autocast", type=click.Choice(AUTOCASTS), default=None, help="Mixed precision (GPUs).")
@zarr_options
@click.option("--overwrite", is_flag=True, help="Replace an existing store instead of resuming it.")
@click.option("--quicklook", default=None, type=click.Path(), help="PNG to write (default: <out>.png).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@cluster_options
@friendly_errors
def apply(model_arg: str | None, model: str | None, sources: tuple[str, ...], out: str, card_path: str | None,
          factory: str | None, model_version: str | None, layout: str | None, postprocess: str | None,
          tile: int | None, chunk: int | None, batch_size: int | None, device: str | None, autocast: str | None,
          zarr: dict, overwrite: bool, quicklook: str | None, progress: bool, cluster: dict) -> None:
    """Run a PyTorch model file on one or several sources and write the result to Zarr.

    --model is a torch.export program (.pt2), a TorchScript file, a state_dict file with
    --factory, or a training folder of eocube train; the model card beside it says how to feed it.
    """
    model = _model_option(model_arg, model)
    png = Path(quicklook) if quicklook else default_quicklook(out)
    check_output_writable(out, what="--out")
    check_output_writable(png, what="the quicklook (--quicklook)", folder=False)
    card_file = _check_model(model, card_path, layout)
    for path in (model, card_path):  # the PNG would replace the model file or its card
        if path and overlap(png, path) == "same":
            raise InputError(f"the quicklook (--quicklook) {png} is the file {path}: give the PNG another path")
    args = [parse_source(s) for s in sources]
    for arg in args:
        check_source_arg(arg)
        if arg.kind != "sample":  # --out on its own source: --overwrite deleted the input before it was read
            check_out_not_source(out, arg.spec, arg.shown)
            check_out_not_source(png, arg.spec, arg.shown, what="the quicklook (--quicklook)")
    check_cluster(cluster)

    if model_version is not None and not model_version.strip():
        raise InputError("--model-version is empty: give a name for this version of the model's code, e.g. v2")
    request = _request(model, card_path, args, factory, model_version, layout, postprocess, tile, chunk, batch_size,
                       device, autocast, zarr)
    done = complete_outputs([(out, request)]) if request and not overwrite else None
    if done is not None and png.exists():  # no torch, no model, no cube, no cluster
        click.echo(f"model: {shown_location(model)}\ncompute: nothing (the output is already complete: no cluster "
                   f"started)\n{done[0]}\nquicklook: {png.resolve()}\nzarr: {shown_location(out)}")
        return
    spec, card, described = _model_spec(model, card_file, layout, postprocess, args)
    if model_version is not None:
        spec = spec.replace(version=model_version)
    bound = bind_sources(args, [s.name for s in spec.sources], described)
    cubes = {name: open_source_arg(arg) for name, arg in bound.items()}
    for name, cube in cubes.items():
        check_has_dates(cube, f"--source {bound[name].shown}")
    for name, cube in cubes.items():
        click.echo(f"source {name}: {bound[name].shown}\n{_info(cube)}")
    source = _model_source(model, factory)
    run = _run_options(tile, chunk, batch_size, device, autocast)
    result = _build(cubes, source, spec, run)
    provenance = _provenance(model, card, spec, bound, run)
    _write(result, cubes, bound, spec, source, run, out, png, zarr, overwrite, progress, provenance,
           cluster, request)


def _request(model: str, card_path: str | None, args: list[SourceArg], factory: str | None, model_version: str | None,
             layout: str | None, postprocess: str | None, tile: int | None, chunk: int | None, batch_size: int | None,
             device: str | None, autocast: str | None, zarr: dict) -> str | None:
    """The request key of the output (:func:`eocube.io.complete.request_key`), made without torch.

    Every option that decides the output, the SHA-256 of the model file and of every card that
    may describe it (``--card`` and those beside the model; what the full path checks of a .pt2
    or TorchScript model is also its content), and the stamps of the sources. None (the full
    path decides, loading the model) for a STAC search (its items may change between runs), a
    source over plain HTTP, and a state_dict with ``--factory`` but no ``--model-version``: the
    factory's code is then identified by importing it, which needs torch.
    """
    from ..io.complete import path_stamp, request_key

    if factory is not None and model_version is None:
        return None
    path = Path(model).expanduser()
    cards = [Path(card_path).expanduser()] if card_path else []
    cards += [path.with_name(n.format(name=path.name, stem=path.stem)) for n in CARD_NAME_PATTERNS]
    try:
        inputs: dict[str, Any] = {"model": path_stamp(path, content=True),
                                  "cards": [path_stamp(c, content=True) for c in cards if c.is_file()]}
        for i, arg in enumerate(args):
            if arg.kind == "stac-search":
                return None
            inputs[f"source {i}"] = path_stamp(arg.spec) if arg.kind == "stac-items" else source_stamp(arg.spec)
    except (OSError, ValueError, EOCubeError):
        return None  # the full path says what is wrong with the input
    if any(stamp is None for stamp in inputs.values()):
        return None
    options = {"sources": [(a.name, a.provenance(), a.kind) for a in args], "card": bool(card_path),
               "factory": factory, "model_version": model_version, "layout": layout, "postprocess": postprocess,
               "tile": tile, "chunk": chunk, "batch_size": batch_size, "device": device, "autocast": autocast,
               "zarr": zarr}
    return request_key("eocube apply", options, inputs)


def _model_option(model_arg: str | None, model: str | None) -> str:
    """The model path: ``--model``, or the deprecated first argument (with a one-line warning); a training
    folder of ``eocube train`` stands for its exported ``model.pt2``."""
    if model_arg is not None and model is not None:
        raise InputError(f"the model is given twice ({model_arg} and --model {model}): give it once, as --model")
    if model_arg is not None:
        click.echo(f"warning: eocube apply MODEL (the model as first argument) is deprecated: use --model {model_arg} "
                   "(same meaning)", err=True)
        model = model_arg
    if model is None:
        raise click.UsageError("Missing option '--model': give the model file (or a training folder of eocube train)")
    path = Path(model).expanduser()
    if path.is_dir() and (path / MODEL_FILE).is_file():
        return str(path / MODEL_FILE)
    return model


def _check_model(model: str, card_path: str | None, layout: str | None) -> Path | None:
    """The model file exists; the card given exists, or one may lie beside the model, or ``--layout`` is given.

    Returns
    -------
    Path or None
        ``--card``, or None (the card beside the model is looked up with the model engine).
    """
    path = Path(model).expanduser()
    if not path.is_file():
        where = f"a folder without {MODEL_FILE}, not a model file" if path.is_dir() else "no such file"
        raise InputError(f"model {model}: {where}; give a torch.export program (.pt2), a TorchScript file, a "
                         "state_dict file with --factory, or a training folder of eocube train")
    if card_path is not None:
        if not Path(card_path).expanduser().is_file():
            raise InputError(f"--card {card_path}: no such file; give the model card (a STAC MLM item, .json)")
        return Path(card_path).expanduser()
    beside = [path.with_name(n.format(name=path.name, stem=path.stem)) for n in CARD_NAME_PATTERNS]
    if layout is None and not any(p.is_file() for p in beside):
        raise InputError(_no_card(path))
    return None


def _no_card(path: Path) -> str:
    names = ", ".join(n.format(name=path.name, stem=path.stem) for n in CARD_NAME_PATTERNS)
    return (f"no model card beside {path} (looked for {names}) and no --layout: write one "
            "(eocube.models.card.write_card, or export_model for a .pt2), point to one with --card, or describe "
            "the input with --layout band|time_band|sequence")


def _model_spec(model: str, card_file: Path | None, layout: str | None, postprocess: str | None,
                args: list[SourceArg]) -> tuple[ModelSpec, Path | None, str]:
    """The model's spec (from its card, or from ``--layout``), its card (None: none) and where it came from."""
    from dataclasses import replace

    from ..models import ModelSpec, SourceSpec
    from ..models.card import find_card, load_card

    card = card_file or find_card(Path(model).expanduser())
    if card is None and layout is None:
        raise InputError(_no_card(Path(model).expanduser()))
    if card is not None:
        spec, described = load_card(card), f"the model card {card}"
        if layout is not None:
            spec = spec.replace(sources=tuple(replace(s, layout=layout) for s in spec.sources))
    else:
        names = [a.name for a in args] if all(a.name for a in args) else ["input"]
        spec = ModelSpec(sources=tuple(SourceSpec(name=str(n), layout=layout) for n in names))  # type: ignore[arg-type]
        described = "--layout, no model card"
    if postprocess is not None:
        spec = spec.replace(output=replace(spec.output, postprocess=postprocess))
    return spec, card, described


def _model_source(model: str, factory: str | None) -> Any:
    """What ``apply_model`` loads: the model file's absolute path, or a factory and its state_dict."""
    path = str(Path(model).expanduser().resolve())
    if factory is None:
        return path
    from ..models import from_state_dict

    return from_state_dict(_import_factory(factory), path)


def _import_factory(text: str) -> Any:
    """``module:callable`` -> the callable (clear errors)."""
    module, sep, attr = text.partition(":")
    if not sep or not module or not attr:
        raise InputError(f"--factory {text!r}: give MODULE:CALLABLE, e.g. mypackage.nets:UNet")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"--factory {text}: cannot import it ({type(exc).__name__}: {exc}); the module must be "
                         "importable here and on the workers") from None
    if not callable(obj):
        raise InputError(f"--factory {text}: {type(obj).__name__} is not callable")
    return obj


def _run_options(tile: int | None, chunk: int | None, batch_size: int | None, device: str | None,
                 autocast: str | None) -> RunOptions:
    from ..models import RunOptions

    changes: dict[str, Any] = {"tile_size": tile, "batch_size": batch_size, "device": device, "autocast": autocast,
                               "chunks": {"y": chunk, "x": chunk} if chunk else None}
    return RunOptions(**{k: v for k, v in changes.items() if v is not None})


def _build(cubes: dict[str, xr.DataArray], source: Any, spec: ModelSpec, run: RunOptions) -> xr.DataArray:
    """The lazy result (checks bands, grids and the output scale; probes the model on small tensors)."""
    from ..models import apply_model

    return apply_model(cubes, source, spec, run=run)


def _provenance(model: str, card: Path | None, spec: ModelSpec, bound: dict[str, SourceArg],
                run: RunOptions) -> dict[str, Any]:
    """What produced the output: the model file and its hash, the card and its hash, the sources, the run."""
    from ..models.shared import sha256_file

    path = Path(model).expanduser().resolve()
    return {
        "command": "eocube apply",
        "model": str(path),
        "model_sha256": sha256_file(path),
        "card": str(card.resolve()) if card else None,
        "card_sha256": sha256_file(card) if card else None,
        "model_name": spec.name,
        "model_version": spec.version,
        "sources": {name: arg.provenance() for name, arg in bound.items()},
        "tile": run.tile_size,
        "batch_size": run.batch_size,
        "chunks": dict(run.chunks) if run.chunks else None,
    }


def _info(cube: xr.DataArray) -> str:
    from ..cube import cube_info

    return str(cube_info(cube))


def _write(result: xr.DataArray, cubes: dict[str, xr.DataArray], bound: dict[str, SourceArg], spec: ModelSpec,
           source: Any, run: RunOptions, out: str, png: Path, zarr: dict, overwrite: bool, progress: bool,
           provenance: dict[str, Any], cluster: dict, request: str | None = None) -> None:
    """Check the target, then write the result where :func:`compute_on` says (or end early if complete)."""
    from ..io import check_target, to_zarr

    mode = "overwrite" if overwrite else "resume"
    check_target(result, out, **zarr, provenance=provenance, mode=mode)  # before any work
    click.echo(f"model: {provenance['model']} (card: {provenance['card'] or 'none'})\n"
               f"output: {result.sizes['time']} date(s) x {result.sizes['band']} band(s) "
               f"{list(map(str, result['band'].values))[:8]} x {result.sizes['y']} x {result.sizes['x']} px, "
               f"{result.dtype}, scale {result.attrs.get('model_scale')}, halo {result.attrs.get('model_halo')} px")
    if mode == "resume" and store_is_complete(out):
        click.echo("compute: nothing (the output is already complete: no cluster started)")
        click.echo(str(to_zarr(result, out, **zarr, provenance=provenance, mode="resume", progress=False)))
    else:
        nbytes = sum(int(c.nbytes) for c in cubes.values()) + int(result.nbytes)
        with compute_on(cluster, nbytes) as where:
            if where == "cluster":  # rebuilt with the client: GPU workers get the GPU=1 resource annotation
                result = _build(cubes, source, spec, run)
            click.echo(str(to_zarr(result, out, **zarr, provenance=provenance, mode=mode,
                                   progress=progress, request=request)))
            _report_nan(result)
    if overwrite or not png.exists():
        _write_quicklook(out, cubes, spec, png)
    else:
        click.echo(f"quicklook: {png.resolve()}")
    click.echo(f"zarr: {shown_location(out)}")


def _report_nan(result: xr.DataArray) -> None:
    """Print the share of output pixels the model returned as NaN from finite inputs (nothing when none)."""
    from ..models.shared import run_nan_counts

    nan, total = run_nan_counts(str(result.data.name))
    if nan:
        click.echo(f"WARNING: the model returned NaN from finite inputs on {nan} of {total} output pixels "
                   f"({100 * nan / total:.2f}%) computed in this run; they are written as returned: check the model "
                   "and its input scaling (bands, value scaling of its card)", err=True)


def _write_quicklook(out: str, cubes: dict[str, xr.DataArray], spec: ModelSpec, png: Path) -> None:
    """Draw the quicklook PNG from the written store (matplotlib is imported here only)."""
    from ..io import open_zarr
    from ..plot.model_quicklook import model_quicklook

    model_quicklook(open_zarr(out), png, sources=cubes, classes=spec.output.classes)
    click.echo(f"quicklook: {png.resolve()}")
