"""Zarr on an object store (moto's S3 server): URLs never become local folders, resumable writes,
reading over HTTP, and credentials never printed."""

from __future__ import annotations

import logging

import dask
import pytest

import eocube
from eocube.io import _stores

from ._kill import Killed, doubled, kill_after
from .conftest import ACCESS_KEY, SECRET_KEY, object_keys, s3_client, services
from .test_sharded import METADATA


def test_an_s3_url_is_written_to_the_bucket_not_to_a_local_folder(tmp_path, monkeypatch, moto, s3, make_cube,
                                                                   assert_same_cube):
    monkeypatch.chdir(tmp_path)
    cube = make_cube(chunks={"time": -1, "band": 1, "y": 4, "x": 5})
    report = eocube.to_zarr(cube, f"s3://{s3}/out.zarr", progress=False)
    assert list(tmp_path.iterdir()) == []  # no folder "s3:" in the working directory
    assert report.zarr_format == 3 and report.path == f"s3://{s3}/out.zarr"  # remote -> format 3 by default
    keys = object_keys(moto, s3, "out.zarr/")
    assert "out.zarr/zarr.json" in keys and not any(".eocube-progress" in k for k in keys)
    back = eocube.open_zarr(f"s3://{s3}/out.zarr")
    assert back.chunks is not None  # lazy
    assert_same_cube(cube, back)
    assert back.attrs["units"] == "reflectance x 1000"


def test_a_killed_write_to_s3_resumes_bit_identically_computing_fewer_shards(moto, s3, make_cube, assert_same_cube):
    cube = doubled(make_cube(h=16, w=20, chunks={"time": -1, "band": 1, "y": 8, "x": 10}))  # 2 x 2 x 2 = 8 shards
    kwargs = {"chunks": {"y": 4, "x": 5}, "provenance": {"job": "s3"}, "progress": False}
    reference = eocube.to_zarr(cube, f"s3://{s3}/ref.zarr", **kwargs)
    assert (reference.chunks_total, reference.unit) == (8, "shards")
    with dask.config.set(scheduler="synchronous"), kill_after(3), pytest.raises(Killed):
        eocube.to_zarr(cube, f"s3://{s3}/k.zarr", **kwargs)
    keys = object_keys(moto, s3, "k.zarr/")
    markers = [k for k in keys if "/.eocube-progress/" in k]
    assert len(markers) == 3  # one marker object per shard written, in the bucket
    assert len(keys) <= 3 + 3 + METADATA  # shards + markers + metadata
    with pytest.raises(eocube.IncompleteStoreError, match=r"3 of 8 shards written"):
        eocube.open_zarr(f"s3://{s3}/k.zarr")
    resumed = eocube.to_zarr(cube, f"s3://{s3}/k.zarr", **kwargs)
    assert (resumed.chunks_written, resumed.chunks_skipped) == (5, 3)
    assert_same_cube(eocube.open_zarr(f"s3://{s3}/ref.zarr"), eocube.open_zarr(f"s3://{s3}/k.zarr"))
    client = s3_client(moto)
    shards = sorted(k.removeprefix("k.zarr/") for k in object_keys(moto, s3, "k.zarr/synthetic/c/"))
    assert len(shards) == 8
    for key in shards:  # bit-identical shard objects
        got = client.get_object(Bucket=s3, Key=f"k.zarr/{key}")["Body"].read()
        assert got == client.get_object(Bucket=s3, Key=f"ref.zarr/{key}")["Body"].read()
    assert len(object_keys(moto, s3, "k.zarr/")) <= 8 + METADATA  # ledger gone


def test_storage_options_instead_of_the_environment(moto, s3, monkeypatch, make_cube, assert_same_cube):
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    options = {"endpoint_url": moto.url, "key": ACCESS_KEY, "secret": SECRET_KEY, "region": "us-east-1"}
    cube = make_cube()
    eocube.to_zarr(cube, f"s3://{s3}/o.zarr", storage_options=options, progress=False)
    assert_same_cube(cube, eocube.open_zarr(f"s3://{s3}/o.zarr", storage_options=options))


