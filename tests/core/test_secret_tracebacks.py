"""Issue 21, item 8: a signed URL's token never reaches a traceback, chained causes included.

A Zarr store opened from a signed URL (``?...&sig=...&X-Amz-Signature=...``) and a STAC asset
with a signed href are served by a real HTTP server on 127.0.0.1 that refuses one chunk (or one
file) with 403, so the read fails at compute time. What the user gets is read whole: the text
of ``traceback.format_exception`` of the exception ``.compute()`` raises (every chained cause
and context), the str/repr/notes of each exception in the chain, the worker's log record, and
the stdout and stderr of the ``eocube`` command. None may hold the signature values; the
failing file is still named (its query values redacted).
"""

from __future__ import annotations

import http.server
import logging
import os
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dask
import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine

import eocube
from eocube.errors import StoreError

SIG = "sigVALUE7f3a9c2e1bQ"
AMZ = "amzSIGNATURE5d8e0a4f"
SIGNED = f"?st=2024-01-01T00%3A00%3A00Z&se=2099-01-01&sp=r&sv=2022-11-02&sig={SIG}&X-Amz-Signature={AMZ}"
CHUNK = "/cube.zarr/synthetic/0.1.0.0"  # time 0, band 1 ("nir"), first 8 x 8 block
SOURCE = Path(eocube.__file__).resolve().parents[1]  # the eocube under test, for the command's process


class _Handler(http.server.BaseHTTPRequestHandler):
    """Static files with single-range requests (what GDAL and obstore ask for); the paths in
    ``server.refuse`` get 403, ``times`` times (None: always). The query string is ignored, as a
    signing proxy would check it."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _reply(self, status: int, data: bytes = b"", headers: dict[str, str] | None = None, body: bool = True) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _serve(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        refuse = self.server.refuse  # type: ignore[attr-defined]
        if path in refuse and refuse[path] != 0:
            refuse[path] = None if refuse[path] is None else refuse[path] - 1
            self._reply(403, b"<Error><Code>AuthenticationFailed</Code></Error>", body=body)
            return
        file = Path(self.server.root) / path.lstrip("/")  # type: ignore[attr-defined]
        if not file.is_file():
            self._reply(404, body=body)
            return
        data = file.read_bytes()
        ranged = self.headers.get("Range", "")
        if not ranged.startswith("bytes=") or "," in ranged:
            self._reply(200, data, {"Accept-Ranges": "bytes"}, body)
            return
        first, last = ranged[len("bytes="):].split("-")
        start, stop = (len(data) - int(last), len(data) - 1) if not first else \
            (int(first), min(int(last), len(data) - 1) if last else len(data) - 1)
        self._reply(206, data[start:stop + 1],
                    {"Accept-Ranges": "bytes", "Content-Range": f"bytes {start}-{stop}/{len(data)}"}, body)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An HTTP server on 127.0.0.1 serving a Zarr cube (``/cube.zarr``) and two COGs (``/a.tif``, ``/b.tif``)."""
    root = tmp_path_factory.mktemp("signed")
    values = np.random.default_rng(0).random((2, 2, 16, 16)).astype("float32")
    cube = eocube.make_cube(values, time=pd.date_range("2020-01-01", periods=2, freq="5D"), band=["red", "nir"],
                            y=5080000.0 - 10.0 * (np.arange(16) + 0.5), x=465000.0 + 10.0 * (np.arange(16) + 0.5),
                            crs="EPSG:32633", name="synthetic").chunk({"time": 1, "band": 1, "y": 8, "x": 8})
    eocube.to_zarr(cube, root / "cube.zarr", zarr_format=2, progress=False)
    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 9200000.0)
    for name in ("a", "b"):
        pixels = np.random.default_rng(len(name)).integers(1, 9999, size=(64, 64)).astype("uint16")
        with rasterio.open(root / f"{name}.tif", "w", driver="COG", width=64, height=64, count=1, dtype="uint16",
                           crs="EPSG:32735", transform=transform, nodata=0, blocksize=32) as dst:
            dst.write(pixels, 1)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.root, httpd.refuse = str(root), {}  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"  # type: ignore[attr-defined]
    httpd.transform = transform  # type: ignore[attr-defined]
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def refuse(server):
    """Set which paths the server refuses (reset after the test)."""
    server.refuse.clear()
    yield server.refuse
    server.refuse.clear()


