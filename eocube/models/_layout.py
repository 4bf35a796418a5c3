"""Cube dims -> model inputs, and model outputs -> cube dims (pure array code).

Three input layouts (``C`` bands selected, ``T`` dates, ``F = C + 1`` with the validity
channel, else ``F = C``):

``"band"``      one sample per date: ``x`` is ``(N, F, H, W)``, channels = bands of that date.
``"time_band"`` one sample per tile, time folded into channels: ``x`` is ``(N, T*F, H, W)``,
                channel ``t * F + f`` is band ``f`` of date ``t`` (time-major).
``"sequence"``  one sample per tile with a time axis: ``x`` is ``(N, T, F, H, W)``.

Optional extra positional arguments, in this order: ``valid`` (bool, shaped like ``x``,
True where the input was not nodata) and ``time`` (float32, ``(N,)`` for ``"band"``,
``(N, T)`` for the temporal layouts, with a trailing feature axis when the time encoding
returns several values per date).

Model outputs are brought to the canonical form ``(N, t_out, K, H, W)``: ``t_out`` is 1 for a
per-date sample of ``"band"`` and for a single map, ``T`` for a per-date output of a temporal
layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import pandas as pd
import torch

from ..names import LayoutName
from ._errors import OptionError, OutputShapeError

OutputKind = Literal["per_date", "map"]


@dataclass(frozen=True)
class Layout:
    """How a block of the cube becomes model inputs."""

    kind: LayoutName
    """One of :data:`eocube.names.LAYOUTS`."""
    bands: tuple[str, ...]
    """Input band names, in channel order."""
    n_time: int
    """Dates per sample: the cube's length for temporal layouts, 1 for ``"band"``."""
    flag: bool = False
    """Whether a validity channel (1 valid, 0 nodata) follows the bands of each date."""
    valid_arg: bool = False
    """Whether a boolean validity tensor is passed as an extra argument."""
    time_arg: bool = False
    """Whether per-date time features are passed as an extra argument."""

    @property
    def per_date_channels(self) -> int:
        """Channels of one date (bands plus the validity flag)."""
        return len(self.bands) + int(self.flag)

    @property
    def in_channels(self) -> int:
        """The channel count the model receives (size of the channel axis of ``x``)."""
        if self.kind == "time_band":
            return self.n_time * self.per_date_channels
        return self.per_date_channels

    @property
    def temporal(self) -> bool:
        """Whether one sample holds every date."""
        return self.kind != "band"

    def describe(self) -> str:
        """Which dims produced the channel axis, in words."""
        names = ", ".join(self.bands)
        flag = " + 1 validity flag" if self.flag else ""
        per_date = f"{len(self.bands)} band(s) [{names}]{flag}"
        if self.kind == "band":
            return (
                f"layout 'band': {per_date} of one date = {self.in_channels} channels, "
                f"x of shape (N, {self.in_channels}, H, W)"
            )
        if self.kind == "time_band":
            return (
                f"layout 'time_band': {self.n_time} dates x ({per_date}) = {self.in_channels} channels "
                f"(time-major), x of shape (N, {self.in_channels}, H, W)"
            )
        return (
            f"layout 'sequence': {self.n_time} dates x ({per_date}) = {self.per_date_channels} channels per date, "
            f"x of shape (N, {self.n_time}, {self.per_date_channels}, H, W)"
        )

    def samples(self, x: np.ndarray) -> np.ndarray:
        """Model samples of a window ``(t, F, h, w)`` of the block (a view where possible)."""
        t, f, h, w = x.shape
        if self.kind == "band":
            return x
        if self.kind == "time_band":
            return x.reshape(1, t * f, h, w)
        return x[None]

    def model_args(
        self, x: np.ndarray, invalid: np.ndarray | None, time_features: np.ndarray | None
    ) -> list[np.ndarray]:
        """All model arguments (sample axis first) for one window.

        Parameters
        ----------
        x
            ``(t, F, h, w)`` filled values (validity flag channel already appended if any).
        invalid
            ``(t, C, h, w)`` nodata mask of the bands, or None when nothing is invalid.
        time_features
            ``(t,)`` or ``(t, k)`` features of the window's dates, if the model takes them.
        """
        args = [self.samples(x)]
        if self.valid_arg:
            t, _, h, w = x.shape
            if invalid is None:
                valid = np.ones((t, len(self.bands), h, w), dtype=bool)
            else:
                valid = ~invalid
            if self.flag:  # the flag channel itself is always valid
                valid = np.concatenate([valid, np.ones((t, 1, h, w), dtype=bool)], axis=1)
            args.append(self.samples(valid))
        if self.time_arg:
            assert time_features is not None
            args.append(time_features if self.kind == "band" else time_features[None])
        return args


