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

import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine

from .errors import BandError, CubeError
from .grid import Grid

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
    transform: Affine | None = None,
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
    transform
        The grid's affine transform (upper-left corner); default: derived from ``y`` and ``x``,
        which then need two pixels each. Give it for a grid one pixel high or wide.

    Returns
    -------
    xarray.DataArray
        A validated cube. Dates with a time zone are converted to UTC (the cube's dates are
        UTC without a time zone, as STAC's are).
    """
    times = utc_times(time)
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
    if crs is None:
        raise CubeError("make_cube needs crs= (the CRS of the y/x coordinates, e.g. 'EPSG:32633')")
    try:
        arr = arr.rio.write_crs(crs)
    except Exception as exc:  # noqa: BLE001 - pyproj, rasterio and rioxarray raise several kinds
        raise CubeError(f"crs={crs!r} is not a CRS that pyproj knows ({type(exc).__name__}): "
                        "pass e.g. 'EPSG:32633' or a WKT string") from None
    if transform is None:
        transform = transform_from_coords(arr["x"].values, arr["y"].values)
    arr = arr.rio.write_transform(transform)
    if nodata is None and np.issubdtype(arr.dtype, np.floating):
        nodata = np.nan
    if nodata is not None:
        arr = arr.rio.write_nodata(nodata, encoded=False)
    return validate_cube(arr)


def utc_times(time: Sequence[Any]) -> pd.DatetimeIndex:
    """Dates as a time-zone-naive UTC :class:`pandas.DatetimeIndex` (how cubes hold their dates).

    Dates with a time zone or an offset (``"2020-06-01T12:00+02:00"``) are converted to UTC, not
    stripped of it; naive dates are taken as UTC.

    Parameters
    ----------
    time
        Dates: strings, datetimes, ``numpy.datetime64`` or pandas timestamps.

    Returns
    -------
    pandas.DatetimeIndex
        Naive UTC dates, in the order given.

    Raises
    ------
    CubeError
        A value that is not a date, or a date outside the years 1678..2261 (nanosecond dates).
    """
    values = list(time)
    if not values:
        return pd.DatetimeIndex([])
    try:
        return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).tz_localize(None)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CubeError(f"time= holds a value that is not a date between 1678 and 2261 ({str(exc).splitlines()[0]}): "
                        "pass dates such as '2020-06-01' or numpy.datetime64 values") from None


def transform_from_coords(x: np.ndarray, y: np.ndarray) -> Affine:
    """Affine transform of a grid given by pixel-centre coordinates (:meth:`eocube.grid.Grid.from_coords`).

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
            "a cube needs at least 2 pixels along y and x, or an explicit transform (make_cube(..., transform=...))"
        )
    return Grid.from_coords(y, x).transform


