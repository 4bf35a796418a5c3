"""Icechunk evaluation: write speed against eocube.to_zarr and zarr-python, and its conflict detection.

Run (icechunk 1.1.x is not an eocube dependency; 2.x needs Python >= 3.12):

    python3 -m venv /tmp/ice-venv && /tmp/ice-venv/bin/pip install "icechunk==1.1.*"
    # or, without touching eocube's virtualenv: icechunk alone (it needs only zarr) in a folder
    /tmp/ice-venv/bin/pip install --no-deps --target /tmp/ice-only "icechunk==1.1.*"
    PYTHONPATH=/tmp/ice-only .venv/bin/python benchmarks/bench_icechunk_eval.py [--s3] [--size 1024] [--tile 256]

Without icechunk it says so and exits 0.

What it measures, on the same dask-backed float32 cube (same chunks, Zstd level 3, Zarr format 3,
threaded scheduler, best of ``--repeat``, the writers in turn within each repeat):

* ``zarr``: zarr-python's ``create_array`` + ``dask.array.store`` (no resumability, no lock);
* ``eocube``: :func:`eocube.to_zarr` (write lock, fingerprint, ledger markers, fsync, consolidation);
* ``icechunk``: a new repository, the array created and committed, then the chunks written through
  ``icechunk.dask.store_dask`` into a fork of a session, merged and committed (its documented way
  to write dask arrays).

Local disk always; with ``--s3`` also moto's S3 server on localhost (started here from the
virtualenv's ``moto_server``). Every store is read back and compared with the data. Then the
conflict checks: two sessions from one parent writing the same chunk, and writing different
chunks (second commit, rebase), and two ``Repository.create`` on one prefix.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

try:
    import icechunk
    from icechunk.dask import store_dask
except ImportError:
    print("icechunk is not installed: nothing to evaluate (see this script's docstring for how to install it)")
    sys.exit(0)

import dask
import dask.array as da
import numpy as np
import pandas as pd
import zarr

import eocube

KEY, SECRET = "AKIAEOCUBEBENCHKEY001", "eocube-bench-secret-not-real"


def _cube(dates: int, size: int, tile: int) -> tuple[da.Array, object]:
    chunks = (dates, 1, tile, tile)
    data = da.random.default_rng(0).random((dates, 2, size, size), chunks=chunks, dtype="float32").persist()
    cube = eocube.make_cube(data, time=pd.date_range("2020-01-01", periods=dates, freq="5D"), band=["a", "b"],
                            y=1e6 - 10 * (np.arange(size) + 0.5), x=10 * (np.arange(size) + 0.5), crs="EPSG:32633",
                            name="bench")
    return data, cube


def _zarr_direct(data: da.Array, store: object) -> Callable[[], np.ndarray]:
    arr = zarr.create_array(store, name="bench", shape=data.shape, chunks=data.chunksize, dtype="float32",
                            compressors=[zarr.codecs.ZstdCodec(level=3)], zarr_format=3, overwrite=True)
    da.store(data, arr, lock=False)
    return lambda: zarr.open_array(store, path="bench", mode="r")[:]


def _icechunk(data: da.Array, storage: object) -> Callable[[], np.ndarray]:
    repo = icechunk.Repository.create(storage)
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="bench", shape=data.shape, chunks=data.chunksize, dtype="float32",
                      compressors=[zarr.codecs.ZstdCodec(level=3)], zarr_format=3)
    session.commit("create the array")
    session = repo.writable_session("main")
    fork = session.fork()
    remote = store_dask(sources=[data], targets=[zarr.open_array(fork.store, path="bench", mode="r+")])
    session.merge(remote)
    session.commit("write the chunks")
    return lambda: zarr.open_array(repo.readonly_session("main").store, path="bench", mode="r")[:]


def _eocube(cube: object, target: str, tile: int, opts: dict | None) -> Callable[[], np.ndarray]:
    report = eocube.to_zarr(cube, target, zarr_format=3, chunks={"y": tile, "x": tile}, progress=False,
                            mode="overwrite", storage_options=opts)
    assert report.chunks_written == report.chunks_total
    return lambda: eocube.open_zarr(target, storage_options=opts).values


def _timed(results: dict[str, float], name: str, write: Callable[[], Callable[[], np.ndarray]],
           expected: np.ndarray) -> None:
    start = time.perf_counter()
    read = write()
    seconds = time.perf_counter() - start
    np.testing.assert_array_equal(read(), expected)  # every writer stored the same values
    results[name] = min(results.get(name, np.inf), seconds)


def _start_moto() -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).with_name("moto_server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"moto_server did not start on {url}")


def _s3_setup(url: str) -> str:
    import boto3

    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET,
                      AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1")
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=bucket)
    return bucket


def _s3_storage(url: str, bucket: str, prefix: str) -> object:
    return icechunk.s3_storage(bucket=bucket, prefix=prefix, endpoint_url=url, allow_http=True, region="us-east-1",
                               access_key_id=KEY, secret_access_key=SECRET, force_path_style=True)


def _print(title: str, results: dict[str, float], nbytes: int) -> None:
    print(title)
    for name, seconds in results.items():
        print(f"  {name:10s} {seconds:7.2f} s  {nbytes / 2**20 / seconds:8.1f} MiB/s")
    print(f"  write-speed ratio icechunk / eocube.to_zarr: {results['eocube'] / results['icechunk']:.2f}   "
          f"icechunk / zarr-python: {results['zarr'] / results['icechunk']:.2f}   "
          f"eocube / zarr-python: {results['zarr'] / results['eocube']:.2f}  (> 1: faster)")


def _conflicts(storage: object) -> None:
    """Two writers of one repository: what icechunk detects."""
    repo = icechunk.Repository.create(storage)
    s = repo.writable_session("main")
    zarr.create_array(s.store, name="x", shape=(4, 4), chunks=(2, 2), dtype="float32", fill_value=0)
    s.commit("create")
    one, two = repo.writable_session("main"), repo.writable_session("main")
    zarr.open_array(one.store, path="x", mode="r+")[0:2, 0:2] = 1
    zarr.open_array(two.store, path="x", mode="r+")[0:2, 0:2] = 2
    one.commit("writer one")
    try:
        two.commit("writer two")
        print("  same chunk, same parent: the second commit SUCCEEDED (no conflict detected)")
    except icechunk.ConflictError as exc:
        print(f"  same chunk, same parent: second commit -> ConflictError ({str(exc).splitlines()[0][:90]})")
        try:
            two.rebase(icechunk.ConflictDetector())
            print("    rebase with ConflictDetector succeeded (unexpected)")
        except icechunk.RebaseFailedError as err:
            print(f"    rebase with ConflictDetector -> RebaseFailedError ({len(err.conflicts)} conflict(s))")
    three, four = repo.writable_session("main"), repo.writable_session("main")
    zarr.open_array(three.store, path="x", mode="r+")[0:2, 0:2] = 3
    zarr.open_array(four.store, path="x", mode="r+")[2:4, 2:4] = 4
    three.commit("writer three")
    try:
        four.commit("writer four")
        print("  different chunks, same parent: second commit succeeded")
    except icechunk.ConflictError:
        four.rebase(icechunk.ConflictDetector())
        four.commit("writer four, rebased")
        print("  different chunks, same parent: second commit -> ConflictError; after rebase(ConflictDetector) "
              "it commits")
    final = zarr.open_array(repo.readonly_session("main").store, path="x", mode="r")[:]
    print(f"  stored: {final[0, 0]:.0f} in chunk (0, 0) (writer three's commit; writer two's value 2 never landed), "
          f"{final[3, 3]:.0f} in chunk (1, 1) (writer four, rebased)")
    try:
        icechunk.Repository.create(storage)
        print("  a second Repository.create on the same prefix succeeded")
    except icechunk.IcechunkError as exc:
        print(f"  a second Repository.create on the same prefix -> {type(exc).__name__}: "
              f"{str(exc).strip().splitlines()[0].strip()[:80]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--dates", type=int, default=12)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--s3", action="store_true", help="also on moto's S3 server")
    args = parser.parse_args()
    icechunk.set_logs_filter("error")  # its warning for local storage is quoted below
    data, cube = _cube(args.dates, args.size, args.tile)
    expected = data.compute()
    nbytes = int(data.nbytes)
    layout = (f"cube {data.shape} float32, {nbytes / 2**20:.0f} MiB, chunks {data.chunksize} "
              f"({data.npartitions} chunks), Zarr format 3, Zstd 3, best of {args.repeat}")
    print(f"icechunk {icechunk.__version__}, zarr {zarr.__version__}, eocube {eocube.__version__}, "
          f"{os.cpu_count()} CPUs; {layout}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-icechunk-"))
    try:
        local: dict[str, float] = {}
        with dask.config.set(scheduler="threads"):
            for i in range(args.repeat):
                _timed(local, "zarr", lambda: _zarr_direct(data, str(tmp / f"z{i}.zarr")), expected)  # noqa: B023 - called within this iteration
                _timed(local, "eocube", lambda: _eocube(cube, str(tmp / f"e{i}.zarr"), args.tile, None), expected)  # noqa: B023 - called within this iteration
                _timed(local, "icechunk", lambda: _icechunk(data, icechunk.local_filesystem_storage(
                    str(tmp / f"i{i}.icechunk"))), expected)  # noqa: B023 - called within this iteration
        _print("local disk:", local, nbytes)
        print("conflicts, local file system (icechunk warns: 'The LocalFileSystem storage is not safe for "
              "concurrent commits'):")
        _conflicts(icechunk.local_filesystem_storage(str(tmp / "conflicts.icechunk")))
        if args.s3:
            proc, url = _start_moto()
            try:
                bucket = _s3_setup(url)
                remote: dict[str, float] = {}
                with dask.config.set(scheduler="threads"):
                    for i in range(args.repeat):
                        from obstore.store import S3Store
                        from zarr.storage import ObjectStore

                        s3 = S3Store(bucket, prefix=f"z{i}.zarr", endpoint=url, client_options={"allow_http": True},
                                     access_key_id=KEY, secret_access_key=SECRET, region="us-east-1")
                        _timed(remote, "zarr", lambda: _zarr_direct(data, ObjectStore(s3)), expected)  # noqa: B023 - called within this iteration
                        _timed(remote, "eocube", lambda: _eocube(cube, f"s3://{bucket}/e{i}.zarr", args.tile, None),  # noqa: B023 - called within this iteration
                               expected)
                        _timed(remote, "icechunk", lambda: _icechunk(data, _s3_storage(url, bucket, f"i{i}")),  # noqa: B023 - called within this iteration
                               expected)
                _print("S3 (moto on localhost):", remote, nbytes)
                print("conflicts, S3 (moto):")
                _conflicts(_s3_storage(url, bucket, "conflicts"))
            finally:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
