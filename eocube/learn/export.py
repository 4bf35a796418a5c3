"""Export a trained network for inference through ``apply_model``: ``model.pt2`` + ``model.json``.

The program takes the sources as ``apply_model`` passes them (``band`` layout, or ``time_band``
when dates were stacked as channels), **after** the card's value scaling: the card holds the
training statistics of every band as ``value_scaling`` z-score, the nodata fill (0 after
scaling, as in training), the reference source, the halo (the network's receptive field) and
the size multiple (the coarsest resolution ratio). So ``eocube apply --model run/model.pt2`` (or
``eocube.apply_model(cube, "run/model.pt2")``) needs no other option.

* Segmentation: the program returns one score per label **value** (0..max value; values that
  are not classes get a score of -10000), so the card's ``argmax`` gives the label values
  themselves; the classes (values, names, colours) travel to the output's attributes.
* Super-resolution: the program returns the predicted bands in the target's units (the
  training normalisation is undone inside the program).
* Gap filling: the program (:class:`GapFillModule`) takes the ``sequence`` layout with the
  validity and the acquisition days as arguments (``model(x, valid, days)``, raw values with the
  gaps as nodata), normalises inside, and returns every date filled, clear observations
  unchanged. Fill a cube with ``apply_model(cube.where(clear), "run/model.pt2")``
  (:func:`eocube.learn.fill_cube`). A network trained with an interval head
  (``network.quantiles``) is also exported as ``model_interval.pt2`` (:class:`GapFillIntervalModule`):
  bands ``B``, ``B_lower``, ``B_upper``, the interval calibrated on the validation blocks
  (``fill_cube(..., uncertainty=True)``).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models import ClassInfo, ModelSpec, OutputSpec, Scaling, SourceSpec
from ..names import MODEL_FILE
from .checkpoint import load_checkpoint
from .errors import CheckpointError
from .interval import interval_difficulty
from .networks import build_network
from .normalisation import Normaliser

INTERVAL_FILE = "model_interval.pt2"
"""The gap-filling program with its calibrated interval, beside :data:`MODEL_FILE` (card ``model_interval.json``)."""


def interval_file(model: Path) -> Path:
    """The interval program beside a gap-filling ``.pt2`` (``model.pt2`` -> :data:`INTERVAL_FILE`)."""
    return model.with_name(f"{model.stem}_interval.pt2")


class Dihedral(nn.Module):
    """Test-time augmentation: the mean of a network's outputs over the 8 flips and quarter turns of its inputs.

    Each input (one per source, ``(N, C, H, W)``, nested grids with the same extent) is turned the same way, the
    output is turned back, and the 8 outputs are averaged: a fully convolutional network becomes exactly invariant
    to those turns at 8 times the compute. The wrapped network's ``halo`` is kept (the receptive field is the same).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.halo = getattr(net, "halo", 0)
        self.config = getattr(net, "config", None)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """The mean of the 8 turned outputs, in the inputs' orientation."""
        total = None
        for k in range(4):
            for flip in (False, True):
                turned = [torch.rot90(x, k, (-2, -1)) for x in xs]
                if flip:
                    turned = [torch.flip(x, (-1,)) for x in turned]
                y = self.net(*turned)
                if flip:
                    y = torch.flip(y, (-1,))
                y = torch.rot90(y, -k, (-2, -1))
                total = y if total is None else total + y
        return total / 8


class ClassScores(nn.Module):
    """Logits over class indices -> one score per label value (missing values get -10000)."""

    def __init__(self, net: nn.Module, class_values: list[int]) -> None:
        super().__init__()
        self.net = net
        n = max(class_values) + 1
        m = torch.zeros(n, len(class_values))
        b = torch.full((n,), -10000.0)
        for i, v in enumerate(class_values):
            m[v, i], b[v] = 1.0, 0.0
        self.register_buffer("mapping", m)
        self.register_buffer("offset", b)
        self.halo = getattr(net, "halo", 0)

    def scores(self, *xs: torch.Tensor) -> torch.Tensor:
        """Scores ``(N, max value + 1, H, W)``."""
        logits = self.net(*xs)
        return torch.einsum("nkhw,vk->nvhw", logits, self.mapping) + self.offset[None, :, None, None]