def coords_from_transform(transform: Affine, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre ``(y, x)`` coordinates of a grid (:attr:`eocube.grid.Grid.coords`).

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
    grid = Grid(None, transform, (height, width))
    if not grid.axis_aligned:
        raise CubeError("rotated or sheared grids are not supported: reproject to a north-up grid first")
    return grid.coords


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
        if getattr(obj.indexes.get("time"), "tz", None) is not None:
            raise CubeError(
                f"{name}'s dates carry a time zone, but a cube's dates are UTC without one: convert them with "
                f"{name}.assign_coords(time={name}.indexes['time'].tz_convert(None))"
            )
        raise CubeError(
            f"{name}'s time coordinate has dtype {time.dtype}, expected datetime64: "
            f"convert with {name}.assign_coords(time=pandas.to_datetime({name}.time.values, utc=True).tz_localize(None))"
        )
    check_time_axis(obj, name=name)
    bands = [str(b) for b in obj["band"].values]
    dupes = sorted({b for b in bands if bands.count(b) > 1})
    if dupes:
        raise CubeError(f"{name} has duplicate band names {dupes}: band names must be unique")
    if obj.dtype.kind in _NOT_NUMBERS:
        raise CubeError(
            f"{name} holds {obj.dtype} values, not numbers: a cube holds numbers (bool, integers, floats); "
            f"convert it, e.g. {name}.astype('float32')"
        )
    for dim in ("y", "x"):
        _check_spatial_coord(obj, dim, name)
    if require_crs and obj.rio.crs is None:
        raise CubeError(
            f"{name} has no CRS: set one with {name}.rio.write_crs('EPSG:xxxx') "
            "(the CRS of the pixel coordinates)"
        )
    _check_transform(obj, name)
    _check_geographic_range(obj, name)
    _check_crs_attr(obj, name)
    _check_nodata(obj, name)
    return obj


_NOT_NUMBERS = frozenset("OUSVMm")
"""dtype kinds a cube cannot hold: objects, strings, bytes, records, dates and durations."""


def _check_spatial_coord(obj: xr.DataArray, dim: str, name: str) -> None:
    """Refuse a y/x coordinate that is empty, not numeric, not finite, or not a regular, strictly monotonic grid."""
    values = obj[dim].values
    if values.size == 0:
        raise CubeError(
            f"{name} has no pixels along {dim} (0 values): a selection gave an empty grid; note that "
            f"a north-up cube's y decreases, so select y with slice(top, bottom), e.g. {name}.sel(y=slice(ymax, ymin))"
        )
    if not np.issubdtype(values.dtype, np.number):
        raise CubeError(f"{name}'s {dim} coordinate has dtype {values.dtype}, expected numbers in CRS units")
    values = values.astype("float64")
    bad = ~np.isfinite(values)
    if bad.any():
        raise CubeError(
            f"{name}'s {dim} coordinate has {int(bad.sum())} non-finite value(s) (NaN or inf, first at index "
            f"{int(np.argmax(bad))}): pixel coordinates must be finite; assign the grid's coordinates, e.g. "
            f"from its transform with eocube.cube.coords_from_transform"
        )
    if values.size > 1:
        steps = np.diff(values)
        if not np.all(steps != 0) or not (np.all(steps > 0) or np.all(steps < 0)):
            raise CubeError(
                f"{name}'s {dim} coordinate is not strictly increasing or decreasing (steps {steps.min():g}..{steps.max():g}): "
                "pixel coordinates must step by the pixel size; repeated or zero steps make no grid"
            )
        if values.size > 2 and not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
            raise CubeError(
                f"{name}'s {dim} coordinate is not regularly spaced (steps {steps.min():g}..{steps.max():g}): "
                "resample onto a regular grid first (e.g. with rioxarray's reproject)"
            )


def _check_transform(obj: xr.DataArray, name: str) -> None:
    """Refuse a cube whose transform (what writers store and GDAL reads) disagrees with its y/x coordinates.

    rioxarray keeps the transform in the ``spatial_ref`` coordinate's ``GeoTransform`` and does not
    update its pixel size or direction when the cube is subset with a step, reversed or sorted:
    ``cube.isel(x=slice(None, None, 2))`` or ``cube.sortby("y")`` keep the old one, so the stored,
    written and burned grid would not be the one the coordinates say.
    """
    with warnings.catch_warnings():  # rioxarray's own `Affine * Affine` (affine >= 2.4 warns about `*`)
        warnings.filterwarnings("ignore", "Use `@` matmul", PendingDeprecationWarning)
        transform = obj.rio.transform()
    if transform.b != 0 or transform.d != 0:
        raise CubeError(
            f"{name} has a rotated or sheared transform {tuple(transform)[:6]}: cubes are on north-up or "
            "south-up grids; reproject it (e.g. with rioxarray's reproject) first"
        )
    x, y = obj["x"].values.astype("float64"), obj["y"].values.astype("float64")
    for dim, values, size, origin in (("x", x, transform.a, transform.c), ("y", y, transform.e, transform.f)):
        step = values[1] - values[0] if values.size > 1 else size
        centre = origin + size / 2
        if (size == 0 or not np.isclose(step, size, rtol=1e-6, atol=0)
                or not np.isclose(values[0], centre, rtol=0, atol=1e-3 * abs(size) if size else 0)):
            raise CubeError(
                f"{name}'s {dim} coordinate (first pixel centre {values[0]:.10g}, step {step:g}) disagrees with its "
                f"transform (pixel centre {centre:.10g}, size {size:g}), which writers store and GDAL reads: "
                "a subset with a step, a reversal or a sortby keeps the old transform. If the coordinates are "
                f"right, rewrite it: {name} = {name}.rio.write_transform({name}.rio.transform(recalc=True))"
            )


def _check_geographic_range(obj: xr.DataArray, name: str) -> None:
    """Refuse latitudes outside [-90, 90] (and longitudes outside [-360, 360]) in a geographic CRS."""
    crs = obj.rio.crs
    if crs is None or not crs.is_geographic:
        return
    for dim, limit, what in (("y", 90.0, "latitude"), ("x", 360.0, "longitude")):
        values = obj[dim].values
        if np.abs(values).max() > limit:
            raise CubeError(
                f"{name} is in the geographic CRS {crs.to_string()}, but its {dim} coordinate reaches "
                f"{values.min():g}..{values.max():g}, beyond the {what}s' +-{limit:g}: were longitude and "
                "latitude swapped (y is the latitude, x the longitude), or is the CRS wrong (coordinates in "
                "metres belong to a projected CRS such as a UTM zone)?"
            )


def _check_crs_attr(obj: xr.DataArray, name: str) -> None:
    """Refuse a ``crs`` attribute that names another CRS than the ``spatial_ref`` coordinate (which
    rioxarray, the writers and GDAL use), so that no reader takes the other one."""
    attr = obj.attrs.get("crs")
    crs = obj.rio.crs
    if attr is None or crs is None or "spatial_ref" not in obj.coords:
        return
    from rasterio.crs import CRS

    try:
        other = CRS.from_user_input(attr)
    except Exception:  # noqa: BLE001 - not a CRS: nothing to disagree with
        return
    if other != crs:
        raise CubeError(
            f"{name}.attrs['crs'] ({other.to_string()}) disagrees with its spatial_ref coordinate "
            f"({crs.to_string()}), which rioxarray, the writers and GDAL use: drop the attribute "
            f"(del {name}.attrs['crs']) or write the right CRS with {name}.rio.write_crs(...)"
        )


_NODATA_ATTRS = ("_FillValue", "missing_value", "nodata")
"""Attributes that declare a cube's nodata value (rioxarray reads the first one set)."""


def _check_nodata(obj: xr.DataArray, name: str) -> None:
    """Refuse a nodata value the cube's dtype cannot hold (NaN for integers or bool, -1 for uint16, ...)."""
    declared = {key: obj.attrs[key] for key in _NODATA_ATTRS if np.ndim(obj.attrs.get(key)) == 0
                and obj.attrs.get(key) is not None}
    values = list(declared.values())
    if any(not _same_value(values[0], v) for v in values[1:]):
        raise CubeError(
            f"{name}'s attributes declare different nodata values ({', '.join(f'{k}={v!r}' for k, v in declared.items())}): "
            f"keep one, e.g. {name}.rio.write_nodata(value) after deleting the others from {name}.attrs"
        )
    try:
        _ = obj.rio.nodata
    except (OverflowError, ValueError, TypeError) as exc:
        if obj.rio.encoded_nodata is not None:  # an integer cube read without decoding: its encoded value counts
            return
        raise CubeError(
            f"{name}'s nodata value cannot be held by its dtype {obj.dtype} ({exc}): write one it can, "
            f"e.g. {name}.rio.write_nodata(0), or convert the cube, e.g. {name}.astype('float32')"
        ) from None


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
    grid = Grid.of(cube)
    times = pd.DatetimeIndex(cube["time"].values)
    return CubeInfo(
        shape=tuple(int(s) for s in cube.shape),  # type: ignore[arg-type]
        bands=tuple(str(b) for b in cube["band"].values),
        start=times.min() if len(times) else pd.NaT,
        end=times.max() if len(times) else pd.NaT,
        crs=f"EPSG:{epsg}" if epsg else (crs.to_wkt() if crs is not None else "none"),
        transform=grid.transform,
        resolution=grid.resolution,
        nodata=cube.rio.nodata,
        dtype=cube.dtype,
        chunks=cube.chunks,
    )


def _same_value(a: Any, b: Any) -> bool:
    """Whether two nodata values are the same number (NaN equals NaN)."""
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return a == b
    return fa == fb or (np.isnan(fa) and np.isnan(fb))
