"""Where a model comes from, how it is loaded safely, and the per-process model cache.

A model reaches the workers as a small *source* object, one key of the task graph that
every chunk task depends on (so it is not pickled into each task). In each worker process
:func:`get_model` builds the module from its source once per ``(content token, device)``
and keeps it; later chunks reuse it. Four sources:

* :class:`ModuleSource`: a ``torch.nn.Module`` object of the caller's process; sent once
  per worker by the scheduler and deep-copied there (the caller's module is never
  modified or moved to a device);
* :class:`ExportedProgramSource`: a ``torch.export`` program saved as ``.pt2``
  (``torch.export.save``), loaded with ``torch.export.load(...).module()`` after checking
  that the archive holds no pickled objects and no compiled code; it must have been exported
  with dynamic batch and spatial sizes;
* :class:`TorchScriptSource`: a TorchScript file, loaded with ``torch.jit.load`` (no
  pickle involved; TorchScript is deprecated in torch 2.13, so torch warns);
* :class:`StateDictSource`: a factory (an importable callable building the module) plus a
  ``state_dict`` file loaded with ``torch.load(weights_only=True)``, which refuses
  arbitrary pickled objects.

Each file's SHA-256 is taken when the graph is built and checked on load, so a file changed
after the graph was built is refused. Before torch reads a file, its zip archive is checked the
way torch's reader sees it (:func:`._archive.check_archive`: no duplicate or unexpected entry,
no unsafe name, no zip bomb, no damage, nothing a ``.pt2`` would unpickle or evaluate).
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import threading
import uuid
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import dask
import torch
from torch import nn

from ._archive import ArchiveFormat, UnsafeArchiveError, archive_names, check_archive, detect_format
from ._errors import ModelIdentityError, ModelLoadError
from ._guards import SizeLimit, export_size_limits
from ._identity import (
    CodeIdentity,
    archive_digest,
    callable_identity,
    module_identity,
    unreadable_message,
    values_digest,
)

_CACHE_SIZE = 4
_CACHE: OrderedDict[tuple[str, str], nn.Module] = OrderedDict()
_LOCK = threading.Lock()
_LOADS: Counter[str] = Counter()


PICKLED_OBJECTS = (
    "the file holds arbitrary pickled Python objects (for example a whole nn.Module saved with "
    "torch.save(model, path)), and unpickling them can run any code, so eocube does not load it."
)
"""Why a pickled-object file is refused (shared by the model and checkpoint loaders)."""

SAFE_FORMATS = (
    "Save the model in a safe form instead: a torch.export program with dynamic sizes "
    "(eocube.models.card.export_model(model, example_inputs, 'model.pt2'), or torch.export.save), "
    "passed as its .pt2 path; its weights with torch.save(model.state_dict(), path), loaded by "
    "eocube.models.from_state_dict(factory, path); or a TorchScript file (torch.jit.save, deprecated "
    "in torch 2.13)."
)
"""How to save a model file that loads without unpickling."""

_TORCH_HINTS = re.compile(
    r"weights_only\W*(?:set to|=)\W*False|add_safe_globals|safe_globals|if you trust", re.IGNORECASE
)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


def weights_only_failure(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without torch's hints to load it unsafely.

    torch's message suggests re-running with ``weights_only=False`` or allow-listing
    the pickled classes; both would run code from the file, so they are never relayed.

    Parameters
    ----------
    exc
        The exception ``torch.load`` raised.

    Returns
    -------
    str
        A short cause, e.g. ``"UnpicklingError: it holds the pickled class __main__.Net"``.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"Unsupported global: GLOBAL ([\w.<>]+)", text)
    if found:
        return f"{type(exc).__name__}: it holds the pickled class {found.group(1)}"
    if "Weights only load failed" in text:
        return f"{type(exc).__name__}: it holds pickled objects other than tensors and plain containers"
    line = first_line(exc)
    return f"{type(exc).__name__}: {line}" if not _TORCH_HINTS.search(line) else type(exc).__name__


def safe_cause(exc: BaseException) -> BaseException | None:
    """``exc`` to chain to a relayed error, or None when its text suggests loading the file unsafely.

    Use as ``raise NewError(...) from safe_cause(exc)``: a traceback then never
    shows torch's hint to re-run with ``weights_only=False``.
    """
    return None if _TORCH_HINTS.search(str(exc)) else exc


def _holds_only_weights(path: Path) -> bool:
    """Whether a ``torch.save`` archive holds only tensors and plain containers (weights).

    Its archive is checked first (:func:`._archive.check_archive`), then it is probed with
    ``torch.load(weights_only=True)``, which never runs code from the file.
    """
    try:
        check_archive(path, "torch.save")
        torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure of the safe probe means "not weights only"
        return False
    return True


def checked_archive(path: Path, shown: str, expected: ArchiveFormat | None = None) -> ArchiveFormat:
    """:func:`._archive.check_archive`, its refusal a one-line :class:`ModelLoadError` naming the file.

    Parameters
    ----------
    path
        A model file.
    shown
        How the file is named in the message (the path the caller gave).
    expected
        The format the caller loads (another one is refused), or None for any.

    Returns
    -------
    str
        The format found.

    Raises
    ------
    ModelLoadError
        The archive would be read ambiguously or would run code: the message says why and how
        to save the model safely.
    """
    try:
        return check_archive(path, expected).format
    except UnsafeArchiveError as exc:
        raise ModelLoadError(
            f"{shown!r} was refused: {exc.reason}; eocube loads only model files that torch reads unambiguously "
            f"and without running code. {SAFE_FORMATS}"
        ) from None


def _refusal(path: Path) -> str:
    """Why :func:`._archive.check_archive` refuses a file (truncated, not a zip archive...); "" if it does not."""
    try:
        check_archive(path)
    except UnsafeArchiveError as exc:
        return exc.reason
    return ""


def sha256_file(path: Path) -> str:
    """The SHA-256 hex digest of a file's content (read in blocks of 1 MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_file(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelLoadError(
            f"{what} {str(p)!r} does not exist or is not a file: check the path "
            "(on a cluster it must be readable by every worker, e.g. on a shared file system)"
        )
    return p.resolve()


