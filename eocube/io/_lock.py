"""The write lock of a store: one writer at a time.

:func:`eocube.to_zarr` takes the lock before it looks at the store and gives
it back when it returns or raises (``KeyboardInterrupt`` included); readers
never need it. Two writers of one store at the same moment used to delete each
other's files (``OSError: Directory not empty``) and leave a store that no
longer opened.

Where the lock is
    A sibling of the store: ``out.zarr.eocube-lock`` beside ``out.zarr``, on
    the same file system or in the same bucket. Beside, not inside, because
    the store may not exist yet (a lock file inside would make it "exist") and
    is deleted whole by ``mode="overwrite"`` and by the re-creation of an
    unfinished store, which must not delete the lock of the writer doing it.
    Writes into the root of a bucket (``s3://bucket``) have no sibling and
    are not locked (a warning says so).

How it is taken
    Local and shared file systems: an exclusive create (``O_CREAT | O_EXCL``,
    atomic on local disks and on NFS v3 and later, so across the nodes of a
    cluster). Object stores: a conditional PUT (``If-None-Match: *``, obstore's
    ``mode="create"``; S3, GCS, Azure and moto honour it), read back to catch
    stores that ignore the condition. The lock is a small JSON record:
    ``host``, ``pid``, the process's start (``process_started`` and, on Linux,
    ``process_ticks``, its start in clock ticks since boot, which no clock
    change moves), the time the lock was taken (``since``, UTC), ``user``,
    ``pid_namespace`` (Linux), a random ``id``, and the holder's
    ``heartbeat_s`` and ``stale_after_s``.

The heartbeat
    While a write holds the lock, a daemon thread of the writing process (the
    one that called ``to_zarr``, the dask client) refreshes it every
    ``eocube.lock.heartbeat`` seconds (dask config, default 30 s): on disk it
    sets the lock file's mtime to "now" (``futimens``; on NFS the file server
    stamps it), on an object store it PUTs the lock again with a beat counter,
    conditional on the ETag of its last PUT. A refresh that finds the lock
    gone or someone else's (it was taken over: this process was silent too
    long, e.g. suspended) logs an ERROR at once, stops beating, and the write
    ends with :class:`~eocube.errors.StoreLockedError` instead of a report:
    its store may hold the work of two writers. Giving the lock back stops
    the thread first.

    Why 30 s and 5 min: a beat is one tiny write (two requests a minute on an
    object store); ``eocube.lock.stale-after`` (default 5 min, at least twice
    the heartbeat) lets ten beats in a row go missing before a lock counts as
    abandoned, so an overloaded node, a long pause of the process, NFS
    attribute caching (up to 60 s by default) or a few failed requests never
    make a live writer's lock look dead, while a job killed at its time limit
    and resubmitted loses at most five minutes.

What a second writer gets
    :class:`~eocube.errors.StoreLockedError`: one line naming the holder
    (process, user, host, since when; for another host, how long ago its
    heartbeat last refreshed the lock) and what to do.

A lock whose writer was killed
    On the holder's own host (same host name and PID namespace) the process
    table decides, at once: the lock is stale when no process has that pid,
    or the process with that pid started at another time (the pid was
    reused), or it is a zombie.

    On another host (or in another container) the heartbeat decides. A lock
    whose heartbeat is older than the larger of this process's
    ``eocube.lock.stale-after`` and the holder's own is taken over, with a
    warning naming the old holder and how long it has been silent. A lock
    that is not stale yet is watched: seen to beat, the write is refused
    (a lock refreshed a moment ago and one whose writer was killed a moment
    ago look the same, so a live writer on another host is refused within
    about one heartbeat, not at once); silent until stale-after, it is taken
    over (a warning says the write waits once beats are missed). So a job
    resubmitted right after its predecessor was killed on another node goes
    on by itself, after at most stale-after. A lock written by an eocube
    without heartbeat (no ``heartbeat_s``) is never taken over from another
    host; the message says to delete it.

    Clocks of different nodes are never compared: the lock's age is the
    difference between two stamps of the same clock, the store's. On disk,
    the lock's mtime against the mtime of a probe file created in the same
    folder right now (both stamped by the file server); on an object store,
    the lock's ``LastModified`` against the ``LastModified`` of a probe object
    PUT right now (both stamped by the store, to the second on S3).

    A takeover is atomic: the lock is replaced only if it is still exactly
    the stale lock that was judged. On an object store, by a PUT conditional
    on its ETag (every beat changes the content, hence the ETag, so a lock
    that beats in between is not replaced). On disk, by a takeover claim: an
    exclusive create (atomic on NFS too) of ``.<lock>.takeover-<digest>.0``
    beside the lock, where the digest names the stale lock's content; only
    the process that made the claim checks again, under it, that the lock's
    content, inode and mtime are those it judged and replaces it (written
    aside, then renamed over it: atomic on NFS). Any other would-be taker
    waits for the claim to go, then sees the new, live lock. A claim left by
    a taker killed in those milliseconds is passed by (``.1``, ``.2``, ...)
    once it is stale.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import hashlib
import json
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import dask

from .._version import __version__
from ..errors import StoreError, StoreLockedError
from . import _stores
from ._stores import StoreLocation

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".eocube-lock"
"""Appended to the store's name to name its lock (``out.zarr.eocube-lock``)."""

