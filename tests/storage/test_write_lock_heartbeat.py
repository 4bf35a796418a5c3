"""The write lock's heartbeat: a lock left on another node by a killed job is taken over.

A job killed at its time limit (SIGKILL, no ``finally``) and resubmitted lands on another node of the
cluster: its lock names a host whose process table eocube cannot read. While a write holds the lock, a
thread of the writing process refreshes it (``eocube.lock.heartbeat``); a lock of another host whose last
refresh is older than ``eocube.lock.stale-after`` is taken over with a warning, one that beats is refused.
Ages are differences between two stamps of the store's own clock (the lock against a probe written now).

No assertion depends on timing: locks are aged by setting their mtime into the past relative to a probe
file of the same folder; waits poll with a generous deadline (WAIT) and return as soon as what they wait
for has happened; S3 ages (LastModified, to the second) are waited for by polling the probe difference.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

import eocube
from eocube.errors import StoreError, StoreLockedError
from eocube.io import check_target

from .conftest import object_keys, s3_client
from .test_write_lock import (
    CUBE_CODE,
    WAIT,
    _check_one_wrote_one_refused,
    _lock_path,
    _two_writers,
    _wait_for,
    lock_cube,
)

OTHER_HOST = "node-17.cluster"
FAST = {"eocube.lock.heartbeat": 0.2, "eocube.lock.stale-after": 1.0}
"""A heartbeat of 0.2 s: the tests see it beat without waiting long (stale-after must be at least twice it)."""

REMOTE_WRITER = CUBE_CODE + textwrap.dedent("""
    import os, socket, sys, time
    store, host, heartbeat, stale_after, gate = sys.argv[1:6]
    socket.gethostname = lambda: host  # this process plays a writer on another node of the cluster
    import dask, dask.array as da, numpy as np

    def gated(block):  # the tasks wait until the test opens the gate
        while not os.path.exists(gate):
            time.sleep(0.02)
        return block

    cube = lock_cube()
    if gate != "-":
        cube = cube.copy(data=da.map_blocks(gated, cube.data, dtype=cube.dtype, meta=np.array((), cube.dtype)))
    with dask.config.set({"scheduler": "synchronous", "eocube.lock.heartbeat": float(heartbeat),
                          "eocube.lock.stale-after": float(stale_after),
                          "eocube.testing.chunk-delay": 600 if gate == "-" else 0}):  # "-": the same cube, slowly
        print("REPORT", eocube.to_zarr(cube, store, progress=False), flush=True)
""")


def _fs_now(folder: Path) -> float:
    """The file system's clock now: the mtime of a probe file created in ``folder`` (as eocube reads it)."""
    probe = folder / f".probe-{uuid.uuid4().hex}"
    probe.touch()
    try:
        return probe.stat().st_mtime
    finally:
        probe.unlink()


def _remote_lock(path: Path, *, age: float = 0.0, heartbeat: float = 30.0, stale_after: float = 300.0,
                 **fields) -> bytes:
    """The lock of a writer on another host, as eocube writes it, last refreshed ``age`` seconds ago."""
    record = {"eocube_write_lock": 2, "id": "fedcba9876543210", "store": str(path), "host": OTHER_HOST,
              "pid": 4242, "pid_namespace": 4026531836, "process_started": "2026-01-02T03:00:00Z",
              "user": "someone", "since": "2026-01-02T03:04:05Z", "heartbeat_s": heartbeat,
              "stale_after_s": stale_after, **fields}
    data = json.dumps(record).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age:
        then = _fs_now(path.parent) - age
        os.utime(path, (then, then))
    return data


def _messages(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in list(caplog.records) if text in r.getMessage()]


class _GatedWrite:
    """``to_zarr`` of the test cube in a thread of this process; its tasks wait until :meth:`open`."""

    def __init__(self, store: str | Path) -> None:
        self.release = threading.Event()
        self.outcome: dict = {}
        cube = lock_cube()

        def held(block: np.ndarray) -> np.ndarray:
            self.release.wait(WAIT)
            return block

        self.cube = cube.copy(data=da.map_blocks(held, cube.data, dtype=cube.dtype, meta=np.array((), cube.dtype)))
        self.thread = threading.Thread(target=self._write, args=(store,))
        self.thread.start()

    def _write(self, store: str | Path) -> None:
        try:
            self.outcome["report"] = eocube.to_zarr(self.cube, store, progress=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.outcome["error"] = exc

    def open(self) -> dict:
        self.release.set()
        self.thread.join(WAIT)
        return self.outcome


@contextlib.contextmanager
def _beating(refresh, after=lambda: True):
    """Within the block, ``refresh()`` every 0.1 s (once ``after()`` holds): the holder of a lock is alive."""
    done = threading.Event()

    def run() -> None:
        _wait_for(lambda: done.is_set() or after(), "the moment to start beating")
        while not done.wait(0.1):
            refresh()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(WAIT)


def _heartbeat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("eocube-lock-heartbeat")]


