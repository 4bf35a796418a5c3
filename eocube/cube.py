"""The cube convention, in one place.

A *cube* is an :class:`xarray.DataArray` with

* dims exactly ``("time", "band", "y", "x")``;
* ``time``: ``datetime64`` coordinate, strictly increasing;
* ``band``: unique band names (strings);
* ``y`` / ``x``: 1-D regular coordinates in CRS units at **pixel centres**
  (rioxarray's convention), ``y`` usually decreasing (north up);
* a CRS and transform through rioxarray (the ``spatial_ref`` coordinate);
* a nodata value (``cube.rio.nodata``; NaN for float cubes by default).

:func:`validate_cube` is called at every entry point of the library (writers,
gap filling, model engine) so that a wrong input fails early with a message
that says what is wrong and how to fix it. :func:`make_cube` builds a cube from
plain arrays and georeferencing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine

from .errors import BandError, CubeError

DIMS: tuple[str, str, str, str] = ("time", "band", "y", "x")
"""The dimension order of every cube."""


@dataclass(frozen=True)
class CubeInfo:
    """A summary of a cube's grid and layout (what a user wants to see at a glance)."""

    shape: tuple[int, int, int, int]
    """Sizes along (time, band, y, x)."""
    bands: tuple[str, ...]
    """Band names, in order."""
    start: pd.Timestamp
    """First date."""
    end: pd.Timestamp
    """Last date."""
    crs: str
    """CRS as ``EPSG:nnnn`` where possible, WKT otherwise."""
    transform: Affine
    """Affine transform of the pixel grid (upper-left corner based, GDAL order)."""
    resolution: tuple[float, float]
    """Pixel size (x, y) in CRS units; y is negative for north-up grids."""
    nodata: float | int | None
    """The nodata value, or None where there is none."""
    dtype: np.dtype
    """Element type."""
    chunks: tuple[tuple[int, ...], ...] | None
    """Dask chunks, or None for an in-memory cube."""

    def __str__(self) -> str:
        t, b, h, w = self.shape
        chunks = "in memory" if self.chunks is None else "chunks " + " x ".join(
            str(c[0]) if len(set(c)) == 1 else f"{c[0]}..{c[-1]}" for c in self.chunks
        )
        return (
            f"cube {t} dates x {b} bands x {h} x {w} px, {self.dtype}, {chunks}\n"
            f"  dates  {self.start:%Y-%m-%d} .. {self.end:%Y-%m-%d}\n"
            f"  bands  {', '.join(self.bands)}\n"
            f"  crs    {self.crs}, resolution {self.resolution[0]:g} x {abs(self.resolution[1]):g}\n"
            f"  nodata {self.nodata}"
        )


def make_cube(
    data: Any,
    *,
    time: Sequence[Any],
    band: Sequence[str],
    y: Sequence[float] | np.ndarray,
    x: Sequence[float] | np.ndarray,
    crs: Any,
    nodata: float | int | None = None,
    name: str | None = None,
    attrs: dict[str, Any] | None = None,
) -> xr.DataArray:
    """Build a cube from an array and its coordinates.

    Parameters
    ----------
    data
        Array of shape ``(time, band, y, x)`` (NumPy or dask).
    time, band, y, x
        Coordinates. ``y``/``x`` are pixel centres in CRS units.
    crs
        Anything ``rasterio.crs.CRS.from_user_input`` understands (``"EPSG:32633"``, WKT, ...).
    nodata
        Nodata value; defaults to NaN for float data and None for integer data.
    name, attrs
        Name and attributes of the DataArray.

    Returns
    -------
    xarray.DataArray
        A validated cube.
    """
    times = pd.DatetimeIndex(pd.to_datetime(list(time))).tz_localize(None) if len(time) else pd.DatetimeIndex([])
    arr = xr.DataArray(
        data,
        dims=DIMS,
        coords={
            "time": times.values.astype("datetime64[ns]"),
            "band": np.asarray([str(b) for b in band], dtype=object),
            "y": np.asarray(y, dtype="float64"),
            "x": np.asarray(x, dtype="float64"),
        },
        name=name,
        attrs=dict(attrs or {}),
    )
    arr = arr.rio.write_crs(crs)
    arr = arr.rio.write_transform(transform_from_coords(arr["x"].values, arr["y"].values))
    if nodata is None and np.issubdtype(arr.dtype, np.floating):
        nodata = np.nan
    if nodata is not None:
        arr = arr.rio.write_nodata(nodata, encoded=False)
    return validate_cube(arr)


