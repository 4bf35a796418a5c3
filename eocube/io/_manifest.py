"""The content of a stored array: checksums of its write units, its manifest, and checks against one listing.

What eocube's writer stores, it records (:class:`eocube.io._recording.RecordingStore`): the size and
CRC32C of each write unit's object as it goes to the store (one pass over
bytes already in memory), or that zarr stored no object because the unit is
all nodata. The unit's ledger marker carries that record in its name
(:mod:`eocube.io._ledger`). At completion one listing of the array's objects
checks that every unit is there as written, and a *manifest* keeps, per
object key, its size, checksum and stamp (file mtime, or ETag on object
stores) in ``.eocube-manifest/<variable>.json``, about 60 bytes per unit; the
write record holds the manifest's SHA-256.

Three checks use them, each with one listing of the array's objects (no object
is read unless its stamp changed since it was recorded):

* :func:`resume_check`, before a resume (or a rerun into a complete store):
  units whose object is missing or differs are recomputed instead of skipped;
* :func:`finish`, at completion: a unit the writer believed written and that
  is not there stops the completion;
* :func:`content`, when a store is opened as an input: an array whose objects
  are exactly those of its manifest is identified by the manifest (checksums
  of everything written); any other array (edited in place, or not written by
  eocube) by the listing's sizes and stamps, so a changed chunk changes its
  identity. Objects the manifest holds but the store lacks are reported.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _ledger, _stores
from ._ledger import Marker, Unit
from ._stores import ObjectInfo, StoreLocation

log = logging.getLogger(__name__)

MANIFEST_DIR = ".eocube-manifest"
MANIFEST_VERSION = 1
_METADATA_NAMES = frozenset({".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json"})

try:  # zarr's own CRC32C (hardware accelerated, a dependency of zarr >= 3.1)
    from google_crc32c import extend as _crc32c

    CHECKSUM = "crc32c"

    def _crc(data: Any) -> int:
        return int(_crc32c(0, data))
except ImportError:  # pragma: no cover - zarr 3.0 without google-crc32c
    import zlib

    CHECKSUM = "crc32"

    def _crc(data: Any) -> int:
        return zlib.crc32(data)


def checksum(data: bytes | np.ndarray) -> str:
    """``"crc32c-<8 hex>"`` of ``data`` (bytes or a uint8 array)."""
    return f"{CHECKSUM}-{_crc(data):08x}"


def manifest_key(variable: str) -> str:
    """Key of an array's manifest, relative to the store."""
    return f"{MANIFEST_DIR}/{variable}.json"


def _chunk_objects(loc: StoreLocation, variable: str) -> dict[str, ObjectInfo]:
    """The array's chunk (or shard) objects, keys relative to its folder, from one listing."""
    prefix = f"{variable}/"
    return {key[len(prefix):]: info for key, info in _stores.list_objects(loc, prefix).items()
            if key.rsplit("/", 1)[-1] not in _METADATA_NAMES}


# ------------------------------------------------------------------------------------------- claims and checks


@dataclass(frozen=True)
class Claim:
    """What a unit's object should be: from its ledger marker, or from the manifest."""

    unit: Unit
    stamp: int | str | None = None
    """The object's stamp when the manifest was made (None for a marker's claim)."""
    marker: Marker | None = None
    """The marker that makes the claim (None for the manifest's)."""


@dataclass
class Check:
    """The outcome of checking claims against a listing."""

    good: dict[tuple[int, ...], tuple[Claim, ObjectInfo | None]] = field(default_factory=dict)
    """Units stored as claimed, with their object's listing (None: no object, all nodata)."""
    bad: dict[tuple[int, ...], str] = field(default_factory=dict)
    """Units claimed but missing or different: why."""
    stale: list[str] = field(default_factory=list)
    """Names of markers whose claim is false (removed before the unit is recomputed)."""
    damaged: list[str] = field(default_factory=list)
    """Keys (under the array's folder) of the objects of bad units (removed before the unit is recomputed)."""

    def summary(self, unit: str) -> str:
        """``"2 marked shards were missing or damaged and were recomputed (c/0/1/0/0 missing, ...)"``."""
        items = sorted(self.bad.items())
        shown = ", ".join(why for _, why in items[:5])
        more = f", and {len(items) - 5} more" if len(items) > 5 else ""
        return f"{len(items)} marked {unit} were missing or damaged and were recomputed ({shown}{more})"