def _unchanged_file(path: str, sha256: str, what: str) -> Path:
    """The file, checked to hold the content it had when the graph was built."""
    p = _check_file(path, what)
    if sha256_file(p) != sha256:
        raise ModelLoadError(
            f"{what} {path!r} changed after the computation was set up (its SHA-256 differs): "
            "call apply_model again to use the new file"
        )
    return p


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of every tensor of a module's ``state_dict`` (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_token(kind: str, code: CodeIdentity, version: str | None, *content: str) -> str:
    """A model's token: its code (or the version naming it), the torch version and its content.

    Parameters
    ----------
    kind
        Prefix (``"module"``, ``"statedict"``).
    code
        Identity of the model's code (:mod:`._identity`).
    version
        ``model_version`` given by the user: it stands for the code, which is then not used.
    *content
        Other parts (weights digest, architecture text).

    Returns
    -------
    str
        ``kind-<sha256>``; ``kind-unreadable-<random>`` when the code cannot be read and no
        version is given, so that no store written with it is ever taken for the same computation.
    """
    if version is None and not code.complete:
        return f"{kind}-unreadable-{uuid.uuid4().hex}"
    basis = f"version:{version}" if version is not None else f"code:{code.digest}"
    digest = hashlib.sha256(f"{basis}\ntorch {torch.__version__}\n".encode())
    for part in content:
        digest.update(part.encode() + b"\n")
    return f"{kind}-{digest.hexdigest()}"


def module_token(module: nn.Module, version: str | None = None) -> str:
    """Content token of a module: the code of its classes, its architecture text and every weight.

    Parameters
    ----------
    module
        A ``torch.nn.Module``.
    version
        Names the code instead of its source (``model_version``).

    Returns
    -------
    str
        A hex digest that changes when the code of any class or helper the module is built from,
        a plain attribute, the architecture or any weight changes (random when the code cannot be
        read and no version is given).
    """
    return model_token("module", module_identity(module), version, _class_name(module), repr(module),
                       weights_digest(module)).split("-", 1)[1]


