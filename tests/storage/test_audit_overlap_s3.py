"""Issue 21 item 9: on an object store too, a write never lands on the store its cube reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import eocube
from eocube.cube import make_cube
from eocube.errors import TargetIsInputError


def test_to_zarr_refuses_to_overwrite_the_s3_store_the_cube_reads(moto, s3):
    """f16d111: mode="overwrite" deleted the input's objects before a chunk of it was read."""
    cube = make_cube(np.arange(2 * 2 * 8 * 8, dtype="float32").reshape(2, 2, 8, 8),
                     time=pd.date_range("2020-01-01", periods=2), band=["a", "b"],
                     y=5000000 - 10 * np.arange(8) - 5.0, x=400005 + 10 * np.arange(8, dtype=float), crs="EPSG:32633")
    store = f"s3://{s3}/src.zarr"
    eocube.to_zarr(cube, store, progress=False)
    derived = eocube.open_zarr(store) * 2
    for target in (store, store + "/", f"s3://{s3}/src.zarr/inner.zarr"):
        with pytest.raises(TargetIsInputError, match=r"s3://.*src\.zarr"):
            eocube.to_zarr(derived, target, mode="overwrite", progress=False)
    assert np.array_equal(eocube.open_zarr(store).values, cube.values)
