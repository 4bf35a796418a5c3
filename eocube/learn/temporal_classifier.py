"""Per-pixel time-series classification: a small temporal network over each pixel's (gap-filled) series.

The sits workflow on a cube: fill the gaps along time onto a regular grid, then classify each pixel
from its whole series. The network is a TempCNN (Pelletier et al. 2019, *Temporal Convolutional
Neural Network for the Classification of Satellite Image Time Series*): three 1-D convolutions over
time (batch norm, ReLU, dropout), then a dense layer over the flattened series. It is small (a few
tens of thousands of weights) and trains in seconds on CPU for the thousands of pixels of a sample.

Helpers around it:

* :func:`pixel_series`: a cube's series as a ``(pixels, time, bands)`` table, and the pixels' labels.
* :func:`split_pixels`: the pixels of one part of a :class:`~eocube.learn.split.BlockSplit`; for
  ``train`` (by default) only those at least ``buffer`` pixels away from every other part.
* :func:`fit_temporal_classifier`: seeded training with class-balanced cross-entropy, the
  normalisation computed from the training pixels only and kept in the model, the best epoch on
  the validation pixels (macro-F1) kept.
* :func:`predict_series`: class indices of ``(pixels, time, bands)`` series.
* :func:`temporal_features`: per-pixel harmonic and summary features of the series, the input of
  the classic forest baseline (as the harmonic regression of CCDC or the phenology metrics of sits).

Scores come from :mod:`eocube.learn.metrics` (confusion matrix, OA, macro-F1, per-class F1, mIoU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .errors import LearnError
from .metrics import classification_scores, confusion_matrix
from .split import BlockSplit


class TempCNN(nn.Module):
    """Three temporal convolutions and a dense layer: ``(N, T, C)`` series -> ``(N, K)`` class logits.

    Parameters
    ----------
    n_steps
        Length of the series (dates of the regular time grid).
    n_bands
        Bands per date.
    n_classes
        Classes.
    width
        Filters of each convolution.
    kernel
        Temporal kernel size (odd).
    hidden
        Units of the dense layer.
    dropout
        Dropout after every layer.
    mean, std
        Per-band normalisation ``(C,)``, from the training pixels; stored as buffers with the weights.
    """

    def __init__(self, n_steps: int, n_bands: int, n_classes: int, *, width: int = 32, kernel: int = 5,
                 hidden: int = 64, dropout: float = 0.2, mean: np.ndarray | None = None,
                 std: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = {"n_steps": n_steps, "n_bands": n_bands, "n_classes": n_classes, "width": width,
                       "kernel": kernel, "hidden": hidden, "dropout": dropout}
        layers: list[nn.Module] = []
        c = n_bands
        for _ in range(3):
            layers += [nn.Conv1d(c, width, kernel, padding=kernel // 2), nn.BatchNorm1d(width), nn.ReLU(),
                       nn.Dropout(dropout)]
            c = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * n_steps, hidden), nn.BatchNorm1d(hidden),
                                  nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        self.register_buffer("mean", torch.as_tensor(np.zeros(n_bands) if mean is None else mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.ones(n_bands) if std is None else std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` of raw (un-normalised) series ``(N, T, C)``."""
        x = (x - self.mean) / self.std
        return self.head(self.features(x.transpose(1, 2)))


@dataclass
class FitResult:
    """A trained classifier and how training went."""

    model: TempCNN
    history: list[dict[str, float]] = field(default_factory=list)
    """Per epoch: ``epoch``, ``loss`` (training), ``val_macro_f1`` (NaN without validation pixels)."""
    best_epoch: int = 0
    """Epoch whose weights were kept (the best validation macro-F1; the last without validation)."""


