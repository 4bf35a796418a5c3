"""The ``--source [NAME=]SPEC`` values of ``eocube apply``: parsed, checked, bound to the model's sources, opened.

A SPEC is one of:

* a bundled sample (``sentinel2``) or one group of a bundled multi-source sample
  (``sentinel2_l1c:10m``, see :data:`eocube.datasets.SCENES`);
* the path of a Zarr cube (written by eocube or any store :func:`eocube.open_zarr` reads);
* a STAC items file (``.json`` / ``.geojson``: an ItemCollection, a list of items or one item),
  opened with :func:`eocube.open_stac`;
* a STAC search as a small YAML file (``.yaml`` / ``.yml``) whose keys are arguments of
  :func:`eocube.open_stac`: ``url``, ``collections``, ``bbox``, ``datetime``, ``query``,
  ``assets``, ``resolution``, ``crs``, ``nodata``, ``dtype`` (and ``filter``, ``max_items``,
  ``bounds``, ``groupby``, ``resampling``); or ``items`` (an items file, relative to the YAML)
  instead of ``url``.

Everything here up to :func:`open_source_arg` is cheap (no xarray, no torch): the command
checks every source before it imports anything heavy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreNotFoundError
from ._common import InputError, is_url, shown_location

if TYPE_CHECKING:
    import xarray as xr

STAC_KEYS = ("url", "items", "collections", "bbox", "datetime", "query", "filter", "max_items", "assets",
             "resolution", "crs", "bounds", "nodata", "dtype", "groupby", "resampling")
"""Keys a STAC search YAML may hold (arguments of :func:`eocube.open_stac`, and ``items``)."""

ITEMS_SUFFIXES = (".json", ".geojson")
SEARCH_SUFFIXES = (".yaml", ".yml")
_NAME = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)=(.+)$")


@dataclass(frozen=True)
class SourceArg:
    """One ``--source`` value."""

    name: str | None
    """The model source it feeds (``NAME=``), or None when not named."""
    spec: str
    """What to open (a sample, a Zarr path, a STAC items file or search YAML)."""
    kind: str
    """``"sample"``, ``"zarr"``, ``"stac-items"`` or ``"stac-search"``."""

    @property
    def shown(self) -> str:
        """The value as given on the command line."""
        return f"{self.name}={self.spec}" if self.name else self.spec

    def provenance(self) -> str:
        """What the source is, for the output's provenance: a sample name or an absolute path."""
        return self.spec if self.kind == "sample" else shown_location(self.spec)


def _kind(spec: str) -> str:
    from ..datasets import is_sample

    if is_sample(spec):
        return "sample"
    suffix = Path(spec).suffix.lower()
    if suffix in ITEMS_SUFFIXES:
        return "stac-items"
    if suffix in SEARCH_SUFFIXES:
        return "stac-search"
    return "zarr"


def parse_source(text: str) -> SourceArg:
    """``[NAME=]SPEC`` -> :class:`SourceArg` (the name only when it looks like one: ``s10=...``).

    Raises
    ------
    InputError
        An empty value.
    """
    text = text.strip()
    match = _NAME.match(text)
    name, spec = (match.group(1), match.group(2).strip()) if match and not os.path.exists(text) else (None, text)
    if not spec:
        raise InputError(f"--source {text!r} is empty: give [NAME=]SPEC, e.g. --source sentinel2 or "
                         "--source s10=cube.zarr")
    return SourceArg(name=name, spec=spec, kind=_kind(spec))


def check_source_arg(arg: SourceArg) -> None:
    """Cheap checks of one source: the sample is known, the file exists, a search YAML is usable.

    Raises
    ------
    StoreNotFoundError
        No such sample, store or file (the message lists the bundled samples).
    InputError
        A STAC search YAML that cannot be used (not a mapping, unknown keys, neither url nor items), or a
        STAC items file or search YAML given as a URL (they are read from local files).
    """
    if arg.kind == "sample":
        return
    if is_url(arg.spec):
        if arg.kind != "zarr":
            what = "STAC items file" if arg.kind == "stac-items" else "STAC search YAML"
            raise InputError(_not_local(arg, what, arg.spec))
        return
    if not Path(arg.spec).expanduser().exists():
        from ..datasets import sample_names

        what = {"zarr": "no Zarr store", "stac-items": "no STAC items file", "stac-search": "no STAC search file"}
        raise StoreNotFoundError(
            f"--source {arg.shown}: {what[arg.kind]} at {arg.spec} and no bundled sample of that name: the bundled "
            f"samples are {', '.join(sample_names())}; or give a Zarr cube, a STAC items file (.json, .geojson) "
            "or a STAC search (.yaml)"
        )
    if arg.kind == "stac-search":
        read_search(arg)


