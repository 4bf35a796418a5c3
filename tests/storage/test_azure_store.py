"""Zarr on Azure Blob storage (``az://``), against Azurite (Microsoft's emulator, a real HTTP
endpoint started by the tests): the same checks as ``s3://`` in test_object_store.py: a URL is
never a local folder, writes and reads, a killed write resumes, a missing container and a wrong
key are one clear error, and the account key is never printed."""

from __future__ import annotations

import logging

import dask
import pytest

import eocube
from eocube.io import _stores

from ._kill import Killed, doubled, kill_after
from .conftest import AZ_ACCOUNT, AZ_KEY, az_bytes, az_keys
from .test_sharded import METADATA

WRONG_KEY = "d3Jvbmcta2V5LW5vdC10aGUtYWNjb3VudHMta2V5LTIz"  # base64, a valid key shape, not the account's


def test_an_az_url_is_written_to_the_container_not_to_a_local_folder(tmp_path, monkeypatch, azurite, az, make_cube,
                                                                     assert_same_cube):
    monkeypatch.chdir(tmp_path)
    cube = make_cube(chunks={"time": -1, "band": 1, "y": 4, "x": 5})
    report = eocube.to_zarr(cube, f"az://{az}/out.zarr", progress=False)
    assert list(tmp_path.iterdir()) == []  # no folder "az:" in the working directory
    assert report.zarr_format == 3 and report.path == f"az://{az}/out.zarr"
    keys = az_keys(azurite, az, "out.zarr/")
    assert "out.zarr/zarr.json" in keys and not any(".eocube-progress" in k for k in keys)
    back = eocube.open_zarr(f"az://{az}/out.zarr")
    assert back.chunks is not None  # lazy
    assert_same_cube(cube, back)
    assert back.attrs["units"] == "reflectance x 1000"


def test_a_killed_write_to_azure_resumes_bit_identically_computing_fewer_shards(azurite, az, make_cube,
                                                                                assert_same_cube):
    cube = doubled(make_cube(h=16, w=20, chunks={"time": -1, "band": 1, "y": 8, "x": 10}))  # 8 shards
    kwargs = {"chunks": {"y": 4, "x": 5}, "provenance": {"job": "az"}, "progress": False}
    reference = eocube.to_zarr(cube, f"az://{az}/ref.zarr", **kwargs)
    assert (reference.chunks_total, reference.unit) == (8, "shards")
    with dask.config.set(scheduler="synchronous"), kill_after(3), pytest.raises(Killed):
        eocube.to_zarr(cube, f"az://{az}/k.zarr", **kwargs)
    keys = az_keys(azurite, az, "k.zarr/")
    assert len([k for k in keys if "/.eocube-progress/" in k]) == 3  # one marker blob per shard written
    assert len(keys) <= 3 + 3 + METADATA
    with pytest.raises(eocube.IncompleteStoreError, match=r"3 of 8 shards written"):
        eocube.open_zarr(f"az://{az}/k.zarr")
    resumed = eocube.to_zarr(cube, f"az://{az}/k.zarr", **kwargs)
    assert (resumed.chunks_written, resumed.chunks_skipped) == (5, 3)
    assert_same_cube(eocube.open_zarr(f"az://{az}/ref.zarr"), eocube.open_zarr(f"az://{az}/k.zarr"))
    shards = sorted(k.removeprefix("k.zarr/") for k in az_keys(azurite, az, "k.zarr/synthetic/c/"))
    assert len(shards) == 8
    for key in shards:  # bit-identical shard blobs
        assert az_bytes(azurite, az, f"k.zarr/{key}") == az_bytes(azurite, az, f"ref.zarr/{key}")
    assert len(az_keys(azurite, az, "k.zarr/")) <= 8 + METADATA  # ledger gone


@pytest.mark.parametrize("where", ["storage_options", "environment"])
def test_a_custom_http_endpoint_from_options_or_environment(azurite, az, monkeypatch, where, make_cube,
                                                            assert_same_cube):
    """An Azurite (or Azure Stack) endpoint given as ``endpoint`` / ``AZURE_STORAGE_ENDPOINT`` over
    plain HTTP, without the emulator switch: eocube allows HTTP for it as it does for S3."""
    for name in ("AZURE_STORAGE_USE_EMULATOR", "AZURITE_BLOB_STORAGE_URL", "AZURE_STORAGE_ACCOUNT_NAME",
                 "AZURE_STORAGE_ACCOUNT_KEY"):
        monkeypatch.delenv(name)
    if where == "storage_options":
        options = {"endpoint": azurite.url, "account_name": AZ_ACCOUNT, "account_key": AZ_KEY}
    else:
        options = {}
        monkeypatch.setenv("AZURE_STORAGE_ENDPOINT", azurite.url)
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", AZ_ACCOUNT)
        monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", AZ_KEY)
    cube = make_cube()
    eocube.to_zarr(cube, f"az://{az}/o.zarr", storage_options=options, progress=False)
    assert "o.zarr/zarr.json" in az_keys(azurite, az, "o.zarr/")
    assert_same_cube(cube, eocube.open_zarr(f"az://{az}/o.zarr", storage_options=options))