def pixel_series(cube, labels=None, *, bands=None) -> tuple[np.ndarray, np.ndarray | None]:
    """A cube's per-pixel series as a table, and the labels of the same pixels.

    Parameters
    ----------
    cube
        Cube ``(time, band, y, x)`` (computed here), without gaps (fill it first).
    labels
        Label cube ``(1, 1, y, x)`` on the same grid, or a ``(y, x)`` array; None: no labels.
    bands
        Bands to take (default: all).

    Returns
    -------
    series : numpy.ndarray
        ``(y * x, time, band)`` float32, pixels in row-major order.
    labels : numpy.ndarray or None
        ``(y * x,)`` label values.
    """
    if bands is not None:
        cube = cube.sel(band=[bands] if isinstance(bands, str) else list(bands))
    data = np.asarray(cube.values, dtype="float32")  # (t, c, y, x)
    t, c, h, w = data.shape
    series = data.transpose(2, 3, 0, 1).reshape(h * w, t, c)
    if labels is None:
        return series, None
    lab = np.asarray(getattr(labels, "values", labels))
    lab = lab.reshape(lab.shape[-2:])
    if lab.shape != (h, w):
        raise LearnError(f"labels of shape {lab.shape} are not on the cube's {h} x {w} grid")
    return series, lab.reshape(-1)


def split_pixels(split: BlockSplit, part: str, *, buffered: bool | None = None, halo: int = 0) -> np.ndarray:
    """``(height, width)`` bool: the pixels of one part of a block split.

    Parameters
    ----------
    split
        The block split of the grid.
    part
        ``"train"``, ``"val"`` or ``"test"``.
    buffered
        True: only the pixels whose neighbourhood of ``halo + split.buffer`` pixels lies in ``part``
        alone (:meth:`BlockSplit.windows` with one-pixel windows), so that no such pixel is within
        the buffer of another part. False: every pixel of the part's blocks. Default: True for
        ``train``, False otherwise (the buffer is kept on the training side, test blocks are scored whole).
    halo
        Context a classifier reads around a pixel (0 for a per-pixel classifier).
    """
    if buffered is None:
        buffered = part == "train"
    if not buffered:
        return split.mask() == split.code(part)
    out = np.zeros(split.shape, dtype=bool)
    corners = split.windows(part, 1, halo=halo, stride=1)
    out[corners[:, 0], corners[:, 1]] = True
    return out


def _seed(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def fit_temporal_classifier(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    balanced: bool = True,
    seed: int = 0,
    threads: int | None = 1,
    **network: object,
) -> FitResult:
    """Train a :class:`TempCNN` on pixel series.

    Parameters
    ----------
    x
        ``(N, T, C)`` training series (no NaN).
    y
        ``(N,)`` class indices ``0 .. n_classes - 1``.
    n_classes
        Classes.
    val
        Validation ``(x, y)``: the epoch with the best macro-F1 on them is kept.
    epochs, batch_size, lr, weight_decay
        Adam with these settings, for this many epochs.
    balanced
        Weight the cross-entropy by inverse class frequency in ``y`` (as scikit-learn's
        ``class_weight="balanced"``), so rare classes count.
    seed
        Seed of the weights, the batches and dropout: same inputs and seed, same model (on CPU).
    threads
        Torch threads while training (restored after): one by default, the fastest for such small
        batches (two threads ran 6x slower on a busy 2-core machine); None: torch's setting.
    **network
        Options of :class:`TempCNN` (``width``, ``kernel``, ``hidden``, ``dropout``).

    Returns
    -------
    FitResult
    """
    x = np.asarray(x, dtype="float32")
    y = np.asarray(y, dtype="int64")
    if x.ndim != 3 or len(x) != len(y) or not len(y):
        raise LearnError(f"need series (N, T, C) and N labels, got {x.shape} and {y.shape}")
    if not np.isfinite(x).all():
        raise LearnError("the series hold NaN or inf: fill the gaps first")
    if y.min() < 0 or y.max() >= n_classes:
        raise LearnError(f"labels must be class indices 0 .. {n_classes - 1}, got {y.min()} .. {y.max()}")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _fit(x, y, n_classes, val, epochs, batch_size, lr, weight_decay, balanced, seed, network)
    finally:
        torch.set_num_threads(previous)


def _fit(x, y, n_classes, val, epochs, batch_size, lr, weight_decay, balanced, seed, network) -> FitResult:
    gen = _seed(seed)
    mean = x.mean(axis=(0, 1))
    std = x.std(axis=(0, 1)) + 1e-6
    model = TempCNN(x.shape[1], x.shape[2], n_classes, mean=mean, std=std, **network)
    counts = np.bincount(y, minlength=n_classes).astype("float64")
    weight = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0) if balanced else np.ones(n_classes)
    loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(weight, dtype=torch.float32))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    result = FitResult(model)
    best, best_state = -1.0, None
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(yt), generator=gen)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        score = float("nan")
        if val is not None and len(val[1]):
            pred = predict_series(model, val[0])
            score = classification_scores(confusion_matrix(val[1], pred, n_classes))["macro_f1"]
        result.history.append({"epoch": epoch, "loss": total / len(yt), "val_macro_f1": score})
        if val is None or not len(val[1]) or score > best:
            best, result.best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


