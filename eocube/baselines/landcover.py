"""Land-cover baselines: a random forest per pixel, and a forest or gradient boosting on spatial context.

Both train on a class-balanced sample of labelled pixels of the training area and predict where
asked, so they can be scored on exactly the pixels a network is scored on::

    pred = context_forest(bands, labels, train_mask, where=test_mask, classes=[1, 2, 3])
    pred[test_mask]   # class values

scikit-learn is needed (``pip install 'eocube[baselines]'``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._errors import BaselineError, MissingDependencyError
from .features import DEFAULT_WINDOWS, context_features

MODELS = ("forest", "boosting")
"""Classifiers of :func:`classify_pixels`: scikit-learn's random forest, histogram gradient boosting."""


def _sklearn_ensemble():
    try:
        from sklearn import ensemble
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise MissingDependencyError(
            "the land-cover baselines need scikit-learn: pip install 'eocube[baselines]' "
            "(or scikit-learn>=1.3)") from e
    return ensemble


def balanced_sample(labels: np.ndarray, train: np.ndarray, classes: Sequence[int], per_class: int,
                    seed: int = 0) -> np.ndarray:
    """Flat indices of up to ``per_class`` random training pixels of each class (all of them if fewer), class by class.

    Raises
    ------
    BaselineError
        When a class has no labelled pixel in ``train``.
    """
    lab, tr = np.asarray(labels).ravel(), np.asarray(train, dtype=bool).ravel()
    rng = np.random.default_rng(seed)
    pick = []
    for v in classes:
        idx = np.flatnonzero(tr & (lab == v))
        if idx.size == 0:
            raise BaselineError(f"class {v} has no labelled pixel in the training area: drop or merge it, "
                                f"or widen the training area")
        pick.append(rng.choice(idx, min(per_class, idx.size), replace=False))
    return np.concatenate(pick)


def classify_pixels(
    features: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    *,
    classes: Sequence[int],
    where: np.ndarray | None = None,
    model: str = "forest",
    per_class: int = 10000,
    n_estimators: int = 300,
    seed: int = 0,
    n_jobs: int = 1,
    fill: int = 0,
) -> np.ndarray:
    """Fit a per-pixel classifier on a balanced sample of training pixels, predict where asked.

    Parameters
    ----------
    features
        ``(F, H, W)`` features per pixel.
    labels
        ``(H, W)`` class values (anything not in ``classes`` is unlabelled).
    train
        ``(H, W)`` bool: pixels whose labels may be learnt from.
    classes
        The class values to learn.
    where
        ``(H, W)`` bool: pixels to predict (default all).
    model
        ``"forest"`` (random forest, ``min_samples_leaf=2``) or ``"boosting"`` (histogram gradient
        boosting, ``n_estimators`` iterations, early stopping off).
    per_class
        Most training pixels per class (a seeded random sample).
    n_estimators
        Trees (forest) or boosting iterations.
    seed
        Seed of the sample and of the classifier.
    n_jobs
        Parallel jobs of the forest, OpenMP threads of the boosting.
    fill
        Value of the pixels outside ``where``.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` predicted class values (``labels``' dtype), ``fill`` outside ``where``.
    """
    f = np.asarray(features)
    lab = np.asarray(labels)
    if f.ndim != 3 or f.shape[1:] != lab.shape or np.shape(train) != lab.shape:
        raise BaselineError(f"features (F, H, W) {f.shape}, labels {lab.shape} and train {np.shape(train)} "
                            f"must share (H, W)")
    if where is not None and np.shape(where) != lab.shape:
        raise BaselineError(f"where {np.shape(where)} must have the labels' shape {lab.shape}")
    if model not in MODELS:
        raise BaselineError(f"model must be one of {MODELS}, got {model!r}")
    ens = _sklearn_ensemble()
    pick = balanced_sample(lab, train, classes, per_class, seed)
    flat = f.reshape(f.shape[0], -1)
    if model == "forest":
        clf = ens.RandomForestClassifier(n_estimators=n_estimators, min_samples_leaf=2, n_jobs=n_jobs,
                                         random_state=seed)
    else:
        clf = ens.HistGradientBoostingClassifier(max_iter=n_estimators, early_stopping=False,
                                                 random_state=seed)
    out = np.full(lab.shape, fill, dtype=lab.dtype)
    sel = np.ones(lab.size, bool) if where is None else np.asarray(where, bool).ravel()
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    # gradient boosting runs OpenMP threads: held to n_jobs (all cores spin-wait badly on a busy machine)
    with threadpool_limits(limits=max(int(n_jobs), 1), user_api="openmp"):
        clf.fit(flat[:, pick].T, lab.ravel()[pick])
        out.reshape(-1)[sel] = clf.predict(flat[:, sel].T)
    return out


def pixel_forest(bands: np.ndarray, labels: np.ndarray, train: np.ndarray, *, classes: Sequence[int],
                 **options) -> np.ndarray:
    """A random forest on the band values of each pixel alone (the classic per-pixel baseline).

    ``bands`` is ``(C, H, W)``; the other arguments are those of :func:`classify_pixels`.
    """
    return classify_pixels(np.asarray(bands, dtype="float32"), labels, train, classes=classes, **options)


def context_forest(bands: np.ndarray, labels: np.ndarray, train: np.ndarray, *, classes: Sequence[int],
                   windows: Sequence[int] = DEFAULT_WINDOWS, model: str = "forest", **options) -> np.ndarray:
    """A forest (or gradient boosting) on the bands and their local means and standard deviations.

    The features are :func:`~eocube.baselines.context_features` of ``bands`` at ``windows``: the
    spatial context a small convolutional network sees. Keep the training pixels at least half
    the largest window away from the pixels scored (as a network's buffer) for an honest score.
    The other arguments are those of :func:`classify_pixels`.
    """
    feats, _ = context_features(bands, windows)
    return classify_pixels(feats, labels, train, classes=classes, model=model, **options)
