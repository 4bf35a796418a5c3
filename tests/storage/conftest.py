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