def test_bad_urls_are_refused(tmp_path, monkeypatch, make_cube):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="reading only"):
        eocube.to_zarr(make_cube(), "https://example.org/out.zarr", progress=False)
    with pytest.raises(ValueError, match="unknown URL scheme 'ftp'"):
        eocube.to_zarr(make_cube(), "ftp://host/out.zarr", progress=False)
    with pytest.raises(ValueError, match="storage_options are for object store URLs"):
        eocube.to_zarr(make_cube(), tmp_path / "x.zarr", storage_options={"key": "k"}, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_credentials_are_never_printed(moto, s3, caplog, capsys, make_cube):
    caplog.set_level(logging.DEBUG)
    options = {"secret_access_key": SECRET_KEY, "access_key_id": ACCESS_KEY}
    seen: list[str] = []
    cube = make_cube()
    report = eocube.to_zarr(cube, f"s3://{s3}/c.zarr", storage_options=options, provenance={"job": 1})
    seen += [str(report), repr(report), repr(_stores.resolve(f"s3://{s3}/c.zarr", options))]
    back = eocube.open_zarr(f"s3://{s3}/c.zarr", storage_options=options)
    seen += [repr(back), str(back.attrs), str(dict(back.data.__dask_graph__()).keys())]
    failures = [  # errors: a missing bucket, a missing store, a write into a missing bucket
        lambda: eocube.open_zarr("s3://no-such-bucket-eocube/c.zarr", storage_options=options),
        lambda: eocube.open_zarr(f"s3://{s3}/missing.zarr", storage_options=options),
        lambda: eocube.to_zarr(cube, "s3://no-such-bucket-eocube/c.zarr", storage_options=options, progress=False),
    ]
    for fail in failures:
        with pytest.raises(Exception) as info:
            fail()
        exc: BaseException | None = info.value
        while exc is not None:
            seen += [str(exc), repr(exc)]
            exc = exc.__cause__ or exc.__context__
    out = capsys.readouterr()
    seen += [out.out, out.err, caplog.text]  # eocube's, obstore's and dask's logs, before boto3 logs its own requests
    caplog.set_level(logging.WARNING)
    client = s3_client(moto)
    for key in object_keys(moto, s3, "c.zarr/"):  # everything stored: attributes, metadata
        seen.append(client.get_object(Bucket=s3, Key=key)["Body"].read().decode("latin-1"))
    for text in seen:
        assert SECRET_KEY not in text and ACCESS_KEY not in text
    assert any("no-such-bucket-eocube" in text for text in seen)  # the errors still name the store


def test_a_store_is_read_over_http(tmp_path_factory, make_cube, assert_same_cube):
    root = tmp_path_factory.mktemp("www")
    cube = make_cube(chunks={"time": -1, "band": 1, "y": 4, "x": 5})
    eocube.to_zarr(cube, root / "h.zarr", zarr_format=3, progress=False)
    eocube.to_zarr(cube, root / "h2.zarr", zarr_format=2, progress=False)
    svc = services.start_nginx(root, tmp_path_factory.mktemp("nginx-io"))
    try:
        for name in ("h.zarr", "h2.zarr"):
            back = eocube.open_zarr(f"{svc.url}/{name}")
            assert_same_cube(cube, back)
        back = eocube.open_zarr(f"{svc.url}/h.zarr")
        with pytest.raises(eocube.StoreNotFoundError, match="no Zarr store at"):
            eocube.open_zarr(f"{svc.url}/missing.zarr")
    finally:
        services.stop(svc.proc)
    with pytest.raises(eocube.StoreError,
                       match=r"h.zarr, variable synthetic, chunk key c/\d/\d/\d/\d cannot be read \(GenericError[^\n]*\): check"):
        back.compute()  # the server is gone: a read error naming the object, not "damaged"


def test_a_failing_object_store_is_one_clear_error(moto, s3, make_cube):
    """A write into a missing bucket, or an unreachable endpoint: eocube's StoreError naming the store,
    on one line, not obstore's raw error with its debug dump."""
    cube = make_cube()
    with pytest.raises(eocube.StoreError, match=r"s3://no-such-bucket-eocube/c\.zarr") as info:
        eocube.to_zarr(cube, "s3://no-such-bucket-eocube/c.zarr", progress=False)
    assert "Debug source" not in str(info.value) and "\n" not in str(info.value)
    unreachable = {"endpoint_url": f"http://127.0.0.1:{services.free_port()}", "region": "us-east-1"}
    with pytest.raises(eocube.StoreError, match=r"s3://bucket/u\.zarr.*check the URL") as info:
        eocube.to_zarr(cube, "s3://bucket/u.zarr", storage_options=unreachable, progress=False)
    assert "Debug source" not in str(info.value)
