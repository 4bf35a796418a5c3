"""Target time grids: observed dates, every N days, monthly, or explicit dates."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ._errors import FillError

TimeGrid = str | Sequence | pd.DatetimeIndex | np.ndarray | None
"""``None`` (the observed dates), a pandas frequency (``"10D"``, ``"MS"``, ``"monthly"``) or dates."""

ALIASES = {"monthly": "MS", "weekly": "7D", "daily": "D"}


def target_times(times: pd.DatetimeIndex, grid: TimeGrid) -> pd.DatetimeIndex | None:
    """The dates to fill onto, or None for the observed dates.

    Parameters
    ----------
    times
        The cube's (sorted) dates.
    grid
        None; a pandas frequency string such as ``"10D"`` (every 10 days from the first
        date, at midnight), ``"MS"`` or ``"monthly"`` (first day of each month) within the
        observed period; or a sequence of dates.

    Returns
    -------
    pandas.DatetimeIndex or None
    """
    if grid is None:
        return None
    if isinstance(grid, str):
        freq = ALIASES.get(grid.lower(), grid)
        try:
            out = pd.date_range(times[0].normalize(), times[-1], freq=freq)
        except ValueError as exc:
            raise FillError(
                f"time grid {grid!r} is not a pandas frequency ({exc}): use e.g. '10D', 'MS' or 'monthly', "
                "or pass the dates themselves"
            ) from None
    else:
        try:  # dates with a time zone or an offset are converted to UTC (the cube's dates are naive UTC)
            out = pd.DatetimeIndex(pd.to_datetime(list(grid), utc=True)).tz_localize(None)
        except (ValueError, TypeError, OverflowError) as exc:
            raise FillError(f"time grid {grid!r} holds a value that is not a date ({str(exc).splitlines()[0]}): "
                            "pass dates such as '2020-06-01', or a pandas frequency such as '10D'") from None
        if out.hasnans:
            raise FillError(f"time grid {grid!r} holds {int(out.isna().sum())} missing date(s) (None or NaT): "
                            "pass dates only")
    if len(out) == 0:
        raise FillError(f"time grid {grid!r} gives no date between {times[0]} and {times[-1]}")
    if out.has_duplicates or not out.is_monotonic_increasing:
        raise FillError("the target dates must be sorted and unique: pass sorted(set(dates))")
    return out.tz_localize(None) if out.tz is not None else out


def days_since(times: pd.DatetimeIndex, origin: pd.Timestamp) -> np.ndarray:
    """Days (float) from ``origin`` to each of ``times``."""
    return ((times - origin) / pd.Timedelta(days=1)).to_numpy(dtype="float64")