def _class_name(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def _dask_token(source: ModuleSource | StateDictSource) -> tuple[str, str]:
    """What dask sees of a source: its token; under ``tokenize.ensure-deterministic``, why it has none."""
    if source.unreadable and dask.config.get("tokenize.ensure-deterministic", False):
        raise ModelIdentityError(unreadable_message("the model", source.unreadable))
    return ("eocube-model", source.token)


@dataclass(frozen=True, eq=False)
class ModuleSource:
    """An in-memory ``torch.nn.Module`` (sent once per worker process)."""

    module: nn.Module
    """The caller's module (never modified)."""
    token: str
    """Content token (:func:`module_token`)."""
    unreadable: tuple[str, ...] = ()
    """Classes and functions whose source could not be read (the token is then random)."""
    version: str | None = None
    """``model_version``: names the code in the token instead of its source."""

    def build(self) -> nn.Module:
        """A private copy of the module, on the CPU."""
        return copy.deepcopy(self.module).to("cpu")

    def describe(self) -> str:
        """One line for attributes and error messages."""
        named = f"version {self.version}, " if self.version is not None else ""
        return f"torch module {type(self.module).__qualname__} ({named}content {self.token.split('-')[-1][:12]})"

    def __dask_tokenize__(self) -> tuple[str, str]:
        return _dask_token(self)


def module_source(module: nn.Module, version: str | None = None) -> ModuleSource:
    """The source of an in-memory module, its token taken from its code, architecture and weights."""
    code = module_identity(module)
    token = model_token("module", code, version, _class_name(module), repr(module), weights_digest(module))
    unreadable = code.unreadable if version is None else ()
    return ModuleSource(module=module, token=token, unreadable=unreadable, version=version)


@dataclass(frozen=True)
class TorchScriptSource:
    """A TorchScript file (``torch.jit.save``), loaded without unpickling."""

    path: str
    """Absolute path, readable by every worker."""
    sha256: str
    """Digest of the file when the graph was built."""
    content: str = ""
    """Digest of the program (:func:`._identity.archive_digest`: entry names and contents); "": the file's."""

    @property
    def token(self) -> str:
        """Cache key and identity: the program's content digest."""
        return f"torchscript-{self.content or self.sha256}"

    def build(self) -> nn.Module:
        """Load the file on the CPU, after checking its digest."""
        path = _unchanged_file(self.path, self.sha256, "TorchScript file")
        found = model_file_format(path)  # checked first: torch.jit.load warns (deprecated)
        if found != "unknown":
            checked_archive(path, self.path)
        if found == "torch.save":
            if not _holds_only_weights(path):
                raise ModelLoadError(
                    f"{self.path!r} is not a TorchScript file but a torch.save archive: {PICKLED_OBJECTS} "
                    f"{SAFE_FORMATS}"
                )
            raise ModelLoadError(
                f"{self.path!r} is not a TorchScript file but weights (torch.save of a state_dict): pass "
                "eocube.models.from_state_dict(factory, path) with the factory that builds the module"
            )
        try:
            if found != "torchscript":
                why = _refusal(path) if found == "unknown" else ""
                raise RuntimeError(f"its content is not that of torch.jit.save{' (' + why + ')' if why else ''}")
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # torch raises RuntimeError with a C++ trace here
            raise ModelLoadError(
                f"{self.path!r} is not a TorchScript file ({type(exc).__name__}: {first_line(exc)}); "
                "save one with torch.jit.save(torch.jit.script(model), path), or, for a file of weights "
                "(torch.save(model.state_dict(), path)), pass eocube.models.from_state_dict(factory, path)"
            ) from exc

    def describe(self) -> str:
        """One line for attributes and error messages."""
        return f"TorchScript file {self.path} (sha256 {self.sha256[:12]})"


@dataclass(frozen=True)
class StateDictSource:
    """A factory building the module, plus a ``state_dict`` file loaded with ``weights_only=True``."""

    factory: Callable[..., nn.Module]
    """Importable callable returning the module (a class or a function)."""
    path: str
    """Absolute path of the ``torch.save(model.state_dict(), path)`` file."""
    sha256: str
    """Digest of the file when the graph was built."""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``factory``."""
    token: str = ""
    """Cache key and identity: the code of the factory (:func:`._identity.callable_identity`, or the
    version naming it), its arguments and the file's digest."""
    unreadable: tuple[str, ...] = ()
    """Classes and functions whose source could not be read (the token is then random)."""
    version: str | None = None
    """``model_version``: names the code in the token instead of its source."""

    def __dask_tokenize__(self) -> tuple[str, str]:
        return _dask_token(self)

    def build(self) -> nn.Module:
        """Build the module with the factory and load the weights safely."""
        path = _unchanged_file(self.path, self.sha256, "state_dict file")
        found = model_file_format(path)
        if found in ("torch.export", "torchscript"):
            raise ModelLoadError(
                f"{self.path!r} is a {'torch.export program' if found == 'torch.export' else 'TorchScript file'}, "
                "not a state_dict file (torch.save(model.state_dict(), path)): pass its path as the model, "
                "without a factory"
            )
        checked_archive(path, self.path, "torch.save")
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any torch.load failure becomes one ModelLoadError
            raise ModelLoadError(
                f"{self.path!r} could not be loaded with torch.load(weights_only=True) "
                f"({weights_only_failure(exc)}): eocube only loads tensors and plain containers, never "
                f"arbitrary pickled objects. {SAFE_FORMATS}"
            ) from safe_cause(exc)
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]  # checkpoints that wrap the weights (Lightning and others)
        if not isinstance(state, Mapping):
            raise ModelLoadError(
                f"{self.path!r} holds a {type(state).__name__}, not a state_dict (a mapping of names to tensors): "
                "save it with torch.save(model.state_dict(), path)"
            )
        module = self.factory(**dict(self.kwargs))
        if not isinstance(module, nn.Module):
            raise ModelLoadError(
                f"the factory {self.factory!r} returned a {type(module).__name__}, not a torch.nn.Module"
            )
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(
                f"the weights in {self.path!r} do not fit the module built by {self.factory!r}: "
                f"{str(exc).strip()}; check the factory's arguments (they must match those used in training)"
            ) from exc
        return module

    def describe(self) -> str:
        """One line for attributes and error messages."""
        name = getattr(self.factory, "__qualname__", repr(self.factory))
        named = f", version {self.version}" if self.version is not None else ""
        return f"{name}(**{dict(self.kwargs)}) with weights {self.path} (sha256 {self.sha256[:12]}{named})"