HEARTBEAT_KEY = "eocube.lock.heartbeat"
"""dask config: seconds between two refreshes of a held lock (or a duration such as ``"30s"``)."""
STALE_AFTER_KEY = "eocube.lock.stale-after"
"""dask config: a lock of another host silent for longer than this is taken over (``"5min"``)."""
DEFAULT_HEARTBEAT = 30.0
DEFAULT_STALE_AFTER = 300.0

_ACTIVE: dict[str, str] = {}
"""Locks held by this process: store URL -> lock id (registered before the lock is created)."""
_ACTIVE_GUARD = threading.Lock()

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class _Timing:
    heartbeat: float
    """Seconds between two refreshes of a lock this process holds."""
    stale_after: float
    """Seconds of silence after which a lock of another host is taken over."""


def _seconds(key: str, default: float) -> float:
    from dask.utils import parse_timedelta

    raw = dask.config.get(key, default)
    try:
        seconds = float(parse_timedelta(raw, default="seconds"))
    except (TypeError, ValueError, KeyError, AttributeError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise StoreError(f"dask config {key} = {' '.join(str(raw).split())[:60]!r} is not a positive duration: give "
                         "seconds (30) or a string such as '30s', '5m' or '5 minutes'")
    return seconds


def _timing() -> _Timing:
    """The lock's heartbeat and stale-after from dask config, checked."""
    timing = _Timing(_seconds(HEARTBEAT_KEY, DEFAULT_HEARTBEAT), _seconds(STALE_AFTER_KEY, DEFAULT_STALE_AFTER))
    if timing.stale_after < 2 * timing.heartbeat:
        raise StoreError(
            f"dask config {STALE_AFTER_KEY} ({_span(timing.stale_after)}) must be at least twice {HEARTBEAT_KEY} "
            f"({_span(timing.heartbeat)}), else a live writer's lock looks abandoned between two heartbeats: raise "
            f"{STALE_AFTER_KEY} or lower {HEARTBEAT_KEY}")
    return timing


def _span(seconds: float) -> str:
    """A duration for people: ``0.4 s``, ``42 s``, ``7 min``, ``3 h``, ``2 days``."""
    seconds = max(0.0, seconds)
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


# --------------------------------------------------------------------------------------- this process


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """State letter and start time (clock ticks since boot) of a process, from ``/proc`` (Linux)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ("gone", 0)
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record(loc: StoreLocation, lock_id: str, timing: _Timing) -> dict[str, Any]:
    """The lock's content for this process."""
    import psutil

    pid = os.getpid()
    stat = _proc_stat(pid)
    return {
        "eocube_write_lock": 2,
        "id": lock_id,
        "store": loc.display,
        "host": socket.gethostname(),
        "pid": pid,
        "pid_namespace": _pid_namespace(),
        "process_started": _utc(psutil.Process(pid).create_time()),
        "process_ticks": stat[1] if stat and stat[0] != "gone" else None,
        "user": _user(),
        "since": _utc(time.time()),
        "heartbeat_s": timing.heartbeat,
        "stale_after_s": timing.stale_after,
        "eocube_version": __version__,
    }


def _encode(rec: dict[str, Any]) -> bytes:
    return (json.dumps(rec, indent=1) + "\n").encode()


# --------------------------------------------------------------------------------------- the holder


@dataclass(frozen=True)
class _Verdict:
    state: str
    """``"alive"`` (this host, running), ``"beating"`` (another host, seen to refresh its lock), ``"quiet"``
    (another host, last refreshed less than two of its heartbeats ago), ``"silent"`` (another host, beats
    missed, not stale yet), ``"elsewhere"`` (another host, no heartbeat: unknown), ``"changed"`` (replaced or
    given back while watched: judge it again) or ``"dead"`` (to be taken over)."""
    why: str = ""
    """For a dead holder: how eocube knows."""
    silence: float | None = None
    """Another host's lock: seconds since its last heartbeat, by the store's clock."""
    limit: float | None = None
    """Another host's lock: the silence after which it is taken over."""


def _judge(rec: dict[str, Any]) -> _Verdict:
    """Whether the holder of a lock still runs, judged on its own host only."""
    if rec.get("host") != socket.gethostname() or rec.get("pid_namespace") != _pid_namespace():
        return _Verdict("elsewhere")
    try:
        pid = int(rec["pid"])
    except (KeyError, TypeError, ValueError):
        return _Verdict("elsewhere")
    if pid == os.getpid():
        with _ACTIVE_GUARD:
            if rec.get("id") in _ACTIVE.values():
                return _Verdict("alive")
        if _same_start(pid, rec) is not False:
            return _Verdict("dead", "it was left by an interrupted write of this process")
    same = _same_start(pid, rec)
    if same is None:
        return _Verdict("dead", f"no process {pid} runs on this host")
    if same is False:
        return _Verdict("dead", f"process {pid} is another program, started after the lock was taken")
    return _Verdict("alive")


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _judge_remote(lock: _Backend, found: _Found, rec: dict[str, Any], timing: _Timing) -> _Verdict:
    """Whether the lock of another host is abandoned, from its heartbeat (two stamps of the store's clock)."""
    beat = _positive(rec.get("heartbeat_s"))
    if beat is None:
        return _Verdict("elsewhere")  # written without a heartbeat: nothing tells whether it still runs
    limit = max(timing.stale_after, _positive(rec.get("stale_after_s")) or 0.0)
    return _by_silence(lock.silence(found), beat, limit)


def _by_silence(silence: float, beat: float, limit: float) -> _Verdict:
    if silence > limit:
        return _Verdict("dead", f"its heartbeat has been silent for {_span(silence)} (a lock of another host is "
                                f"taken over after {_span(limit)} of silence, {STALE_AFTER_KEY})", silence, limit)
    return _Verdict("silent" if silence > 2 * beat else "quiet", "", silence, limit)


def _same_start(pid: int, rec: dict[str, Any]) -> bool | None:
    """True: ``pid`` runs and started when the lock says; False: it started at another time; None: gone."""
    stat = _proc_stat(pid)
    if stat is not None and stat[0] in ("gone", "Z", "X"):
        return None  # no such process, or a zombie: it has ended
    ticks = rec.get("process_ticks")
    if stat is not None and isinstance(ticks, int):
        return stat[1] == ticks
    import psutil

    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:
        return True  # cannot tell: take it as running
    return abs(started - _parse_utc(rec.get("process_started"), started)) < 2.0


def _parse_utc(text: Any, default: float) -> float:
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return default


def _age(rec: dict[str, Any]) -> str:
    seconds = max(0.0, time.time() - _parse_utc(rec.get("since"), time.time()))
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _holder(rec: dict[str, Any]) -> str:
    def field(name: str) -> str:  # one line whatever the file holds
        return " ".join(str(rec.get(name, "?")).split())[:100] or "?"

    return (f"process {field('pid')} of user {field('user')} on host {field('host')} since {field('since')} "
            f"({_age(rec)})")


def _refusal(loc: StoreLocation, lock: _Backend, rec: dict[str, Any], verdict: _Verdict) -> StoreLockedError:
    store = loc.display
    if verdict.state == "alive" and rec.get("pid") == os.getpid():
        return StoreLockedError(
            f"{store} is being written by another call in this process (pid {os.getpid()}): "
            "one writer at a time; wait until that write ends and run again (a complete store is then reused)")
    if verdict.state == "alive":
        return StoreLockedError(
            f"{store} is being written by {_holder(rec)}: one writer at a time; wait until it ends and run again "
            f"(a complete store is then reused, not recomputed), or stop process {rec.get('pid')} first")
    if verdict.state in ("beating", "quiet", "silent") and verdict.silence is not None and verdict.limit is not None:
        return StoreLockedError(
            f"{store} is being written by {_holder(rec)}, whose heartbeat refreshed the lock {_span(verdict.silence)} "
            "ago: one writer at a time; wait until it ends and run again (a complete store is then reused, not "
            f"recomputed); if that process no longer runs, its lock is taken over once it has been silent for "
            f"{_span(verdict.limit)} ({STALE_AFTER_KEY})")
    return StoreLockedError(
        f"{store} is being written by {_holder(rec)}, and eocube cannot check a process on another host (or in "
        "another container) whose lock has no heartbeat (an older eocube): wait "
        f"until it ends and run again; if it no longer runs (e.g. a killed job), delete the lock {lock.where} "
        "and run again")


# --------------------------------------------------------------------------------------- where the lock lives


@dataclass(frozen=True)
class _Found:
    """A lock as read: its bytes, what identifies this version of it, and when the store last stamped it."""

    data: bytes
    version: Any
    """Disk: (inode, mtime in ns, size); object store: ``{"e_tag": ..., "version": ...}``."""
    stamp: float
    """Its mtime or ``LastModified``, in seconds, by the store's clock (compare only with another such stamp)."""


class _Backend:
    """The lock object of one store: create, read, refresh, replace and delete it."""

    where: str

    def create(self, data: bytes) -> bool:  # pragma: no cover - interface
        """Create the lock with ``data`` unless it exists; True when this call made it."""
        raise NotImplementedError

    def read(self) -> _Found | None:  # pragma: no cover - interface
        """The lock now, None when there is none."""
        raise NotImplementedError

    def now(self) -> float:  # pragma: no cover - interface
        """The store's clock now: the stamp of a probe written beside the lock this moment."""
        raise NotImplementedError

    def silence(self, found: _Found) -> float:
        """Seconds since the store last stamped ``found`` (its creation or last heartbeat), by the store's clock."""
        return self.now() - found.stamp

    def replace(self, found: _Found, data: bytes, stale_after: float) -> bool:  # pragma: no cover - interface
        """Replace the lock by ``data`` if it is still exactly ``found``; False when it changed meanwhile."""
        raise NotImplementedError

    def beat(self, data: bytes, lock_id: str) -> str | None:  # pragma: no cover - interface
        """Refresh the lock this process holds; what happened to it instead when it is no longer ours."""
        raise NotImplementedError

    def delete(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def cleanup(self) -> None:
        """Undo what taking the lock made besides the lock (nothing by default)."""


def _lost(found: _Found | None, lock_id: str) -> str | None:
    """None when ``found`` is the lock ``lock_id``; else what it is now, in words."""
    if found is None:
        return "it was deleted"
    rec = _parse(found.data)
    if rec is None:
        return "it was replaced by a lock eocube cannot read"
    if rec.get("id") == lock_id:
        return None
    return f"it now names {_holder(rec)}"


class _FileLock(_Backend):
    """``<store>.eocube-lock`` on a local or shared file system."""

    def __init__(self, loc: StoreLocation) -> None:
        self.loc = loc
        store = Path(loc.url).resolve()  # one lock whatever symlinks spell the store's path
        self.path = store.with_name(store.name + LOCK_SUFFIX)
        self.where = str(self.path)
        self.made: list[Path] = []

    def _sibling(self, kind: str) -> Path:
        return self.path.with_name(f".{self.path.name}.{kind}")

    def create(self, data: bytes) -> bool:
        parent = self.path.parent
        missing = []
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        try:
            for folder in reversed(missing):
                with contextlib.suppress(FileExistsError):
                    folder.mkdir()
                    self.made.append(folder)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot create the write lock {self.path} ({exc.strerror or exc}): eocube takes it "
                             "beside the store; check that folder's permissions and free space") from None
        try:
            os.write(fd, data)
            os.fsync(fd)
            os.utime(fd)  # stamped by the file server (NFS: set to server time), like the probes it is compared with
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return True

    @staticmethod
    def _read(path: Path) -> _Found | None:
        try:
            fd = os.open(path, os.O_RDONLY)  # an open revalidates NFS's cached attributes (close-to-open)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
        return _Found(data, (st.st_ino, st.st_mtime_ns, len(data)), st.st_mtime_ns / 1e9)

    def read(self) -> _Found | None:
        return self._read(self.path)

    def now(self) -> float:
        probe = self._sibling(f"probe-{secrets.token_hex(6)}")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create a file beside the write lock {self.path} ({exc.strerror or exc}): eocube "
                             "needs that folder writable to judge the lock's age; check its permissions") from None
        try:
            os.utime(fd)  # set to the file server's time now
            return os.fstat(fd).st_mtime_ns / 1e9
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)

    def replace(self, found: _Found, data: bytes, stale_after: float) -> bool:
        key = hashlib.sha256(found.data).hexdigest()[:16]
        claim = self._claim(key, found, stale_after)
        if claim is None:
            return False
        try:
            now = self.read()
            if now is None or now.version != found.version or now.data != found.data:
                return False  # it beat, or another process took it over first
            tmp = self._sibling(f"new-{secrets.token_hex(6)}")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
                os.utime(fh.fileno())
            os.replace(tmp, self.path)  # atomic, also on NFS
            for left in self.path.parent.glob(f".{self.path.name}.takeover-{key}.*"):
                left.unlink(missing_ok=True)  # claims of killed takers of the lock just replaced: no one needs them
            return True
        finally:
            claim.unlink(missing_ok=True)

    def _claim(self, key: str, found: _Found, stale_after: float) -> Path | None:
        """Make the takeover claim of the lock ``found`` (``key`` names its content); None when the lock changed."""
        n, pause = 0, 0.02
        patience = time.monotonic() + 2 * stale_after + 600.0  # a claim lives milliseconds; this is a safety net
        while True:
            claim = self._sibling(f"takeover-{key}.{n}")
            try:
                fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                other = self._read(claim)
                if other is None:
                    continue  # given back just now: try it again
                if self.now() - other.stamp > stale_after:
                    n += 1  # left by a taker killed mid-way: the next claim in the chain
                    continue
                now = self.read()
                if now is None or now.version != found.version:
                    return None  # taken over (or given back) meanwhile: judge it again
                if time.monotonic() > patience:
                    raise StoreLockedError(f"{self.loc.display}: another process is taking over its write lock "
                                           f"{self.where} and does not finish ({claim}): run again later") from None
                time.sleep(pause)
                pause = min(2 * pause, 0.5)
                continue
            with os.fdopen(fd, "wb") as fh:
                fh.write(f"{socket.gethostname()} {os.getpid()}\n".encode())
                os.utime(fh.fileno())
            return claim

    def beat(self, data: bytes, lock_id: str) -> str | None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return "it was deleted"
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            content = fh.read()
            lost = _lost(_Found(content, (st.st_ino, st.st_mtime_ns, len(content)), st.st_mtime_ns / 1e9), lock_id)
            if lost is None:
                os.utime(fh.fileno())  # this very file (inode), not whatever the path names a moment later
        return lost

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)

    def cleanup(self) -> None:
        for folder in reversed(self.made):  # only the folders the lock made, and only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()


