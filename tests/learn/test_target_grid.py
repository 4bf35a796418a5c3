"""A target of the reference grid's size but on another grid is refused, not silently paired with other pixels."""

from __future__ import annotations

import pytest

from eocube.learn.errors import LearnError
from eocube.learn.patches import PatchSources


def test_a_target_shifted_by_pixels_is_refused(synth):
    s10, s20, lab, _ = synth.scene(64)
    shifted = lab.assign_coords(x=lab.x + 3 * 10.0)  # same size, three 10 m pixels east
    with pytest.raises(LearnError, match="not the reference source.s.*reproject the target"):
        PatchSources({"s10": s10, "s20": s20}, target=shifted)


def test_a_target_of_another_pixel_size_and_the_same_size_is_refused(synth):
    s10, _, lab, _ = synth.scene(64)
    coarse = lab.assign_coords(x=lab.x.values[0] + (lab.x - lab.x.values[0]) * 2,
                               y=lab.y.values[0] + (lab.y - lab.y.values[0]) * 2)
    with pytest.raises(LearnError, match="another origin or pixel size"):
        PatchSources({"s10": s10}, target=coarse)


def test_a_target_in_another_crs_is_refused(synth):
    s10, _, lab, _ = synth.scene(64)
    other = lab.rio.write_crs("EPSG:32632")
    with pytest.raises(LearnError, match="EPSG:32632.*EPSG:32633"):
        PatchSources({"s10": s10}, target=other)


def test_the_target_on_the_reference_grid_is_read_with_its_pixels(synth):
    s10, s20, lab, _ = synth.scene(64)
    ps = PatchSources({"s10": s10, "s20": s20}, target=lab)
    _, t = ps.read(16, 8, 16)
    assert (t == lab.isel(time=0).values[:, 16:32, 8:24]).all()