def _everything_shown(exc: BaseException) -> str:
    """The full traceback text and the str, repr and notes of every exception chained to ``exc``."""
    texts, seen, todo = ["".join(traceback.format_exception(exc))], set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        texts += [str(e), repr(e), *map(str, getattr(e, "__notes__", None) or [])]
        todo += [e.__cause__, e.__context__]
    return "\n".join(texts)


def _assert_no_token(text: str, where: str) -> None:
    leaked = [value for value in (SIG, AMZ) if value in text]
    assert not leaked, f"the signature reached {where}:\n{text[-3000:]}"


def _stac_items(server) -> list[dict]:
    """Two items whose B04 assets are the server's COGs with signed hrefs."""
    items = []
    for i, name in enumerate(("a", "b")):
        items.append({
            "type": "Feature", "stac_version": "1.0.0", "id": f"item-{name}", "links": [],
            "bbox": [26.99, -7.25, 27.0, -7.24],
            "geometry": {"type": "Polygon", "coordinates": [[[26.99, -7.25], [27.0, -7.25], [27.0, -7.24],
                                                             [26.99, -7.24], [26.99, -7.25]]]},
            "properties": {"datetime": f"2020-06-0{i + 1}T08:00:00Z", "proj:epsg": 32735},
            "assets": {"B04": {"href": f"{server.url}/{name}.tif{SIGNED}", "type": "image/tiff; application=geotiff",
                               "proj:shape": [64, 64], "proj:transform": list(server.transform)[:6],
                               "raster:bands": [{"data_type": "uint16", "nodata": 0}]}},
        })
    return items


@pytest.mark.parametrize("times", [None, 1], ids=["refused", "refused-once"])
def test_a_chunk_refused_at_compute_time_shows_no_token_in_the_whole_traceback(server, refuse, times):
    """Refused for good: eocube's StoreError names the chunk, chained to obstore's error (which
    printed the signed URL). Refused once: reading the chunks one by one succeeds, so obstore's own
    error is raised as it is (its message printed the signed URL)."""
    cube = eocube.open_zarr(server.url + "/cube.zarr" + SIGNED)
    refuse[CHUNK] = times
    with dask.config.set(scheduler="threads"), pytest.raises(Exception) as info:
        cube.compute()
    shown = _everything_shown(info.value)
    _assert_no_token(shown, "the exception raised by .compute() (threads)")
    assert "0.1.0.0?st=REDACTED" in shown and "sig=REDACTED" in shown  # the file is still named
    if times is None:
        assert isinstance(info.value, StoreError) and "chunk key 0.1.0.0" in str(info.value)
        assert info.value.__cause__ is not None  # obstore's error is kept, redacted


def test_a_chunk_refused_on_an_in_process_cluster_shows_no_token_in_the_traceback_nor_the_worker_log(
        server, refuse, caplog, monkeypatch):
    from distributed import Client, LocalCluster

    from eocube.cluster.local import QuietEOCubeErrors

    worker_logger = logging.getLogger("distributed.worker")  # read the "Compute Failed" record
    monkeypatch.setattr(worker_logger, "filters", [f for f in worker_logger.filters
                                                   if not isinstance(f, QuietEOCubeErrors)])
    caplog.set_level(logging.WARNING)
    cube = eocube.open_zarr(server.url + "/cube.zarr" + SIGNED)
    refuse[CHUNK] = None
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster), pytest.raises(StoreError) as info:
        cube.compute()
    _assert_no_token(_everything_shown(info.value), "the exception raised by .compute() (distributed, threads)")
    records = [r.getMessage() for r in caplog.records]
    assert any("Compute Failed" in r for r in records)
    _assert_no_token("\n".join(records), "the worker's log")


@pytest.mark.slow
def test_reads_refused_in_a_worker_process_reach_the_client_as_eocube_errors_without_token(server, refuse):
    """A worker process pickles the exception with its whole chain (tblib) back to the client: the
    chain must be redacted in the worker. A GDAL error in the chain (read-only args, which tblib
    cannot rebuild) no longer turns the STAC error into a plain Exception on the client."""
    from distributed import Client, LocalCluster

    from eocube.stac import AssetReadError, open_stac

    cube = eocube.open_zarr(server.url + "/cube.zarr" + SIGNED)
    stac = open_stac(_stac_items(server), assets=["B04"], retries=1)
    refuse[CHUNK] = None
    refuse["/b.tif"] = None
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster):
        with pytest.raises(StoreError) as info:
            cube.compute()
        _assert_no_token(_everything_shown(info.value), "a Zarr read's exception sent by a worker process")
        assert "chunk key 0.1.0.0" in str(info.value) and info.value.__cause__ is not None
        with pytest.raises(AssetReadError) as info:
            stac.compute()
        _assert_no_token(_everything_shown(info.value), "a STAC read's exception sent by a worker process")
        assert "b.tif?st=REDACTED" in str(info.value)


