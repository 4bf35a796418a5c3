"""A label file with no polygon to burn is refused with what is wrong, not 'has no field' or an empty label cube."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eocube.labels import LabelError, burn_polygons


def test_an_empty_geojson_holds_no_features(tmp_path, h):
    path = tmp_path / "empty.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(LabelError, match=r"empty\.geojson holds no features") as err:
        burn_polygons(path, h.grid(), field="class")
    assert "has no field" not in str(err.value)


def test_an_empty_geopackage_with_the_field_is_refused_not_burnt_as_all_nodata(tmp_path, h):
    path = h.write_gpkg(tmp_path / "empty.gpkg", [], {"class": np.array([], dtype=object)})
    with pytest.raises(LabelError, match=r"empty\.gpkg holds no features"):
        burn_polygons(path, h.grid(), field="class")


def test_features_without_geometry_are_refused(tmp_path, h):
    path = tmp_path / "nogeom.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": None, "properties": {"class": "forest"}}]}))
    with pytest.raises(LabelError, match=r"holds 1 feature\(s\) but none has a geometry"):
        burn_polygons(path, h.grid(), field="class")