# ------------------------------------------------------------------------------------------------ local disk


def test_a_lock_of_another_host_whose_heartbeat_beats_is_refused(tmp_path):
    store = tmp_path / "fresh.zarr"
    lock = _lock_path(store)
    data = _remote_lock(lock, heartbeat=4.0)  # taken just now by a writer that beats every 4 s (here: faster)
    for call in (eocube.to_zarr, check_target):
        with _beating(lambda: os.utime(lock)), pytest.raises(StoreLockedError) as info:
            call(lock_cube(), store, **({"progress": False} if call is eocube.to_zarr else {}))
        message = str(info.value)
        assert "\n" not in message, message
        assert f"process 4242 of user someone on host {OTHER_HOST} since 2026-01-02T03:04:05Z" in message, message
        assert "whose heartbeat refreshed the lock" in message and "wait until it ends and run again" in message
        assert "taken over once it has been silent for 5 min (eocube.lock.stale-after)" in message, message
    assert _lock_path(store).read_bytes() == data and not store.exists()


def test_a_lock_of_another_host_silent_for_longer_than_stale_after_is_taken_over_with_a_warning(
        tmp_path, caplog, assert_same_cube):
    store = tmp_path / "abandoned.zarr"
    _remote_lock(_lock_path(store), age=3600.0, heartbeat=5.0, stale_after=60.0)  # silent for an hour
    with dask.config.set({"eocube.lock.heartbeat": 5, "eocube.lock.stale-after": "1 minute"}), \
            caplog.at_level(logging.WARNING, logger="eocube"):
        check_target(lock_cube(), store)  # passes: the write will take the lock over
        report = eocube.to_zarr(lock_cube(), store, progress=False)
    assert report.chunks_written == 8
    took = _messages(caplog, "took over the write lock")
    assert len(took) == 1, caplog.text
    assert f"of process 4242 of user someone on host {OTHER_HOST} since 2026-01-02T03:04:05Z" in took[0], took
    assert re.search(r"its heartbeat has been silent for \d+ min \(a lock of another host is taken over after "
                     r"60 s of silence, eocube.lock.stale-after\)", took[0]), took
    assert not _lock_path(store).exists() and not list(tmp_path.glob(".*eocube-lock*"))  # no probe, no claim left
    assert_same_cube(lock_cube(), eocube.open_zarr(store))


def test_the_holders_own_longer_stale_after_is_respected(tmp_path, caplog):
    """A writer that said "stale after 1 h" is not taken over after 10 min of silence (ours: 1 min): watched."""
    store = tmp_path / "patient.zarr"
    lock = _lock_path(store)
    data = _remote_lock(lock, age=600.0, heartbeat=2.0, stale_after=3600.0)
    with dask.config.set({"eocube.lock.heartbeat": 5, "eocube.lock.stale-after": 60}), \
            caplog.at_level(logging.WARNING, logger="eocube"), \
            _beating(lambda: os.utime(lock), after=lambda: _messages(caplog, "waiting up to")), \
            pytest.raises(StoreLockedError) as info:
        eocube.to_zarr(lock_cube(), store, progress=False)
    waited = _messages(caplog, "waiting up to")
    assert len(waited) == 1 and "has not been refreshed for 10 min" in waited[0], waited
    assert "waiting up to 50 min for it to beat" in waited[0], waited  # to 60 min of silence, the holder's limit
    assert "taken over once it has been silent for 60 min" in str(info.value), info.value
    assert lock.read_bytes() == data and not store.exists() and not _messages(caplog, "took over")


