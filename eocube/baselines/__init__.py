"""Baselines a reviewer asks for beside a network, to run on your own data.

Land cover (scikit-learn, ``pip install 'eocube[baselines]'``): :func:`pixel_forest` (random forest
on each pixel's bands) and :func:`context_forest` (forest or gradient boosting on the bands' local
means and standard deviations, :func:`context_features`). Super-resolution: :func:`bicubic` and
:func:`guided_highpass` (local regression on the fine guide bands plus the bicubic residual).
Gap filling's classical baselines are :mod:`eocube.fill`'s methods.

>>> pred = context_forest(bands, labels, train_mask, classes=[1, 2, 3], where=test_mask)
>>> sr = guided_highpass(b20, b10)     # 20 m bands to 10 m, guided by the 10 m bands

Place among the package floors (README, Architecture): floor 1; it may import errors (scikit-learn
on first use), and no other package's private modules (tests/test_import_structure.py checks it).
"""

from ._errors import BaselineError, MissingDependencyError
from .features import DEFAULT_WINDOWS, context_features
from .landcover import MODELS, balanced_sample, classify_pixels, context_forest, pixel_forest
from .superres import area_mean, bicubic, guided_highpass

__all__ = ["BaselineError", "MissingDependencyError", "DEFAULT_WINDOWS", "MODELS", "area_mean", "balanced_sample",
           "bicubic", "classify_pixels", "context_features", "context_forest", "guided_highpass", "pixel_forest"]
