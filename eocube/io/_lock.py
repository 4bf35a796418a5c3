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
    ``pid_namespace`` (Linux) and a random ``id``.

What a second writer gets
    :class:`~eocube.errors.StoreLockedError`: one line naming the holder
    (process, user, host, since when) and what to do.

A lock whose writer was killed
    Judged only on the holder's own host (same host name and PID namespace):
    the lock is stale when no process has that pid, or the process with that
    pid started at another time (the pid was reused), or it is a zombie. A
    stale lock is taken over, with a warning naming the dead holder; the
    takeover replaces the file's content in one step under a host-wide
    ``flock`` (on object stores: a PUT conditional on the stale lock's ETag),
    so two processes never both take over the same lock.

    A lock from another host is never taken over, however old: eocube cannot
    tell whether a process on another node still runs (a job may write for
    days; clocks differ between nodes; a suspended VM resumes), and two
    writers silently destroy a store. The message gives the lock's age and
    the remedy: when that process no longer runs (a job killed at its time
    limit, then resubmitted on another node), delete the lock file or object
    and run again.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from .._version import __version__
from ..errors import StoreError, StoreLockedError
from . import _stores
from ._stores import StoreLocation

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".eocube-lock"
"""Appended to the store's name to name its lock (``out.zarr.eocube-lock``)."""

_ACTIVE: dict[str, str] = {}
"""Locks held by this process: store URL -> lock id (registered before the lock is created)."""
_ACTIVE_GUARD = threading.Lock()

F = TypeVar("F", bound=Callable[..., Any])


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


def _record(loc: StoreLocation, lock_id: str) -> dict[str, Any]:
    """The lock's content for this process."""
    import psutil

    pid = os.getpid()
    stat = _proc_stat(pid)
    return {
        "eocube_write_lock": 1,
        "id": lock_id,
        "store": loc.display,
        "host": socket.gethostname(),
        "pid": pid,
        "pid_namespace": _pid_namespace(),
        "process_started": _utc(psutil.Process(pid).create_time()),
        "process_ticks": stat[1] if stat and stat[0] != "gone" else None,
        "user": _user(),
        "since": _utc(time.time()),
        "eocube_version": __version__,
    }


# --------------------------------------------------------------------------------------- the holder


@dataclass(frozen=True)
class _Verdict:
    state: str
    """``"alive"`` (this host, running), ``"elsewhere"`` (another host: unknown) or ``"dead"``."""
    why: str = ""
    """For a dead holder: how eocube knows."""


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
    return StoreLockedError(
        f"{store} is being written by {_holder(rec)}, and eocube cannot check a process on another host (or in "
        "another container): wait "
        f"until it ends and run again; if it no longer runs (e.g. a killed job), delete the lock {lock.where} "
        "and run again")


# --------------------------------------------------------------------------------------- where the lock lives


class _Backend:
    """The lock object of one store: create, read, replace and delete it."""

    where: str

    def create(self, data: bytes) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def read(self) -> tuple[bytes, Any] | None:  # pragma: no cover - interface
        raise NotImplementedError

    def replace(self, old: tuple[bytes, Any], data: bytes) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def delete(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def cleanup(self) -> None:
        """Undo what taking the lock made besides the lock (nothing by default)."""


class _FileLock(_Backend):
    """``<store>.eocube-lock`` on a local or shared file system."""

    def __init__(self, loc: StoreLocation) -> None:
        self.path = Path(loc.url + LOCK_SUFFIX)
        self.where = str(self.path)
        self.made: list[Path] = []

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
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return True

    def read(self) -> tuple[bytes, Any] | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return data, data

    def replace(self, old: tuple[bytes, Any], data: bytes) -> bool:
        with _host_mutex():  # takeovers are judged on the holder's host only: a host-wide mutex orders them
            now = self.read()
            if now is None or now[0] != old[0]:
                return False
            tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            return True

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

    def create(self, data: bytes) -> bool:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            obstore.put(self.parent.object_store(), self.key, data, mode="create")
        except (AlreadyExistsError, PreconditionError):
            return False
        now = self.read()  # a store that ignores If-None-Match: the last PUT wins, the others see it
        return now is not None and now[0] == data

    def read(self) -> tuple[bytes, Any] | None:
        import obstore

        try:
            got = obstore.get(self.parent.object_store(), self.key)
        except FileNotFoundError:
            return None
        meta = got.meta
        return bytes(got.bytes()), {"e_tag": meta.get("e_tag"), "version": meta.get("version")}

    def replace(self, old: tuple[bytes, Any], data: bytes) -> bool:
        import obstore
        from obstore.exceptions import NotFoundError, PreconditionError

        version = {k: v for k, v in old[1].items() if v is not None}
        try:
            obstore.put(self.parent.object_store(), self.key, data, mode=version)
        except (PreconditionError, NotFoundError, FileNotFoundError):
            return False
        return True

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


@contextlib.contextmanager
def _host_mutex() -> Iterator[None]:
    """A mutex of every process of this host (``flock`` on a file in the temporary folder)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no host-wide mutex
        yield
        return
    path = os.path.join(tempfile.gettempdir(), "eocube-lock-takeover")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


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


def _acquire(loc: StoreLocation, lock: _Backend, lock_id: str) -> None:
    """Take the lock or raise :class:`StoreLockedError`; a stale lock of this host is taken over."""
    mine = _record(loc, lock_id)
    data = (json.dumps(mine, indent=1) + "\n").encode()
    unreadable_since = None
    for _ in range(50):
        if lock.create(data):
            return
        found = lock.read()
        if found is None:
            continue  # released in between: try again
        rec = _parse(found[0])
        if rec is None:  # being written this very moment, or damaged
            unreadable_since = unreadable_since or time.monotonic()
            if time.monotonic() - unreadable_since > 2.0:
                raise _unreadable(loc, lock)
            time.sleep(0.05)
            continue
        verdict = _judge(rec)
        if verdict.state != "dead":
            raise _refusal(loc, lock, rec, verdict)
        if lock.replace(found, data):
            log.warning("%s: took over the write lock of %s: %s", loc.display, _holder(rec), verdict.why)
            return
    raise StoreLockedError(f"{loc.display}: its write lock {lock.where} keeps changing hands; run again later")


def _release(loc: StoreLocation, lock: _Backend, lock_id: str) -> None:
    """Delete the lock if it is still this write's (never someone else's)."""
    try:
        with _stores.reworded(loc, "unlocking"):
            found = lock.read()
            rec = _parse(found[0]) if found else None
            if rec is not None and rec.get("id") == lock_id:
                lock.delete()
    except Exception as exc:  # noqa: BLE001 - the write's own outcome matters more
        log.warning("%s: could not remove the write lock %s (%s): the next write from this host takes it over; "
                    "elsewhere, delete it", loc.display, lock.where, exc)
    finally:
        lock.cleanup()


@contextlib.contextmanager
def write_lock(loc: StoreLocation) -> Iterator[None]:
    """Hold the store's write lock for the duration of the block.

    Parameters
    ----------
    loc
        The store.

    Raises
    ------
    StoreLockedError
        Another process (of this host and running, or of another host) holds
        the lock, or another call of this process writes the same store.
    """
    lock_id = secrets.token_hex(8)
    with _ACTIVE_GUARD:
        if loc.url in _ACTIVE:
            raise StoreLockedError(
                f"{loc.display} is being written by another call in this process (pid {os.getpid()}): one writer "
                "at a time; wait until that write ends and run again (a complete store is then reused)")
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
                _acquire(loc, lock, lock_id)
            yield
        finally:  # also after an interrupt inside _acquire; deletes the lock only if it is this write's
            _release(loc, lock, lock_id)
    finally:
        with _ACTIVE_GUARD:
            _ACTIVE.pop(loc.url, None)


def check_unlocked(loc: StoreLocation) -> None:
    """Raise :class:`StoreLockedError` now if a write would be refused by the store's lock.

    Takes nothing: a lock a killed process left on this host passes (the write
    takes it over).
    """
    with _ACTIVE_GUARD:
        if loc.url in _ACTIVE:
            raise StoreLockedError(
                f"{loc.display} is being written by another call in this process (pid {os.getpid()}): one writer "
                "at a time; wait until that write ends and run again (a complete store is then reused)")
    lock = _backend(loc)
    if lock is None:
        return
    with _stores.reworded(loc, "checking"):
        found = lock.read()
    if found is None:
        return
    rec = _parse(found[0])
    if rec is None:
        return  # being written now, or damaged: the write itself says which
    verdict = _judge(rec)
    if verdict.state != "dead":
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
