"""Content identity of model code: one digest of the code a model is built from.

A store is resumed, or reused when complete, only by the same computation (see
:mod:`eocube.io._fingerprint`); for a model that means the same program, not the same class
name. This module gives that identity:

* a serialized program (``.pt2``, TorchScript): :func:`archive_digest`, the names and contents
  of the archive's entries (without the archive's root folder, which is the file's stem, and
  without ``.data/serialization_id``), so that re-zipping or renaming the file does not change
  it but any change of the graph, code, constants or weights does;
* a Python model (an ``nn.Module`` object, a factory, a post-processing callable):
  :func:`module_identity` / :func:`callable_identity` hash the code of every class and
  function the model is built from: the class of the module and of each submodule
  (``module.modules()``) with their bases up to torch's own classes, the functions those
  classes' methods reference (followed through module globals and closures), the factory, and
  the plain attributes and hooks of each submodule. Code is read as the **whole source file** of
  each module it comes from (simple and conservative: any edit of that file, comments
  included, changes the identity), plus the compiled code objects of the functions in memory
  (so a module edited on disk but not re-imported is not taken for the new code). Where no
  file exists (a notebook cell, ``exec``) each function's own source is read through
  :mod:`linecache` (IPython keeps cell sources there).

torch's own code (``torch.*``) and the standard library are not hashed: the torch version is
part of the identity instead. What cannot be read (classes defined by ``exec``, in
``python -c`` or a plain REPL, or compiled code without a file) is listed in
:attr:`CodeIdentity.unreadable`; the caller then refuses to resume with it unless the user
names the version of the code (``model_version=``).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import inspect
import os
import sys
import threading
import types
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

_NOT_HASHED = frozenset({"torch", "builtins"}) | frozenset(sys.stdlib_module_names)
"""Top-level packages whose code is not hashed (torch: its version is; the standard library)."""

_MODULE_INTERNALS = frozenset(vars(nn.Module()))
"""Attributes every ``nn.Module`` instance has (parameters, buffers, submodules, hooks, flags)."""

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")

_MAX_DEPTH = 4
"""How deep plain attribute values are followed (containers, objects' attributes)."""

_FILE_CACHE: dict[tuple[str, int, int], str] = {}
_FILE_LOCK = threading.Lock()


@dataclass(frozen=True)
class CodeIdentity:
    """The digest of a model's code and what could not be read."""

    digest: str
    """SHA-256 hex digest of every piece of code and value read."""
    unreadable: tuple[str, ...] = ()
    """Classes and functions whose source could not be read (empty: the digest is complete)."""

    @property
    def complete(self) -> bool:
        """Whether every class and function was read."""
        return not self.unreadable


def unreadable_message(what: str, unreadable: Iterable[str]) -> str:
    """Why a model whose code cannot be read is not resumed, and how to name its version.

    Parameters
    ----------
    what
        The model or callable, in words (``"the model"``, ``"the postprocess callable"``).
    unreadable
        The classes and functions whose source could not be read.

    Returns
    -------
    str
        One sentence with the remedy (``model_version=`` / ``--model-version``).
    """
    names = sorted(set(unreadable))
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return (
        f"the source code of {what} cannot be read ({shown}: defined by exec, in 'python -c' or a plain "
        "interactive session, or compiled without a file), so eocube cannot tell it from an edited version and "
        "does not resume or reuse a store it wrote: name the version of the code with apply_model(..., "
        "model_version='v1') (eocube apply: --model-version v1), and change it whenever the code changes"
    )


def archive_digest(path: str | os.PathLike[str]) -> str:
    """Digest of a serialized program: the names and contents of its zip entries.

    The archive's root folder (``torch.export.save`` and ``torch.jit.save`` name it after the
    file) and ``.data/serialization_id`` are left out; entries are taken in name order. So the
    same program saved under another name or zipped again keeps its digest, and any change of
    its graph, code, constants or weights changes it.

    Parameters
    ----------
    path
        A ``.pt2`` or TorchScript archive.

    Returns
    -------
    str
        SHA-256 hex digest.
    """
    digest = hashlib.sha256(b"eocube-archive-1\n")
    with zipfile.ZipFile(path) as archive:
        entries = sorted(((info.filename.split("/", 1)[-1], info) for info in archive.infolist()),
                         key=lambda pair: pair[0])
        for name, info in entries:
            if name == ".data/serialization_id" or info.is_dir():
                continue
            entry = hashlib.sha256()
            with archive.open(info) as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    entry.update(block)
            digest.update(f"{name}\0{entry.hexdigest()}\n".encode())
    return digest.hexdigest()


def _hashed_package(module_name: str | None) -> bool:
    """Whether code of this module is hashed (not torch, not the standard library)."""
    if not module_name:
        return False
    return module_name.split(".", 1)[0] not in _NOT_HASHED


def _file_digest(path: str) -> str | None:
    """SHA-256 of a file (cached by path, size and modification time), or None if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_mtime_ns, st.st_size)
    with _FILE_LOCK:
        if key in _FILE_CACHE:
            return _FILE_CACHE[key]
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    with _FILE_LOCK:
        _FILE_CACHE[key] = digest.hexdigest()
    return digest.hexdigest()


def _code_digest(code: types.CodeType) -> str:
    """Digest of a compiled code object (bytecode, names, constants; not its file or line numbers)."""
    h = hashlib.sha256()
    h.update(code.co_code)
    for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        h.update(("\0".join(names) + "\n").encode())
    h.update(f"{code.co_argcount},{code.co_kwonlyargcount},{code.co_flags}\n".encode())
    for const in code.co_consts:
        h.update(_const_text(const).encode() + b"\n")
    return h.hexdigest()


def _const_text(const: Any) -> str:
    """A reproducible text of a code constant (frozensets sorted: their order follows string hashing)."""
    if isinstance(const, types.CodeType):
        return f"code:{_code_digest(const)}"
    if isinstance(const, frozenset):
        return "frozenset:" + ",".join(sorted(_const_text(c) for c in const))
    if isinstance(const, tuple):
        return "(" + ",".join(_const_text(c) for c in const) + ")"
    return f"{type(const).__name__}:{const!r}"


def _names_used(code: types.CodeType) -> set[str]:
    """Global and attribute names a code object and its nested code objects use."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


class _Reader:
    """Collects the code and values a model is built from, as named digests.

    Code is followed (methods, globals used, closures) inside the *home* packages: those of the
    model's own classes and of the callable read. Code reached in another package counts by
    its module's file and compiled code only, so one helper of a large library does not pull
    that whole library in.
    """

    def __init__(self) -> None:
        self.parts: dict[str, str] = {}
        self.unreadable: list[str] = []
        self.home: set[str] = set()
        self._seen: set[int] = set()
        self._keep: list[Any] = []  # objects seen stay alive, so their ids are not reused

    # ---- result ----
    def identity(self) -> CodeIdentity:
        h = hashlib.sha256(f"eocube-code-1\ntorch {torch.__version__}\n".encode())
        for key in sorted(self.parts):
            h.update(f"{key}={self.parts[key]}\n".encode())
        return CodeIdentity(digest=h.hexdigest(), unreadable=tuple(sorted(set(self.unreadable))))

    def _add(self, key: str, text: str | bytes) -> None:
        while key in self.parts:  # two objects of one name (lambdas, redefinitions): both count
            key += "'"
        self.parts[key] = hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()

    def _first_visit(self, obj: Any) -> bool:
        if id(obj) in self._seen:
            return False
        self._seen.add(id(obj))
        self._keep.append(obj)
        return True

    def _at_home(self, module: str | None) -> bool:
        return bool(module) and module.split(".", 1)[0] in self.home  # type: ignore[union-attr]

    # ---- code ----
    def module_file(self, name: str | None) -> bool:
        """Hash the whole file of a module; False when it has none (or is not hashed)."""
        if not _hashed_package(name):
            return False
        key = f"file:{name}"
        if key in self.parts:
            return True
        module = sys.modules.get(name or "")
        path = getattr(module, "__file__", None) if module is not None else None
        digest = _file_digest(path) if isinstance(path, str) else None
        if digest is None:
            return False
        self.parts[key] = digest
        return True

    def function(self, fn: types.FunctionType) -> None:
        """A Python function: its module's file (or its own source), code, defaults, closure and globals used."""
        module = getattr(fn, "__module__", None)
        if not _hashed_package(module) or not self._first_visit(fn):
            return
        name = f"{module}.{getattr(fn, '__qualname__', fn.__name__)}"
        self._add(f"code:{name}", _code_digest(fn.__code__))
        if not self.module_file(module):
            try:
                source = inspect.getsource(fn)
            except (OSError, TypeError):
                self.unreadable.append(f"{name} (in {fn.__code__.co_filename})")
            else:
                self._add(f"source:{name}", source)
        if not self._at_home(module):
            return
        self.value(f"defaults:{name}", (fn.__defaults__, fn.__kwdefaults__))
        for i, cell in enumerate(fn.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            self.value(f"closure:{name}:{fn.__code__.co_freevars[i]}", contents)
        globals_ = fn.__globals__
        for used in sorted(_names_used(fn.__code__)):
            if used in globals_:
                self.value(f"global:{module}.{used}", globals_[used])

    def klass(self, cls: type) -> None:
        """A class and its bases up to torch's: file (or each method's source), methods, class attributes."""
        if not self._first_visit(cls):
            return
        for base in cls.__mro__[1:]:
            self.klass(base)
        module = getattr(cls, "__module__", None)
        if not _hashed_package(module):
            return
        name = f"{module}.{cls.__qualname__}"
        self._add(f"class:{name}", ",".join(f"{b.__module__}.{b.__qualname__}" for b in cls.__bases__))
        has_file = self.module_file(module)
        if has_file and not self._at_home(module):
            return
        for attr, member in sorted(vars(cls).items()):
            functions = _functions_of(member)
            for fn in functions:
                self.function(fn)
            if not functions and not (attr.startswith("__") and attr.endswith("__")):
                self.value(f"classattr:{name}.{attr}", member)

    def callable(self, obj: Any, key: str) -> None:
        """Any callable: a class, function, partial, bound method or object with ``__call__``."""
        if isinstance(obj, type):
            self.klass(obj)
        elif isinstance(obj, types.FunctionType):
            self.function(obj)
        elif isinstance(obj, functools.partial):
            self.callable(obj.func, key + ".func")
            self.value(key + ".args", (obj.args, obj.keywords))
        elif isinstance(obj, types.MethodType):
            self.callable(obj.__func__, key + ".func")
            self.value(key + ".self", obj.__self__)
        elif isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType)):
            module = getattr(obj, "__module__", None)
            if _hashed_package(module) and not self.module_file(module):
                self.unreadable.append(f"{module}.{getattr(obj, '__qualname__', repr(obj))} (compiled, no file)")
        else:
            self.value(key, obj)

    # ---- values ----
    def value(self, key: str, v: Any) -> None:
        """A plain value (attribute, default, closure cell, global used); code in it is followed."""
        if isinstance(v, _CALLABLES):
            self.callable(v, key)
        elif isinstance(v, types.ModuleType):
            self.module_file(v.__name__)
        else:
            self._add(key, self._plain(v, 0, key))

    def _plain(self, v: Any, depth: int, key: str) -> str:
        """A reproducible text of a value; classes and code inside it are followed."""
        if v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
            return f"{type(v).__name__}:{v!r}"
        if isinstance(v, enum.Enum):
            return f"enum:{type(v).__module__}.{type(v).__qualname__}.{v.name}"
        if isinstance(v, (torch.dtype, torch.device, torch.Size, np.dtype)):
            return f"{type(v).__name__}:{v}"
        if isinstance(v, torch.Tensor):
            t = v.detach().to("cpu").contiguous().reshape(-1)
            data = hashlib.sha256(t.view(torch.uint8).numpy().tobytes()).hexdigest() if t.numel() else ""
            return f"tensor:{t.dtype}:{tuple(v.shape)}:{data}"
        if isinstance(v, (np.ndarray, np.generic)):
            a = np.ascontiguousarray(v)
            data = a.tobytes() if a.dtype != object else repr(a.tolist()).encode()
            return f"ndarray:{a.dtype.str}:{a.shape}:{hashlib.sha256(data).hexdigest()}"
        if isinstance(v, _CALLABLES):
            self.callable(v, key)
            return f"callable:{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', type(v).__name__)}"
        if isinstance(v, types.ModuleType):
            self.module_file(v.__name__)
            return f"pymodule:{v.__name__}"
        cls = type(v)
        if depth >= _MAX_DEPTH:
            return f"deep:{cls.__module__}.{cls.__qualname__}"
        if isinstance(v, (tuple, list)):
            return f"{cls.__name__}[" + ",".join(self._plain(x, depth + 1, key) for x in v) + "]"
        if isinstance(v, (set, frozenset)):
            return "set[" + ",".join(sorted(self._plain(x, depth + 1, key) for x in v)) + "]"
        if isinstance(v, dict):
            items = sorted((self._plain(k, depth + 1, key), self._plain(x, depth + 1, key)) for k, x in v.items())
            return "dict[" + ",".join(f"{k}:{x}" for k, x in items) + "]"
        self.klass(cls)
        shown = f"object:{cls.__module__}.{cls.__qualname__}:{getattr(v, '__name__', '')}"
        if isinstance(v, nn.Module) or not self._at_home(cls.__module__):
            return shown  # a module's state is hashed as a module; other packages' objects by their class
        attrs = getattr(v, "__dict__", None)
        if isinstance(attrs, dict) and self._first_visit(v):
            return shown + ":" + self._plain(dict(attrs), depth + 1, key)
        return shown

    # ---- modules ----
    def module(self, module: nn.Module) -> None:
        """Every submodule: its class, its program (TorchScript, torch.fx), its plain attributes and hooks."""
        subs = list(module.named_modules(remove_duplicate=False))
        self.home |= {_top(type(sub).__module__) for _, sub in subs if _hashed_package(type(sub).__module__)}
        for name, sub in subs:
            cls = type(sub)
            self.klass(cls)
            where = name or "<root>"
            if isinstance(sub, torch.jit.ScriptModule):
                self._add(f"script:{where}", _script_code(sub))
                continue
            if isinstance(sub, torch.fx.GraphModule):
                self._add(f"fx:{where}", str(sub.code))
            for hooks in _HOOK_DICTS:
                for i, hook in enumerate(getattr(sub, hooks, {}).values()):
                    self.home.add(_home_of(hook))
                    self.callable(hook, f"hook:{where}.{hooks}[{i}]")
            if not _hashed_package(cls.__module__):
                continue  # torch's classes: their state is in repr() and the state_dict
            attrs = {k: v for k, v in vars(sub).items() if k not in _MODULE_INTERNALS}
            self._add(f"attrs:{where}", self._plain(attrs, 0, f"attrs:{where}"))