def transform_from_coords(x: np.ndarray, y: np.ndarray) -> Affine:
    """Affine transform of a grid given by pixel-centre coordinates.

    Parameters
    ----------
    x, y
        1-D regular pixel-centre coordinates (at least two each).

    Returns
    -------
    affine.Affine
        The transform mapping (col, row) of the pixel's upper-left corner to CRS units.
    """
    if len(x) < 2 or len(y) < 2:
        raise CubeError(
            f"cannot derive a transform from a grid of {len(y)} x {len(x)} pixels: "
            "a cube needs at least 2 pixels along y and x (or an explicit transform)"
        )
    dx = float(x[1] - x[0])
    dy = float(y[1] - y[0])
    return Affine(dx, 0.0, float(x[0]) - dx / 2, 0.0, dy, float(y[0]) - dy / 2)


def coords_from_transform(transform: Affine, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre ``(y, x)`` coordinates of a grid.

    Parameters
    ----------
    transform
        Affine transform (upper-left corner based).
    height, width
        Grid size in pixels.

    Returns
    -------
    tuple of numpy.ndarray
        ``y`` (length ``height``) and ``x`` (length ``width``).
    """
    if transform.b != 0 or transform.d != 0:
        raise CubeError("rotated or sheared grids are not supported: reproject to a north-up grid first")
    x = transform.c + transform.a * (np.arange(width) + 0.5)
    y = transform.f + transform.e * (np.arange(height) + 0.5)
    return y, x


def validate_cube(obj: Any, *, name: str = "cube", require_crs: bool = True) -> xr.DataArray:
    """Check that ``obj`` follows the cube convention and return it.

    Parameters
    ----------
    obj
        The candidate cube.
    name
        How to call the object in error messages (for example ``"source"``).
    require_crs
        Whether a missing CRS is an error.

    Returns
    -------
    xarray.DataArray
        ``obj`` itself, unchanged.

    Raises
    ------
    CubeError
        With what is wrong and how to fix it.
    """
    if isinstance(obj, xr.Dataset):
        names = list(obj.data_vars)
        hint = f"pick one variable, e.g. ds[{names[0]!r}]" if names else "the Dataset has no variables"
        if names and all(set(obj[v].dims) == {"time", "y", "x"} for v in names):
            hint = "stack its variables into a band dim: ds.to_array('band').transpose('time', 'band', 'y', 'x')"
        raise CubeError(f"{name} is an xarray.Dataset with variables {names}, not a cube (DataArray): {hint}")
    if not isinstance(obj, xr.DataArray):
        raise CubeError(
            f"{name} is a {type(obj).__module__}.{type(obj).__name__}, not an xarray.DataArray: "
            "build a cube with eocube.make_cube(data, time=..., band=..., y=..., x=..., crs=...)"
        )
    dims = tuple(obj.dims)
    if dims != DIMS:
        if set(dims) == set(DIMS):
            fix = f"reorder with {name}.transpose{DIMS}"
        elif set(dims) == {"time", "y", "x"}:
            fix = f"add a band dim with {name}.expand_dims(band=['name']).transpose{DIMS}"
        elif "lat" in dims or "lon" in dims or "latitude" in dims:
            fix = "rename the spatial dims to y/x, e.g. .rename(lat='y', lon='x')"
        else:
            fix = f"rename/transpose so the dims are exactly {DIMS}"
        raise CubeError(f"{name} has dims {dims}, expected {DIMS}: {fix}")
    for dim in DIMS:
        if dim not in obj.coords:
            raise CubeError(f"{name} has no {dim!r} coordinate: assign one with {name}.assign_coords({dim}=...)")
    time = obj["time"].values
    if not np.issubdtype(time.dtype, np.datetime64):
        raise CubeError(
            f"{name}'s time coordinate has dtype {time.dtype}, expected datetime64: "
            f"convert with {name}.assign_coords(time=pandas.to_datetime({name}.time.values))"
        )
    check_time_axis(obj, name=name)
    bands = [str(b) for b in obj["band"].values]
    dupes = sorted({b for b in bands if bands.count(b) > 1})
    if dupes:
        raise CubeError(f"{name} has duplicate band names {dupes}: band names must be unique")
    for dim in ("y", "x"):
        values = obj[dim].values
        if not np.issubdtype(values.dtype, np.number):
            raise CubeError(f"{name}'s {dim} coordinate has dtype {values.dtype}, expected numbers in CRS units")
        if values.size > 2:
            steps = np.diff(values.astype("float64"))
            if not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
                raise CubeError(
                    f"{name}'s {dim} coordinate is not regularly spaced (steps {steps.min():g}..{steps.max():g}): "
                    "resample onto a regular grid first (e.g. with rioxarray's reproject)"
                )
    if require_crs and obj.rio.crs is None:
        raise CubeError(
            f"{name} has no CRS: set one with {name}.rio.write_crs('EPSG:xxxx') "
            "(the CRS of the pixel coordinates)"
        )
    return obj


def check_time_axis(cube: xr.DataArray, *, name: str = "cube") -> None:
    """Raise a clear error if the time axis has missing, duplicate or unsorted dates.

    Every method along time (gap filling, composites, temporal models) and every store
    assumes strictly increasing dates; a duplicate date would be taken as two observations
    and an unsorted axis would interpolate between the wrong neighbours, both silently.

    Parameters
    ----------
    cube
        A cube (any object with a datetime64 ``time`` coordinate).
    name
        How to call the object in error messages.

    Raises
    ------
    CubeError
        Naming the offending dates and how to repair the axis.
    """
    time = pd.DatetimeIndex(cube["time"].values)
    if time.hasnans:
        raise CubeError(
            f"{name}'s time axis has {int(time.isna().sum())} missing dates (NaT): drop them first, "
            f"e.g. {name}.sel(time={name}.time.notnull())"
        )
    if time.has_duplicates:
        dupes = sorted({str(t) for t in time[time.duplicated()]})
        shown = ", ".join(dupes[:3]) + (f" and {len(dupes) - 3} more" if len(dupes) > 3 else "")
        raise CubeError(
            f"{name}'s time axis has duplicate dates ({shown}): merge them first, "
            f"e.g. {name}.groupby('time').first() (or group same-day tiles by solar day when loading)"
        )
    if not time.is_monotonic_increasing:
        raise CubeError(f"{name}'s time axis is not sorted: sort it with {name}.sortby('time')")


def select_bands(cube: xr.DataArray, bands: str | Iterable[str] | None) -> xr.DataArray:
    """Select bands by name with an error that lists the available names.

    Parameters
    ----------
    cube
        A cube.
    bands
        One name, several names, or None for all bands.

    Returns
    -------
    xarray.DataArray
        The cube restricted to ``bands`` (band dim kept).
    """
    if bands is None:
        return cube
    wanted = [bands] if isinstance(bands, str) else list(bands)
    available = [str(b) for b in cube["band"].values]
    missing = [b for b in wanted if b not in available]
    if missing:
        raise BandError(
            f"band(s) {missing} not in the cube; available bands: {available} "
            "(band names are case-sensitive)"
        )
    return cube.sel(band=wanted)


def cube_info(cube: xr.DataArray) -> CubeInfo:
    """Summarise a cube's grid, dates, bands and chunking.

    Parameters
    ----------
    cube
        A cube.

    Returns
    -------
    CubeInfo
        Printable summary (``print(cube_info(cube))``).
    """
    validate_cube(cube, require_crs=False)
    crs = cube.rio.crs
    epsg = crs.to_epsg() if crs is not None else None
    transform = cube.rio.transform()
    times = pd.DatetimeIndex(cube["time"].values)
    return CubeInfo(
        shape=tuple(int(s) for s in cube.shape),  # type: ignore[arg-type]
        bands=tuple(str(b) for b in cube["band"].values),
        start=times.min() if len(times) else pd.NaT,
        end=times.max() if len(times) else pd.NaT,
        crs=f"EPSG:{epsg}" if epsg else (crs.to_wkt() if crs is not None else "none"),
        transform=transform,
        resolution=(transform.a, transform.e),
        nodata=cube.rio.nodata,
        dtype=cube.dtype,
        chunks=cube.chunks,
    )
