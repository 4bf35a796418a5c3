"""Pixel counts per class of a label cube."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ._classes import classes_from_attrs


def class_counts(labels: xr.DataArray) -> dict[str, int]:
    """Pixels of each class of a label cube (computes it), and the unlabelled ones.

    Parameters
    ----------
    labels
        A label cube (classes in its attributes, nodata in ``rio.nodata``).

    Returns
    -------
    dict of str to int
        Class name -> pixel count, in the class table's order (0 for absent classes), then
        ``"unlabelled"`` -> nodata pixels.
    """
    values, counts = np.unique(np.asarray(labels.data), return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist()))
    out = {c.name: int(found.get(c.value, 0)) for c in classes_from_attrs(labels)}
    nodata = labels.rio.nodata
    out["unlabelled"] = int(found.get(int(nodata), 0)) if nodata is not None else 0
    return out