def test_a_missing_container_is_one_clear_error(azurite, az, make_cube):
    cube = make_cube()
    with pytest.raises(eocube.StoreError, match=r"az://no-such-container-eocube/c\.zarr.*ContainerNotFound") as info:
        eocube.to_zarr(cube, "az://no-such-container-eocube/c.zarr", progress=False)
    assert "Debug source" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(eocube.StoreNotFoundError, match=r"az://no-such-container-eocube/c\.zarr"):
        eocube.open_zarr("az://no-such-container-eocube/c.zarr")
    with pytest.raises(eocube.StoreNotFoundError, match=rf"az://{az}/missing\.zarr"):
        eocube.open_zarr(f"az://{az}/missing.zarr")


def test_a_wrong_key_is_one_clear_error_without_the_key(azurite, az, make_cube, capsys, caplog):
    cube = make_cube()
    eocube.to_zarr(cube, f"az://{az}/good.zarr", progress=False)
    wrong = {"account_key": WRONG_KEY}
    with pytest.raises(eocube.StoreError, match=rf"az://{az}/w\.zarr.*(AuthorizationFailure|PermissionDenied)") as info:
        eocube.to_zarr(cube, f"az://{az}/w.zarr", storage_options=wrong, progress=False)
    assert "Debug source" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(eocube.StoreError, match=rf"az://{az}/good\.zarr") as read_info:
        eocube.open_zarr(f"az://{az}/good.zarr", storage_options=wrong).compute()
    out = capsys.readouterr()
    for text in (str(info.value), repr(info.value), str(read_info.value), out.out, out.err, caplog.text):
        assert WRONG_KEY not in text and AZ_KEY not in text
    assert az_keys(azurite, az, "w.zarr") == []  # nothing written with the wrong key


def test_the_account_key_is_never_printed(azurite, az, monkeypatch, caplog, capsys, make_cube):
    for name in ("AZURE_STORAGE_ACCOUNT_KEY",):
        monkeypatch.delenv(name)
    caplog.set_level(logging.DEBUG)
    options = {"account_key": AZ_KEY}
    seen: list[str] = []
    cube = make_cube()
    report = eocube.to_zarr(cube, f"az://{az}/c.zarr", storage_options=options, provenance={"job": 1})
    seen += [str(report), repr(report), repr(_stores.resolve(f"az://{az}/c.zarr", options))]
    back = eocube.open_zarr(f"az://{az}/c.zarr", storage_options=options)
    seen += [repr(back), str(back.attrs), str(dict(back.data.__dask_graph__()).keys())]
    failures = [  # a missing container, a missing store, a write into a missing container, a wrong key
        lambda: eocube.open_zarr("az://no-such-container-eocube/c.zarr", storage_options=options),
        lambda: eocube.open_zarr(f"az://{az}/missing.zarr", storage_options=options),
        lambda: eocube.to_zarr(cube, "az://no-such-container-eocube/c.zarr", storage_options=options, progress=False),
        lambda: eocube.to_zarr(cube, f"az://{az}/w.zarr", storage_options={"account_key": WRONG_KEY}, progress=False),
    ]
    for fail in failures:
        with pytest.raises(Exception) as info:
            fail()
        exc: BaseException | None = info.value
        while exc is not None:
            seen += [str(exc), repr(exc)]
            exc = exc.__cause__ or exc.__context__
    out = capsys.readouterr()
    seen += [out.out, out.err, caplog.text]
    for key in az_keys(azurite, az, "c.zarr/"):  # everything stored: attributes, metadata
        seen.append(az_bytes(azurite, az, key).decode("latin-1"))
    for text in seen:
        assert AZ_KEY not in text and WRONG_KEY not in text
    assert any("no-such-container-eocube" in text for text in seen)  # the errors still name the store


@pytest.mark.parametrize("account_from", ["AZURE_STORAGE_ACCOUNT_NAME", "use_emulator"])
def test_zarr_debug_logging_works_with_the_account_from_the_environment(azurite, az, monkeypatch, caplog, account_from,
                                                                        make_cube, assert_same_cube):
    """obstore's AzureStore panics in its repr when the account came from the environment or the
    emulator's default, and zarr calls that repr in its DEBUG log lines: eocube passes the account."""
    if account_from == "use_emulator":
        monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME")  # the emulator's default account, devstoreaccount1
    caplog.set_level(logging.DEBUG, logger="zarr")
    cube = make_cube()
    eocube.to_zarr(cube, f"az://{az}/d.zarr", progress=False)
    assert_same_cube(cube, eocube.open_zarr(f"az://{az}/d.zarr"))
    assert f"account_name=\"{AZ_ACCOUNT}\"" in repr(_stores.resolve(f"az://{az}/d.zarr").zarr_store())
    assert "object_store://AzureStore" in caplog.text  # zarr's DEBUG lines, with the store's repr
