"""Gap-filling examples: augmentation turns values and masks together; ``sampler.halo: context`` reads real pixels.

A turned or flipped window (``sampler.augment``) is still a valid gap-filling example only if the values, the
visible observations and the hidden ones are turned together (every date the same way), so the loss still
scores exactly the hidden clear observations. With ``sampler.halo: context`` a window is read with the
network's halo around it (real pixels, as ``apply_model`` reads them) and only its core is scored.
"""

from __future__ import annotations

import numpy as np
import torch

from eocube.learn.config import load_config
from eocube.learn.tasks import make_task

from .conftest import TINY

KEYS = ("values", "valid", "target_mask")


def _task(source, augment: bool):
    over = {**TINY, "sampler": {**TINY["sampler"], "augment": augment, "halo": "inside"}}
    task = make_task(load_config(overrides=over))
    task.build(source, None, 1)
    return task


def _transforms(a: np.ndarray) -> list[np.ndarray]:
    """The 8 flips and 90-degree turns of the last two axes."""
    turns = [np.rot90(a, k, axes=(-2, -1)) for k in range(4)]
    return turns + [t[..., ::-1] for t in turns]


def test_augmentation_turns_values_and_masks_together_and_is_seeded(sample):
    plain, turned = _task(sample, False), _task(sample, True)
    used = set()
    for i in range(12):
        a, b = plain.train[i], turned.train[i]
        assert torch.equal(a["corner"], b["corner"]) and torch.equal(a["days"], b["days"])  # the same window
        # one of the 8 transforms maps the plain example onto the augmented one, the same for every array
        match = [j for j in range(8)
                 if all(np.array_equal(_transforms(a[k].numpy())[j], b[k].numpy()) for k in KEYS)]
        assert match, f"example {i}: values and masks were not turned together"
        used.add(match[0])
        assert b["target_mask"].any()
        assert not (b["valid"] & b["target_mask"]).any()  # hidden observations are not visible
        assert (b["values"][~(b["valid"] | b["target_mask"])] == 0).all()  # cloudy observations stay 0
    assert len(used) > 2  # augmentation is really applied, not the identity
    again = _task(sample, True)
    for i in (0, 5):
        for k in KEYS:
            assert torch.equal(again.train[i][k], turned.train[i][k])  # (seed, epoch, index) decide the example
    assert all(torch.equal(plain.val[i][k], turned.val[i][k]) for i in range(len(plain.val)) for k in KEYS)  # val as is


def test_context_windows_are_read_with_their_halo_and_score_only_their_core(sample):
    """``sampler.halo: context``: the windows of ``inside``, read with their halo (real pixels, as apply_model reads)."""
    over = {k: {**TINY.get(k, {}), **v} for k, v in {"sampler": {"halo": "context", "min_clear_fraction": 0.0}}.items()}
    ctx = make_task(load_config(overrides={**TINY, **over}))
    ctx.build(sample, None, 1)
    inside = make_task(load_config(overrides={**TINY, "sampler": {**TINY["sampler"], "min_clear_fraction": 0.0,
                                                                  "halo": "inside"}}))
    inside.build(sample, None, 1)
    h, size = ctx.halo, TINY["sampler"]["patch_size"]
    assert ctx.size == size + 2 * h and ctx.window_halo == 0
    shifted = {tuple(w) for w in (ctx.train_windows + h).tolist()}
    hy, hx = ctx.ps.shape
    interior = {(y, x) for y, x in inside.train_windows.tolist() if h <= y <= hy - size - h and h <= x <= hx - size - h}
    assert shifted == interior  # the footprints of inside, less those reaching past the scene (nothing to read there)
    code = ctx.split.mask()
    for i in range(8):
        ex = ctx.train[i]
        y0, x0 = (int(v) for v in ex["corner"])
        assert (code[y0:y0 + ctx.size, x0:x0 + ctx.size] == 0).all()  # the whole read stays in a training block
        assert ex["values"].shape[-2:] == (ctx.size, ctx.size)
        ring = np.ones((ctx.size, ctx.size), bool)
        ring[h:-h, h:-h] = False
        tm = ex["target_mask"].numpy()
        assert not tm[..., ring].any() and tm.any()  # only the core is scored
        assert not (ex["valid"] & ex["target_mask"]).any()


def test_gap_filling_reads_windows_with_their_context_by_default():
    """The default (issue 22 item 1): like-for-like held-out RMSE 0.67 of linear with context against 0.75 without."""
    s = load_config().sampler
    assert s["halo"] == "context" and s["patch_size"] == 12