_CALLABLES = (type, types.FunctionType, functools.partial, types.MethodType, types.BuiltinFunctionType)


def _top(module: str | None) -> str:
    return (module or "").split(".", 1)[0]


def _home_of(obj: Any) -> str:
    """The top-level package of a callable's code (a partial's or bound method's function)."""
    while isinstance(obj, (functools.partial, types.MethodType)):
        obj = obj.func if isinstance(obj, functools.partial) else obj.__func__
    module = getattr(obj, "__module__", None) if isinstance(obj, (type, types.FunctionType)) else type(obj).__module__
    return _top(module if isinstance(module, str) else None)


def _functions_of(member: Any) -> list[types.FunctionType]:
    """The Python functions a class member holds (methods, static/class methods, property accessors)."""
    if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    if isinstance(member, property):
        return [f for f in (member.fget, member.fset, member.fdel) if isinstance(f, types.FunctionType)]
    if isinstance(member, functools.partialmethod):
        member = member.func
    return [member] if isinstance(member, types.FunctionType) else []


def _script_code(module: torch.jit.ScriptModule) -> str:
    """The TorchScript code of a scripted module and its submodules."""
    parts = []
    for name, sub in module.named_modules():
        try:
            parts.append(f"{name}:{getattr(sub, 'original_name', '')}:{sub.code}")
        except (AttributeError, RuntimeError):
            parts.append(f"{name}:{type(sub).__name__}")
    return "\n".join(parts)


