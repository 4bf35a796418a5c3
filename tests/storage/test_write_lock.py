"""One writer at a time: the store's write lock (eocube.io._lock).

Two processes writing one new store at the same moment used to delete each other's files
(``OSError: Directory not empty``) and leave a store that no longer opened. Now the second gets
one line naming the holder; a lock a killed process left on this host is taken over with a
warning; a lock of a live process, or of another host, is refused. Same on S3 (moto).

No assertion depends on timing: the concurrent writes start together behind a file barrier,
and the winner's tasks wait on a gate file that the test opens only after the loser has ended.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

import eocube
from eocube.errors import StoreLockedError
from eocube.io import check_target

from .conftest import object_keys, s3_client

CUBE_CODE = """
import numpy as np, pandas as pd
import eocube

def lock_cube():
    rng = np.random.default_rng(7)
    data = (rng.random((4, 2, 16, 16)) * 1000).astype("float32")
    x = 465000.0 + 10.0 * (np.arange(16) + 0.5)
    y = 5080000.0 - 10.0 * (np.arange(16) + 0.5)
    cube = eocube.make_cube(data, time=pd.date_range("2020-01-01", periods=4, freq="5D"), band=["red", "nir"],
                            y=y, x=x, crs="EPSG:32633", name="lockcube")
    return cube.chunk({"time": -1, "band": 1, "y": 8, "x": 8})
"""
_NS: dict = {}
exec(CUBE_CODE, _NS)  # the same cube in this process and in the writer processes
lock_cube = _NS["lock_cube"]

WRITER = CUBE_CODE + textwrap.dedent("""
    import os, sys, time
    import dask, dask.array as da, numpy as np
    from eocube.errors import StoreLockedError

    store, ready, go, gate, delay = sys.argv[1:6]
    cube = lock_cube()
    if gate != "-":  # the tasks wait until the test opens the gate
        def gated(block):
            while not os.path.exists(gate):
                time.sleep(0.02)
            return block
        cube = cube.copy(data=da.map_blocks(gated, cube.data, dtype=cube.dtype, meta=np.array((), cube.dtype)))
    open(ready, "w").close()
    while not os.path.exists(go):  # both writers start together
        time.sleep(0.005)
    with dask.config.set({"scheduler": "synchronous", "eocube.testing.chunk-delay": float(delay)}):
        try:
            report = eocube.to_zarr(cube, store, progress=False)
        except StoreLockedError as exc:
            print("REFUSED", exc)
            sys.exit(3)
    print("REPORT", report)
