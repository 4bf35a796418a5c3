"""Errors and warnings raised by :func:`eocube.open_stac`, and the redaction of what it tells.

Each message names the input at fault and what to do about it, and none shows a secret: hrefs
and URLs go through :func:`redact` (:func:`eocube._redact.redact`: query values, also after
scheme-less paths, and ``user:password`` become ``REDACTED``), :func:`scrub` does the same for exceptions chained to an error, and
:func:`redacting` for log records made while the loader searches, opens and reads.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator

from .._redact import RedactedError, redact, redact_obj
from ..errors import EOCubeError, GridError


class StacError(EOCubeError, ValueError):
    """A STAC input cannot be turned into a cube (base class of the loader's errors)."""


class EmptySearchError(StacError):
    """A STAC search (or an item list) gave no item; the message shows the query."""


class AssetError(StacError, KeyError):
    """An asked-for asset/band is missing from some items or is ambiguous."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class MixedCRSError(StacError):
    """Items come in several CRS and no target CRS was given."""


class AssetReadError(StacError, OSError):
    """An asset could not be read (unreachable, 404, corrupt); the message names the (redacted) href.

    ``problem`` is the message without the advice (the text of the warning under ``on_error="nodata"``).
    """

    problem: str


class AssetReadWarning(UserWarning):
    """An asset could not be read and its pixels were filled with nodata (``on_error="nodata"``)."""


class NodataWarning(UserWarning):
    """The cube has no single nodata value, so nothing marks its missing pixels (say ``nodata=``)."""


def _has_secret(text: str) -> bool:
    return redact(text) != text


def scrub(exc: BaseException | None, _seen: set[int] | None = None) -> BaseException | None:
    """``exc`` with signed-URL query values redacted from it and from every exception chained to it.

    The loader's own errors (:class:`StacError` and :class:`~eocube.errors.GridError`) are redacted in
    place; any other exception whose text (str or repr) holds a secret is replaced by a
    :class:`eocube._redact.RedactedError` carrying its redacted text and traceback. ``__cause__`` and
    ``__context__`` are scrubbed the same way, so a traceback printed into a job log shows which
    file failed and why, never the signature.

    Parameters
    ----------
    exc
        The exception (None gives None).

    Returns
    -------
    BaseException or None
        ``exc`` itself (redacted in place) or its stand-in.
    """
    seen = set() if _seen is None else _seen
    if exc is None or id(exc) in seen:
        return None
    seen.add(id(exc))
    if isinstance(exc, (StacError, GridError)):
        exc.args = redact_obj(exc.args)
        out = exc
    elif _has_secret(str(exc)) or _has_secret(repr(exc)):
        out = RedactedError(f"{type(exc).__module__}.{type(exc).__qualname__}: {redact(str(exc))}")
        out = out.with_traceback(exc.__traceback__)
    else:
        out = exc
    if getattr(exc, "__notes__", None):
        out.__notes__ = [redact(str(note)) for note in exc.__notes__]
    suppress = exc.__suppress_context__
    out.__cause__, out.__context__ = scrub(exc.__cause__, seen), scrub(exc.__context__, seen)
    out.__suppress_context__ = suppress
    return out


_REDACTING: ContextVar[bool] = ContextVar("eocube_stac_redacting", default=False)
_base_factory: Callable[..., logging.LogRecord] | None = None
_INSTALL_LOCK = threading.Lock()


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Log records made inside :func:`redacting` (any library's: rasterio names the datasets it
    opens, urllib3 the URLs it gets) or by eocube's loggers carry no signed-URL query value."""
    assert _base_factory is not None
    record = _base_factory(*args, **kwargs)
    if _REDACTING.get() or record.name.startswith("eocube"):
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report, as it is
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
    return record


def _install_log_redaction() -> None:
    """Put :func:`_redacting_factory` in front of the current log record factory (once per process:
    a factory installed later that chains to ours must not be chained to in turn)."""
    global _base_factory
    if _base_factory is not None:  # installed: no lock on the per-block path (read_block)
        return
    with _INSTALL_LOCK:
        if _base_factory is None:
            _base_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_redacting_factory)


@contextmanager
def redacting() -> Iterator[None]:
    """Keep signed-URL query values out of what the enclosed code raises or logs.

    Errors of the loader (:class:`StacError`, :class:`~eocube.errors.GridError`) leave with their message and chained exceptions
    redacted (:func:`scrub`); log records made meanwhile in this thread or task (by eocube,
    rasterio/GDAL, pystac-client, urllib3) are redacted as they are made. Only records of enabled
    levels are made, so this costs nothing when DEBUG logging is off.
    """
    _install_log_redaction()
    token = _REDACTING.set(True)
    try:
        yield
    except (StacError, GridError) as exc:
        scrub(exc)
        raise
    finally:
        _REDACTING.reset(token)