ModelFormat = Literal["torch.export", "torchscript", "torch.save", "unknown"]
"""What a model file holds, found from its content (see :func:`model_file_format`)."""

EXPORT_ADVICE = (
    "Export it with dynamic batch and spatial sizes: eocube.models.card.export_model(model, "
    "(torch.zeros(2, C, 64, 64),), 'model.pt2') does it, or by hand D = torch.export.Dim.DYNAMIC "
    "(or torch.export.Dim('H', min=..., max=...)); ep = torch.export.export(model.eval(), (x,), "
    "dynamic_shapes=({0: D, 2: D, 3: D},)); torch.export.save(ep, 'model.pt2'). Use an example "
    "batch of 2, not 1: a size of 1 is specialised to a constant."
)
"""How to export a program that eocube can run on batches and tiles of any size."""


def _archive_names(path: Path) -> list[str] | None:
    """Names in a zip file without their root folder, or None when it is not a zip file.

    For telling formats apart only: whether a file is safe to load is :func:`checked_archive`'s call.
    """
    return archive_names(path)


def model_file_format(path: str | os.PathLike[str]) -> ModelFormat:
    """What a model file holds, from its content (never by unpickling it).

    Parameters
    ----------
    path
        A model file.

    Returns
    -------
    str
        ``"torch.export"`` (a ``.pt2`` archive of ``torch.export.save``), ``"torchscript"``
        (``torch.jit.save``), ``"torch.save"`` (weights or pickled objects of ``torch.save``)
        or ``"unknown"``.
    """
    names = _archive_names(Path(path))
    found = detect_format(names) if names is not None else None
    return found if found is not None else "unknown"


