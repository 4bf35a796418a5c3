"""The cost of content identity (issue 21, items 3 and 4) on a 10,000-chunk store, against its write time.

Run:  .venv/bin/python benchmarks/bench_content_identity.py [--side 1000] [--chunk 10] [--dates 4]

A local Zarr format 2 store of (dates, 1, side, side) float32 values in (dates, 1, chunk, chunk)
chunks (10,000 chunk files by default, 1.6 kB each) is written by ``eocube.to_zarr``, timed
whole. Within that write, the time spent computing the CRC32C of each chunk as stored and the
time of the completion check (one listing of the array, the manifest written) are summed. Then,
against that write time, as ratios:

* fingerprint: ``open_zarr`` and its dask name, i.e. the input token (one listing of the array's
  10,000 objects, compared with the manifest), of the eocube store, and of the same store with
  its write record removed (a store eocube did not write: the listing's sizes and mtimes are
  hashed); and ``open_zarr`` with the listing switched off, which is what opening cost before;
* verify a rerun: ``to_zarr`` of the same cube into the complete store ("already complete",
  after checking the 10,000 objects against the manifest);
* verify a resume: a write killed after all but one chunk, resumed: about 9,999 ledger markers
  checked against one listing, the last chunks written, then the completion check.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import zarr

import eocube
from eocube.io import _chunkread, _manifest

_TOTALS: dict[str, float] = {}
_LOCK = threading.Lock()


@contextmanager
def timed_calls(module, name: str):
    """Sum the seconds spent in ``module.name`` while inside (calls from any thread)."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            with _LOCK:
                _TOTALS[name] = _TOTALS.get(name, 0.0) + time.perf_counter() - start

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


class Killed(Exception):
    """Stands for a kill."""


_KILL = {"after": None, "count": 0}


def _maybe_die(values: np.ndarray) -> np.ndarray:
    """The identity, raising :class:`Killed` after ``_KILL["after"]`` blocks (the same dask name in every run)."""
    with _LOCK:
        if _KILL["after"] is not None:
            if _KILL["count"] >= _KILL["after"]:
                raise Killed
            _KILL["count"] += 1
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--dates", type=int, default=4)
    args = parser.parse_args()
    t, n, c = args.dates, args.side, args.chunk
    data = da.random.default_rng(0).random((t, 1, n, n), chunks=(t, 1, c, c), dtype="float32").persist()
    cube = eocube.make_cube(data, time=pd.date_range("2020-01-01", periods=t, freq="5D"), band=["a"],
                            y=1e6 - 10 * (np.arange(n) + 0.5), x=10 * (np.arange(n) + 0.5), crs="EPSG:32633",
                            name="bench")
    chunks = data.npartitions
    tmp = Path(tempfile.mkdtemp(dir=os.environ.get("BENCH_DIR")))
    store = tmp / "ours.zarr"
    with dask.config.set(scheduler="threads"), timed_calls(_manifest, "checksum"), timed_calls(_manifest, "finish"):
        start = time.perf_counter()
        report = eocube.to_zarr(cube, store, zarr_format=2, progress=False)
        write = time.perf_counter() - start
    crc, finish = _TOTALS.pop("checksum", 0.0), _TOTALS.pop("finish", 0.0)
    assert report.chunks_written == chunks, report

    def fingerprint(path: Path) -> float:
        start = time.perf_counter()
        name = eocube.open_zarr(path).data.name
        seconds = time.perf_counter() - start
        assert name.startswith("eocube-read-")
        return seconds

    fingerprint(store)  # imports and caches warm
    ours = min(fingerprint(store) for _ in range(3))
    plain = tmp / "plain.zarr"
    shutil.copytree(store, plain)
    (plain / ".zmetadata").unlink()
    del zarr.open_group(str(plain), mode="r+").attrs["eocube_write"]
    foreign = min(fingerprint(plain) for _ in range(3))
    listing = _manifest.content
    _chunkread._manifest.content = lambda loc, variable, record: _manifest.Content("unlisted")  # type: ignore[assignment]
    try:
        before = min(fingerprint(store) for _ in range(3))
    finally:
        _chunkread._manifest.content = listing  # type: ignore[assignment]

    _TOTALS.clear()
    with timed_calls(_manifest, "resume_check"):
        start = time.perf_counter()
        again = eocube.to_zarr(cube, store, zarr_format=2, progress=False)
        rerun = time.perf_counter() - start
    rerun_check = _TOTALS.pop("resume_check", 0.0)
    assert again.chunks_written == 0, again

    killed = tmp / "killed.zarr"
    doomed = cube.copy(data=data.map_blocks(_maybe_die, dtype=data.dtype))
    _KILL.update(after=chunks - 1, count=0)
    with dask.config.set(scheduler="threads"):
        try:
            eocube.to_zarr(doomed, killed, zarr_format=2, progress=False)
        except Killed:
            pass
    _KILL.update(after=None, count=0)
    with timed_calls(_manifest, "resume_check"), timed_calls(_manifest, "finish"):
        start = time.perf_counter()
        resumed = eocube.to_zarr(doomed, killed, zarr_format=2, progress=False)
        resume = time.perf_counter() - start
    assert resumed.chunks_written <= 4 and resumed.chunks_skipped + resumed.chunks_written == chunks, resumed
    shutil.rmtree(tmp)

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {os.cpu_count()} cores, {cpu}; load average {os.getloadavg()[0]:.1f}")
    print(f"store: {chunks} chunks of {t}x1x{c}x{c} float32 ({t * c * c * 4 / 1e3:.1f} kB raw), Zarr format 2, local")
    rows = [
        ("write (to_zarr, new store)", write),
        ("  of which CRC32C of the stored chunks", crc),
        ("  of which completion check + manifest", finish),
        ("fingerprint: open_zarr + token, eocube store", ours),
        ("fingerprint: open_zarr + token, plain store", foreign),
        ("open_zarr without the listing (before)", before),
        ("rerun into the complete store (already complete)", rerun),
        ("  of which checking its objects against the manifest", rerun_check),
        (f"resume ({resumed.chunks_skipped} marked, {resumed.chunks_written} written, completed)", resume),
        ("  of which checking the markers against a listing", _TOTALS.get("resume_check", 0.0)),
        ("  of which completion check + manifest", _TOTALS.get("finish", 0.0)),
    ]
    for label, seconds in rows:
        print(f"  {label:54s} {seconds:8.3f} s  {seconds / write:6.3f} x write")


if __name__ == "__main__":
    main()
