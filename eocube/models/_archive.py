"""Check a torch zip archive the way torch reads it, without unpickling anything from it.

torch reads its archives (``torch.save``, ``torch.jit.save``, ``torch.export.save``) with its own
zip reader (caffe2's ``PyTorchStreamReader`` on miniz), not with Python's :mod:`zipfile`, and the
two disagree on hostile files:

* miniz finds an entry by a binary search over the central directory sorted case-insensitively:
  with two entries of the same name (or of names that differ in case only), which copy torch
  reads depends on their positions, while :mod:`zipfile` reads the last one;
* :mod:`zipfile` accepts data prepended to an archive and shifts every offset; miniz reads the
  offsets as written;
* torch strips one root folder from every name and reads the records it looks for by name.

A check made with :mod:`zipfile` alone can therefore read other bytes than torch will. Here,
:func:`check_archive` reads the central directory with :mod:`zipfile` (names, sizes,
compression) and refuses what torch would read ambiguously or dangerously; then it opens the
file with torch's own reader (``torch._C.PyTorchFileReader``, which only parses the zip) and
requires the same entries at the same offsets with the same sizes; the contents torch parses
when loading (the configs and graph of a ``.pt2``) are read through torch's reader, so they are
the bytes torch will parse. Refused:

* a file that is not a zip archive, is truncated or corrupt (unreadable directory, an entry
  outside the file or overlapping another, a bad CRC), or that torch's reader reads differently;
* duplicate entry names (case-insensitively), names with ``..``, an absolute path, a backslash,
  a drive letter or a control character, entries outside one root folder;
* zip bombs: compressed entries where torch writes them stored (everything but TorchScript's
  code), declared sizes beyond ``8 x file size + 16 MiB``;
* entries that are not in the allow-list of the format (so an added pickle is refused);
* in a ``.pt2``: compiled code (AOTInductor, ExecuTorch, MTIA), legacy pickled weights,
  weights or constants that ``torch.export.load`` would unpickle (``use_pickle``, custom and
  opaque objects), payloads that are not tensor files of the archive, duplicate JSON keys,
  symbolic-shape expressions that are more than sympy constructors of literals (torch parses
  them with ``sympy.sympify``, which evaluates Python), and sample inputs that
  ``torch.load(weights_only=True)`` cannot read (torch would retry them with
  ``weights_only=False``).

The one thing run on file content is ``torch.load(weights_only=True)`` on the sample inputs of a
``.pt2`` (after their own archive passed this check): torch's restricted unpickler, which never
runs code from the file, and exactly the test torch makes before its unsafe retry.
"""

from __future__ import annotations

import ast
import functools
import io
import json
import os
import re
import struct
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from ._errors import ModelLoadError

ArchiveFormat = Literal["torch.export", "torchscript", "torch.save"]
"""The formats of torch zip archives that eocube loads."""

FORMAT_NAMES: dict[str, str] = {
    "torch.export": "torch.export program (.pt2 of torch.export.save)",
    "torchscript": "TorchScript file (torch.jit.save)",
    "torch.save": "torch.save file",
}
"""How each format is named in messages."""

BOMB_FACTOR = 8
"""Declared sizes may add up to this many times the file size (plus :data:`BOMB_SLACK`)."""
BOMB_SLACK = 16 << 20
"""Bytes of declared size allowed beyond ``BOMB_FACTOR x file size`` (small files of code)."""