def _dynamic_problems(program: Any) -> list[str]:
    """The user inputs of an exported program whose batch or spatial sizes are static."""
    user_inputs = set(program.graph_signature.user_inputs)
    problems = []
    for node in program.graph.nodes:
        val = node.meta.get("val") if node.op == "placeholder" else None
        if node.name not in user_inputs or not isinstance(val, torch.Tensor) or val.ndim == 0:
            continue
        dims = [0] + ([val.ndim - 2, val.ndim - 1] if val.ndim >= 3 else [])
        static = [d for d in dims if not isinstance(val.shape[d], torch.SymInt)]
        if static:
            shape = tuple(val.shape)
            problems.append(f"input {node.name!r} has static dims {static} (shape {shape})")
    return problems


def _load_program(path: Path, shown: str) -> Any:
    """``torch.export.load`` of a ``.pt2`` archive, after checking it as torch reads it (:func:`._archive.check_archive`)."""
    if model_file_format(path) != "torch.export":
        why = _refusal(path)
        raise ModelLoadError(
            f"{shown!r} is not a torch.export program (.pt2 archive of torch.export.save){': ' + why if why else ''}. "
            f"{EXPORT_ADVICE}"
        )
    try:
        check_archive(path, "torch.export")
    except UnsafeArchiveError as exc:
        raise ModelLoadError(
            f"{shown!r} is a .pt2 archive but {exc.reason}; eocube only loads torch.export programs of plain "
            f"tensors and graphs that torch reads unambiguously. {SAFE_FORMATS}"
        ) from None
    try:
        with open(path, "rb") as f:  # a file object: torch warns about names not ending in .pt2
            return torch.export.load(f)
    except Exception as exc:  # noqa: BLE001 - any torch.export.load failure becomes one ModelLoadError
        raise ModelLoadError(
            f"{shown!r} could not be loaded with torch.export.load ({type(exc).__name__}: {first_line(exc)}); "
            "it may come from another torch version: export it again with this one"
        ) from safe_cause(exc)


class ExportedModule(nn.Module):
    """A loaded ``torch.export`` program as a module.

    The graph was captured in eval mode and cannot switch modes, so :meth:`train` only sets
    the flag (``torch.export``'s own module refuses ``eval()``).
    """

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program

    def forward(self, *args: Any) -> Any:
        """Run the program."""
        return self.program(*args)

    def train(self, mode: bool = True) -> ExportedModule:
        """Set the training flag of this wrapper only (the graph is fixed)."""
        self.training = mode
        return self


@dataclass(frozen=True)
class ExportedProgramSource:
    """A ``torch.export`` program saved as ``.pt2``, with dynamic batch and spatial sizes."""

    path: str
    """Absolute path, readable by every worker."""
    sha256: str
    """Digest of the file when the graph was built."""
    content: str = ""
    """Digest of the program (:func:`._identity.archive_digest`: entry names and contents); "": the file's."""
    size_limits: tuple[SizeLimit, ...] = ()
    """The sizes its export guards accept, per dynamic dim of each tensor input (read at :func:`from_exported`)."""

    @property
    def token(self) -> str:
        """Cache key and identity: the program's content digest."""
        return f"export-{self.content or self.sha256}"

    def build(self) -> nn.Module:
        """Load the program on the CPU, after checking its digest and that it holds no pickle."""
        path = _unchanged_file(self.path, self.sha256, "torch.export program")
        return ExportedModule(_load_program(path, self.path).module())

    def describe(self) -> str:
        """One line for attributes and error messages."""
        return f"torch.export program {self.path} (sha256 {self.sha256[:12]})"


