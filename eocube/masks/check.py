"""Does a band hold values its mask kind can hold? A cheap check on a sample of the band.

The mask builders (:func:`clear_from_scl`, ...) only build a lazy graph: they read
nothing, so a wrong band (the 0/1 ``CLM`` mask read as SCL classes, where 0 is
"no data" and 1 "saturated") silently makes every observation cloudy.
:func:`check_mask_band` reads a few chunks of the mask band only (spread over the
band, at most ``max_bytes``), never the data bands, and raises :class:`MaskError`
for values the kind cannot hold. Being a sample, it can miss a bad value; it never
refuses a band for values it has not seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..cube import select_bands, validate_cube
from ..names import MASK_KINDS
from ..nodata import cube_nodata
from ._errors import MaskError

SAMPLE_BYTES = 32 * 2**20
"""Default read budget of :func:`summarise_band` (bytes of the band)."""

MAX_BLOCKS = 16
"""Most chunks :func:`summarise_band` reads."""


@dataclass(frozen=True)
class BandSummary:
    """What a sample of a band holds (NaN and the nodata value left out)."""

    band: str
    """Band name."""
    count: int
    """Valid values seen."""
    vmin: float
    """Smallest valid value (NaN when none)."""
    vmax: float
    """Largest valid value (NaN when none)."""
    integral: bool
    """True when every valid value is a whole number."""
    values: tuple[float, ...] | None
    """The distinct valid values when there are at most 16, else None."""

    @property
    def is_zero_one(self) -> bool:
        """True when the sample holds both 0 and 1 and nothing else: a boolean mask."""
        return self.values is not None and set(self.values) == {0.0, 1.0}

    def describe(self) -> str:
        """The values seen, for messages: ``only 0 and 1``, ``0..11 (whole numbers)``, ``0.0011..0.99``."""
        if self.count == 0:
            return "no valid value"
        if self.values is not None and len(self.values) <= 4:
            shown = [_fmt(v) for v in self.values]
            return "only " + (shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1])
        kind = "whole numbers" if self.integral else "fractional values"
        return f"{_fmt(self.vmin)}..{_fmt(self.vmax)} ({kind})"


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def summarise_band(cube: xr.DataArray, band: str, *, max_bytes: int = SAMPLE_BYTES) -> BandSummary:
    """Value range of a band from a sample of its chunks (reads at most ``max_bytes``).

    Parameters
    ----------
    cube
        A cube holding ``band`` (lazy or in memory).
    band
        The band to look at.
    max_bytes
        Read budget: up to :data:`MAX_BLOCKS` chunks spread evenly over the band's chunk
        grid (time and space) whose total stays under it; a first chunk bigger than the
        budget is cut to a window of its first dates and pixels.

    Returns
    -------
    BandSummary
        Count, range, whether the values are whole numbers, the distinct values when few.
    """
    validate_cube(cube, require_crs=False)
    layer = select_bands(cube, band).isel(band=0, drop=True)
    sample = _sample_values(layer.data, max_bytes)
    nodata = cube_nodata(layer)  # also an encoded nodata (``rio.nodata`` fails on it for integer bands)
    values = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample.ravel()
    if nodata is not None and np.isfinite(nodata):
        values = values[values != nodata]
    if values.size == 0:
        return BandSummary(band, 0, float("nan"), float("nan"), True, ())
    distinct = np.unique(values)
    return BandSummary(
        band=band,
        count=int(values.size),
        vmin=float(distinct[0]),
        vmax=float(distinct[-1]),
        integral=bool(np.all(np.mod(distinct, 1) == 0)),
        values=tuple(float(v) for v in distinct) if distinct.size <= 16 else None,
    )


def _sample_values(data: object, max_bytes: int) -> np.ndarray:
    """A few chunks of a (time, y, x) array, spread over its chunk grid, within ``max_bytes``."""
    if not isinstance(data, da.Array):
        arr = np.asarray(data)
        step = max(1, int(np.ceil((arr.nbytes / max(max_bytes, 1)) ** (1 / 3))))
        return np.asarray(arr[::step, ::step, ::step])
    block_bytes = max(int(np.prod([max(c) for c in data.chunks])) * data.dtype.itemsize, 1)
    total = int(np.prod(data.numblocks))
    n = int(min(total, MAX_BLOCKS, max(1, max_bytes // block_bytes)))
    picks = np.unique(np.linspace(0, total - 1, n).round().astype(int))
    blocks = [data.blocks[np.unravel_index(i, data.numblocks)] for i in picks]
    if block_bytes > max_bytes:  # one chunk over budget: a window of it
        side = max(1, int((max_bytes / data.dtype.itemsize) ** (1 / 3)))
        blocks = [blocks[0][:side, :side, :side]]
    computed = dask.compute(*blocks)
    return np.concatenate([np.ravel(b) for b in computed])


def check_mask_band(
    cube: xr.DataArray,
    band: str,
    kind: str,
    *,
    threshold: float | None = None,
    max_bytes: int = SAMPLE_BYTES,
) -> BandSummary:
    """Raise :class:`MaskError` when ``band`` holds values that the mask ``kind`` cannot hold.

    Reads a sample of the band (see :func:`summarise_band`), so call it once before
    the heavy work (the ``eocube gapfill`` command does, before its cluster starts).

    Parameters
    ----------
    cube
        The cube holding the mask band.
    band
        The mask band.
    kind
        ``"boolean"`` (0 = clear, 1 = cloud; NaN or nodata allowed), ``"scl"`` (Sentinel-2
        classes, whole numbers 0..11), ``"qa_pixel"`` (Landsat bit flags, whole numbers
        0..65535) or ``"probability"`` (0..1, or scaled 0..100 or 0..255).
    threshold
        ``kind="probability"``: the threshold that will be used; checked against the
        band's units (0.4 on a 0..100 band would call nearly everything cloudy).
    max_bytes
        Read budget of the sample.

    Returns
    -------
    BandSummary
        What the sample holds.

    Raises
    ------
    MaskError
        The values cannot be of that kind; the message names the band, the values seen
        and what to use instead. A 0/1 band is a boolean mask: refused as SCL, QA_PIXEL
        or probability.
    """
    if kind not in MASK_KINDS:
        raise MaskError(f"unknown mask kind {kind!r}: choose one of {list(MASK_KINDS)}")
    summary = summarise_band(cube, band, max_bytes=max_bytes)
    if summary.count:
        problem = _CHECKS[kind](summary, threshold)
        if problem:
            raise MaskError(f"band {band!r} holds {summary.describe()}: {problem}")
    return summary


def _check_boolean(s: BandSummary, threshold: float | None) -> str | None:
    if s.values is not None and set(s.values) <= {0.0, 1.0}:
        return None
    if 0 <= s.vmin and s.vmax <= 1:
        return ("a boolean cloud mask holds only 0 (clear) and 1 (cloud) and this looks like a cloud "
                "probability: use --mask probability (with --threshold)")
    return ("a boolean cloud mask holds only 0 (clear) and 1 (cloud): pick the mask kind of the band "
            "(--mask scl, qa_pixel or probability) or another --cloud-band")


def _check_scl(s: BandSummary, threshold: float | None) -> str | None:
    if s.is_zero_one:
        return ("that is a 0/1 cloud mask, not Sentinel-2 SCL classes 0..11 (read as SCL, 0 = no data and "
                "1 = saturated would make every observation cloudy): use --mask boolean")
    if not s.integral or s.vmin < 0 or s.vmax > 11:
        return "Sentinel-2 SCL holds whole-number classes 0..11: give the SCL band as --cloud-band, or another --mask"
    return None


def _check_qa_pixel(s: BandSummary, threshold: float | None) -> str | None:
    if s.is_zero_one:
        return ("that is a 0/1 cloud mask, not Landsat QA_PIXEL bit flags (read as QA_PIXEL, 1 is the fill "
                "bit and every observation would be not clear): use --mask boolean")
    if not s.integral or s.vmin < 0 or s.vmax > 65535:
        return ("Landsat QA_PIXEL holds 16-bit bit-packed flags (whole numbers 0..65535): give the QA_PIXEL "
                "band as --cloud-band, or another --mask")
    return None


def _check_probability(s: BandSummary, threshold: float | None) -> str | None:
    if s.is_zero_one:
        return ("that is a boolean cloud mask, not a cloud probability (thresholding it gives the mask "
                "itself): use the probability band (--cloud-band CLP for the s2cloudless sample) or --mask boolean")
    if s.vmin < 0 or s.vmax > 255:
        return ("a cloud probability lies in 0..1 (or scaled 0..100 or 0..255): give the probability band "
                "as --cloud-band, or another --mask")
    if threshold is not None and s.vmax > 1 and threshold <= 1:
        return (f"the band looks scaled (up to {_fmt(s.vmax)}) but the threshold {threshold:g} is in 0..1 "
                f"units, so nearly every observation would be cloudy: give --threshold in the band's units "
                f"(e.g. {threshold * 100:g} for 0..100)")
    if threshold is not None and s.vmax <= 1 and not s.integral and threshold > 1:
        return (f"the band is a 0..1 probability but the threshold {threshold:g} is above 1, so every "
                f"observation would be clear: give --threshold in 0..1 (e.g. {threshold / 100:g})")
    return None


_CHECKS = {"boolean": _check_boolean, "scl": _check_scl, "qa_pixel": _check_qa_pixel,
           "probability": _check_probability}