_COMMON = {"byteorder", "version", ".data/version", ".data/serialization_id"}
_MODEL = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_ALLOWED: dict[str, re.Pattern[str]] = {
    "torch.save": re.compile(
        "|".join([*(re.escape(n) for n in _COMMON | {"data.pkl", ".format_version", ".storage_alignment"}),
                  r"data/\d+"])
    ),
    "torchscript": re.compile(
        "|".join([*(re.escape(n) for n in _COMMON | {"data.pkl", "constants.pkl", "traced_inputs.pkl"}),
                  r"(?:data|constants|traced_inputs)/\d+",
                  r"code/__torch__(?:/\w+)*\.py(?:\.debug_pkl)?",
                  r"extra/[\w.-]+(?:/[\w.-]+)*"])
    ),
    "torch.export": re.compile(
        "|".join([*(re.escape(n) for n in _COMMON | {"archive_format", "archive_version"}),
                  rf"models/{_MODEL}\.json",
                  rf"data/weights/{_MODEL}_weights_config\.json",
                  r"data/weights/weight_\d+",
                  rf"data/constants/{_MODEL}_constants_config\.json",
                  r"data/constants/tensor_\d+",
                  rf"data/sample_inputs/{_MODEL}\.pt",
                  r"extra/[\w.-]+(?:/[\w.-]+)*"])
    ),
}
_COMPRESSIBLE = re.compile(r"code/.*")
"""TorchScript's code is the only content torch writes compressed."""
_COMPILED = ("data/aotinductor/", "data/executorch/", "data/mtia")
_LEGACY_PAYLOADS = re.compile(rf"data/(weights|constants)/{_MODEL}\.pt")
_PAYLOAD_FILE = {"weights": re.compile(r"weight_\d+"), "constants": re.compile(r"tensor_\d+")}
_METHODS = {zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_SHOWN = 80


class UnsafeArchiveError(ModelLoadError):
    """A model or checkpoint archive that torch could read ambiguously, or that would run code.

    ``reason`` says why, in a few words (``"it holds two entries named 'data.pkl'"``); the
    loaders put it in a one-line message that names the file and what to do.
    """

    @property
    def reason(self) -> str:
        """Why the archive was refused."""
        return str(self.args[0]) if self.args else "it was refused"


@dataclass(frozen=True)
class Archive:
    """What :func:`check_archive` found in an archive that passed."""

    format: ArchiveFormat
    """The format, from the names of the entries."""
    root: str
    """The root folder of every entry."""
    names: tuple[str, ...]
    """The entries without their root folder, in the order of the central directory."""


def _shown(name: str) -> str:
    """An entry name for a one-line message: quoted, escaped, and cut to 80 characters."""
    return repr(name if len(name) <= _SHOWN else name[:_SHOWN] + "...")


def detect_format(names: list[str] | tuple[str, ...]) -> ArchiveFormat | None:
    """The format of a torch archive from the names of its entries (without their root), or None."""
    if "archive_format" in names and any(n.startswith("models/") for n in names):
        return "torch.export"
    if "constants.pkl" in names or any(n.startswith("code/") for n in names):
        return "torchscript"
    if "data.pkl" in names:
        return "torch.save"
    return None


def archive_names(source: str | os.PathLike[str] | bytes) -> list[str] | None:
    """Names in a zip file without their root folder, or None when it is not a zip file.

    For telling formats apart only; :func:`check_archive` decides whether a file is safe.
    """
    try:
        with _opened(source) as f, zipfile.ZipFile(f) as archive:
            return [name.split("/", 1)[-1] for name in archive.namelist()]
    except Exception:  # noqa: BLE001 - any unreadable file is "not a zip file" here
        return None


@contextmanager
def _opened(source: str | os.PathLike[str] | bytes) -> Iterator[IO[bytes]]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(bytes(source))
    else:
        with open(source, "rb") as f:
            yield f


def check_archive(
    source: str | os.PathLike[str] | bytes, expected: ArchiveFormat | None = None
) -> Archive:
    """Check that torch would read a zip archive unambiguously and run no code from it.

    Nothing is unpickled, except the sample inputs of a ``.pt2`` by ``torch.load(weights_only=True)``
    (see the module docstring).

    Parameters
    ----------
    source
        A file path, or the bytes of an archive (the sample inputs inside a ``.pt2``).
    expected
        The format the caller loads; another one is refused.

    Returns
    -------
    Archive
        The format, the root folder and the entry names.

    Raises
    ------
    UnsafeArchiveError
        With a one-line ``reason`` (see the module docstring for what is refused).
    """
    with _opened(source) as f:
        size = f.seek(0, io.SEEK_END)
        f.seek(0)
        magic = f.read(4)
        try:
            archive = zipfile.ZipFile(f)
        except Exception as exc:  # noqa: BLE001 - zipfile raises several types on hostile files
            if magic != b"PK\x03\x04":
                raise UnsafeArchiveError(
                    "it is not a zip archive (files of torch.save, torch.jit.save and torch.export.save are; "
                    "it is corrupt, or in torch's legacy format)"
                ) from None
            raise UnsafeArchiveError(
                f"its zip directory cannot be read, the file is truncated or corrupt ({type(exc).__name__})"
            ) from None
        with archive:
            infos = archive.infolist()
            root, names = _check_names(infos)
            found = detect_format(names)
            if found is None:
                raise UnsafeArchiveError(
                    "its entries are not those of a torch.save, torch.jit.save or torch.export.save archive"
                )
            if expected is not None and found != expected:
                raise UnsafeArchiveError(f"it is a {FORMAT_NAMES[found]}, not a {FORMAT_NAMES[expected]}")
            _check_allowed(found, names)
            offsets = _check_layout(archive, infos, names, found, f, size)
            _check_crc(archive, infos)
    reader = _torch_reader(source)
    _check_torch_view(reader, infos, names, offsets)
    if found == "torch.export":
        _check_program(reader, names)
    return Archive(format=found, root=root, names=tuple(names))


def _check_names(infos: list[zipfile.ZipInfo]) -> tuple[str, list[str]]:
    """The root folder and the names below it; refuses unsafe, ambiguous and duplicate names."""
    if not infos:
        raise UnsafeArchiveError("it is an empty zip archive")
    seen: dict[str, str] = {}
    roots = set()
    names = []
    for info in infos:
        name = info.orig_filename
        if re.search(r"[\x00-\x1f\x7f]", name):
            raise UnsafeArchiveError(f"the entry name {_shown(name)} holds control characters")
        if "\\" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name) or any(
            part in ("", ".", "..") for part in name.split("/")
        ):
            raise UnsafeArchiveError(
                f"the entry name {_shown(name)} is a path out of its folder (a '..', '.' or empty part, "
                "an absolute path, a backslash or a drive letter)"
            )
        key = name.lower()  # torch's reader (miniz) finds names case-insensitively
        if key in seen:
            which = (f"two entries named {_shown(name)}" if seen[key] == name else
                     f"entries named {_shown(seen[key])} and {_shown(name)}, which torch's reader confuses "
                     "(it ignores case)")
            raise UnsafeArchiveError(f"it holds {which}: torch and other zip readers would read different copies")
        seen[key] = name
        if "/" not in name:
            raise UnsafeArchiveError(f"the entry {_shown(name)} is not in a root folder, as torch writes them")
        root, rest = name.split("/", 1)
        roots.add(root)
        names.append(rest)
        if info.flag_bits & 0x1:
            raise UnsafeArchiveError(f"the entry {_shown(name)} is encrypted")
    if len(roots) > 1:
        shown = ", ".join(_shown(r) for r in sorted(roots)[:3])
        raise UnsafeArchiveError(f"its entries are in {len(roots)} root folders ({shown}), torch writes one")
    return roots.pop(), names