ModelSource = ModuleSource | ExportedProgramSource | TorchScriptSource | StateDictSource
"""Any of the four sources."""


def from_torchscript(path: str | os.PathLike[str]) -> TorchScriptSource:
    """Refer to a TorchScript model file.

    Parameters
    ----------
    path
        A file written by ``torch.jit.save``; on a cluster, readable by every worker at the same path.

    Returns
    -------
    TorchScriptSource
        Pass it (or simply the path) as ``model`` to :func:`eocube.apply_model`.
    """
    p = _check_file(path, "TorchScript file")
    if model_file_format(p) != "unknown":
        checked_archive(p, str(path))  # before its entries are read for the digest (zip bombs, duplicates)
    return TorchScriptSource(path=str(p), sha256=sha256_file(p), content=_program_digest(p))


def _program_digest(path: Path) -> str:
    """:func:`._identity.archive_digest` of a program file; "" when it is not a zip archive (refused on load)."""
    try:
        return archive_digest(path)
    except (OSError, zipfile.BadZipFile, ValueError):
        return ""


def from_exported(path: str | os.PathLike[str]) -> ExportedProgramSource:
    """Refer to a ``torch.export`` program saved as ``.pt2``.

    The program is loaded once here to check it: its archive must hold no pickled objects
    and no compiled code, and every tensor input must have a dynamic batch size (dim 0) and,
    for inputs of 3 or more dims, dynamic height and width (the last two dims), since the
    engine runs it on batches and tiles of varying size.

    Parameters
    ----------
    path
        A file written by ``torch.export.save`` (see :func:`eocube.models.card.export_model`);
        on a cluster, readable by every worker at the same path.

    Returns
    -------
    ExportedProgramSource
        Pass it (or simply the path) as ``model`` to :func:`eocube.apply_model`.

    Raises
    ------
    ModelLoadError
        Not a ``.pt2`` program, unsafe content, or static sizes (the message says how to export).
    """
    p = _check_file(path, "torch.export program")
    digest = sha256_file(p)  # before the checks: build() then loads only the file they passed
    program = _load_program(p, str(path))
    problems = _dynamic_problems(program)
    if problems:
        raise ModelLoadError(
            f"the torch.export program {str(path)!r} was exported with static sizes ({'; '.join(problems)}), "
            f"but eocube runs it on batches and tiles of varying size. {EXPORT_ADVICE}"
        )
    return ExportedProgramSource(path=str(p), sha256=digest, content=_program_digest(p),
                                 size_limits=export_size_limits(program))


def from_state_dict(
    factory: Callable[..., nn.Module], path: str | os.PathLike[str], **kwargs: Any
) -> StateDictSource:
    """Refer to a model given as a factory plus a ``state_dict`` file.

    Parameters
    ----------
    factory
        Importable callable (a module class or a function) that builds the untrained module;
        it runs in every worker process, once.
    path
        A file written by ``torch.save(model.state_dict(), path)`` (a dict with a ``"state_dict"``
        entry is accepted too). It is read with ``torch.load(weights_only=True)``.
    **kwargs
        Arguments of ``factory``.

    Returns
    -------
    StateDictSource
        Pass it as ``model`` to :func:`eocube.apply_model`.
    """
    if not callable(factory):
        raise ModelLoadError(f"factory must be callable (a module class or a function), got {factory!r}")
    p = _check_file(path, "state_dict file")
    digest = sha256_file(p)
    code = callable_identity(factory, dict(kwargs))
    return StateDictSource(factory=factory, path=str(p), sha256=digest, kwargs=dict(kwargs),
                           token=model_token("statedict", code, None, digest), unreadable=code.unreadable)