class Denormalise(nn.Module):
    """Network output in normalised units -> the target's units."""

    def __init__(self, net: nn.Module, normaliser: Normaliser) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(normaliser.mean, dtype=torch.float32)[:, None, None])
        self.register_buffer("std", torch.tensor(normaliser.std, dtype=torch.float32)[:, None, None])
        self.halo = getattr(net, "halo", 0)

    def scores(self, *xs: torch.Tensor) -> torch.Tensor:
        """Predicted bands ``(N, C, H, W)``."""
        return self.net(*xs) * self.std + self.mean


class GapFillModule(nn.Module):
    """A trained gap-filling network in raw units: ``module(x, valid, days)`` for ``apply_model``.

    ``x`` ``(N, T, C, H, W)`` raw values (gaps already nodata, given as the card's fill value),
    ``valid`` like ``x``, ``days`` ``(N, T)``, as the ``sequence`` layout with
    ``valid_input="argument"`` and ``time_input="days"`` passes them. Returns the filled values,
    the valid (clear) inputs unchanged.

    Parameters
    ----------
    net, normaliser
        A trained network and its band statistics.
    keep_clear
        Keep the valid input values (True) or return the reconstruction everywhere.
    """

    def __init__(self, net: nn.Module, normaliser: Normaliser, keep_clear: bool = True) -> None:
        super().__init__()
        self.net, self.keep_clear = net, keep_clear
        self.register_buffer("mean", torch.tensor(normaliser.mean, dtype=torch.float32).view(1, 1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(normaliser.std, dtype=torch.float32).view(1, 1, -1, 1, 1))
        self.halo = net.halo

    def forward(self, x: torch.Tensor, valid: torch.Tensor, days: torch.Tensor) -> torch.Tensor:
        valid = valid.bool() & torch.isfinite(x)
        norm = torch.where(valid, (x - self.mean) / self.std, torch.zeros_like(x))
        out = self.net(norm, valid, days.double()) * self.std + self.mean
        return torch.where(valid, x, out) if self.keep_clear else out


class GapFillIntervalModule(GapFillModule):
    """:class:`GapFillModule` with the calibrated interval: ``(N, T, 3 C, H, W)`` = fill, lower, upper.

    The bounds follow the checkpoint's calibration (``meta["interval"]``,
    :mod:`eocube.learn.interval`): ``normalised``, ``fill +- scale * difficulty`` (half the head's
    raw width plus the fill's distance from linear interpolation); ``cqr`` (older checkpoints), the
    head's quantiles moved out (or in) by the conformal offsets, kept on either side of the fill.
    Where the value was observed both are that value (width 0; :func:`eocube.learn.fill_cube`
    makes them NaN there).

    Parameters
    ----------
    net, normaliser
        A trained network with an interval head and its band statistics.
    calibration
        The checkpoint's ``meta["interval"]`` (``calibration`` ``normalised`` with ``scale``, or
        ``cqr`` / no ``calibration`` key with ``offset``), or ``(C,)`` CQR offsets in normalised
        units.
    """

    def __init__(self, net: nn.Module, normaliser: Normaliser, calibration: dict[str, Any] | list[float]) -> None:
        super().__init__(net, normaliser)
        cal = calibration if isinstance(calibration, dict) else {"calibration": "cqr", "offset": list(calibration)}
        self.normalised = cal.get("calibration", "cqr") == "normalised"
        factors = cal["scale"] if self.normalised else cal["offset"]
        self.register_buffer("factor", torch.tensor(factors, dtype=torch.float32).view(1, 1, -1, 1, 1))

    def forward(self, x: torch.Tensor, valid: torch.Tensor, days: torch.Tensor) -> torch.Tensor:
        valid = valid.bool() & torch.isfinite(x)
        norm = torch.where(valid, (x - self.mean) / self.std, torch.zeros_like(x))
        days = days.double()
        fill, lower, upper = self.net(norm, valid, days, with_interval=True)
        if self.normalised:
            half = self.factor * interval_difficulty(norm, valid, days, fill, lower, upper)
            lower, upper = fill - half, fill + half
        else:
            lower = torch.minimum(lower - self.factor, fill)
            upper = torch.maximum(upper + self.factor, fill)
        lower, upper = lower * self.std + self.mean, upper * self.std + self.mean
        return torch.cat([torch.where(valid, x, fill * self.std + self.mean), torch.where(valid, x, lower),
                          torch.where(valid, x, upper)], dim=2)


class _Args(nn.Module):
    """Fixed positional arguments for torch.export (it cannot export ``*args``)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.halo = inner.halo


class _One(_Args):
    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return self.inner.scores(x0)


class _Two(_Args):
    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        return self.inner.scores(x0, x1)


class _Three(_Args):
    def forward(self, x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.inner.scores(x0, x1, x2)


class _Four(_Args):
    def forward(self, x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor) -> torch.Tensor:
        return self.inner.scores(x0, x1, x2, x3)


_ARITY = {1: _One, 2: _Two, 3: _Three, 4: _Four}


def model_spec(ckpt: dict[str, Any], *, interval: bool = False) -> ModelSpec:
    """The :class:`~eocube.models.ModelSpec` of a checkpoint (every task).

    ``interval``: of the gap-filling interval program (:data:`INTERVAL_FILE`): bands ``B``,
    ``B_lower``, ``B_upper``.
    """
    meta = ckpt["meta"]
    if ckpt["task"] == "gapfill":
        bands = tuple(_gap_bands(ckpt))
        src = SourceSpec(name="input", bands=bands, layout="sequence", valid_input="argument", time_input="days",
                         fill_value=0.0)
        out = bands + tuple(f"{b}_{end}" for end in ("lower", "upper") for b in bands) if interval else bands
        return ModelSpec(sources=(src,), output=OutputSpec(bands=out, mask=None, scale=Fraction(1)),
                         halo=int(_gap_network(ckpt).halo), name="eocube-gapfill" + ("-interval" if interval else ""))
    sources = []
    for s in meta["sources"]:
        norm = Normaliser.from_dict(meta["normalisers"][s["name"]])
        n = len(s["bands"])
        scaling = tuple(Scaling("z-score", mean=m, stddev=sd) for m, sd in zip(norm.mean[:n], norm.std[:n]))
        sources.append(SourceSpec(name=s["name"], bands=tuple(s["bands"]), layout=s["layout"], fill_value=0.0,
                                  scaling=scaling))
    if ckpt["task"] == "segmentation":
        classes = tuple(ClassInfo(int(c["value"]), str(c["name"]), c.get("color")) for c in meta["classes"])
        output = OutputSpec(bands=("class",), postprocess="argmax", classes=classes, scale=Fraction(1))
    else:
        output = OutputSpec(bands=tuple(meta["target_bands"]), scale=Fraction(1))
    return ModelSpec(sources=tuple(sources), output=output, reference=meta["reference"], halo=int(meta["halo"]),
                     size_multiple=int(meta["multiple"]), name=f"eocube-{ckpt['task']}")


def export_run(
    run: str | os.PathLike[str],
    *,
    checkpoint: str = "best.pt",
    path: str | os.PathLike[str] | None = None,
    check: bool = True,
    tta: bool = False,
) -> Path:
    """Export the network of a training run as ``model.pt2`` with its model card ``model.json``.

    Parameters
    ----------
    run
        Training output folder (or a checkpoint file).
    checkpoint
        Checkpoint of the folder to export (``best.pt``: the best validation score).
    path
        The ``.pt2`` file; default ``RUN/model.pt2``.
    check
        Compare the saved program with the network on example inputs.
    tta
        Segmentation and super-resolution: export the mean over the 8 flips and quarter turns of the inputs
        (:class:`Dihedral`, 8 times the compute at inference).

    Returns
    -------
    Path
        The ``.pt2`` file (its card beside it).

    Raises
    ------
    CheckpointError
        An unreadable checkpoint.
    """
    run = Path(run)
    ckpt_path = run / checkpoint if run.is_dir() else run
    ckpt = load_checkpoint(ckpt_path)
    out = Path(path) if path is not None else (run if run.is_dir() else run.parent) / MODEL_FILE
    if ckpt["task"] == "gapfill":
        return _export_gapfill(ckpt, out, check)
    from ..models.card import export_model

    net = build_network(ckpt["network"])
    net.load_state_dict(ckpt["model"])
    net.eval()
    arch = type(net).__name__
    params = sum(p.numel() for p in net.parameters())
    if tta:
        net = Dihedral(net).eval()
    meta = ckpt["meta"]
    if ckpt["task"] == "segmentation":
        module: nn.Module = ClassScores(net, [int(c["value"]) for c in meta["classes"]])
    else:
        module = Denormalise(net, Normaliser.from_dict(meta["target_normaliser"]))
    n_src = len(meta["sources"])
    if n_src not in _ARITY:
        raise CheckpointError(f"cannot export a network of {n_src} sources (1 to 4 are supported)")
    module = _ARITY[n_src](module).eval()
    size = int(meta["multiple"]) * max(2, -(-32 // int(meta["multiple"])))
    g = torch.Generator().manual_seed(0)
    example = tuple(torch.randn(2, s["channels"], size // s["ratio"], size // s["ratio"], generator=g)
                    for s in meta["sources"])
    tasks = ["semantic-segmentation"] if ckpt["task"] == "segmentation" else ["super-resolution"]
    return export_model(module, example, out, spec=model_spec(ckpt), check=check, atol=1e-4,
                        architecture=arch, tasks=tasks,
                        description=f"eocube {ckpt['task']} network trained with eocube train (epoch {ckpt['epoch']})"
                        + (", test-time augmentation: mean over the 8 flips and quarter turns" if tta else ""),
                        properties={"mlm:total_parameters": int(params), "mlm:pretrained": False})


def _gap_network(ckpt: dict[str, Any]) -> nn.Module:
    from .checkpoint import model_from_checkpoint

    return model_from_checkpoint(ckpt)[0]


def _gap_bands(ckpt: dict[str, Any]) -> list[str]:
    return list(ckpt["meta"]["normaliser"]["bands"])


def _export_gapfill(ckpt: dict[str, Any], out: Path, check: bool) -> Path:
    """``model.pt2`` + card of a gap-filling checkpoint (dynamic dates and size)."""
    from ..models.card import export_model
    from .checkpoint import model_from_checkpoint

    net, normaliser = model_from_checkpoint(ckpt)
    module = GapFillModule(net, normaliser).eval()
    n = len(normaliser.bands)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, n, 32, 32, generator=g) * torch.tensor(normaliser.std).view(1, 1, -1, 1, 1) \
        + torch.tensor(normaliser.mean).view(1, 1, -1, 1, 1)
    valid = torch.rand(2, 6, n, 32, 32, generator=g) > 0.3
    days = (torch.arange(6, dtype=torch.float32) * 10 + 19000)[None].repeat(2, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    params = sum(p.numel() for p in net.parameters())
    props = {"mlm:total_parameters": int(params), "mlm:pretrained": False}
    what = f"eocube gap-filling network trained with eocube train (epoch {ckpt['epoch']})"
    path = export_model(module, (x, valid, days), out, spec=model_spec(ckpt), dynamic_time=True, check=check,
                        atol=1e-4, architecture=type(net).__name__, tasks=["regression"], description=what,
                        properties=props)
    cal = ckpt["meta"].get("interval")
    if cal is not None and getattr(net, "quantiles", None) is not None:
        lower_upper = GapFillIntervalModule(net, normaliser, cal).eval()
        export_model(lower_upper, (x, valid, days), interval_file(out), spec=model_spec(ckpt, interval=True),
                     dynamic_time=True, check=check, atol=1e-4, architecture=type(net).__name__,
                     tasks=["regression"], description=what + f", with its calibrated {cal['coverage']:.0%} interval",
                     properties={**props, "eocube:interval": cal})
    return path


__all__ = ["INTERVAL_FILE", "MODEL_FILE", "ClassScores", "Denormalise", "GapFillIntervalModule", "GapFillModule",
           "export_run", "interval_file", "model_spec"]
