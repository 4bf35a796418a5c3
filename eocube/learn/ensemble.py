"""A small ensemble of trained networks exported as one program: the mean of their softmax (or of their outputs).

Networks trained on the same sources with different ``train.seed`` (``train.ensemble: N`` trains them one
after the other into ``OUT/member-K``) differ by several points of macro-F1 on a small scene; their mean in
probability space is steadier and usually better than any one of them. :func:`export_ensemble` writes them
as one ``model.pt2`` + card, so ``eocube apply`` needs no other option; it composes with test-time
augmentation (each member is wrapped in :class:`~eocube.learn.export.Dihedral`).

Each member keeps its own band statistics: the card holds the first member's z-score, and the program
rescales the inputs to every other member's statistics (an affine map per band) before running it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..names import MODEL_FILE
from .checkpoint import load_checkpoint
from .errors import CheckpointError
from .export import _ARITY, ClassScores, Denormalise, Dihedral, model_spec
from .networks import build_network
from .normalisation import Normaliser

MEMBER_FOLDER = "member-{}"
"""Folder of member ``K`` of a run trained with ``train.ensemble`` (``OUT/member-0``, ...)."""


class Ensemble(nn.Module):
    """The mean of several networks that take the same inputs.

    Parameters
    ----------
    members
        Networks (``forward(*xs)`` -> ``(N, K, H, W)``), e.g. :class:`~eocube.learn.export.Dihedral` of each.
    probabilities
        True (classification): the members' outputs are logits; the ensemble returns the logarithm of the
        mean of their softmax over dimension 1 (so its softmax is that mean, its argmax the most probable
        class). False (regression): the mean of the outputs.
    rescale
        Per member, per input: ``(scale, shift)`` of ``(C,)`` applied to the input (``x * scale + shift``)
        before that member sees it (inputs normalised with another member's statistics); None: unchanged.
    """

    def __init__(self, members: list[nn.Module], *, probabilities: bool = True,
                 rescale: list[list[tuple[torch.Tensor, torch.Tensor]]] | None = None) -> None:
        super().__init__()
        if not members:
            raise CheckpointError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.probabilities = probabilities
        self.rescaled = rescale is not None
        for i, per_input in enumerate(rescale or []):
            for j, (scale, shift) in enumerate(per_input):
                self.register_buffer(f"scale_{i}_{j}", torch.as_tensor(scale, dtype=torch.float32).view(1, -1, 1, 1))
                self.register_buffer(f"shift_{i}_{j}", torch.as_tensor(shift, dtype=torch.float32).view(1, -1, 1, 1))
        self.halo = max(int(getattr(m, "halo", 0)) for m in members)
        self.config = getattr(members[0], "config", None)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """Log of the mean softmax (``probabilities``) or the mean output of the members."""
        total = None
        for i, member in enumerate(self.members):
            args = xs
            if self.rescaled:
                args = tuple(x * getattr(self, f"scale_{i}_{j}") + getattr(self, f"shift_{i}_{j}")
                             for j, x in enumerate(xs))
            y = member(*args)
            if self.probabilities:
                y = torch.softmax(y, dim=1)
            total = y if total is None else total + y
        mean = total / len(self.members)
        return torch.log(mean.clamp_min(1e-12)) if self.probabilities else mean

    def scores(self, *xs: torch.Tensor) -> torch.Tensor:
        """The same as :meth:`forward` (what the export wrappers call)."""
        return self.forward(*xs)


class _Denormalised(Denormalise):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.scores(*xs)


def _same(ckpts: list[dict[str, Any]], what: str, get) -> None:
    first = get(ckpts[0])
    for i, c in enumerate(ckpts[1:], start=1):
        if get(c) != first:
            raise CheckpointError(f"ensemble member {i} differs from member 0 in its {what} ({get(c)!r} vs {first!r}): "
                                  "members must be trained on the same sources, bands and classes")


def _rescale(first: Normaliser, other: Normaliser) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` taking values z-scored with ``first`` to values z-scored with ``other``."""
    m0, s0 = torch.tensor(first.mean, dtype=torch.float64), torch.tensor(first.std, dtype=torch.float64)
    m1, s1 = torch.tensor(other.mean, dtype=torch.float64), torch.tensor(other.std, dtype=torch.float64)
    return (s0 / s1).float(), ((m0 - m1) / s1).float()


def export_ensemble(
    runs: list[str | os.PathLike[str]],
    path: str | os.PathLike[str],
    *,
    checkpoint: str = "best.pt",
    tta: bool = False,
    check: bool = True,
) -> Path:
    """Export several trained networks of the same task and inputs as one ``model.pt2`` + card (their mean).

    Parameters
    ----------
    runs
        Training output folders (or checkpoint files) of segmentation or super-resolution runs on the same
        sources, bands and classes (e.g. the same config with different ``train.seed``).
    path
        The ``.pt2`` file to write (its card beside it).
    checkpoint
        Checkpoint of each folder: ``best.pt`` or ``last.pt``.
    tta
        Wrap each member in :class:`~eocube.learn.export.Dihedral` (8 times the compute per member).
    check
        Compare the saved program with the modules on example inputs.

    Returns
    -------
    Path
        The ``.pt2`` file.

    Raises
    ------
    CheckpointError
        No run, an unreadable checkpoint, a gap-filling run, or members that differ in task, sources, bands,
        classes or target bands.
    """
    if not runs:
        raise CheckpointError("export_ensemble needs at least one training run")
    ckpts = [load_checkpoint(Path(r) / checkpoint if Path(r).is_dir() else Path(r)) for r in runs]
    _same(ckpts, "task", lambda c: c["task"])
    task = ckpts[0]["task"]
    if task not in ("segmentation", "superres"):
        raise CheckpointError(f"cannot export an ensemble of {task!r} networks: segmentation or superres only")
    _same(ckpts, "sources", lambda c: [(s["name"], list(s["bands"]), s["layout"], s["ratio"]) for s in c["meta"]["sources"]])
    _same(ckpts, "reference source and size multiple", lambda c: (c["meta"]["reference"], int(c["meta"]["multiple"])))
    if task == "segmentation":
        _same(ckpts, "classes", lambda c: [(int(k["value"]), k["name"]) for k in c["meta"]["classes"]])
    else:
        _same(ckpts, "target bands", lambda c: list(c["meta"]["target_bands"]))
    names = [s["name"] for s in ckpts[0]["meta"]["sources"]]
    first = {n: Normaliser.from_dict(ckpts[0]["meta"]["normalisers"][n]) for n in names}
    members, rescale, params = [], [], 0
    for c in ckpts:
        net = build_network(c["network"])
        net.load_state_dict(c["model"])
        net.eval()
        params += sum(p.numel() for p in net.parameters())
        if tta:
            net = Dihedral(net).eval()
        if task == "superres":
            net = _Denormalised(net, Normaliser.from_dict(c["meta"]["target_normaliser"])).eval()
        members.append(net)
        rescale.append([_rescale(first[n], Normaliser.from_dict(c["meta"]["normalisers"][n])) for n in names])
    ens = Ensemble(members, probabilities=task == "segmentation", rescale=rescale).eval()
    meta = ckpts[0]["meta"]
    module: nn.Module = ClassScores(ens, [int(k["value"]) for k in meta["classes"]]) if task == "segmentation" else ens
    if len(names) not in _ARITY:
        raise CheckpointError(f"cannot export a network of {len(names)} sources (1 to 4 are supported)")
    module = _ARITY[len(names)](module).eval()
    size = int(meta["multiple"]) * max(2, -(-32 // int(meta["multiple"])))
    g = torch.Generator().manual_seed(0)
    example = tuple(torch.randn(2, s["channels"], size // s["ratio"], size // s["ratio"], generator=g)
                    for s in meta["sources"])
    spec = model_spec(ckpts[0])
    spec = dataclasses.replace(spec, halo=max(int(c["meta"]["halo"]) for c in ckpts))
    from ..models.card import export_model

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    epochs = ", ".join(str(c["epoch"]) for c in ckpts)
    what = (f"eocube {task} ensemble of {len(ckpts)} networks trained with eocube train (epochs {epochs}), "
            + ("the mean of their softmax" if task == "segmentation" else "the mean of their outputs")
            + (", each with test-time augmentation: mean over the 8 flips and quarter turns" if tta else ""))
    return export_model(module, example, Path(path), spec=spec, check=check, atol=1e-4,
                        architecture=f"Ensemble[{len(ckpts)} x {type(build_network(ckpts[0]['network'])).__name__}]",
                        tasks=["semantic-segmentation"] if task == "segmentation" else ["super-resolution"],
                        description=what, properties={"mlm:total_parameters": int(params), "mlm:pretrained": False})


def member_runs(out: str | os.PathLike[str], n: int) -> list[Path]:
    """The member folders ``OUT/member-0`` .. ``OUT/member-{n-1}`` of a run trained with ``train.ensemble: n``."""
    return [Path(out) / MEMBER_FOLDER.format(k) for k in range(n)]


__all__ = ["MEMBER_FOLDER", "MODEL_FILE", "Ensemble", "export_ensemble", "member_runs"]
