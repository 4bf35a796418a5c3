"""``eocube evaluate``: the artificial-gap protocol on a real cube -> per-method table (+ plot, CSV)."""

from __future__ import annotations

from pathlib import Path

import click

from ..cube import cube_info
from ..datasets import SAMPLES
from ..evaluate import DEFAULT_METHODS, evaluate_methods, format_table, plot_scores
from ..fill import METHODS
from ..masks import clear_from_cloud_band
from ._common import friendly_errors, open_source, resolve_bands


@click.command("evaluate")
@click.option("--source", default="sentinel2", show_default=True,
              help=f"A bundled sample ({', '.join(SAMPLES)}) or the path of a Zarr cube.")
@click.option("--bands", default=None, help="Comma-separated bands to score (sample default: its data bands).")
@click.option("--cloud-band", default=None, help="Band that is non-zero on clouds (sample default: CLM).")
@click.option("--data-band", default=None, help="Band that is non-zero where the sensor has data (sample default: IS_DATA).")
@click.option("--methods", default=",".join(DEFAULT_METHODS), show_default=True,
              help=f"Comma-separated methods among {', '.join(sorted(METHODS))}.")
@click.option("--fraction", type=float, default=0.2, show_default=True, help="Share of clear observations to hide.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--donor", type=click.Choice(["dates", "pixels"]), default="dates", show_default=True,
              help="Real cloud masks borrowed from other dates, or from the same date at other pixels.")
@click.option("--plot", "plot", default="eocube-output/evaluate.png", show_default=True, type=click.Path(),
              help="PNG of RMSE/MAE per method ('' for none).")
@click.option("--model", "model_path", default=None, type=click.Path(exists=True),
              help="Also score a trained gap-filling network (checkpoint or training folder of eocube train).")
@click.option("--csv", "csv", default=None, type=click.Path(), help="Also write the table as CSV.")
@friendly_errors
def evaluate(source: str, bands: str | None, cloud_band: str | None, data_band: str | None, methods: str,
             fraction: float, seed: int, donor: str, plot: str, model_path: str | None, csv: str | None) -> None:
    """Score gap-filling methods on hidden clear observations of a real cube (RMSE, MAE, bias)."""
    cube, sample = open_source(source, {"time": -1, "band": 1, "y": 64, "x": 64})
    if sample is None and not cloud_band:
        raise click.UsageError("--cloud-band is required for a cube that is not a bundled sample")
    band_list, cloud_band, data_band = resolve_bands(cube, sample, bands, cloud_band, data_band)
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in method_list if m not in METHODS]
    if unknown:
        raise click.BadParameter(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}", param_hint="--methods")
    click.echo(f"source: {source}\n{cube_info(cube)}")
    clear = clear_from_cloud_band(cube, cloud_band, data_band=data_band)
    extra = {}
    if model_path:
        from ..learn.fill import model_filler

        extra["model"] = model_filler(model_path)
    table = evaluate_methods(cube, clear, methods=method_list, bands=band_list, fraction=fraction, seed=seed,
                             donor=donor, extra=extra)
    click.echo(f"\nheld out {table.attrs['held_out']} clear observations ({fraction:.0%}, real cloud masks from "
               f"other {donor}, seed {seed}); scores on them:\n")
    click.echo(format_table(table))
    if plot:
        click.echo(f"\nplot: {plot_scores(table, plot).resolve()}")
    if csv:
        Path(csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(csv, index=False)
        click.echo(f"csv: {Path(csv).resolve()}")