def _not_local(arg: SourceArg, what: str, url: str) -> str:
    """The message for a STAC items file or search YAML given as a URL (they are read from local files)."""
    return (f"--source {arg.shown}: the {what} {url} is a URL, but STAC items files and search YAMLs are read "
            "from local files: download it, or give a search YAML with url: (a STAC API) and the search")


def read_search(arg: SourceArg) -> dict[str, Any]:
    """The keyword arguments of :func:`eocube.open_stac` a STAC search YAML holds.

    Raises
    ------
    InputError
        Not YAML, not a mapping, unknown keys, neither ``url`` nor ``items``, or ``items`` at a URL.
    """
    import yaml

    path = Path(arg.spec).expanduser()
    try:
        search = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"--source {arg.shown}: cannot read the STAC search YAML ({first})") from None
    if not isinstance(search, dict):
        raise InputError(f"--source {arg.shown}: a STAC search YAML is a mapping of {', '.join(STAC_KEYS)}; "
                         f"got a {type(search).__name__}")
    unknown = sorted(str(k) for k in search if k not in STAC_KEYS)
    if unknown:
        raise InputError(f"--source {arg.shown}: unknown key(s) {unknown} in the STAC search; the keys are "
                         f"{', '.join(STAC_KEYS)}")
    if ("url" in search) == ("items" in search):
        raise InputError(f"--source {arg.shown}: the STAC search needs 'url' (a STAC API) or 'items' (an items "
                         "file), one of them")
    if "items" in search:
        if is_url(str(search["items"])):
            raise InputError(_not_local(arg, "STAC items file", str(search["items"])))
        items = Path(str(search["items"])).expanduser()
        search["items"] = str(items if items.is_absolute() else (path.parent / items).resolve())
    for key in ("bbox", "bounds"):
        if key in search and search[key] is not None:
            search[key] = tuple(float(v) for v in search[key])
    if isinstance(search.get("resolution"), list):
        search["resolution"] = tuple(float(v) for v in search["resolution"])
    return search


def bind_sources(args: Sequence[SourceArg], names: Sequence[str], described_by: str) -> dict[str, SourceArg]:
    """Bind the ``--source`` values to the model's sources, by name (one unnamed value: a one-source model).

    Parameters
    ----------
    args
        The parsed ``--source`` values.
    names
        The model's source names, in argument order.
    described_by
        Where the names come from, for messages (``"the model card x.json"``).

    Returns
    -------
    dict
        Source name -> value, in the model's order.

    Raises
    ------
    InputError
        An unnamed value for a model of several sources, a name the model does not take, a name
        given twice, or a source of the model missing from the call.
    """
    names = list(names)
    listed = ", ".join(names)
    how = " ".join(f"--source {n}=SPEC" for n in names)
    unnamed = [a for a in args if a.name is None]
    if unnamed and (len(names) > 1 or len(args) > 1):
        raise InputError(f"--source {unnamed[0].spec} has no name, but the model takes {len(names)} source(s) "
                         f"({listed}, from {described_by}): name each one, {how}")
    if unnamed:
        return {names[0]: unnamed[0]}
    bound: dict[str, SourceArg] = {}
    for arg in args:
        if arg.name not in names:
            raise InputError(f"--source {arg.shown}: the model has no source {arg.name!r}; its sources are {listed} "
                             f"({described_by})")
        if arg.name in bound:
            raise InputError(f"--source {arg.name}= is given twice ({bound[arg.name].spec} and {arg.spec})")
        bound[arg.name] = arg
    missing = [n for n in names if n not in bound]
    if missing:
        raise InputError(f"the model takes the source(s) {listed} ({described_by}); missing from the call: "
                         f"{', '.join(missing)}: add " + " ".join(f"--source {n}=SPEC" for n in missing))
    return {n: bound[n] for n in names}


def open_source_arg(arg: SourceArg) -> xr.DataArray:
    """Open one source as a lazy cube (xarray, rioxarray, zarr or the STAC reader imported here)."""
    if arg.kind == "sample":
        from ..datasets import open_sample

        return open_sample(arg.spec)
    if arg.kind == "zarr":
        from ..io import open_zarr

        return open_zarr(arg.spec if is_url(arg.spec) else Path(arg.spec).expanduser())
    from ..stac import open_stac

    if arg.kind == "stac-items":
        return open_stac(str(Path(arg.spec).expanduser()))
    search = read_search(arg)
    items = search.pop("items", None)
    return open_stac(items, **search)
