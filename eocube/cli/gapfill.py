"""``eocube gapfill``: source -> cloud mask -> temporal gap filling -> Zarr (+ quicklook PNG)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..cluster import close, connect, describe
from ..cube import cube_info, select_bands
from ..datasets import SAMPLES
from ..fill import METHODS, days_to_clear, fill_gaps
from ..io import check_target, open_zarr, to_zarr
from ..masks import (
    clear_from_cloud_band,
    clear_from_probability,
    clear_from_qa_pixel,
    clear_from_scl,
    dilate_clouds,
    has_data,
)
from ..plot import gapfill_quicklook
from ._common import cluster_options, friendly_errors, open_source, resolve_bands


@click.command("gapfill")
@click.option("--source", default="sentinel2", show_default=True,
              help=f"A bundled sample ({', '.join(SAMPLES)}) or the path of a Zarr cube.")
@click.option("--out", "out", default="eocube-output/gapfilled.zarr", show_default=True, type=click.Path(),
              help="Zarr store to write (resumed if it holds an unfinished write of the same job).")
@click.option("--bands", default=None, help="Comma-separated bands to fill (sample default: its data bands; else all but the mask bands).")
@click.option("--cloud-band", default=None, help="Band that is non-zero on clouds (sample default: CLM).")
@click.option("--data-band", default=None, help="Band that is non-zero where the sensor has data (sample default: IS_DATA).")
@click.option("--mask", "mask_kind", type=click.Choice(["boolean", "scl", "qa_pixel", "probability"]), default="boolean",
              show_default=True, help="How to read --cloud-band: non-zero = cloud (boolean), Sentinel-2 SCL classes, "
              "Landsat QA_PIXEL bits, or a cloud probability compared with --threshold.")
@click.option("--threshold", type=float, default=0.4, show_default=True, help="--mask probability: cloudy at or above.")
@click.option("--snow/--no-snow", default=False, show_default=True, help="--mask scl|qa_pixel: count snow as not clear.")
@click.option("--dilate", type=int, default=0, show_default=True, help="Grow clouds by this many pixels.")
@click.option("--method", type=click.Choice([*sorted(METHODS), "model"]), default="linear", show_default=True,
              help="A classical method, or 'model': a trained gap-filling network (--model, see eocube train).")
@click.option("--model", "model_path", default=None, type=click.Path(exists=True),
              help="--method model: checkpoint file or training folder written by eocube train.")
@click.option("--time-grid", default=None,
              help="Fill onto a regular grid instead of the observed dates: a pandas frequency ('10D', 'MS') or 'monthly'.")
@click.option("--quality", default=None, type=click.Path(),
              help="Also write the quality cube (days to the nearest clear observation) to this Zarr store.")
@click.option("--tile", type=int, default=64, show_default=True, help="Chunk size in pixels along y and x.")
@click.option("--zarr-format", type=click.Choice(["2", "3"]), default="2", show_default=True,
              help="Zarr format (2 is readable by GDAL <= 3.10 and QGIS).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store instead of resuming it.")
@click.option("--quicklook", default=None, type=click.Path(),
              help="PNG to write (default: next to the store, <out>.png).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@cluster_options
@friendly_errors
def gapfill(source: str, out: str, bands: str | None, cloud_band: str | None, data_band: str | None,
            mask_kind: str, threshold: float, snow: bool, dilate: int, method: str, model_path: str | None,
            time_grid: str | None,
            quality: str | None, tile: int, zarr_format: str, overwrite: bool, quicklook: str | None, progress: bool,
            cluster: dict) -> None:
    """Fill cloudy observations of a cube along time and write the result to Zarr."""
    cube, sample = open_source(source, {"time": -1, "band": 1, "y": tile, "x": tile})
    band_list, cloud_band, data_band = resolve_bands(cube, sample, bands, cloud_band, data_band)
    click.echo(f"source: {source}\n{cube_info(cube)}")
    clear = _clear_mask(cube, mask_kind, cloud_band, data_band, threshold, snow, dilate)
    observed = select_bands(cube, band_list)
    if method == "model":
        if not model_path:
            raise click.UsageError("--method model needs --model PATH (a checkpoint written by eocube train)")
        if time_grid:
            raise click.UsageError("--time-grid is not available with --method model (it fills the observed dates)")
        from ..learn.fill import fill_cube

        filled = fill_cube(observed, model_path, clear=clear)
    else:
        filled = fill_gaps(observed, clear, method=method, time_grid=time_grid)
    provenance = {
        "command": "eocube gapfill",
        "source": source if sample else str(Path(source).resolve()),
        "bands": band_list,
        "cloud_band": cloud_band,
        "data_band": data_band,
        "mask": mask_kind,
        "threshold": threshold if mask_kind == "probability" else None,
        "snow": snow,
        "dilate": dilate,
        "method": method,
        "model": str(Path(model_path).resolve()) if method == "model" and model_path else None,
        "time_grid": time_grid,
        "tile": tile,
    }
    write_mode = "overwrite" if overwrite else "resume"
    check_target(filled, out, zarr_format=int(zarr_format), provenance=provenance, mode=write_mode)  # before any work
    client = connect(**cluster)
    try:
        click.echo(describe(client))
        report = to_zarr(filled, out, zarr_format=int(zarr_format), provenance=provenance,
                         mode=write_mode, progress=progress)
        if quality and clear is not None:
            q = days_to_clear(clear, time_grid=time_grid).expand_dims(band=["days_to_clear"]).transpose(
                "time", "band", "y", "x")
            q = q.rio.write_crs(observed.rio.crs).rio.write_nodata(float("nan"), encoded=False)
            click.echo(str(to_zarr(q, quality, zarr_format=int(zarr_format),
                                   provenance={**provenance, "command": "eocube gapfill --quality"},
                                   mode=write_mode, progress=progress)))
    finally:
        close(client)
    click.echo(str(report))
    result = open_zarr(out)
    png = Path(quicklook) if quicklook else Path(str(out).rstrip("/" + os.sep) + ".png")
    if clear is not None and time_grid is None:
        gapfill_quicklook(observed, clear.compute(), result, png)
        click.echo(f"quicklook: {png.resolve()}")
    click.echo(f"zarr: {Path(out).resolve()}")


def _clear_mask(cube, kind: str, band: str | None, data_band: str | None, threshold: float, snow: bool, dilate: int):
    """The clear mask the options ask for (None without a cloud band)."""
    if not band:
        return None
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