""")


def _lock_path(store: Path) -> Path:
    return store.with_name(store.name + ".eocube-lock")


WAIT = float(os.environ.get("EOCUBE_TEST_WAIT", "600"))
"""Seconds any wait of these tests allows: a bound for a loaded CI machine, not a timing assertion (they
return as soon as what they wait for happens). ``EOCUBE_TEST_WAIT`` lowers it to see quickly what the
tests say about code that never does what they wait for."""


def _wait_for(predicate, what: str, timeout: float = WAIT) -> None:
    """Wait (not a timing assertion: a generous bound for a loaded machine) until ``predicate()``."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _two_writers(tmp_path: Path, store: str, *, gated: bool, delay: float = 0.0, tag: str = "") -> list[tuple]:
    """Start two writer processes together; return [(pid, returncode, stdout, stderr)] of each."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    go, gate = tmp_path / f"go{tag}", tmp_path / f"gate{tag}"
    readies = [tmp_path / f"ready{tag}-{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, str(script), store, str(r), str(go), str(gate) if gated else "-",
                               str(delay)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for r in readies]
    try:
        _wait_for(lambda: all(r.exists() for r in readies) or any(p.poll() is not None for p in procs),
                  "both writers to be ready")
        go.touch()
        if gated:  # the winner holds the lock on the gate; the loser ends (refused) before it opens
            try:
                _wait_for(lambda: any(p.poll() is not None for p in procs), "one writer to end")
            finally:
                gate.touch()
        out = [p.communicate(timeout=WAIT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(p.pid, p.returncode, o, e) for p, (o, e) in zip(procs, out)]


def _check_one_wrote_one_refused(results: list[tuple]) -> None:
    host = socket.gethostname()
    wrote = [r for r in results if r[1] == 0 and "REPORT wrote" in r[2]]
    refused = [r for r in results if r[1] == 3]
    assert len(wrote) == 1 and len(refused) == 1, results
    winner, loser = wrote[0], refused[0]
    assert "8 of 8 chunks computed" in winner[2] or "8 of 8 shards computed" in winner[2], winner
    message = loser[2].strip().removeprefix("REFUSED ")
    assert "\n" not in message and "Traceback" not in loser[3], loser
    assert f"process {winner[0]} " in message and f"on host {host} " in message, message
    assert "one writer at a time" in message and "run again" in message, message


@pytest.mark.slow
def test_two_processes_writing_one_new_store_one_writes_the_other_is_told_who(tmp_path, assert_same_cube):
    store = tmp_path / "out.zarr"
    results = _two_writers(tmp_path, str(store), gated=True)
    _check_one_wrote_one_refused(results)
    assert_same_cube(lock_cube(), eocube.open_zarr(store))
    assert not _lock_path(store).exists()  # given back


@pytest.mark.slow
def test_simultaneous_writers_never_crash_or_break_the_store(tmp_path, assert_same_cube):
    """Racing writers (no gate, chunk-delay keeps the winner busy): every try ends cleanly, the store is whole."""
    for attempt in range(3):
        store = tmp_path / f"race{attempt}.zarr"
        results = _two_writers(tmp_path, str(store), gated=False, delay=0.2, tag=str(attempt))
        assert all(rc in (0, 3) for _, rc, _, _ in results), results  # no traceback, no crash
        reports = [o for _, rc, o, _ in results if rc == 0]
        assert sum("REPORT wrote" in o for o in reports) == 1, results  # exactly one computed the store ...
        if len(reports) == 2:  # ... and the other came after it had finished
            assert any("already complete" in o for o in reports), results
        else:
            loser = next(r for r in results if r[1] == 3)
            winner = next(r for r in results if r[1] == 0)
            assert f"process {winner[0]} " in loser[2], results
        assert_same_cube(lock_cube(), eocube.open_zarr(store))
        assert not _lock_path(store).exists()


def _write_lock(path: Path, **fields) -> bytes:
    """A lock file as eocube writes it (see eocube.io._lock), with the given fields."""
    record = {"eocube_write_lock": 1, "id": "0123456789abcdef", "store": str(path), "host": socket.gethostname(),
              "pid_namespace": os.stat("/proc/self/ns/pid").st_ino, "user": "someone",
              "since": "2026-01-02T03:04:05Z", **fields}
    data = json.dumps(record).encode()
    path.write_bytes(data)
    return data


def _exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_lock_naming_a_dead_process_of_this_host_is_taken_over_with_a_warning(tmp_path, caplog, assert_same_cube):
    store = tmp_path / "dead.zarr"
    pid = _exited_pid()
    _write_lock(_lock_path(store), pid=pid, process_started="2026-01-02T03:00:00Z")
    with caplog.at_level(logging.WARNING, logger="eocube"):
        report = eocube.to_zarr(lock_cube(), store, progress=False)
    assert report.chunks_written == 8
    took = [r.getMessage() for r in caplog.records if "took over the write lock" in r.getMessage()]
    assert len(took) == 1 and f"process {pid} " in took[0] and f"no process {pid} runs on this host" in took[0], took
    assert not _lock_path(store).exists()
    assert_same_cube(lock_cube(), eocube.open_zarr(store))


def test_a_reused_pid_does_not_keep_a_dead_writers_lock(tmp_path, caplog):
    store = tmp_path / "reused.zarr"
    sleeper = subprocess.Popen(["sleep", "600"])  # alive, but not the process that took the lock
    try:
        _write_lock(_lock_path(store), pid=sleeper.pid, process_started="2020-01-01T00:00:00Z")
        with caplog.at_level(logging.WARNING, logger="eocube"):
            eocube.to_zarr(lock_cube(), store, progress=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert any(f"process {sleeper.pid} is another program" in r.getMessage() for r in caplog.records), caplog.text
    assert not _lock_path(store).exists()


def test_a_lock_held_by_a_live_process_of_this_host_is_refused_in_one_line(tmp_path):
    import psutil

    store = tmp_path / "live.zarr"
    holder = subprocess.Popen(["sleep", "600"])
    try:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(psutil.Process(holder.pid).create_time()))
        data = _write_lock(_lock_path(store), pid=holder.pid, process_started=started)
        for call in (eocube.to_zarr, check_target):  # check_target: before any cluster or computation
            with pytest.raises(StoreLockedError) as info:
                call(lock_cube(), store, **({"progress": False} if call is eocube.to_zarr else {}))
            message = str(info.value)
            assert "\n" not in message
            assert f"process {holder.pid} of user someone on host {socket.gethostname()} since 2026-01-02T03:04:05Z" \
                in message, message
            assert f"stop process {holder.pid}" in message and "wait until it ends and run again" in message
        assert not store.exists()  # nothing was written
        assert _lock_path(store).read_bytes() == data  # the holder's lock is untouched
    finally:
        holder.kill()
        holder.wait()
    report = eocube.to_zarr(lock_cube(), store, progress=False)  # the holder is gone: taken over
    assert report.chunks_written == 8 and not _lock_path(store).exists()


def test_a_lock_from_another_host_is_never_taken_over_however_old(tmp_path):
    store = tmp_path / "elsewhere.zarr"
    data = _write_lock(_lock_path(store), host="node-17.cluster", pid=_exited_pid(),
                       process_started="2020-01-01T00:00:00Z", since="2020-01-01T00:00:05Z")
    with pytest.raises(StoreLockedError) as info:
        eocube.to_zarr(lock_cube(), store, progress=False)
    message = str(info.value)
    assert "\n" not in message and "on host node-17.cluster since 2020-01-01T00:00:05Z" in message, message
    assert "cannot check a process on another host" in message and f"delete the lock {_lock_path(store)}" in message
    assert _lock_path(store).read_bytes() == data and not store.exists()
    _lock_path(store).unlink()  # the remedy the message gives
    assert eocube.to_zarr(lock_cube(), store, progress=False).chunks_written == 8


def test_a_lock_left_by_a_killed_writer_is_taken_over_and_the_write_resumes(tmp_path, caplog, assert_same_cube):
    """A real SIGKILL: the writer process dies holding the lock; the next run of this host takes it over."""
    store = tmp_path / "killed.zarr"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    ready, go = tmp_path / "ready", tmp_path / "go"
    go.touch()
    proc = subprocess.Popen([sys.executable, str(script), str(store), str(ready), str(go), "-", "600"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _lock_path(store).exists() and (store / ".eocube-progress").exists(), "the write to start")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert _lock_path(store).exists()  # a SIGKILL runs no finally: the lock stays
    with caplog.at_level(logging.WARNING, logger="eocube"):
        report = eocube.to_zarr(lock_cube(), store, progress=False)
    assert report.chunks_written + report.chunks_skipped == 8
    assert any(f"took over the write lock of process {proc.pid} " in r.getMessage() for r in caplog.records)
    assert_same_cube(lock_cube(), eocube.open_zarr(store))
    assert not _lock_path(store).exists()


def _raising(exc: BaseException):
    def block(x: np.ndarray) -> np.ndarray:
        raise exc
    return block


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), ValueError("model failed")], ids=["interrupt", "error"])
def test_the_lock_is_given_back_on_an_interrupt_or_an_error(tmp_path, exc, caplog):
    store = tmp_path / "broken.zarr"
    cube = lock_cube()
    broken = cube.copy(data=da.map_blocks(_raising(exc), cube.data, dtype=cube.dtype, meta=np.array((), cube.dtype)))
    with dask.config.set(scheduler="synchronous"), pytest.raises(type(exc)):
        eocube.to_zarr(broken, store, progress=False)
    assert not _lock_path(store).exists()
    with caplog.at_level(logging.WARNING, logger="eocube"):
        eocube.to_zarr(broken.copy(data=cube.data), store, progress=False, mode="overwrite")
    assert "took over" not in caplog.text  # nothing was left to take over


def test_another_thread_of_this_process_is_refused_while_one_writes(tmp_path):
    store = tmp_path / "threads.zarr"
    release = threading.Event()

    def held(block: np.ndarray) -> np.ndarray:
        release.wait(WAIT)
        return block

    cube = lock_cube()
    slow = cube.copy(data=da.map_blocks(held, cube.data, dtype=cube.dtype, meta=np.array((), cube.dtype)))
    outcome: dict = {}

    def write() -> None:
        with dask.config.set(scheduler="synchronous"):
            outcome["report"] = eocube.to_zarr(slow, store, progress=False)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        _wait_for(lambda: _lock_path(store).exists(), "the first write to take the lock")
        with pytest.raises(StoreLockedError, match=r"another call in this process \(pid \d+"):
            eocube.to_zarr(cube, store, progress=False)
    finally:
        release.set()
        writer.join(WAIT)
    assert outcome["report"].chunks_written == 8 and not _lock_path(store).exists()


def test_the_lock_survives_an_overwrite_that_deletes_the_store(tmp_path):
    store = tmp_path / "over.zarr"
    eocube.to_zarr(lock_cube(), store, progress=False)
    seen: list[bool] = []

    def look(block: np.ndarray) -> np.ndarray:
        seen.append(_lock_path(store).exists())
        return block + 1

    cube = lock_cube()
    changed = cube.copy(data=da.map_blocks(look, cube.data, dtype=cube.dtype, meta=np.array((), cube.dtype)))
    with dask.config.set(scheduler="synchronous"):
        eocube.to_zarr(changed, store, progress=False, mode="overwrite")
    assert seen and all(seen)  # held through the deletion and re-creation of the store
    assert not _lock_path(store).exists()


# ------------------------------------------------------------------------------------------------ S3 (moto)


@pytest.mark.slow
def test_s3_two_processes_one_writes_the_other_is_told_who(tmp_path, moto, s3, assert_same_cube):
    url = f"s3://{s3}/runs/out.zarr"
    _check_one_wrote_one_refused(_two_writers(tmp_path, url, gated=True))
    assert_same_cube(lock_cube(), eocube.open_zarr(url))
    assert "runs/out.zarr.eocube-lock" not in object_keys(moto, s3)  # given back


def _put_lock(moto, bucket: str, key: str, **fields) -> bytes:
    record = {"eocube_write_lock": 1, "id": "0123456789abcdef", "host": socket.gethostname(),
              "pid_namespace": os.stat("/proc/self/ns/pid").st_ino, "user": "someone",
              "since": "2026-01-02T03:04:05Z", **fields}
    data = json.dumps(record).encode()
    s3_client(moto).put_object(Bucket=bucket, Key=key, Body=data)
    return data


def test_s3_a_lock_of_a_dead_process_is_taken_over_and_one_of_another_host_is_refused(moto, s3, caplog,
                                                                                      assert_same_cube):
    dead = _exited_pid()
    _put_lock(moto, s3, "a.zarr.eocube-lock", pid=dead, process_started="2026-01-02T03:00:00Z")
    with caplog.at_level(logging.WARNING, logger="eocube"):
        eocube.to_zarr(lock_cube(), f"s3://{s3}/a.zarr", progress=False)
    assert any(f"no process {dead} runs on this host" in r.getMessage() for r in caplog.records), caplog.text
    assert_same_cube(lock_cube(), eocube.open_zarr(f"s3://{s3}/a.zarr"))
    assert "a.zarr.eocube-lock" not in object_keys(moto, s3)

    data = _put_lock(moto, s3, "b.zarr.eocube-lock", host="node-17.cluster", pid=dead,
                     process_started="2020-01-01T00:00:00Z")
    with pytest.raises(StoreLockedError) as info:
        eocube.to_zarr(lock_cube(), f"s3://{s3}/b.zarr", progress=False)
    message = str(info.value)
    assert "\n" not in message and "on host node-17.cluster" in message
    assert f"delete the lock s3://{s3}/b.zarr.eocube-lock" in message, message
    assert s3_client(moto).get_object(Bucket=s3, Key="b.zarr.eocube-lock")["Body"].read() == data
    assert not any(k.startswith("b.zarr/") for k in object_keys(moto, s3))


def test_s3_a_live_holder_of_this_host_is_refused(moto, s3):
    import psutil

    holder = subprocess.Popen(["sleep", "600"])
    try:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(psutil.Process(holder.pid).create_time()))
        _put_lock(moto, s3, "c.zarr.eocube-lock", pid=holder.pid, process_started=started)
        with pytest.raises(StoreLockedError, match=rf"being written by process {holder.pid} of user someone"):
            eocube.to_zarr(lock_cube(), f"s3://{s3}/c.zarr", progress=False)
    finally:
        holder.kill()
        holder.wait()


def test_a_store_spelled_through_a_symlink_has_the_same_lock(tmp_path):
    """Two spellings of one store (one through a symlinked folder) share one lock file."""
    from eocube.io import _lock, _stores

    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    direct = _lock._FileLock(_stores.resolve(str(real / "out.zarr")))
    linked = _lock._FileLock(_stores.resolve(str(tmp_path / "link" / "out.zarr")))
    assert direct.path == linked.path == real / ("out.zarr" + _lock.LOCK_SUFFIX)