def time_features(
    times: pd.DatetimeIndex, encoding: str | Callable[[pd.DatetimeIndex], np.ndarray] | None
) -> np.ndarray | None:
    """Per-date features passed to the model.

    Parameters
    ----------
    times
        The cube's dates.
    encoding
        ``"days"`` (days since 1970-01-01, fractional), ``"doy"`` (day of year, 1..366), a
        callable returning an array whose first axis has one entry per date, or None.

    Returns
    -------
    numpy.ndarray or None
        float32, shape ``(T,)`` or ``(T, k)``.
    """
    if encoding is None:
        return None
    if encoding == "days":
        values = (times - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
        return np.asarray(values, dtype="float32")
    if encoding == "doy":
        return np.asarray(times.dayofyear, dtype="float32")
    if callable(encoding):
        values = np.asarray(encoding(times), dtype="float32")
        if values.ndim not in (1, 2) or values.shape[0] != len(times):
            raise OptionError(
                f"time_input callable returned shape {values.shape}; expected ({len(times)},) or ({len(times)}, k): "
                "one entry per date"
            )
        return values
    raise OptionError(f"time_input must be None, 'days', 'doy' or a callable, got {encoding!r}")


def resolve_output(
    layout: Layout, shape: Sequence[int], output: str, n_names: int | None
) -> tuple[OutputKind, int]:
    """Decide how a model output of ``shape`` (from a probe of one sample) maps onto the cube.

    Returns
    -------
    kind, channels
        ``"per_date"`` or ``"map"`` and the output channels per date (K).
    """
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    t = layout.n_time
    if layout.kind == "band":
        if output == "map":
            raise OutputShapeError(
                "output='map' needs a temporal layout ('time_band' or 'sequence'): with layout='band' "
                "every date is a separate sample and gets its own output"
            )
        if nd == 4:
            return "per_date", shape[1]
        if nd == 3:
            return "per_date", 1
    elif layout.kind == "time_band":
        k = shape[1] if nd == 4 else 1 if nd == 3 else None
        if k is not None:
            per_date_fits = k % t == 0
            if output == "per_date" or (output == "auto" and n_names is not None and n_names * t == k != n_names):
                if not per_date_fits:
                    raise OutputShapeError(
                        f"output='per_date' with layout 'time_band' needs a multiple of {t} (dates) output channels, "
                        f"the model gives {k}: use output='map' or a model with {t} x K channels (time-major)"
                    )
                return "per_date", k // t
            return "map", k
    else:
        if nd == 5:
            if shape[1] != t:
                raise OutputShapeError(
                    f"the model returned shape (N, {shape[1]}, K, H, W) for a sequence of {t} dates: a 5-D output "
                    f"must keep the time axis ({t}); return (N, K, H, W) for a single map"
                )
            if output == "map":
                raise OutputShapeError("output='map' but the model returned a per-date (N, T, K, H, W) output")
            return "per_date", shape[2]
        if nd == 4:
            if output == "per_date" and shape[1] == t:
                return "per_date", 1
            return "map", shape[1]
        if nd == 3:
            return "map", 1
    raise OutputShapeError(
        f"the model returned an output of shape {shape} for {layout.describe()}; the engine maps back "
        "(N, K, H, W) or (N, H, W)" + (" or (N, T, K, H, W)" if layout.kind == "sequence" else "")
    )


def canonical(y: torch.Tensor, layout: Layout, kind: OutputKind, k: int) -> torch.Tensor:
    """Bring a model output to ``(N, t_out, K, H, W)``."""
    n, h, w = y.shape[0], y.shape[-2], y.shape[-1]
    if kind == "per_date" and layout.temporal:
        return y.reshape(n, layout.n_time, k, h, w)
    return y.reshape(n, 1, k, h, w)


def postprocess(y: torch.Tensor, how: str | Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    """Apply the output head on the channel axis (2) of a canonical output."""
    if how is None:
        return y
    if how == "argmax":
        return y.argmax(dim=2, keepdim=True)
    if how == "softmax":
        return torch.softmax(y.float(), dim=2)
    if how == "sigmoid":
        return torch.sigmoid(y.float())
    if callable(how):
        return how(y)
    raise OptionError(f"postprocess must be None, 'argmax', 'softmax', 'sigmoid' or a callable, got {how!r}")