def test_the_heartbeat_refreshes_the_lock_and_stops_with_the_write(tmp_path):
    store = tmp_path / "beating.zarr"
    lock = _lock_path(store)
    with dask.config.set({**FAST, "scheduler": "synchronous"}):
        write = _GatedWrite(store)
        try:
            _wait_for(lock.exists, "the write to take its lock")
            first, content = lock.stat().st_mtime_ns, lock.read_bytes()
            _wait_for(lambda: lock.stat().st_mtime_ns > first, "the heartbeat to refresh the lock's mtime")
            assert lock.read_bytes() == content  # refreshed, not rewritten: the same lock
            assert json.loads(content)["heartbeat_s"] == 0.2 and json.loads(content)["stale_after_s"] == 1.0
            assert any(str(store) in t.name for t in _heartbeat_threads())
        finally:
            outcome = write.open()
    assert outcome["report"].chunks_written == 8, outcome
    assert not lock.exists()
    assert not any(str(store) in t.name for t in _heartbeat_threads())  # giving the lock back stopped it


def test_a_write_whose_lock_was_taken_from_it_says_so_and_leaves_the_new_holders_lock(tmp_path, caplog):
    store = tmp_path / "stolen.zarr"
    lock = _lock_path(store)
    with dask.config.set({**FAST, "scheduler": "synchronous"}), caplog.at_level(logging.WARNING, logger="eocube"):
        write = _GatedWrite(store)
        try:
            _wait_for(lock.exists, "the write to take its lock")
            aside = tmp_path / "aside"
            theirs = _remote_lock(aside)
            os.replace(aside, lock)  # what a takeover by another node does
            _wait_for(lambda: _messages(caplog, "no longer holds its write lock"), "the heartbeat to notice")
        finally:
            outcome = write.open()
    error = _messages(caplog, "no longer holds its write lock")[0]
    assert f"it now names process 4242 of user someone on host {OTHER_HOST}" in error, error
    assert isinstance(outcome.get("error"), StoreLockedError), outcome  # not reported as a success
    message = str(outcome["error"])
    assert "\n" not in message and "this write lost its write lock" in message and OTHER_HOST in message, message
    assert lock.read_bytes() == theirs  # the new holder's lock is left alone
    import zarr

    status = zarr.open_group(str(store), mode="r").attrs["eocube_write"]["status"]
    assert status != "complete", "a write that lost its lock must not mark the store complete"


def test_a_lock_that_missed_beats_is_watched_and_refused_when_it_beats_again(tmp_path, caplog):
    store = tmp_path / "late.zarr"
    lock = _lock_path(store)
    data = _remote_lock(lock, age=30.0, heartbeat=0.5, stale_after=600.0)  # 60 beats missed, not stale yet
    with caplog.at_level(logging.WARNING, logger="eocube"), \
            _beating(lambda: os.utime(lock), after=lambda: _messages(caplog, "waiting up to")), \
            pytest.raises(StoreLockedError) as info:  # once the write watches the lock, its holder beats again
        eocube.to_zarr(lock_cube(), store, progress=False)
    waited = _messages(caplog, "waiting up to")
    assert len(waited) == 1 and f"on host {OTHER_HOST}" in waited[0] and "it beats every 0.5 s" in waited[0], waited
    assert "whose heartbeat refreshed the lock" in str(info.value), info.value
    assert lock.read_bytes() == data and not _messages(caplog, "took over")


def test_a_writer_killed_on_another_node_is_taken_over_by_the_next_run(tmp_path, caplog, assert_same_cube):
    """A real writer process playing another host, SIGKILLed mid-write; the next run takes its lock over."""
    store = tmp_path / "walltime.zarr"
    lock = _lock_path(store)
    script = tmp_path / "remote.py"
    script.write_text(REMOTE_WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(store), OTHER_HOST, "0.2", "2", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: lock.exists() and (store / ".eocube-progress").exists(), "the remote write to start")
        first = lock.stat().st_mtime_ns
        _wait_for(lambda: lock.stat().st_mtime_ns > first, "the remote writer's heartbeat")
    finally:
        proc.send_signal(signal.SIGKILL)  # the job's time limit: no finally runs
        proc.communicate()
    assert json.loads(lock.read_bytes())["host"] == OTHER_HOST
    with dask.config.set(FAST), caplog.at_level(logging.WARNING, logger="eocube"):
        report = eocube.to_zarr(lock_cube(), store, progress=False)
    assert report.chunks_written + report.chunks_skipped == 8
    took = _messages(caplog, "took over the write lock")
    assert len(took) == 1 and f"of process {proc.pid} " in took[0] and f"on host {OTHER_HOST} " in took[0], took
    assert "its heartbeat has been silent for" in took[0], took
    assert_same_cube(lock_cube(), eocube.open_zarr(store))
    assert not lock.exists()