class _ObjectLock(_Backend):
    """``<store>.eocube-lock`` beside the store in its bucket (conditional PUTs)."""

    def __init__(self, loc: StoreLocation, parent: str, name: str) -> None:
        self.loc = loc
        self.parent = StoreLocation(parent, loc.scheme, loc.options)
        self.key = name + LOCK_SUFFIX
        self.where = f"{self.parent.display}/{self.key}"
        self.held: dict[str, Any] | None = None
        """The version (ETag) of the lock as this process last wrote it: the condition of its next beat."""

    @staticmethod
    def _version(meta: Any) -> dict[str, Any]:
        return {k: v for k in ("e_tag", "version") if (v := meta.get(k)) is not None}

    def create(self, data: bytes) -> bool:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            obstore.put(self.parent.object_store(), self.key, data, mode="create")
        except (AlreadyExistsError, PreconditionError):
            return False
        now = self.read()  # a store that ignores If-None-Match: the last PUT wins, the others see it
        if now is None or now.data != data:
            return False
        self.held = now.version
        return True

    def read(self) -> _Found | None:
        import obstore

        try:
            got = obstore.get(self.parent.object_store(), self.key)
        except FileNotFoundError:
            return None
        meta = got.meta
        return _Found(bytes(got.bytes()), self._version(meta), meta["last_modified"].timestamp())

    def now(self) -> float:
        import obstore

        store = self.parent.object_store()
        probe = f"{self.key}.probe-{secrets.token_hex(6)}"
        obstore.put(store, probe, b"")
        try:
            return obstore.head(store, probe)["last_modified"].timestamp()
        finally:
            with contextlib.suppress(Exception):
                obstore.delete(store, probe)

    def _put_if(self, version: dict[str, Any], data: bytes) -> bool:
        import obstore
        from obstore.exceptions import NotFoundError, PreconditionError

        try:
            result = obstore.put(self.parent.object_store(), self.key, data, mode=version)
        except (PreconditionError, NotFoundError, FileNotFoundError):
            return False
        self.held = self._version(result)
        return True

    def replace(self, found: _Found, data: bytes, stale_after: float) -> bool:
        return self._put_if(found.version, data)

    def beat(self, data: bytes, lock_id: str) -> str | None:
        if self.held and self._put_if(self.held, data):
            return None
        now = self.read()
        lost = _lost(now, lock_id)
        if lost is None and now is not None:  # ours after all (e.g. a retried PUT): go on from its version
            self.held = now.version
        return lost

    def delete(self) -> None:
        import obstore

        obstore.delete(self.parent.object_store(), self.key)