def test_a_stac_asset_refused_at_compute_time_shows_no_token_in_the_whole_traceback(server, refuse):
    from eocube.stac import AssetReadError, open_stac

    cube = open_stac(_stac_items(server), assets=["B04"], retries=1)
    refuse["/b.tif"] = None
    with dask.config.set(scheduler="threads"), pytest.raises(AssetReadError) as info:
        cube.compute()
    _assert_no_token(_everything_shown(info.value), "the exception of a STAC read (threads)")
    assert "b.tif?st=REDACTED" in str(info.value)


@pytest.mark.parametrize("times", [None, 1], ids=["refused", "refused-once"])
def test_the_cli_prints_no_token_when_a_chunk_is_refused(server, refuse, tmp_path, times):
    """``eocube gapfill`` on the signed store: its stdout and stderr (a one-line error, or Python's
    traceback of an error that is not eocube's) hold no signature value."""
    refuse[CHUNK] = times
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", "from eocube.cli import main; main()", "gapfill",
         "--source", server.url + "/cube.zarr" + SIGNED, "--out", str(tmp_path / "out.zarr"),
         "--tile", "8", "--no-progress", "--quicklook", str(tmp_path / "q.png")],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert run.returncode != 0, run.stdout + run.stderr
    _assert_no_token(run.stderr, "the command's stderr")
    _assert_no_token(run.stdout, "the command's stdout")
    assert "sig=REDACTED" in run.stderr  # the error names the file, its token redacted


def test_redact_exception_cleans_every_kind_of_chained_exception():
    """In place where it can (args, OSError fields, attributes, notes), through a stand-in where it
    cannot (read-only args, as rasterio's GDAL errors); groups, causes, contexts and cycles."""
    import pickle

    from rasterio._err import CPLE_HttpResponseError

    from eocube._redact import RedactedError, redact_exception

    url = "https://host/a.tif" + SIGNED
    try:
        try:
            try:
                raise CPLE_HttpResponseError(11, 1, f"HTTP 403 on /vsicurl/{url}")
            except Exception as gdal:
                error = OSError(2, f"cannot open {url}", url)
                error.add_note(f"while reading {url}")
                raise ExceptionGroup("reads failed", [error, KeyError(SIG)]) from gdal
        except ExceptionGroup as group:
            failure = RuntimeError("giving up")
            failure.detail = f"last URL {url}"
            raise failure from group
    except RuntimeError as exc:
        top = exc
    top.__context__.__context__ = top  # a cycle ends the walk
    clean = redact_exception(top, secrets=[SIG])
    assert clean is top  # nothing secret in its own message: kept as it is
    _assert_no_token(_everything_shown(clean) + clean.detail, "a redacted chain")
    group = clean.__cause__
    assert isinstance(group, ExceptionGroup) and isinstance(group.exceptions[0], FileNotFoundError)
    assert group.exceptions[0].filename == "https://host/a.tif?" + "&".join(
        f"{k}=REDACTED" for k in ("st", "se", "sp", "sv", "sig", "X-Amz-Signature"))
    stand_in = group.__cause__
    assert isinstance(stand_in, RedactedError) and "CPLE_HttpResponseError: HTTP 403" in str(stand_in)
    assert stand_in.__traceback__ is not None  # the original's frames are kept
    assert isinstance(pickle.loads(pickle.dumps(stand_in)), RedactedError)


@pytest.mark.parametrize("name", ["AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_ACCESS_KEY", "AZURE_STORAGE_MASTER_KEY",
                                  "AZURE_STORAGE_TOKEN", "AZURE_STORAGE_CLIENT_SECRET", "GOOGLE_BEARER_TOKEN"])
def test_every_credential_variable_obstore_reads_is_redacted(name, monkeypatch):
    """obstore reads these variables as credentials: their values never appear in a redacted text."""
    from eocube._redact import env_secrets, redact_text

    secret = "s3cr3t-value-of-" + name.lower()
    monkeypatch.setenv(name, secret)
    text = redact_text(f"request failed with credential {secret} for az://box/out.zarr", env_secrets())
    assert secret not in text
    assert "az://box/out.zarr" in text