def with_version(source: ModelSource, version: str | None) -> ModelSource:
    """``source`` with ``model_version`` standing for its Python code (files: unchanged, their content is their identity)."""
    if version is None or getattr(source, "version", None) == version:
        return source
    if not isinstance(version, str) or not version.strip():
        raise ModelIdentityError(f"model_version must be a non-empty string naming the version of the model's code, "
                                 f"got {version!r}")
    if isinstance(source, ModuleSource):
        return module_source(source.module, version)
    if isinstance(source, StateDictSource):
        factory = f"{getattr(source.factory, '__module__', '')}.{getattr(source.factory, '__qualname__', '')}"
        token = model_token("statedict", CodeIdentity(""), version, factory, values_digest(dict(source.kwargs)),
                            source.sha256)
        return replace(source, token=token, unreadable=(), version=version)
    return source


def settle_identity(source: ModelSource, module: nn.Module, device: torch.device) -> ModelSource:
    """A factory's source with the code of the module it built in its token (the classes of every submodule).

    A factory's own code is read when the source is made; the classes it instantiates may come from a
    registry or another package, so once the module is built (``module``, cached for ``device``) their
    code joins the token. The cached module is kept under the new token too.
    """
    if not isinstance(source, StateDictSource) or source.version is not None or source.unreadable:
        return source
    built = module_identity(module)
    settled = replace(source, token=model_token("statedict", built, None, source.token), unreadable=built.unreadable)
    with _LOCK:
        _CACHE[(settled.token, str(device))] = module
    return settled


def as_source(model: Any, version: str | None = None) -> ModelSource:
    """Turn what the caller passed as ``model`` into a source.

    Parameters
    ----------
    model
        A ``torch.nn.Module``, a path to a ``torch.export`` program (``.pt2``, found by its
        content or its extension) or to a TorchScript file, a ``(factory, state_dict_path)``
        tuple, or a source from :func:`from_exported` / :func:`from_torchscript` /
        :func:`from_state_dict`.

    version
        ``model_version``: names the version of a Python model's code (a module, a factory), which
        then stands for its source in the token; files are identified by their content.

    Returns
    -------
    ModelSource
    """
    if isinstance(model, (ModuleSource, ExportedProgramSource, TorchScriptSource, StateDictSource)):
        return with_version(model, version)
    if isinstance(model, nn.Module):
        return module_source(model, version)
    if isinstance(model, (str, os.PathLike)):
        path = _check_file(model, "model file")
        if path.suffix.lower() == ".pt2" or model_file_format(path) == "torch.export":
            return from_exported(model)
        return from_torchscript(model)
    if isinstance(model, tuple) and len(model) == 2 and callable(model[0]):
        return with_version(from_state_dict(model[0], model[1]), version)
    raise ModelLoadError(
        f"model is a {type(model).__module__}.{type(model).__name__}; expected a torch.nn.Module, "
        "the path of a torch.export (.pt2) or TorchScript file, (factory, state_dict_path), or "
        "eocube.models.from_state_dict(factory, path, **kwargs)"
    )


def get_model(source: ModelSource, device: torch.device) -> nn.Module:
    """The module of ``source`` on ``device``, built once per process and reused.

    Parameters
    ----------
    source
        Where the model comes from.
    device
        Torch device.

    Returns
    -------
    torch.nn.Module
        In eval mode, with ``requires_grad`` off on every parameter. Shared by the threads of
        the process: do not modify it.
    """
    key = (source.token, str(device))
    with _LOCK:
        module = _CACHE.get(key)
        if module is not None:
            _CACHE.move_to_end(key)
            return module
        module = source.build().to(device).eval()
        for param in module.parameters():
            param.requires_grad_(False)
        _CACHE[key] = module
        _LOADS[source.token] += 1
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return module


def load_counts() -> dict[str, int]:
    """How many times each model was built in this process (by content token).

    Returns
    -------
    dict
        ``{token: loads}``; on a distributed cluster call it on the workers with
        ``client.run(eocube.models.load_counts)``.
    """
    with _LOCK:
        return dict(_LOADS)


def clear_cache() -> None:
    """Forget the cached models of this process (and their load counts)."""
    with _LOCK:
        _CACHE.clear()
        _LOADS.clear()
