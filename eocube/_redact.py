"""Keep secrets out of messages, warnings, logs and stored attributes.

Signed URLs carry their credentials in the query string (Planetary Computer SAS tokens
``?st=...&se=...&sig=...``, S3 presigned URLs ``X-Amz-Signature=...``, GCS ``X-Goog-Signature``,
generic ``token=`` / ``access_token=`` / ``key=``). Such URLs end up in error messages and
warnings, which end up in Slurm job logs that other people read. Every eocube message that may
show an href goes through :func:`redact`, which keeps the scheme, host, path and the query
*names* (so the message still says which file and which kind of signature) and replaces every
query *value* with ``REDACTED``. Userinfo (``https://user:password@host``) is redacted too.

The functions are pure (text in, text out) so that any layer can call them.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "REDACTED"

# A URL's query string: from '?' to the end of the URL (whitespace, quote or closing bracket).
_QUERY = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s?'\"<>]*)\?(?P<query>[^\s'\"<>)\]]*)")
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
    return _PAIR.sub(lambda pair: f"{pair['name']}={REDACTED}", query)


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