def _backend(loc: StoreLocation) -> _Backend | None:
    if loc.is_local:
        return _FileLock(loc)
    head, _, name = loc.url.rstrip("/").rpartition("/")
    if loc.scheme == "memory" or head.endswith("://") or not name:
        return None  # in-memory stores live in this process; a bucket's root has no sibling
    return _ObjectLock(loc, head, name)


# --------------------------------------------------------------------------------------- the heartbeat


class _Heartbeat:
    """The daemon thread that refreshes a held lock every ``timing.heartbeat`` seconds until stopped."""

    def __init__(self, loc: StoreLocation, lock: _Backend, record: dict[str, Any], timing: _Timing) -> None:
        self.loc, self.lock, self.record, self.timing = loc, lock, record, timing
        self.lost: str | None = None
        """What happened to the lock when it was found no longer this write's."""
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"eocube-lock-heartbeat {loc.display}", daemon=True)

    def start(self) -> _Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last_ok = time.monotonic()
        failing = False
        while not self._stop.wait(self.timing.heartbeat):
            late = time.monotonic() - last_ok
            data = _encode({**self.record, "beat": self.beats + 1})
            try:
                lost = self.lock.beat(data, self.record["id"])
            except Exception as exc:  # noqa: BLE001 - a failed refresh is retried at the next beat
                if not failing or late > self.timing.stale_after:
                    log.warning("%s: could not refresh the write lock %s (%s); retrying every %s: if this lasts "
                                "%s, a writer on another host may take the lock over", self.loc.display,
                                self.lock.where, " ".join(_stores.scrub(str(exc), self.loc).split())[:300],
                                _span(self.timing.heartbeat), _span(self.timing.stale_after))
                failing = True
                continue
            if lost is not None:
                self.lost = lost
                log.error("%s: this write no longer holds its write lock %s: %s (this process's heartbeat was "
                          "silent for %s). Two writers may now write this store: this write will end with "
                          "StoreLockedError; check the other writer's result", self.loc.display, self.lock.where,
                          lost, _span(late))
                return
            self.beats += 1
            failing = False
            last_ok = time.monotonic()