def _check_allowed(found: ArchiveFormat, names: list[str]) -> None:
    """Refuses compiled code, legacy pickles and any entry outside the allow-list of the format."""
    for name in names:
        if found == "torch.export":
            if name.startswith(_COMPILED):
                raise UnsafeArchiveError(f"it holds compiled code ({name[:_SHOWN]}), which runs when loaded")
            if re.fullmatch(r"data/constants/(?:custom_obj_|opaque_obj_).*", name):
                raise UnsafeArchiveError(f"it holds a pickled object ({name[:_SHOWN]})")
            legacy = _LEGACY_PAYLOADS.fullmatch(name)
            if legacy:
                raise UnsafeArchiveError(f"it holds pickled {legacy.group(1)} in the legacy format ({name})")
        if not _ALLOWED[found].fullmatch(name):
            raise UnsafeArchiveError(
                f"it holds the entry {_shown(name)}, which is not part of a {FORMAT_NAMES[found]}"
            )


def _check_layout(
    archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], names: list[str], found: ArchiveFormat,
    f: IO[bytes], size: int,
) -> list[int]:
    """The data offset of every entry; refuses bombs, entries out of the file and overlapping entries."""
    declared = sum(info.file_size for info in infos)
    if declared > BOMB_FACTOR * size + BOMB_SLACK:
        raise UnsafeArchiveError(
            f"its entries declare {declared} bytes in a file of {size} bytes (a zip bomb)"
        )
    offsets = []
    spans = []
    for info, name in zip(infos, names):
        compressible = found == "torchscript" and _COMPRESSIBLE.fullmatch(name)
        if info.compress_type != zipfile.ZIP_STORED and not (
            compressible and info.compress_type == zipfile.ZIP_DEFLATED
        ):
            raise UnsafeArchiveError(
                f"the entry {_shown(name)} is compressed ({_METHODS.get(info.compress_type, info.compress_type)}), "
                "torch writes it stored"
            )
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise UnsafeArchiveError(
                f"the entry {_shown(name)} is stored but declares {info.file_size} bytes for "
                f"{info.compress_size} (a corrupt or crafted archive)"
            )
        f.seek(info.header_offset)
        header = f.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise UnsafeArchiveError(f"the entry {_shown(name)} has no local header (a truncated or corrupt file)")
        fields = _LOCAL_HEADER.unpack(header)
        start = info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10]
        end = start + info.compress_size
        if end > archive.start_dir:
            raise UnsafeArchiveError(
                f"the entry {_shown(name)} runs past the end of its data (a truncated or corrupt file)"
            )
        offsets.append(start)
        spans.append((info.header_offset, end, name))
    spans.sort()
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:]):
        if begin < end:
            raise UnsafeArchiveError(f"the entries {_shown(first)} and {_shown(second)} overlap (a zip bomb)")
    return offsets


