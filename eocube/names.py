"""The names eocube's options take, defined once: layouts, outputs, tasks, mask kinds, methods, file names.

Each set of names is a ``Literal`` type (for type hints) and the tuple of its values (for checks,
command-line choices and messages); the tuple is read from the type, so the two cannot drift
apart. Packages import them from here (and may re-export them, e.g. :data:`eocube.fill.METHOD_NAMES`)
instead of writing the strings again.

Place among the package floors (README, Architecture): floor 0; it imports nothing of eocube (and
nothing heavy), so the command line builds its choices without importing torch, dask or xarray.
"""

from __future__ import annotations

from typing import Literal, get_args

# ---- the model engine (eocube.models): how a model takes and gives data ----
LayoutName = Literal["band", "time_band", "sequence"]
"""How a source is fed: one date per sample ``(N, F, H, W)``; dates folded into channels
``(N, T*F, H, W)``; a time axis ``(N, T, F, H, W)``."""
LAYOUTS: tuple[LayoutName, ...] = get_args(LayoutName)

ValidInput = Literal["channel", "argument"]
"""How a model learns where its input was nodata: a channel after each date's bands, or an argument."""
VALID_INPUTS: tuple[ValidInput, ...] = get_args(ValidInput)

OutputKind = Literal["auto", "per_date", "map"]
"""What the model returns: one output per date, one map, or found from the layout and the output's rank."""
OUTPUT_KINDS: tuple[OutputKind, ...] = get_args(OutputKind)

PostprocessName = Literal["argmax", "softmax", "sigmoid"]
"""What is done with the model's output channels (a callable is accepted by the Python API too)."""
POSTPROCESS_NAMES: tuple[PostprocessName, ...] = get_args(PostprocessName)

MaskOutput = Literal["any", "all"]
"""Where the output is set to nodata: any / all input values reaching it were nodata."""
MASK_OUTPUTS: tuple[MaskOutput, ...] = get_args(MaskOutput)

Pairing = Literal["same", "nearest", "previous"]
"""How the dates of several per-date sources meet the reference's."""
PAIRINGS: tuple[Pairing, ...] = get_args(Pairing)

Autocast = Literal["bf16", "fp16"]
"""Mixed precision of a model run."""
AUTOCASTS: tuple[Autocast, ...] = get_args(Autocast)

# ---- training (eocube.learn) ----
TaskName = Literal["gapfill", "segmentation", "superres"]
"""The training tasks of ``eocube train`` / :func:`eocube.learn.train`."""
TASKS: tuple[TaskName, ...] = get_args(TaskName)

SuperResPrior = Literal["bicubic", "guided"]
"""What :class:`eocube.learn.networks.SuperResNet` adds its learnt residual to (``network.prior``)."""
SUPERRES_PRIORS: tuple[SuperResPrior, ...] = get_args(SuperResPrior)

# ---- clear-sky masks (eocube.masks) ----
MaskKind = Literal["boolean", "scl", "qa_pixel", "probability"]
"""The kinds of mask band :func:`eocube.masks.check_mask_band` knows (the CLI's ``--mask`` choices)."""
MASK_KINDS: tuple[MaskKind, ...] = get_args(MaskKind)

# ---- temporal gap filling (eocube.fill) ----
FillMethod = Literal["linear", "nearest", "previous", "next", "whittaker", "harmonic", "savgol"]
"""The methods of :func:`eocube.fill.fill_gaps` (the keys of ``eocube.fill.temporal.METHODS``)."""
FILL_METHODS: tuple[FillMethod, ...] = get_args(FillMethod)
EVALUATED_METHODS: tuple[FillMethod, ...] = ("linear", "nearest", "previous", "whittaker", "harmonic", "savgol")
"""The methods ``eocube evaluate`` / :func:`eocube.evaluate.run.evaluate_methods` compare by default."""

# ---- model files ----
MODEL_FILE = "model.pt2"
"""The exported model in a training output folder."""
CARD_FILE = "model.json"
"""The model card written beside :data:`MODEL_FILE` (the primary card name: ``{stem}.json``)."""
CARD_NAME_PATTERNS: tuple[str, ...] = ("{name}.json", "{stem}.card.json", "{stem}.json")
"""The card file names looked for beside a model file, in order of precedence (``str.format`` with
the model file's ``name`` and ``stem``): ``model.pt2.json``, ``model.card.json``, ``model.json``."""