# --------------------------------------------------------------------------------------- taking and giving back


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        rec = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return rec if isinstance(rec, dict) and "pid" in rec else None


def _unreadable(loc: StoreLocation, lock: _Backend) -> StoreLockedError:
    return StoreLockedError(
        f"{loc.display} has a write lock that eocube cannot read ({lock.where}): if no eocube process writes "
        "this store, delete that lock and run again")


def _watch(loc: StoreLocation, lock: _Backend, found: _Found, rec: dict[str, Any], verdict: _Verdict, *,
           take_over: bool) -> _Verdict:
    """Watch a lock of another host that is not stale yet until it beats, changes or goes stale.

    A lock is alive when it is seen to beat: a writer that just read it cannot tell a lock refreshed a moment
    ago from one whose writer was killed a moment ago. ``take_over``: the write watches until the lock beats
    (``"beating"``) or is stale (``"dead"``); the check before a write stops once the lock has missed beats
    (``"silent"``: the write will watch it). ``"changed"``: given back or replaced by another lock.
    """
    beat = _positive(rec.get("heartbeat_s")) or DEFAULT_HEARTBEAT
    limit = verdict.limit if verdict.limit is not None else DEFAULT_STALE_AFTER
    warned = told = False
    pause = min(max(beat / 4, 0.05), 5.0)
    patience = time.monotonic() + 2 * limit + 600.0  # the store's clock moves on; this is a safety net
    while time.monotonic() < patience:
        if verdict.state == "silent":
            if not take_over:
                return verdict
            if not warned:
                log.warning("%s: the write lock of %s has not been refreshed for %s (it beats every %s): waiting up "
                            "to %s for it to beat; if it does not, it is taken over", loc.display, _holder(rec),
                            _span(verdict.silence or 0.0), _span(beat), _span(limit - (verdict.silence or 0.0)))
                warned = True
        elif not told:
            told = True
            log.info("%s: the write lock of %s was refreshed %s ago: waiting up to %s for its next beat to tell "
                     "whether it still runs", loc.display, _holder(rec), _span(verdict.silence or 0.0),
                     _span(2 * beat))
        time.sleep(pause)
        now = lock.read()
        if now is None or now.version != found.version or now.data != found.data:
            again = _parse(now.data) if now is not None else None
            if again is not None and again.get("id") == rec.get("id"):  # the same lock, refreshed: its writer runs
                return _Verdict("beating", "", lock.silence(now), limit)
            return _Verdict("changed")
        verdict = _by_silence(lock.silence(now), beat, limit)
        if verdict.state == "dead":
            return verdict
    return _Verdict("beating", "", verdict.silence, limit)  # the store's clock stands still: do not take it over


