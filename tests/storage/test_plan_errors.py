"""Issue 21, item 7: every out-of-range argument of plan_chunks is one ChunkPlanError naming it.

Before, 0 dates, ``threads_per_worker=0``, a negative halo and others gave a plan as if nothing
were wrong, and 0 bands, a negative size, a 3-D shape, a NaN factor or ``"4 parsecs"`` a
ZeroDivisionError or a ValueError from deep inside (``isqrt() argument must be nonnegative``).
"""

from __future__ import annotations

import pytest

from eocube.plan import ChunkPlanError, plan_chunks

SHAPE = (10, 4, 1000, 1000)

CASES = [
    # (id, shape, keywords, the argument named, a phrase of the accepted values)
    ("no-dates", (0, 4, 1000, 1000), {}, "shape=(0, 4, 1000, 1000)", "time (dates) size is 0"),
    ("no-bands", (10, 0, 1000, 1000), {}, "shape=(10, 0, 1000, 1000)", "band size is 0"),
    ("negative-size", (10, 4, -1000, 1000), {}, "shape=(10, 4, -1000, 1000)", "y size is -1000"),
    ("fractional-size", (10, 4, 1000, 999.5), {}, "shape=(10, 4, 1000, 999.5)", "x size is 999.5"),
    ("3-d-shape", (10, 1000, 1000), {}, "shape=(10, 1000, 1000)", "it has 3 axes"),
    ("shape-as-text", "10,4,1000,1000", {}, "shape='10,4,1000,1000'", "4 whole numbers, each >= 1"),
    ("nan-fill-factor", SHAPE, {"fill_factor": float("nan")}, "fill_factor=nan", "a finite number > 0"),
    ("infinite-model-factor", SHAPE, {"model_factor": float("inf")}, "model_factor=inf", "a finite number > 0"),
    ("no-threads", SHAPE, {"threads_per_worker": 0}, "threads_per_worker=0", "a whole number >= 1"),
    ("fractional-threads", SHAPE, {"threads_per_worker": 2.5}, "threads_per_worker=2.5", "a whole number >= 1"),
    ("negative-halo", SHAPE, {"halo": -5}, "halo=-5", "a whole number of pixels >= 0"),
    ("unknown-unit", SHAPE, {"worker_memory": "4 parsecs"}, "worker_memory='4 parsecs'", "such as '16GB'"),
    ("no-memory", SHAPE, {"worker_memory": 0}, "worker_memory=0", "bytes > 0"),
    ("negative-shard", SHAPE, {"shard_bytes": -1}, "shard_bytes=-1", "bytes > 0"),
    ("unknown-dtype", SHAPE, {"dtype": "float33"}, "dtype='float33'", "a numpy dtype"),
    ("no-model-bands", SHAPE, {"model_bands": 0}, "model_bands=0", "from 1 to the cube's 4 band(s)"),
    ("more-model-bands-than-the-cube", SHAPE, {"model_bands": 9}, "model_bands=9", "from 1 to 4"),
    ("no-output-bands", SHAPE, {"out_bands": 0}, "out_bands=0", "a whole number >= 1"),
    ("no-min-side", SHAPE, {"min_side": 0}, "min_side=0", "a whole number of pixels >= 1"),
    ("no-load-itemsize", SHAPE, {"load_itemsize": 0}, "load_itemsize=0", "a whole number of bytes >= 1"),
]


@pytest.mark.parametrize(("shape", "keywords", "named", "accepted"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_an_out_of_range_argument_is_one_error_naming_it_and_what_is_accepted(shape, keywords, named, accepted):
    with pytest.raises(ChunkPlanError) as info:
        plan_chunks(shape, **keywords)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"plan_chunks: {named} is not accepted: ")
    assert accepted in message
    shown_below = info.value.__cause__ or (None if info.value.__suppress_context__ else info.value.__context__)
    assert shown_below is None  # no second traceback (a ValueError from deep inside) below it


def test_valid_arguments_of_every_kind_still_make_a_plan():
    import numpy as np

    plan = plan_chunks(np.array([10, 4, 1000, 1000]), "uint16", worker_memory=np.int64(2**32),
                       threads_per_worker=np.int32(2), shard_bytes="64MiB", model_bands=2, out_bands=1, halo=0,
                       fill_factor=6, model_factor=8.0, min_side=32, load_itemsize=2)
    assert plan.shape == (10, 4, 1000, 1000) and plan.thread_memory == 2**31 and plan.model["band"] == 2