def _check_crc(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """Reads every entry (within its declared size) and checks its CRC and local name."""
    for info in infos:
        try:
            with archive.open(info) as entry:
                while entry.read(1 << 20):
                    pass
        except Exception as exc:  # noqa: BLE001 - BadZipFile, EOFError, zlib.error on crafted data
            raise UnsafeArchiveError(
                f"the entry {_shown(info.orig_filename)} is damaged ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:_SHOWN]})"
            ) from None


def _torch_reader(source: str | os.PathLike[str] | bytes) -> Any:
    import torch

    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            return torch._C.PyTorchFileReader(io.BytesIO(bytes(source)))
        return torch._C.PyTorchFileReader(str(Path(source)))
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError with a C++ trace
        raise UnsafeArchiveError(f"torch's zip reader refuses it ({_first_line(exc)})") from None


def _check_torch_view(reader: Any, infos: list[zipfile.ZipInfo], names: list[str], offsets: list[int]) -> None:
    """Requires torch's reader to see the same entries at the same offsets with the same sizes."""
    try:
        seen = list(reader.get_all_records())
        if seen != names:
            raise UnsafeArchiveError("torch's zip reader lists other entries than its zip directory holds")
        for info, name, start in zip(infos, names, offsets):
            if (
                reader.get_record_header_offset(name) != info.header_offset
                or reader.get_record_offset(name) != start
                or reader.get_record_size(name) != info.file_size
            ):
                raise UnsafeArchiveError(
                    f"torch's zip reader finds the entry {_shown(name)} elsewhere than its zip directory says "
                    "(data prepended to the archive, or a crafted directory)"
                )
    except UnsafeArchiveError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UnsafeArchiveError(f"torch's zip reader cannot read its entries ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", line).split(". ")[0]
    return f"{type(exc).__name__}: {line[:160]}" if line else type(exc).__name__


def _check_program(reader: Any, names: list[str]) -> None:
    """The contents ``torch.export.load`` parses, read through torch's reader."""
    present = set(names)
    for name in names:
        kind = re.fullmatch(rf"data/(weights|constants)/{_MODEL}_(?:weights|constants)_config\.json", name)
        if kind:
            _check_payload_config(_json(reader, name), name, kind.group(1), present)
        elif name.startswith("models/"):
            _check_graph(_json(reader, name), name)
        elif name.startswith("data/sample_inputs/"):
            _check_sample_inputs(bytes(reader.get_record(name)), name)


def _json(reader: Any, name: str) -> Any:
    """A JSON entry decoded as torch decodes it (UTF-8); duplicate keys are refused."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise UnsafeArchiveError(f"{name} repeats the key {_shown(dup)} (readers may take either value)")
        return dict(pairs)

    try:
        return json.loads(bytes(reader.get_record(name)).decode("utf-8"), object_pairs_hook=unique)
    except UnsafeArchiveError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UnsafeArchiveError(f"{name} is not valid JSON ({type(exc).__name__})") from None


def _check_payload_config(config: Any, name: str, kind: str, present: set[str]) -> None:
    """Refuses weights and constants that ``torch.export.load`` would unpickle, or that are not tensor files."""
    if not isinstance(config, Mapping) or not isinstance(config.get("config"), Mapping) or set(config) != {"config"}:
        raise UnsafeArchiveError(f"{name} is not a payload config of torch.export.save")
    for fqn, meta in config["config"].items():
        if not isinstance(meta, Mapping):
            raise UnsafeArchiveError(f"{_shown(fqn)} in {name} is not a payload description")
        path_name = meta.get("path_name")
        if meta.get("use_pickle", False) is not False or (
            isinstance(path_name, str) and path_name.startswith(("custom_obj_", "opaque_obj_"))
        ):
            raise UnsafeArchiveError(f"{_shown(fqn)} in {name} is a pickled object")
        if not (isinstance(path_name, str) and _PAYLOAD_FILE[kind].fullmatch(path_name)
                and f"data/{kind}/{path_name}" in present):
            raise UnsafeArchiveError(
                f"{_shown(fqn)} in {name} names the payload {_shown(str(path_name))}, not a tensor file of the archive"
            )


def _check_graph(program: Any, name: str) -> None:
    """Refuses symbolic-shape expressions that would run Python in ``sympy.sympify``."""
    stack = [program]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key == "expr_str" and not (isinstance(value, str) and _plain_sympy(value)):
                    raise UnsafeArchiveError(
                        f"{name} holds the shape expression {_shown(str(value))}, which is not made of sympy "
                        "constructors and literals (torch evaluates it as Python)"
                    )
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


@functools.cache
def _sympy_names() -> frozenset[str]:
    """Names of the sympy classes and constants a shape expression may use (``srepr`` output)."""
    import sympy
    import sympy.functions.elementary as elementary
    from torch.utils._sympy import functions as torch_functions

    modules = [sympy.core, sympy.logic.boolalg, torch_functions]
    modules += [getattr(elementary, m) for m in ("integers", "miscellaneous", "piecewise", "complexes", "exponential")]
    names = set()
    for module in modules:
        for key, value in vars(module).items():
            if key.startswith("_"):
                continue
            if (isinstance(value, type) and issubclass(value, sympy.Basic)) or isinstance(value, sympy.Basic):
                names.add(key)
    return frozenset(names)


@functools.cache
def _sympy_all() -> frozenset[str]:
    """Every name of sympy's namespace (where ``sympify`` resolves names)."""
    import sympy

    return frozenset(dir(sympy))


_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_OPERATORS = (
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd, ast.Not,
    ast.Invert, ast.BitAnd, ast.BitOr, ast.BitXor, ast.And, ast.Or, ast.Eq, ast.NotEq, ast.Lt, ast.LtE,
    ast.Gt, ast.GtE, ast.Load,
)


def _plain_sympy(text: str) -> bool:
    """Whether a shape expression is only sympy constructors of literals, names and operators."""
    if len(text) > 100_000:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    allowed = _sympy_names()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.UnaryOp, ast.BinOp, ast.BoolOp, ast.Compare, *_OPERATORS)):
            continue
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in allowed):
                return False
        elif isinstance(node, ast.keyword):
            if node.arg is None or node.arg.startswith("_"):
                return False
        elif isinstance(node, ast.Name):
            # a sympy class or constant, or a shape symbol (s0, u3): no other name of sympy's namespace
            if not (node.id in allowed or (re.fullmatch(r"[a-z]{1,4}\d+", node.id) and node.id not in _sympy_all())):
                return False
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, str):
                if not (_SYMBOL.fullmatch(value) or _NUMBER.fullmatch(value)) or value.startswith("__"):
                    return False
            elif not (value is None or isinstance(value, (bool, int, float))):
                return False
        else:
            return False
    return True


def _check_sample_inputs(data: bytes, name: str) -> None:
    """Sample inputs must load with ``weights_only=True``: torch retries others with ``weights_only=False``."""
    if not data:
        return  # torch reads none
    try:
        check_archive(data, expected="torch.save")
    except UnsafeArchiveError as exc:
        raise UnsafeArchiveError(f"its sample inputs ({name}) are refused: {exc.reason}") from None
    import torch

    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        from ._loading import weights_only_failure

        raise UnsafeArchiveError(
            f"its sample inputs ({name}) are pickled objects ({weights_only_failure(exc)})"
        ) from None