def _acquire(loc: StoreLocation, lock: _Backend, lock_id: str, timing: _Timing) -> dict[str, Any]:
    """Take the lock (its record returned) or raise :class:`StoreLockedError`; an abandoned lock is taken over."""
    mine = _record(loc, lock_id, timing)
    data = _encode(mine)
    unreadable_since = None
    for _ in range(50):
        if lock.create(data):
            return mine
        found = lock.read()
        if found is None:
            continue  # released in between: try again
        rec = _parse(found.data)
        if rec is None:  # being written this very moment, or damaged
            unreadable_since = unreadable_since or time.monotonic()
            if time.monotonic() - unreadable_since > 10.0:
                raise _unreadable(loc, lock)
            time.sleep(0.05)
            continue
        verdict = _judge(rec)
        if verdict.state == "elsewhere":
            verdict = _judge_remote(lock, found, rec, timing)
            if verdict.state in ("quiet", "silent"):
                verdict = _watch(loc, lock, found, rec, verdict, take_over=True)
                if verdict.state == "changed":
                    continue  # given back, or taken over by another: judge it again
        if verdict.state != "dead":
            raise _refusal(loc, lock, rec, verdict)
        if lock.replace(found, data, timing.stale_after):
            log.warning("%s: took over the write lock of %s: %s", loc.display, _holder(rec), verdict.why)
            return mine
    raise StoreLockedError(f"{loc.display}: its write lock {lock.where} keeps changing hands; run again later")