def module_identity(module: nn.Module) -> CodeIdentity:
    """Identity of the code of a module object: its classes, their methods and helpers, attributes and hooks.

    Weights are not included (the caller hashes the ``state_dict``).

    Parameters
    ----------
    module
        A ``torch.nn.Module``.

    Returns
    -------
    CodeIdentity
    """
    reader = _Reader()
    reader.module(module)
    return reader.identity()


def callable_identity(obj: Callable[..., Any], *values: Any) -> CodeIdentity:
    """Identity of the code of a callable (a factory, a post-processing function) and of values passed to it.

    Parameters
    ----------
    obj
        A class, function, ``functools.partial``, bound method or callable object.
    *values
        Values whose content belongs to the identity (the factory's keyword arguments).

    Returns
    -------
    CodeIdentity
    """
    reader = _Reader()
    reader.home.add(_home_of(obj))
    reader.callable(obj, "callable")
    for i, v in enumerate(values):
        reader.value(f"value[{i}]", v)
    return reader.identity()


def values_digest(*values: Any) -> str:
    """Digest of plain values (numbers, strings, containers, tensors; code in them by its identity).

    Parameters
    ----------
    *values
        Values such as a factory's keyword arguments.

    Returns
    -------
    str
        SHA-256 hex digest, the same in every process for the same values.
    """
    reader = _Reader()
    for i, v in enumerate(values):
        reader.value(f"value[{i}]", v)
    return reader.identity().digest