@pytest.mark.slow
def test_a_live_writer_of_another_host_keeps_its_lock(tmp_path, assert_same_cube):
    """A writer on another node that beats is refused however long it has held the lock."""
    store = tmp_path / "live.zarr"
    lock = _lock_path(store)
    gate = tmp_path / "gate"
    script = tmp_path / "remote.py"
    script.write_text(REMOTE_WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(store), OTHER_HOST, "0.2", "600", str(gate)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lock.exists, "the remote write to take its lock")
        first = lock.stat().st_mtime_ns
        _wait_for(lambda: lock.stat().st_mtime_ns > first, "the remote writer's heartbeat")
        with pytest.raises(StoreLockedError) as info:
            eocube.to_zarr(lock_cube(), store, progress=False)
        message = str(info.value)
        assert f"process {proc.pid} of user" in message and f"on host {OTHER_HOST} " in message, message
        assert "whose heartbeat refreshed the lock" in message, message
    finally:
        gate.touch()
        out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0 and "REPORT wrote" in out, (out, err)
    assert not lock.exists()
    assert_same_cube(lock_cube(), eocube.open_zarr(store))


@pytest.mark.slow
def test_two_writers_taking_over_one_abandoned_lock_at_once_one_wins(tmp_path, assert_same_cube):
    store = tmp_path / "contested.zarr"
    _remote_lock(_lock_path(store), age=3600.0, heartbeat=5.0, stale_after=60.0)
    results = _two_writers(tmp_path, str(store), gated=True)
    _check_one_wrote_one_refused(results)  # the loser names the winner: never two takeovers
    took = [r for r in results if "took over the write lock of process 4242" in r[3]]
    assert len(took) == 1 and took[0][1] == 0, results
    assert_same_cube(lock_cube(), eocube.open_zarr(store))
    assert not _lock_path(store).exists() and not list(tmp_path.glob(".*eocube-lock*"))


def test_a_takeover_claim_left_by_a_killed_taker_is_passed_by_once_stale(tmp_path, caplog):
    store = tmp_path / "claimed.zarr"
    lock = _lock_path(store)
    data = _remote_lock(lock, age=3600.0, heartbeat=5.0, stale_after=60.0)
    claim = tmp_path / f".{lock.name}.takeover-{hashlib.sha256(data).hexdigest()[:16]}.0"  # see eocube.io._lock
    claim.write_text("node-3 999\n")
    then = _fs_now(tmp_path) - 3600.0
    os.utime(claim, (then, then))
    with dask.config.set({"eocube.lock.heartbeat": 5, "eocube.lock.stale-after": 60}), \
            caplog.at_level(logging.WARNING, logger="eocube"):
        assert eocube.to_zarr(lock_cube(), store, progress=False).chunks_written == 8
    assert len(_messages(caplog, "took over the write lock of process 4242")) == 1, caplog.text
    assert not claim.exists() and not lock.exists()


@pytest.mark.parametrize(("settings", "wrong"), [
    ({"eocube.lock.heartbeat": 60, "eocube.lock.stale-after": 90}, "must be at least twice eocube.lock.heartbeat"),
    ({"eocube.lock.heartbeat": "4 parsecs"}, "eocube.lock.heartbeat = '4 parsecs' is not a positive duration"),
    ({"eocube.lock.stale-after": -1}, "eocube.lock.stale-after = '-1' is not a positive duration"),
    ({"eocube.lock.heartbeat": float("nan")}, "eocube.lock.heartbeat = 'nan' is not a positive duration"),
], ids=["too-close", "unit", "negative", "nan"])
def test_lock_settings_are_checked(tmp_path, settings, wrong):
    with dask.config.set(settings), pytest.raises(StoreError, match=re.escape(wrong)) as info:
        eocube.to_zarr(lock_cube(), tmp_path / "x.zarr", progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "x.zarr").exists()


# ------------------------------------------------------------------------------------------------ S3 (moto)