def _release(loc: StoreLocation, lock: _Backend, lock_id: str) -> None:
    """Delete the lock if it is still this write's (never someone else's)."""
    try:
        with _stores.reworded(loc, "unlocking"):
            found = lock.read()
            rec = _parse(found.data) if found else None
            if rec is not None and rec.get("id") == lock_id:
                lock.delete()
    except Exception as exc:  # noqa: BLE001 - the write's own outcome matters more
        log.warning("%s: could not remove the write lock %s (%s): the next write takes it over (from this host at "
                    "once, from another once it has been silent for %s), or delete it", loc.display, lock.where, exc,
                    STALE_AFTER_KEY)
    finally:
        lock.cleanup()


def _in_process_refusal(loc: StoreLocation) -> StoreLockedError:
    return StoreLockedError(
        f"{loc.display} is being written by another call in this process (pid {os.getpid()}): one writer "
        "at a time; wait until that write ends and run again (a complete store is then reused)")


_HEARTBEATS: dict[str, _Heartbeat] = {}
"""The heartbeat of each store this process holds the lock of (by URL)."""


def _lost_refusal(loc: StoreLocation, lock: _Backend, lost: str) -> StoreLockedError:
    return StoreLockedError(
        f"{loc.display}: this write lost its write lock {lock.where} while it ran ({lost}): "
        "another writer may have written this store at the same time; when that writer has ended, run "
        "again (mode='overwrite' if the store is refused)")


def ensure_held(loc: StoreLocation) -> None:
    """Raise now if this process's write lock on ``loc`` was taken from it (call before marking a store complete).

    Parameters
    ----------
    loc
        The store being written.

    Raises
    ------
    StoreLockedError
        The heartbeat found the lock replaced by another writer's.
    """
    heartbeat = _HEARTBEATS.get(loc.url)
    if heartbeat is not None and heartbeat.lost is not None:
        raise _lost_refusal(loc, heartbeat.lock, heartbeat.lost)