def _why_not(claim: Claim, obj: ObjectInfo | None, read: Callable[[], bytes | None]) -> str | None:
    """Why the object does not match the claim (None: it does)."""
    unit = claim.unit
    if unit.size is None:  # an older marker: it says only "stored"
        return None if obj is not None else "missing"
    if unit.empty:
        return None if obj is None else f"holds {obj.size} bytes where the writer stored none"
    if obj is None:
        return "missing"
    if obj.size != unit.size:
        return f"has {obj.size} bytes instead of {unit.size}"
    if claim.stamp is not None and obj.stamp == claim.stamp:
        return None
    if claim.marker is not None and obj.mtime_ns <= claim.marker.marked_ns:
        return None
    if unit.checksum is None or not unit.checksum.startswith(CHECKSUM + "-"):
        return None  # rewritten since, with the same size, and nothing to compare its bytes to
    data = read()  # its stamp changed: compare its bytes
    if data is None:
        return "missing"
    return None if checksum(data) == unit.checksum else "has other bytes than written (checksum)"


def read_manifest(loc: StoreLocation, variable: str, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The manifest named by a write record, None when there is none or it does not match its SHA-256."""
    entry = record.get("manifest") if isinstance(record, dict) else None
    if not isinstance(entry, dict) or "sha256" not in entry:
        return None
    data = _stores.get_bytes(loc, str(entry.get("key") or manifest_key(variable)))
    if data is None or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        log.warning("%s: the manifest of %s is missing or altered; its content is identified by a listing instead",
                    loc.display, variable)
        return None
    try:
        manifest = json.loads(data)
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("units"), dict) else None


def _claims(loc: StoreLocation, variable: str, record: dict[str, Any] | None, keys: dict[tuple[int, ...], str],
            markers: dict[tuple[int, ...], list[Marker]]) -> dict[tuple[int, ...], list[Claim]]:
    """Claims of the ledger's markers, else of the manifest (of a complete store, or one being repaired)."""
    claims: dict[tuple[int, ...], list[Claim]] = {}
    ours = isinstance(record, dict) and (record.get("status") == "complete" or "repairing" in record)
    manifest = read_manifest(loc, variable, record) if ours else None
    if manifest is not None:
        units = manifest["units"]
        for index, key in keys.items():
            if key in units:
                size, crc, stamp = units[key]
                claims[index] = [Claim(Unit(int(size), crc), stamp)]
    for index, found in markers.items():
        if index in keys:
            claims[index] = [Claim(m.unit, marker=m) for m in found]
    return claims


def _grid_keys(encode: Callable[[tuple[int, ...]], str], nblocks: tuple[int, ...]) -> dict[tuple[int, ...], str]:
    return {index: encode(index) for index in np.ndindex(*nblocks)}


def _check(loc: StoreLocation, variable: str, keys: dict[tuple[int, ...], str],
           claims: dict[tuple[int, ...], list[Claim]]) -> Check:
    check = Check()
    if not claims:
        return check
    objects = _chunk_objects(loc, variable)
    for index, options in claims.items():
        key = keys[index]
        obj = objects.get(key)
        reasons = []
        for claim in options:
            why = _why_not(claim, obj, lambda key=key: _stores.get_bytes(loc, f"{variable}/{key}"))
            if why is None:
                check.good[index] = (claim, obj)
                break
            reasons.append(why)
        if index in check.good:
            check.stale += [c.marker.name for c in options if c.marker is not None and c is not check.good[index][0]]
        else:
            check.bad[index] = f"{key} {reasons[0]}"
            check.stale += [c.marker.name for c in options if c.marker is not None]
            if obj is not None:
                check.damaged.append(key)
    return check


def resume_check(loc: StoreLocation, variable: str, encode: Callable[[tuple[int, ...]], str],
                 nblocks: tuple[int, ...], record: dict[str, Any] | None) -> Check:
    """Which units a resume may skip: the ledger's and the manifest's claims, checked against one listing.

    Parameters
    ----------
    loc
        The store.
    variable
        Name of the array.
    encode
        The array's chunk key encoding (block index -> key under the array's folder).
    nblocks
        Number of write units along each axis.
    record
        The store's write record (its manifest, if any, is read).

    Returns
    -------
    Check
        ``good``: units to skip; ``bad``: claimed units to recompute, and why.
    """
    keys = _grid_keys(encode, nblocks)
    markers = _ledger.read_markers(loc, variable)
    return _check(loc, variable, keys, _claims(loc, variable, record, keys, markers))


def clear_bad(loc: StoreLocation, variable: str, check: Check) -> None:
    """Remove the false markers and the damaged objects of the bad units, so that they are written afresh.

    (Zarr reads a shard's index before writing into it: a truncated shard would fail the rewrite.)
    """
    _ledger.remove_markers(loc, variable, check.stale)
    keys = [f"{variable}/{key}" for key in check.damaged]
    if loc.is_local:
        for key in keys:
            (loc.path / key).unlink(missing_ok=True)
    elif keys:
        import obstore

        for i in range(0, len(keys), 1000):
            obstore.delete(loc.object_store(), keys[i:i + 1000])


def finish(loc: StoreLocation, variable: str, encode: Callable[[tuple[int, ...]], str], nblocks: tuple[int, ...],
           record: dict[str, Any] | None) -> dict[str, Any]:
    """Check that every unit is stored as its task recorded, and write the array's manifest.

    Parameters
    ----------
    loc, variable, encode, nblocks, record
        As for :func:`resume_check`.

    Returns
    -------
    dict
        The manifest's entry of the write record: key, SHA-256, units, objects, bytes, checksum.

    Raises
    ------
    StoreError
        A unit has no marker, or its object is missing or differs from what
        was written (another process deleted or changed it during the write):
        the store is left unfinished, and running the same command again
        recomputes those units.
    """
    from ..errors import StoreError

    keys = _grid_keys(encode, nblocks)
    claims = _claims(loc, variable, record, keys, _ledger.read_markers(loc, variable))
    check = _check(loc, variable, keys, claims)
    unclaimed = [i for i in keys if i not in claims]
    if check.bad or unclaimed:
        problems = [f"{keys[i]} was never marked written" for i in unclaimed[:3]] + \
                   [why for _, why in sorted(check.bad.items())[:3]]
        count = len(check.bad) + len(unclaimed)
        raise StoreError(
            f"{loc.display}: {count} of {len(keys)} units of {variable!r} are not stored as written ({'; '.join(problems)}): "
            "was the store changed by another process during the write? Run the same command again to recompute them"
        )
    units: dict[str, list[Any]] = {}
    for index, (claim, obj) in check.good.items():
        if obj is None:
            units[keys[index]] = [0, None, None]
        else:
            units[keys[index]] = [obj.size, claim.unit.checksum, obj.stamp]
    manifest = {"eocube_manifest": MANIFEST_VERSION, "variable": variable, "checksum": CHECKSUM,
                "fields": ["bytes", "checksum", "stamp"], "units": dict(sorted(units.items()))}
    data = json.dumps(manifest, separators=(",", ":")).encode()
    key = manifest_key(variable)
    _stores.put_bytes(loc, key, data)
    stored = [u for u in units.values() if u[0]]
    return {"key": key, "sha256": hashlib.sha256(data).hexdigest(), "units": len(units), "objects": len(stored),
            "bytes": int(sum(u[0] for u in stored)), "checksum": CHECKSUM}


# ------------------------------------------------------------------------------------------- readers


@dataclass(frozen=True)
class Content:
    """The content identity of an array opened as an input."""

    token: str
    """``"as-written"`` (the manifest in the write record identifies it), else a digest of the listing."""
    missing: tuple[str, ...] = ()
    """Object keys (under the array's folder) the writer stored and the store lacks."""
    source: str = "listing"
    """``"manifest"``, ``"listing"`` or ``"metadata"`` (the store cannot be listed: http(s))."""
    stored: int = 0
    """Objects the manifest holds (0 without a manifest)."""


def listing_digest(objects: dict[str, ObjectInfo]) -> str:
    """SHA-256 of every key with its size and stamp."""
    h = hashlib.sha256()
    for key in sorted(objects):
        info = objects[key]
        h.update(f"{key}\t{info.size}\t{info.stamp}\n".encode())
    return h.hexdigest()


def content(loc: StoreLocation, variable: str, record: dict[str, Any] | None) -> Content:
    """The content identity of an array, from one listing of its objects (no object is read).

    Parameters
    ----------
    loc
        The store.
    variable
        Name of the array.
    record
        The store's eocube write record (None for a store eocube did not write).

    Returns
    -------
    Content
        ``"as-written"`` when the store is a complete eocube store whose
        objects are exactly those of its manifest (size and stamp); otherwise
        a digest of the listing (sizes and mtimes or ETags of every object of
        the array, metadata included), so that any rewritten, added or
        removed chunk changes it.
    """
    if not _stores.can_list(loc):
        return Content("unlisted", (), "metadata")
    prefix = f"{variable}/"
    objects = {key[len(prefix):]: info for key, info in _stores.list_objects(loc, prefix).items()}
    complete = isinstance(record, dict) and record.get("status") == "complete"
    manifest = read_manifest(loc, variable, record) if complete else None
    if manifest is None:
        return Content(listing_digest(objects))
    chunks = {k: v for k, v in objects.items() if k.rsplit("/", 1)[-1] not in _METADATA_NAMES}
    stored = {k: u for k, u in manifest["units"].items() if u[0]}
    missing = tuple(sorted(k for k in stored if k not in chunks))
    same = len(chunks) == len(stored) and all(
        k in stored and stored[k][0] == info.size and stored[k][2] == info.stamp for k, info in chunks.items())
    if same:
        return Content("as-written", (), "manifest", len(stored))
    return Content(listing_digest(objects), missing, "listing", len(stored))


def describe_missing(keys: Iterable[str], total: int) -> str:
    """``"2 of 8 objects (c/0/1/0/0, c/1/1/0/0)"``."""
    keys = list(keys)
    shown = ", ".join(keys[:5]) + (f", and {len(keys) - 5} more" if len(keys) > 5 else "")
    return f"{len(keys)} of {total} objects ({shown})"
