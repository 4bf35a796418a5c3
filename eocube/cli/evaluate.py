"""``eocube evaluate``: the artificial-gap protocol on a real cube -> per-method table (+ plot, CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .._redact import redact
from ..fill import METHOD_NAMES
from ..names import EVALUATED_METHODS
from ._common import (
    OneLineCommand,
    SampleHelpOption,
    check_output_writable,
    check_source,
    friendly_errors,
    open_source,
    resolve_bands,
)

if TYPE_CHECKING:
    import xarray as xr

DEFAULT_METHODS: tuple[str, ...] = EVALUATED_METHODS
"""``eocube.evaluate.DEFAULT_METHODS`` (both :data:`eocube.names.EVALUATED_METHODS`), without importing matplotlib."""


@click.command("evaluate", cls=OneLineCommand, old_spellings={"--plot": "--quicklook"})
@click.option("--source", default="sentinel2", show_default=True, cls=SampleHelpOption,
              help="A bundled sample or the path of a Zarr cube.")
@click.option("--bands", default=None, help="Comma-separated bands to score (sample default: its data bands).")
@click.option("--cloud-band", default=None, help="Band that is non-zero on clouds (sample default: CLM).")
@click.option("--data-band", default=None, help="Band that is non-zero where the sensor has data (sample default: IS_DATA).")
@click.option("--methods", default=",".join(DEFAULT_METHODS), show_default=True,
              help=f"Comma-separated methods among {', '.join(sorted(METHOD_NAMES))}.")
@click.option("--fraction", type=float, default=0.2, show_default=True, help="Share of clear observations to hide.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--donor", type=click.Choice(["dates", "pixels"]), default="dates", show_default=True,
              help="Real cloud masks borrowed from other dates, or from the same date at other pixels.")
@click.option("--quicklook", "plot", default="eocube-output/evaluate.png", show_default=True, type=click.Path(),
              help="PNG of RMSE/MAE per method ('' for none; formerly --plot).")
@click.option("--model", "model_path", default=None, type=click.Path(exists=True),
              help="Also score a trained gap-filling network (training folder of eocube train, with its model.pt2); "
                   "every method is then scored on the test blocks its training split held out.")
@click.option("--all-pixels", is_flag=True,
              help="With --model: score the whole cube, the network's training pixels included (optimistic).")
@click.option("--csv", "csv", default=None, type=click.Path(), help="Also write the table as CSV.")
@friendly_errors
def evaluate(source: str, bands: str | None, cloud_band: str | None, data_band: str | None, methods: str,
             fraction: float, seed: int, donor: str, plot: str, model_path: str | None, all_pixels: bool,
             csv: str | None) -> None:
    """Score gap-filling methods on hidden clear observations of a real cube (RMSE, MAE, bias)."""
    if plot:
        check_output_writable(plot, what="the quicklook (--quicklook)", folder=False)
    if csv:
        check_output_writable(csv, what="--csv", folder=False)
    check_source(source)
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in method_list if m not in METHOD_NAMES]
    if unknown:
        raise click.BadParameter(f"unknown method(s) {unknown}; choose from {sorted(METHOD_NAMES)}",
                                 param_hint="--methods")
    from ..cube import cube_info
    from ..evaluate import evaluate_methods, format_table, plot_scores
    from ..masks import check_mask_band, clear_from_cloud_band

    cube, sample = open_source(source, {"time": -1, "band": 1, "y": 64, "x": 64})
    if sample is None and not cloud_band:
        raise click.UsageError("--cloud-band is required for a cube that is not a bundled sample")
    band_list, cloud_band, data_band = resolve_bands(cube, sample, bands, cloud_band, data_band)
    click.echo(f"source: {redact(source)}\n{cube_info(cube)}")
    check_mask_band(cube, cloud_band, "boolean")  # a sample of the cloud band only
    extra, where = {}, None
    if model_path:
        from ..learn.inference import model_filler

        extra["model"] = model_filler(model_path)
        where = _scored_region(cube, model_path, all_pixels)
    clear = clear_from_cloud_band(cube, cloud_band, data_band=data_band)
    table = evaluate_methods(cube, clear, methods=method_list, bands=band_list, fraction=fraction, seed=seed,
                             donor=donor, extra=extra, where=where)
    click.echo(f"\nheld out {table.attrs['held_out']} clear observations ({fraction:.0%}, real cloud masks from "
               f"other {donor}, seed {seed}); scores on them:\n")
    click.echo(format_table(table))
    if plot:
        click.echo(f"\nplot: {plot_scores(table, plot).resolve()}")
    if csv:
        Path(csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(csv, index=False)
        click.echo(f"csv: {Path(csv).resolve()}")


def _scored_region(cube: xr.DataArray, model_path: str, all_pixels: bool) -> xr.DataArray | None:
    """The pixels of ``cube`` to score with a trained network: its held-out test blocks, said out loud."""
    if all_pixels:
        click.echo("WARNING: --all-pixels: scoring the whole cube, including the pixels the network was "
                   "trained on, so its scores are optimistic; drop --all-pixels to score the held-out "
                   "test blocks only", err=True)
        return None
    from ..learn.inference import held_out_area

    area, text = held_out_area(model_path, cube)
    click.echo(f"scored region: the {text}, never read in training (every method fills the whole cube); "
               "--all-pixels scores the whole cube")
    return area