@contextlib.contextmanager
def write_lock(loc: StoreLocation) -> Iterator[None]:
    """Hold the store's write lock for the duration of the block, refreshing it (heartbeat) meanwhile.

    Parameters
    ----------
    loc
        The store.

    Raises
    ------
    StoreLockedError
        Another process (of this host and running, or of another host and
        beating) holds the lock, or another call of this process writes the
        same store; or, at the end of the block, the lock was taken from this
        write while it ran.
    StoreError
        ``eocube.lock.heartbeat`` / ``eocube.lock.stale-after`` are invalid.
    """
    timing = _timing()
    lock_id = secrets.token_hex(8)
    with _ACTIVE_GUARD:
        if loc.url in _ACTIVE:
            raise _in_process_refusal(loc)
        _ACTIVE[loc.url] = lock_id  # before the lock exists: a thread never judges it left over
    lock = _backend(loc)
    try:
        if lock is None:
            if not loc.is_local and loc.scheme != "memory":
                log.warning("%s: writes into the root of a bucket are not locked against other writers; "
                            "write into a path of the bucket (s3://bucket/name.zarr) for that", loc.display)
            yield
            return
        try:
            with _stores.reworded(loc, "locking"):
                record = _acquire(loc, lock, lock_id, timing)
            heartbeat = _Heartbeat(loc, lock, record, timing).start()
            _HEARTBEATS[loc.url] = heartbeat
            try:
                yield
            finally:
                _HEARTBEATS.pop(loc.url, None)
                heartbeat.stop()
            if heartbeat.lost is not None:
                raise _lost_refusal(loc, lock, heartbeat.lost)
        finally:  # also after an interrupt inside _acquire; deletes the lock only if it is this write's
            _release(loc, lock, lock_id)
    finally:
        with _ACTIVE_GUARD:
            _ACTIVE.pop(loc.url, None)


def check_unlocked(loc: StoreLocation) -> None:
    """Raise :class:`StoreLockedError` now if a write would be refused by the store's lock.

    Takes nothing: a lock a killed process left on this host passes (the
    write takes it over), and so does a lock of another host that has missed
    heartbeats (the write watches it, then takes it over). A lock of another
    host refreshed less than two of its heartbeats ago is watched until it
    beats (refused) or misses one (passes): at most two heartbeats.
    """
    with _ACTIVE_GUARD:
        if loc.url in _ACTIVE:
            raise _in_process_refusal(loc)
    lock = _backend(loc)
    if lock is None:
        return
    with _stores.reworded(loc, "checking"):
        found = lock.read()
        if found is None:
            return
        rec = _parse(found.data)
        if rec is None:
            return  # being written now, or damaged: the write itself says which
        verdict = _judge(rec)
        if verdict.state == "elsewhere":
            verdict = _judge_remote(lock, found, rec, _timing())
            if verdict.state == "quiet":
                verdict = _watch(loc, lock, found, rec, verdict, take_over=False)
    if verdict.state in ("alive", "beating", "elsewhere"):
        raise _refusal(loc, lock, rec, verdict)


def _location(store: Any, kwargs: dict[str, Any]) -> StoreLocation | None:
    try:
        return _stores.resolve(store, kwargs.get("storage_options"), write=True)
    except Exception:  # noqa: BLE001 - the wrapped function gives its own message
        return None


def one_writer(func: F) -> F:
    """Decorate a writer ``func(cube, store, ..., storage_options=...)``: hold the store's lock while it runs."""

    @functools.wraps(func)
    def locked(cube: Any, store: Any, *args: Any, **kwargs: Any) -> Any:
        loc = _location(store, kwargs)
        if loc is None:
            return func(cube, store, *args, **kwargs)
        with write_lock(loc):
            return func(cube, store, *args, **kwargs)

    return locked  # type: ignore[return-value]


def refuses_locked(func: F) -> F:
    """Decorate a check ``func(cube, store, ..., storage_options=...)``: first refuse a store another process writes."""

    @functools.wraps(func)
    def checked(cube: Any, store: Any, *args: Any, **kwargs: Any) -> Any:
        loc = _location(store, kwargs)
        if loc is not None:
            check_unlocked(loc)
        return func(cube, store, *args, **kwargs)

    return checked  # type: ignore[return-value]
