"""``eocube gapfill``: source -> cloud mask -> temporal gap filling -> Zarr (+ quicklook PNG).

Only click and light modules are imported at the top (see :mod:`eocube.cli`): the arguments,
outputs, source and cluster settings are checked first; an output already complete for the same
request (options, source and model stamps: :mod:`eocube.io.complete`) ends the command there,
before the cube is opened (no dask.array, numba, distributed); otherwise the cube is opened and
the job built, a completed output ends the command, and only then does the work start: on
dask's threads in this process for a small job, on a cluster for a larger one (``compute_on``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import EOCubeError
from ..fill import METHOD_NAMES
from ..names import MASK_KINDS
from ._common import (
    InputError,
    OneLineCommand,
    SampleHelpOption,
    check_cluster,
    check_output_writable,
    check_source,
    cluster_options,
    complete_outputs,
    compute_on,
    default_quicklook,
    friendly_errors,
    local_checks,
    open_source,
    resolve_bands,
    resolve_mask_band,
    same_location,
    shown_location,
    source_stamp,
    store_is_complete,
    zarr_options,
)

if TYPE_CHECKING:
    import xarray as xr

TILE_TARGET = 64 * 2**20
"""Default tile: the largest power of two whose output chunk (all dates x one band) stays under
64 MiB, within Zarr's guidance of 10-100 MB per chunk (fewer, bigger chunks: fewer files and tasks;
``--tile 64`` on a 1 GB cube was twice as slow as ``--tile 512`` and wrote 64 times more files)."""

TILE_RANGE = (16, 2048)
"""Smallest and largest default tile."""


@click.command("gapfill", cls=OneLineCommand)
@click.option("--source", default="sentinel2", show_default=True, cls=SampleHelpOption,
              help="A bundled sample or the path of a Zarr cube.")
@click.option("--out", "out", default="eocube-output/gapfilled.zarr", show_default=True, type=click.Path(),
              help="Zarr store to write (resumed if it holds an unfinished write of the same job).")
@click.option("--bands", default=None,
              help="Comma-separated bands to fill (sample default: its data bands; else all but the mask bands).")
@click.option("--cloud-band", default=None,
              help="Band the --mask kind reads (sample default: CLM for boolean, CLP for probability; "
                   "Zarr cube: SCL, QA_PIXEL or CLP when present for those kinds).")
@click.option("--data-band", default=None, help="Band that is non-zero where the sensor has data (sample default: IS_DATA).")
@click.option("--mask", "mask_kind", type=click.Choice(MASK_KINDS), default="boolean",
              show_default=True, help="How to read --cloud-band: 0/1 cloud mask (boolean), Sentinel-2 SCL classes, "
              "Landsat QA_PIXEL bits, or a cloud probability compared with --threshold. A band whose values "
              "do not fit the kind is an error.")
@click.option("--threshold", type=float, default=0.4, show_default=True,
              help="--mask probability: cloudy at or above, in the band's units.")
@click.option("--snow/--no-snow", default=False, show_default=True, help="--mask scl|qa_pixel: count snow as not clear.")
@click.option("--dilate", type=click.IntRange(min=0), default=0, show_default=True, help="Grow clouds by this many pixels.")
@click.option("--method", type=click.Choice([*sorted(METHOD_NAMES), "model"]), default="linear", show_default=True,
              help="A classical method, or 'model': a trained gap-filling network (--model, see eocube train).")
@click.option("--model", "model_path", default=None, type=click.Path(exists=True),
              help="--method model: checkpoint file or training folder written by eocube train.")
@click.option("--uncertainty", is_flag=True,
              help="--method model: also write each band's calibrated interval as bands <band>_lower and "
                   "<band>_upper (NaN where observed): the network's 10 %/90 % quantiles calibrated on its validation "
                   "blocks to a nominal 80 % interval (network.quantiles in the training config).")
@click.option("--time-grid", default=None,
              help="Fill onto a regular grid instead of the observed dates: a pandas frequency ('10D', 'MS') or 'monthly'.")
@click.option("--quality", default=None, type=click.Path(),
              help="Also write the quality cube to this Zarr store: per band, the days to the nearest clear "
                   "observation (days_to_clear_<band>; NaN, nodata and masked values count as missing) and, for "
                   "the smoothers (whittaker, harmonic, savgol), 1 where their bound changed a filled value "
                   "(bounded_<band>).")
@click.option("--tile", type=click.IntRange(min=1), default=None,
              help="Chunk size in pixels along y and x (a whole number >= 1). Default: from the cube's size, the "
                   "largest power of two (16..2048, at most the image) whose output chunk, all dates x one band, "
                   "stays under 64 MiB (Zarr's guidance: 10-100 MB chunks); the choice is printed.")
@zarr_options
@click.option("--overwrite", is_flag=True, help="Replace an existing store instead of resuming it.")
@click.option("--quicklook", default=None, type=click.Path(),
              help="PNG to write (default: next to the store, <out>.png).")
@click.option("--warn-never-observed", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Print a WARNING on stderr when more than this share of pixels has no clear observation "
                   "in the whole series (the result there is NaN).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@cluster_options
@friendly_errors
def gapfill(source: str, out: str, bands: str | None, cloud_band: str | None, data_band: str | None,
            mask_kind: str, threshold: float, snow: bool, dilate: int, method: str, model_path: str | None,
            uncertainty: bool, time_grid: str | None,
            quality: str | None, tile: int | None, zarr: dict, overwrite: bool, quicklook: str | None,
            warn_never_observed: float, progress: bool, cluster: dict) -> None:
    """Fill cloudy observations of a cube along time and write the result to Zarr."""
    png = Path(quicklook) if quicklook else default_quicklook(out)
    _check_outputs(out, quality, png)
    _check_method(method, model_path, time_grid)
    if uncertainty and method != "model":
        raise click.UsageError("--uncertainty needs --method model (a trained network with an interval head); "
                               f"the classical method {method!r} gives no interval")
    shown = source if check_source(source) else shown_location(source)
    check_cluster(cluster)
    requests = _requests(source, shown, bands, cloud_band, data_band, mask_kind, threshold, snow, dilate, method,
                         model_path, time_grid, quality, tile, zarr, uncertainty)
    done = None
    if requests and not overwrite:
        done = complete_outputs([(out, requests[0]), *([(quality, requests[1])] if quality else [])])
    if done is not None and png.exists():  # nothing opened, built or started
        click.echo(f"source: {shown}\ncompute: nothing (the output is already complete: no cluster started)")
        click.echo("\n".join(done) + f"\nquicklook: {png.resolve()}\nzarr: {shown_location(out)}")
        return
    from ..cube import cube_info, select_bands
    from ..io import check_target, to_zarr
    from ..masks import check_mask_band

    tile, tile_line = _tile(source, tile)
    cube, sample = open_source(source, {"time": -1, "band": 1, "y": tile, "x": tile})
    cloud_band, mask_line = resolve_mask_band(cube, sample, mask_kind, cloud_band)
    band_list, cloud_band, data_band = resolve_bands(cube, sample, bands, cloud_band, data_band)
    click.echo(f"source: {source if sample else shown_location(source)}\n{cube_info(cube)}\n{tile_line}")
    if cloud_band:
        with local_checks():
            check_mask_band(cube, cloud_band, mask_kind, threshold=threshold)  # a sample of the mask band only
    click.echo(mask_line + (f", cloudy at >= {threshold:g}" if mask_kind == "probability" and cloud_band else ""))
    clear = _clear_mask(cube, mask_kind, cloud_band, data_band, threshold, snow, dilate)
    observed = select_bands(cube, band_list)
    if method == "model":
        from ..learn import fill_cube

        filled = fill_cube(observed, model_path, clear, uncertainty=uncertainty)
    else:
        from ..fill import BOUNDED, fill_gaps

        if quality and method in BOUNDED:  # where the bound acted goes to the quality store
            filled, bounded = fill_gaps(observed, clear, method=method, time_grid=time_grid, return_bounded=True)
            click.echo(f"quality: {method} runs once more for the quality store's bounded_<band> bands")
        else:
            filled, bounded = fill_gaps(observed, clear, method=method, time_grid=time_grid), None
    provenance = {
        "command": "eocube gapfill",
        "source": source if sample else shown_location(source),
        "bands": band_list,
        "cloud_band": cloud_band,
        "data_band": data_band,
        "mask": mask_kind,
        "threshold": threshold if mask_kind == "probability" else None,
        "snow": snow,
        "dilate": dilate,
        "method": method,
        "model": shown_location(model_path) if method == "model" and model_path else None,
        "time_grid": time_grid,
        "tile": tile,
        **({"uncertainty": True} if uncertainty else {}),  # absent otherwise: earlier stores stay complete
    }
    write_mode = "overwrite" if overwrite else "resume"
    check_target(filled, out, **zarr, provenance=provenance, mode=write_mode)  # before any work
    q_cube, q_provenance = None, {**provenance, "command": "eocube gapfill --quality"}
    if quality:
        q_cube = _quality_cube(clear, observed, time_grid, bounded if method != "model" else None)
        check_target(q_cube, quality, **zarr, provenance=q_provenance, mode=write_mode)
    if write_mode == "resume" and store_is_complete(out) and (not quality or store_is_complete(quality)):
        _report_complete(filled, out, zarr, provenance, quality, q_cube, q_provenance, observed, clear, png)
        return
    read = [*band_list, *[b for b in (cloud_band, data_band) if b and b not in band_list]]
    nbytes = select_bands(cube, read).nbytes + filled.nbytes + (q_cube.nbytes if q_cube is not None else 0)
    with compute_on(cluster, nbytes):
        report = to_zarr(filled, out, **zarr, provenance=provenance, mode=write_mode, progress=progress,
                         request=requests[0] if requests else None)
        if q_cube is not None:
            click.echo(str(to_zarr(q_cube, quality, **zarr, provenance=q_provenance, mode=write_mode,
                                   progress=progress, request=requests[1] if requests else None)))
        never, pixels = _never_observed(clear, observed)
    click.echo(str(report))
    _report_never_observed(never, pixels, warn_never_observed, method)
    _write_quicklook(observed, clear, out, png)
    click.echo(f"zarr: {shown_location(out)}")


def _requests(source: str, shown: str, bands: str | None, cloud_band: str | None, data_band: str | None, mask_kind: str,
              threshold: float, snow: bool, dilate: int, method: str, model_path: str | None, time_grid: str | None,
              quality: str | None, tile: int | None, zarr: dict, uncertainty: bool = False) -> tuple[str, str] | None:
    """The request keys of the output and of the quality store (:func:`eocube.io.complete.request_key`).

    Every option that decides the stores' content, and the stamps of the source and the model;
    None where a stamp cannot be made (a source over plain HTTP): the full path then decides.
    """
    from ..io.complete import path_stamp, request_key

    try:
        inputs = {"source": source_stamp(source)}
        if method == "model" and model_path:
            inputs["model"] = path_stamp(model_path, content=True)
    except (OSError, ValueError, EOCubeError):
        return None  # the full path says what is wrong with the input
    if any(stamp is None for stamp in inputs.values()):
        return None
    options = {"source": shown, "bands": bands, "cloud_band": cloud_band, "data_band": data_band, "mask": mask_kind,
               "threshold": threshold, "snow": snow, "dilate": dilate, "method": method, "time_grid": time_grid,
               "quality": bool(quality), "tile": tile, "zarr": zarr, **({"uncertainty": True} if uncertainty else {})}
    return (request_key("eocube gapfill", options, inputs),
            request_key("eocube gapfill --quality", options, inputs))


def _tile(source: str, tile: int | None) -> tuple[int, str]:
    """The tile to use, and a line saying how it was chosen (``--tile`` or :func:`default_tile`)."""
    if tile is not None:
        return tile, f"tile: {tile} x {tile} pixels (--tile)"
    shape, _ = open_source(source, None)
    t, _, h, w = (shape.sizes[d] for d in ("time", "band", "y", "x"))
    chosen = default_tile(t, h, w, 4 if shape.dtype.itemsize <= 4 else 8)
    chunk = t * min(chosen, h) * min(chosen, w) * (4 if shape.dtype.itemsize <= 4 else 8)
    return chosen, (f"tile: {chosen} x {chosen} pixels (default from the cube's size: output chunks of "
                    f"{chunk / 2**20:.1f} MiB, at most {TILE_TARGET // 2**20} MiB; --tile sets it)")


def default_tile(times: int, height: int, width: int, itemsize: int = 4) -> int:
    """The default ``--tile``: the largest power of two in :data:`TILE_RANGE` whose chunk fits :data:`TILE_TARGET`.

    A chunk holds every date of one band over ``tile x tile`` pixels. When the image fits in
    one tile, the tile is the image's larger side (one chunk per band, no padding).

    Parameters
    ----------
    times, height, width
        The cube's number of dates and image size in pixels.
    itemsize
        Bytes per value of the result (4 for float32).

    Returns
    -------
    int
        Tile size in pixels along y and x.
    """
    lo, hi = TILE_RANGE
    fit = math.sqrt(TILE_TARGET / max(1, times * itemsize))
    tile = lo
    while tile * 2 <= min(hi, fit):
        tile *= 2
    return min(tile, max(height, width, 1))


def _report_complete(filled, out, zarr, provenance, quality, q_cube, q_provenance, observed, clear, png) -> None:
    """A completed output: say so and end, starting no cluster (the quicklook is drawn only if missing)."""
    from ..io import to_zarr

    click.echo("compute: nothing (the output is already complete: no cluster started)")
    click.echo(str(to_zarr(filled, out, **zarr, provenance=provenance, mode="resume", progress=False)))
    if q_cube is not None:
        click.echo(str(to_zarr(q_cube, quality, **zarr, provenance=q_provenance, mode="resume",
                               progress=False)))
    if not png.exists():
        _write_quicklook(observed, clear, out, png)
    else:
        click.echo(f"quicklook: {png.resolve()}")
    click.echo(f"zarr: {shown_location(out)}")


def _write_quicklook(observed, clear, out: str, png: Path) -> None:
    """Draw the quicklook PNG from the written store (matplotlib is imported here only)."""
    from ..fill import usable_mask
    from ..io import open_zarr
    from ..plot import gapfill_quicklook

    result = open_zarr(out)
    shown = clear if clear is not None else usable_mask(observed).all("band")
    gapfill_quicklook(observed, shown.compute(), result, png)
    click.echo(f"quicklook: {png.resolve()}")


def _check_outputs(out: str, quality: str | None, png: Path) -> None:
    """Refuse outputs that cannot be written, before anything is read or started."""
    check_output_writable(out, what="--out")
    if quality:
        if same_location(quality, out):
            raise InputError(f"--quality {quality} is the same store as --out: give the quality cube its own path")
        check_output_writable(quality, what="--quality")
    check_output_writable(png, what="the quicklook (--quicklook)", folder=False)


def _check_method(method: str, model_path: str | None, time_grid: str | None) -> None:
    """Options that do not go together with ``--method``."""
    if method != "model":
        return
    if not model_path:
        raise click.UsageError("--method model needs --model PATH (a checkpoint written by eocube train)")
    if time_grid:
        raise click.UsageError("--time-grid is not available with --method model (it fills the observed dates)")


def _quality_cube(clear: xr.DataArray | None, observed: xr.DataArray, time_grid: str | None,
                  bounded: xr.DataArray | None) -> xr.DataArray:
    """Per band: days to the nearest clear observation, and where a smoother's bound changed a value.

    NaN, the cube's nodata value and masked (cloudy) values all count as missing, as ``fill_gaps``
    counts them; ``bounded`` (from ``fill_gaps(..., return_bounded=True)``) becomes 1.0 / 0.0 bands.
    """
    import xarray as xr

    from ..fill import days_to_clear

    q = days_to_clear(clear, time_grid=time_grid, cube=observed).transpose("time", "band", "y", "x")
    bands = [str(b) for b in observed["band"].values]
    q = q.assign_coords(band=[f"days_to_clear_{b}" for b in bands])
    if bounded is not None:
        acted = bounded.transpose("time", "band", "y", "x").astype("float32")
        acted = acted.assign_coords(band=[f"bounded_{b}" for b in bands], time=q["time"].values)
        q = xr.concat([q, acted], dim="band", join="exact")
    q = q.rename("quality")
    return q.rio.write_crs(observed.rio.crs).rio.write_nodata(float("nan"), encoded=False)


def _never_observed(clear: xr.DataArray | None, observed: xr.DataArray) -> tuple[int, int]:
    """Pixels (pixel-bands without a mask) with no clear observation in the whole series, and all of them.

    Without a mask, NaN and the cube's nodata value (e.g. 0 in uint16 digital numbers) are what is
    missing (:func:`eocube.fill.usable_mask`), as ``fill_gaps`` counts them.
    """
    from ..fill import usable_mask

    usable = clear if clear is not None else usable_mask(observed)
    never = ~usable.any("time")
    return int(never.sum().compute()), int(never.size)


def _report_never_observed(never: int, pixels: int, limit: float, method: str) -> None:
    """One line on the never-observed share; a WARNING on stderr above ``limit``."""
    share = never / pixels if pixels else 0.0
    line = f"never observed: {100 * share:.1f} % of the pixels ({never:,} of {pixels:,}) have no clear observation"
    if share <= limit:
        click.echo(line)
        return
    fate = "are the network's guesses" if method == "model" else "stay NaN"
    click.echo(
        f"WARNING: {100 * share:.1f} % of the pixels ({never:,} of {pixels:,}) have no clear observation in the "
        f"whole series and {fate} in the result (above --warn-never-observed {100 * limit:g} %): check the mask "
        "(--mask fits --cloud-band? --data-band, --threshold, --dilate) and the source's dates",
        err=True,
    )


def _clear_mask(cube, kind: str, band: str | None, data_band: str | None, threshold: float, snow: bool, dilate: int):
    """The clear mask the options ask for (None without a cloud band)."""
    if not band:
        return None
    from ..masks import (
        clear_from_cloud_band,
        clear_from_probability,
        clear_from_qa_pixel,
        clear_from_scl,
        dilate_clouds,
        has_data,
    )

    if kind == "scl":
        clear = clear_from_scl(cube, band, snow=snow)
    elif kind == "qa_pixel":
        clear = clear_from_qa_pixel(cube, band, snow=snow)
    elif kind == "probability":
        clear = clear_from_probability(cube, band, threshold=threshold)
    else:
        clear = clear_from_cloud_band(cube, band)
    if data_band:
        clear = clear & has_data(cube, data_band)
    return dilate_clouds(clear, dilate)