@torch.no_grad()
def predict_series(model: TempCNN, x: np.ndarray, *, batch_size: int = 4096, proba: bool = False) -> np.ndarray:
    """Class indices ``(N,)`` (or probabilities ``(N, K)``) of ``(N, T, C)`` series."""
    was_training = model.training
    model.eval()
    xt = torch.as_tensor(np.asarray(x, dtype="float32"))
    out = torch.cat([model(xt[i:i + batch_size]) for i in range(0, len(xt), batch_size)]) if len(xt) else \
        torch.empty((0, model.config["n_classes"]))
    model.train(was_training)
    return out.softmax(1).numpy() if proba else out.argmax(1).numpy()


def temporal_features(series: np.ndarray, times, *, harmonics: int = 2,
                      quantiles: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)) -> tuple[np.ndarray, list[str]]:
    """Per-pixel harmonic and summary features of ``(N, T, C)`` series, for a classic classifier.

    Per band: the least-squares fit of ``c0 + c1 t + sum_k (a_k cos 2 pi k t + b_k sin 2 pi k t)``
    (``t`` in years; ``k = 1 .. harmonics``: annual, semi-annual, ...), the amplitude of each
    harmonic, the RMS residual of the fit, the series' standard deviation and its quantiles.

    Parameters
    ----------
    series
        ``(N, T, C)`` series without NaN (filled onto a time grid).
    times
        ``(T,)`` dates (``numpy.datetime64`` or anything :class:`numpy.datetime64` takes).
    harmonics
        Harmonics per year fitted.
    quantiles
        Quantiles of each series taken.

    Returns
    -------
    features : numpy.ndarray
        ``(N, F)`` float32.
    names : list of str
        The ``F`` feature names (``band<i>_<name>``).
    """
    x = np.asarray(series, dtype="float64")
    if x.ndim != 3 or not np.isfinite(x).all():
        raise LearnError(f"need (N, T, C) series without NaN (fill the gaps first), got shape {x.shape}")
    t = np.asarray(times, dtype="datetime64[s]")
    if t.shape != (x.shape[1],):
        raise LearnError(f"need one date per step of the series ({x.shape[1]}), got {t.shape}")
    years = (t - t[0]).astype("float64") / (365.25 * 86400)
    cols, basis = [np.ones_like(years), years - years.mean()], ["c0", "trend"]
    for k in range(1, harmonics + 1):
        cols += [np.cos(2 * np.pi * k * years), np.sin(2 * np.pi * k * years)]
        basis += [f"cos{k}", f"sin{k}"]
    design = np.stack(cols, 1)  # (T, P)
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise LearnError(f"{len(years)} dates cannot fit {design.shape[1]} harmonic terms: use fewer harmonics")
    feats, names = [], []
    for c in range(x.shape[2]):
        y = x[:, :, c].T  # (T, N)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)  # (P, N)
        resid = y - design @ coef
        amps = [np.hypot(coef[2 + 2 * k], coef[3 + 2 * k]) for k in range(harmonics)]
        feats += [*coef, *amps, np.sqrt((resid ** 2).mean(0)), y.std(0), *np.quantile(y, quantiles, axis=0)]
        names += [f"band{c}_{n}" for n in [*basis, *(f"amp{k}" for k in range(1, harmonics + 1)), "rms_resid",
                                           "std", *(f"q{round(q * 100):02d}" for q in quantiles)]]
    return np.stack(feats, 1).astype("float32"), names


__all__ = ["FitResult", "TempCNN", "fit_temporal_classifier", "pixel_series", "predict_series", "split_pixels",
           "temporal_features"]
