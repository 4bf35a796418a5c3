"""Keep secrets out of messages, warnings, logs and stored attributes.

Signed URLs carry their credentials in the query string (Planetary Computer SAS tokens
``?st=...&se=...&sig=...``, S3 presigned URLs ``X-Amz-Signature=...``, GCS ``X-Goog-Signature``,
generic ``token=`` / ``access_token=`` / ``key=``). Such URLs end up in error messages and
warnings, which end up in Slurm job logs that other people read. Every eocube message that may
show an href goes through :func:`redact`, which keeps the scheme, host, path and the query
*names* (so the message still says which file and which kind of signature) and replaces every
query *value* with ``REDACTED``. Userinfo (``https://user:password@host``) is redacted too.

The text functions are pure (text in, text out) so that any layer can call them.

Exceptions carry text too, and not only their own: Python's default traceback prints every
exception chained to the one raised (``__cause__``, ``__context__``), and a dask worker sends the
whole chain back to the client. :func:`redact_exception` redacts an exception and its chain
(in place where the exception allows it, else through a :class:`RedactedError` stand-in), and
:func:`redacted_errors` applies it to whatever leaves a function: eocube puts it on the functions
that run in dask tasks and read signed URLs, and on the CLI's commands.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

REDACTED = "REDACTED"

SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "GOOGLE_SERVICE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_KEY", "AZURE_CLIENT_SECRET",
    # obstore reads these too (its Azure and GCS configuration keys)
    "AZURE_STORAGE_ACCESS_KEY", "AZURE_STORAGE_MASTER_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET", "GOOGLE_BEARER_TOKEN",
)
"""Environment variables whose values never appear in a message (object-store credentials)."""

SHORTEST_SECRET = 4
"""Shorter values are not replaced in text (``"1"`` would turn every digit into ``REDACTED``)."""

# A URL's query string: from '?' to the end of the URL (whitespace, quote or closing bracket).
_QUERY = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s?'\"<>]*)\?(?P<query>[^\s'\"<>)\]]*[^\s'\"<>)\].,;:!])")
# One name=value pair inside a query.
_PAIR = re.compile(r"(?P<name>[^&=;]+)=(?P<value>[^&;]*)")
# A query string after a path without a scheme, as urllib3 and requests show them
# ("GET /search?token=...", "Max retries exceeded with url: /a.tif?sig=...").
_BARE_QUERY = re.compile(r"(?<=[^\s?=&])\?(?P<query>[^\s'\"<>)\]]*=[^\s'\"<>)\]]*)")
# Credentials in the authority part: scheme://user:password@host
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@'\"<>]+)@")
# Query parameters of a signature or a credential, which change between runs for the same data:
# Azure SAS (Planetary Computer), S3 and GCS presigned URLs, CloudFront, generic tokens and API keys.
_SIGNING = re.compile(
    r"^(x-amz-.+|x-goog-.+|sig|signature|se|st|sp|sv|sr|spr|sip|ss|srt|sdd|ses|skoid|sktid|skt|ske|sks|skv|"
    r"expires|policy|key-pair-id|googleaccessid|token|access_token|sastoken|key|apikey|api_key)$",
    re.IGNORECASE,
)


def _redact_pairs(query: str) -> str:
    # a value already redacted keeps what follows it (redacting twice changes nothing)
    return _PAIR.sub(lambda pair: f"{pair['name']}={pair['value'] if pair['value'].startswith(REDACTED) else REDACTED}",
                     query)


def _redact_query(match: re.Match[str]) -> str:
    return f"{match['head']}?{_redact_pairs(match['query'])}"


def redact(text: str) -> str:
    """Replace the query values and credentials of every URL in ``text``.

    Parameters
    ----------
    text
        Any message; the URLs in it may be signed.

    Returns
    -------
    str
        ``text`` with every URL query value (also after paths without a scheme, as urllib3
        shows them) and every ``user:password@`` replaced by ``REDACTED``; text without
        queries or credentials is returned unchanged.

    Examples
    --------
    >>> redact("cannot read https://host/a.tif?st=2024&sig=abc%2Fdef")
    'cannot read https://host/a.tif?st=REDACTED&sig=REDACTED'
    >>> redact("Max retries exceeded with url: /a.tif?sig=abc (http://h/b.tif?se=1)")
    'Max retries exceeded with url: /a.tif?sig=REDACTED (http://h/b.tif?se=REDACTED)'
    """
    if "://" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
        text = _QUERY.sub(_redact_query, text)
    if "?" not in text:
        return text
    return _BARE_QUERY.sub(lambda m: "?" + _redact_pairs(m["query"]), text)


def unsigned(url: str) -> str:
    """``url`` without the query parameters of a signature or credential: what names the data.

    A signed URL's token changes between runs while the data do not, so a load is named from
    its unsigned hrefs (and a store written from it stays resumable). Other query parameters
    (``versionId=``, ``generation=``, ...) say which data are read and are kept; a signing
    parameter this does not know is kept too, which makes a resume refused, never a wrong reuse.

    Parameters
    ----------
    url
        An href, signed or not; a text without a query is returned unchanged.

    Returns
    -------
    str
        The URL without its signing parameters. It may still hold credentials in other
        parameters: hash it, never show it (use :func:`redact` for messages).

    Examples
    --------
    >>> unsigned("https://host/a.tif?versionId=3&st=2024&sig=abc")
    'https://host/a.tif?versionId=3'
    """
    if "?" not in url:
        return url
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _SIGNING.match(k)]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def redact_obj(obj: Any) -> Any:
    """:func:`redact` every string inside nested dicts, lists and tuples (for attributes, provenance).

    Parameters
    ----------
    obj
        A string, a number, or a nest of dicts, lists and tuples of them.

    Returns
    -------
    Any
        The same structure with every string redacted (new containers; ``obj`` is not changed).
    """
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {key: redact_obj(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(value) for value in obj)
    return obj


def env_secrets() -> list[str]:
    """The values of the credential variables of :data:`SECRET_ENV` that are set (at least 4 characters)."""
    return [value for name in SECRET_ENV if len(value := os.environ.get(name, "")) >= SHORTEST_SECRET]


def query_secrets(url: str) -> list[str]:
    """The values of ``url``'s signing parameters (``sig=``, ``X-Amz-Signature=``, ``token=``, ...),
    as written and percent-decoded: the secrets of a signed URL.

    They are replaced wherever they appear in a message, even outside a URL (a library that
    prints the signature alone, or the URL percent-decoded). Other query values (``versionId=``)
    are redacted inside URLs only.
    """
    if "?" not in url:
        return []
    from urllib.parse import unquote

    query = url.split("?", 1)[1].split("#", 1)[0]
    found: set[str] = set()
    for pair in _PAIR.finditer(query):
        if _SIGNING.match(unquote(pair["name"])):
            found |= {pair["value"], unquote(pair["value"])}
    return [value for value in found if len(value) >= SHORTEST_SECRET]


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """:func:`redact` ``text``, and replace each of ``secrets`` (values at least 4 characters long) in it.

    Parameters
    ----------
    text
        Any message.
    secrets
        Values that must never be shown (credentials, a signed URL's query values).

    Returns
    -------
    str
        The text without URL query values, user info and ``secrets``.
    """
    text = redact(text)
    for secret in sorted({s for s in secrets if s and len(s) >= SHORTEST_SECRET}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class RedactedError(Exception):
    """Stands in for an exception whose text held a secret and cannot be changed in place, or
    that a dask worker cannot send back (read-only ``args``, as rasterio's ``CPLE_*`` errors:
    distributed rebuilds a chain with tblib, which sets ``args``, and on failure the client got
    a plain ``Exception`` instead of the eocube error at the head of the chain).

    Its message starts with the original exception's module and type, followed by the original
    message redacted; its traceback, chained exceptions and notes are the original's (redacted).
    """


def _clean_obj(obj: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    if isinstance(obj, dict):
        return {key: _clean_obj(value, secrets) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return type(obj)(_clean_obj(value, secrets) for value in obj)
    return obj


def _texts(exc: BaseException) -> list[str]:
    """What a traceback or a log shows of ``exc`` (str, repr, notes), and its text attributes, which
    a dask worker pickles to the client; raises if it cannot be printed."""
    attributes = [repr(value) for value in getattr(exc, "__dict__", {}).values()
                  if isinstance(value, (str, list, tuple, dict))]
    return [str(exc), repr(exc), *(str(note) for note in getattr(exc, "__notes__", None) or ()), *attributes]


def _leaks(exc: BaseException, secrets: tuple[str, ...]) -> bool:
    return any(redact_text(text, secrets) != text for text in _texts(exc))


def _redact_in_place(exc: BaseException, secrets: tuple[str, ...]) -> None:
    """Redact what ``exc`` holds as text: its args, OSError's fields, string attributes, notes."""
    try:
        exc.args = _clean_obj(exc.args, secrets)
    except (AttributeError, TypeError):  # read-only args (Cython exceptions such as rasterio's CPLE_*)
        pass
    for name, value in list(getattr(exc, "__dict__", {}).items()):
        clean = _clean_obj(value, secrets)
        if clean is not value and clean != value:
            try:
                setattr(exc, name, clean)
            except (AttributeError, TypeError):
                pass
    if isinstance(exc, OSError):  # str() of an OSError is built from these, not from args
        for name in ("strerror", "filename", "filename2"):
            value = getattr(exc, name, None)
            if isinstance(value, str):
                setattr(exc, name, redact_text(value, secrets))
    notes = getattr(exc, "__notes__", None)
    if notes:
        exc.__notes__ = [redact_text(str(note), secrets) for note in notes]


def _stand_in(exc: BaseException, secrets: tuple[str, ...]) -> BaseException:
    try:
        text = redact_text(str(exc), secrets)
    except Exception:  # noqa: BLE001 - an exception that cannot even be printed
        text = "<message not shown>"
    out = RedactedError(f"{type(exc).__module__}.{type(exc).__qualname__}: {text}")
    notes = getattr(exc, "__notes__", None)
    if notes:
        out.__notes__ = [redact_text(str(note), secrets) for note in notes]
    return out.with_traceback(exc.__traceback__)


def _rebuildable(exc: BaseException) -> bool:
    """Whether ``args`` can be set (tblib, which dask uses to send exceptions, sets it)."""
    try:
        exc.args = exc.args
    except (AttributeError, TypeError):
        return False
    return True


def _redact_one(exc: BaseException, secrets: tuple[str, ...], done: dict[int, BaseException]) -> BaseException:
    if isinstance(exc, BaseExceptionGroup):
        parts = [_redact_chain(e, secrets, done) for e in exc.exceptions]
        if any(new is not old for new, old in zip(parts, exc.exceptions)):
            group = exc.derive(parts)
            group.__traceback__, group.__notes__ = exc.__traceback__, list(getattr(exc, "__notes__", []) or [])
            exc = group
    try:
        if not _rebuildable(exc):
            return _stand_in(exc, secrets)
        if not _leaks(exc, secrets):
            return exc
        _redact_in_place(exc, secrets)
        if not _leaks(exc, secrets):
            return exc
    except Exception:  # noqa: BLE001 - str()/repr() failed: show the type only
        pass
    return _stand_in(exc, secrets)


def _redact_chain(exc: BaseException | None, secrets: tuple[str, ...],
                  done: dict[int, BaseException]) -> BaseException | None:
    if exc is None:
        return None
    if id(exc) in done:
        return done[id(exc)]
    done[id(exc)] = exc  # a cycle back to this exception ends here
    out = done[id(exc)] = _redact_one(exc, secrets, done)
    cause, context, suppress = exc.__cause__, exc.__context__, exc.__suppress_context__
    out.__cause__ = _redact_chain(cause, secrets, done)
    out.__context__ = _redact_chain(context, secrets, done)
    out.__suppress_context__ = suppress
    return out


def redact_exception(exc: BaseException, secrets: Iterable[str] = ()) -> BaseException:
    """``exc`` and every exception chained to it, without signed-URL query values or ``secrets``.

    Each exception of the chain (``__cause__``, ``__context__``, the members of an exception
    group) whose str, repr or notes hold a secret has its args, string attributes, OSError fields
    and notes redacted in place; one whose text still holds a secret (a custom ``__str__``), or
    whose ``args`` are read-only (it could not be sent back from a dask worker), is replaced by a
    :class:`RedactedError` carrying its redacted message and its traceback. So Python's default
    traceback, dask's copy of it on the client and the worker's log show which file failed and
    why, never a signature or a credential.

    Parameters
    ----------
    exc
        The exception about to be raised (or printed).
    secrets
        Values to replace besides URL query values: credentials, the query values of the signed
        URLs the failing code read. The credential variables of :data:`SECRET_ENV` are always
        replaced.

    Returns
    -------
    BaseException
        ``exc`` itself (redacted in place) or its :class:`RedactedError` stand-in; raise it
        outside the ``except`` block that caught ``exc`` (or ``from None``), so that Python does
        not chain the original as its context again.

    Examples
    --------
    >>> try:
    ...     raise ValueError("GET https://host/a.zarr/0.0?sig=abc failed")
    ... except ValueError as caught:
    ...     error = redact_exception(caught)
    >>> str(error)
    'GET https://host/a.zarr/0.0?sig=REDACTED failed'
    """
    found = tuple(sorted({s for s in (*secrets, *env_secrets()) if s and len(s) >= SHORTEST_SECRET},
                         key=len, reverse=True))
    out = _redact_chain(exc, found, {})
    assert out is not None
    return out


F = TypeVar("F", bound=Callable[..., Any])


def redacted_errors(secrets: Callable[..., Iterable[str]] | None = None) -> Callable[[F], F]:
    """Decorator: an exception leaving the function is raised through :func:`redact_exception`.

    Put it on the functions that run inside dask tasks and read signed URLs (a chunk read, a
    STAC block read): the exception is redacted where it is raised, before dask's threaded
    scheduler hands it to the caller or a distributed worker logs it and pickles it (with its
    chain) to the client.

    Parameters
    ----------
    secrets
        Called with the function's arguments when it fails; returns the values to redact besides
        URL query values (the query values of the URLs it read, credentials).

    Returns
    -------
    callable
        The decorator.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - redacted and raised again below
                try:
                    extra = list(secrets(*args, **kwargs)) if secrets is not None else []
                except Exception:  # noqa: BLE001 - the URL query values are redacted anyway
                    extra = []
                error = redact_exception(exc, extra)
            raise error  # outside the except block: the unredacted original is not chained as context

        return wrapper  # type: ignore[return-value]

    return decorate
