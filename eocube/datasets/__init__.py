"""Real satellite data bundled with eocube, opened lazily.

Each sample is a complete eocube Zarr store in a folder of this package, with
its ``PROVENANCE.md`` (source, licence, what the bands are). Adding one is a
folder with ``cube.zarr`` and ``PROVENANCE.md`` plus one entry in
:data:`SAMPLES` (``scripts/build_sample.py`` shows how the first was made).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import xarray as xr

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sample:
    """A bundled sample cube."""

    folder: str
    """Folder of this package holding ``cube.zarr`` and ``PROVENANCE.md``."""
    description: str
    """One line for listings."""
    data_bands: tuple[str, ...]
    """Bands holding measurements (to be gap filled)."""
    cloud_band: str | None
    """Band holding the cloud mask (1 = cloud), if any."""
    data_band: str | None = None
    """Band that is 1 where the sensor has data, if any."""
    probability_band: str | None = None
    """Band holding a cloud probability (0..1), if any: the default of ``--mask probability``."""

    @property
    def path(self) -> Path:
        """Path of the sample's Zarr store."""
        return HERE / self.folder / "cube.zarr"

    @property
    def provenance(self) -> str:
        """The sample's provenance text (source, licence, content)."""
        return (HERE / self.folder / "PROVENANCE.md").read_text()


SAMPLES: dict[str, Sample] = {
    "sentinel2": Sample(
        folder="sentinel2_slovenia",
        description=(
            "Sentinel-2 L1C, Slovenia, 68 dates 2015-07..2017-12, 101 x 100 px at 10 m, EPSG:32633: "
            "NDVI, s2cloudless probability (CLP) and mask (CLM), IS_DATA (eo-learn TestEOPatch, MIT)"
        ),
        data_bands=("NDVI",),
        cloud_band="CLM",
        data_band="IS_DATA",
        probability_band="CLP",
    ),
}
"""Bundled samples by name."""


def open_sample(name: str = "sentinel2", *, chunks: dict[str, int] | None = None) -> xr.DataArray:
    """Open a bundled sample cube lazily.

    Parameters
    ----------
    name
        A key of :data:`SAMPLES`.
    chunks
        Dask chunks; the store's own chunks by default.

    Returns
    -------
    xarray.DataArray
        The sample cube (time, band, y, x), dask-backed.
    """
    try:
        sample = SAMPLES[name]
    except KeyError:
        raise KeyError(f"no bundled sample {name!r}; available: {sorted(SAMPLES)}") from None
    from ..io import open_zarr  # here, so that the table of samples imports nothing heavy (eocube.cli)

    return open_zarr(sample.path, chunks=chunks)


def describe_samples() -> str:
    """The bundled samples as one line each: ``name: description``."""
    return "\n".join(f"{name}: {sample.description}" for name, sample in SAMPLES.items())


def sentinel2_sample(*, chunks: dict[str, int] | None = None) -> xr.DataArray:
    """The real Sentinel-2 sample: 68 dates over 1 km² in Slovenia (eo-learn's TestEOPatch).

    Bands ``NDVI`` (float32), ``CLP`` (s2cloudless cloud probability 0..1),
    ``CLM`` (s2cloudless cloud mask, 1 = cloud) and ``IS_DATA`` (1 = sensor
    data), all float32; EPSG:32633, 10 m pixels (pixel-centre coordinates),
    real acquisition times. Licence MIT (Sinergise); see
    ``SAMPLES["sentinel2"].provenance``.

    Parameters
    ----------
    chunks
        Dask chunks, e.g. ``{"time": -1, "band": 1, "y": 32, "x": 32}``; the
        stored chunks (one per band) by default.

    Returns
    -------
    xarray.DataArray
        The cube, lazy (nothing is read until computed).

    Examples
    --------
    >>> cube = sentinel2_sample()
    >>> cube.sizes["time"], list(cube.band.values)
    (68, ['NDVI', 'CLP', 'CLM', 'IS_DATA'])
    """
    return open_sample("sentinel2", chunks=chunks)


__all__ = ["SAMPLES", "Sample", "describe_samples", "open_sample", "sentinel2_sample"]