def _s3_silence(moto, bucket: str, key: str) -> float:
    """Seconds between the lock's LastModified and a probe's PUT now: both stamped by the store."""
    client = s3_client(moto)
    probe = f"probe-{uuid.uuid4().hex}"
    client.put_object(Bucket=bucket, Key=probe, Body=b"")
    try:
        now = client.head_object(Bucket=bucket, Key=probe)["LastModified"]
        return (now - client.head_object(Bucket=bucket, Key=key)["LastModified"]).total_seconds()
    finally:
        client.delete_object(Bucket=bucket, Key=probe)


def _put_remote_lock(moto, bucket: str, key: str, **fields) -> bytes:
    record = {"eocube_write_lock": 2, "id": "fedcba9876543210", "host": OTHER_HOST, "pid": 4242,
              "pid_namespace": 4026531836, "user": "someone", "since": "2026-01-02T03:04:05Z",
              "heartbeat_s": 30.0, "stale_after_s": 300.0, **fields}
    data = json.dumps(record).encode()
    s3_client(moto).put_object(Bucket=bucket, Key=key, Body=data)
    return data


def test_s3_a_beating_lock_of_another_host_is_refused_and_a_silent_one_taken_over(moto, s3, caplog,
                                                                                  assert_same_cube):
    beats = iter(range(1, 1_000_000))
    data = _put_remote_lock(moto, s3, "fresh.zarr.eocube-lock", heartbeat_s=4.0)
    with _beating(lambda: _put_remote_lock(moto, s3, "fresh.zarr.eocube-lock", heartbeat_s=4.0, beat=next(beats))), \
            pytest.raises(StoreLockedError) as info:
        eocube.to_zarr(lock_cube(), f"s3://{s3}/fresh.zarr", progress=False)
    message = str(info.value)
    assert "\n" not in message and f"on host {OTHER_HOST}" in message, message
    assert "whose heartbeat refreshed the lock" in message and "silent for 5 min" in message, message
    assert json.loads(s3_client(moto).get_object(Bucket=s3, Key="fresh.zarr.eocube-lock")["Body"].read())["id"] \
        == json.loads(data)["id"]  # never taken over

    _put_remote_lock(moto, s3, "gone.zarr.eocube-lock", heartbeat_s=0.1, stale_after_s=0.5)
    _wait_for(lambda: _s3_silence(moto, s3, "gone.zarr.eocube-lock") > 0.5, "the lock to be silent for 0.5 s")
    with dask.config.set({"eocube.lock.heartbeat": 0.2, "eocube.lock.stale-after": 0.5}), \
            caplog.at_level(logging.WARNING, logger="eocube"):
        report = eocube.to_zarr(lock_cube(), f"s3://{s3}/gone.zarr", progress=False)
    assert report.chunks_written == 8
    took = _messages(caplog, "took over the write lock")
    assert len(took) == 1 and f"of process 4242 of user someone on host {OTHER_HOST}" in took[0], took
    assert "its heartbeat has been silent for" in took[0], took
    assert_same_cube(lock_cube(), eocube.open_zarr(f"s3://{s3}/gone.zarr"))
    assert not [k for k in object_keys(moto, s3) if k.startswith("gone.zarr.eocube-lock")]  # lock and probes gone


def test_s3_the_heartbeat_refreshes_the_lock_and_a_lost_lock_is_reported(moto, s3, caplog):
    client = s3_client(moto)
    key = "beat.zarr.eocube-lock"

    def lock_state():
        got = client.get_object(Bucket=s3, Key=key)
        return got["LastModified"], json.loads(got["Body"].read())

    with dask.config.set({**FAST, "scheduler": "synchronous"}), caplog.at_level(logging.WARNING, logger="eocube"):
        write = _GatedWrite(f"s3://{s3}/beat.zarr")
        try:
            _wait_for(lambda: key in object_keys(moto, s3), "the write to take its lock")
            stamp, rec = lock_state()
            _wait_for(lambda: lock_state()[0] > stamp, "the heartbeat to refresh LastModified")
            later = lock_state()[1]
            assert later["id"] == rec["id"] and later["beat"] > rec.get("beat", 0), (rec, later)
            theirs = _put_remote_lock(moto, s3, key)  # taken over by another node
            _wait_for(lambda: _messages(caplog, "no longer holds its write lock"), "the heartbeat to notice")
        finally:
            outcome = write.open()
    assert isinstance(outcome.get("error"), StoreLockedError), outcome
    assert "this write lost its write lock" in str(outcome["error"])
    assert client.get_object(Bucket=s3, Key=key)["Body"].read() == theirs
