"""Reading Zarr from Google Cloud Storage (``gs://``) against fake-gcs-server, through obstore's GCS client
(GET, LIST): the read half of the ``s3://`` checks. Writing is not tested: no GCS emulator
from PyPI, npm or Debian accepts the XML API's plain PUT that obstore uploads with (see the README)."""

from __future__ import annotations

import logging

import pytest

import eocube

from .conftest import GCS_TOKEN, gcs_upload


def test_a_gs_store_uploaded_to_the_bucket_reads_back_identical(tmp_path, fake_gcs, gcs, make_cube, assert_same_cube,
                                                                caplog, capsys):
    """The store's objects are those eocube wrote locally (the emulator refuses obstore's uploads)."""
    caplog.set_level(logging.DEBUG)
    cube = make_cube(chunks={"time": -1, "band": 1, "y": 4, "x": 5})
    eocube.to_zarr(cube, tmp_path / "r.zarr", progress=False)
    assert gcs_upload(fake_gcs, gcs, tmp_path / "r.zarr", "r.zarr") > 10
    back = eocube.open_zarr(f"gs://{gcs}/r.zarr")
    assert back.chunks is not None  # lazy
    assert_same_cube(cube, back)
    assert back.attrs["units"] == "reflectance x 1000"
    with pytest.raises(eocube.StoreNotFoundError, match=rf"no Zarr store at gs://{gcs}/missing\.zarr") as info:
        eocube.open_zarr(f"gs://{gcs}/missing.zarr")
    out = capsys.readouterr()
    for text in (str(info.value), repr(back), str(back.attrs), out.out, out.err, caplog.text):
        assert GCS_TOKEN not in text


def test_an_unreachable_gcs_endpoint_is_one_clear_error(monkeypatch):
    from .conftest import services

    monkeypatch.setenv("GOOGLE_BASE_URL", f"http://127.0.0.1:{services.free_port()}")
    monkeypatch.setenv("GOOGLE_BEARER_TOKEN", GCS_TOKEN)
    with pytest.raises(eocube.StoreError, match=r"gs://eocube-nowhere/u\.zarr") as info:
        eocube.open_zarr("gs://eocube-nowhere/u.zarr", storage_options={"retry_config": {"max_retries": 0}})
    assert "\n" not in str(info.value) and GCS_TOKEN not in str(info.value)
