"""The package structure of eocube: packages are floors, imports only go down, privates stay home.

Every module under ``eocube/`` is parsed with :mod:`ast` (nothing is imported or run) and each of
its imports of eocube is reduced to an edge between two *packages*: a package is a first-level
name under ``eocube`` (a subpackage such as ``eocube.fill`` with everything in it, or a top-level
module such as ``eocube.cube`` or ``eocube.errors``); ``eocube/__init__.py`` is the package
``eocube``. Every import counts, at module level, inside a function (a lazy import is about
import cost, not layering) and under ``if TYPE_CHECKING:``; imports spelled as strings
(``importlib.import_module``, the lazy table of ``eocube/__init__.py``) are not seen.

The rules:

* No cycle between packages: if package A imports package B, B imports nothing of A, directly
  or through other packages. A failure names the packages of the cycle and each import that
  closes it (module, line, imported module).
* No import of another package's private module or name: a module path with a component
  starting with ``_`` below the first level (``eocube.fill._nodata``), or a name starting with
  ``_`` imported from another package. A package shares what others need under a public name
  (re-exported from its ``__init__`` or in a public module). The top-level private modules
  ``eocube/_*.py`` (``_redact``, ``_version``, ``_compute``) are the core's own helpers,
  available to every package; their private names are not.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(importlib.util.find_spec("eocube").origin).parent
"""The eocube that the tests import (found, not imported)."""


@dataclass(frozen=True)
class Import:
    """One import of eocube by a module of eocube."""

    module: str  # the importing module, e.g. "eocube.masks.check"
    line: int
    target: str  # the imported module, or "module.name" for a name imported from a module

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def package_of(module: str) -> str:
    """The package (floor) of a dotted module name: ``eocube.fill._nodata`` -> ``fill``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "eocube"


def modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package ``__init__``) of every module under ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


@functools.cache
def imports(root: Path) -> list[Import]:
    """Every import of the package ``root.name`` made by its own modules, resolved to absolute names
    (one entry per module, line and target)."""
    top = root.name
    known = modules(root)
    found = []
    for name, (path, is_package) in known.items():
        here = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                pairs = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                pairs = [(source, alias.name) for alias in node.names]
            else:
                continue
            for source, imported in pairs:
                if source != top and not source.startswith(top + "."):
                    continue
                if imported is None or imported == "*":
                    target = source
                elif f"{source}.{imported}" in known:  # a submodule: `from .. import fill`
                    target = f"{source}.{imported}"
                else:  # a name defined in (or re-exported by) the module
                    target = f"{source}.{imported}" if _private(imported) else source
                found.append(Import(name, node.lineno, target))
    return list(dict.fromkeys(found))


def package_edges(found: list[Import]) -> dict[tuple[str, str], list[Import]]:
    """(importing package, imported package) -> the imports that make that edge."""
    edges: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in found:
        src, dst = package_of(imp.module), package_of(imp.target)
        if src != dst:
            edges[(src, dst)].append(imp)
    return dict(edges)


def cycles(edges: dict[tuple[str, str], list[Import]]) -> list[list[str]]:
    """The groups of packages that import each other (strongly connected components of two or more)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for src, dst in edges:
        graph[src].add(dst)
        graph.setdefault(dst, set())

    def reachable(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in graph[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    reach = {node: reachable(node) for node in graph}
    groups = {frozenset({n} | {m for m in reach[n] if n in reach[m]}) for n in graph}
    return sorted(sorted(g) for g in groups if len(g) > 1)


def private_imports(found: list[Import]) -> list[Import]:
    """Imports of another package's private module or name (``eocube._*`` modules are shared)."""
    bad = []
    for imp in found:
        if package_of(imp.module) == package_of(imp.target):
            continue
        below = imp.target.split(".")[2:]  # under the first level: eocube._redact itself is shared
        if any(_private(part) for part in below):
            bad.append(imp)
    return bad


def cycle_report(edges: dict[tuple[str, str], list[Import]]) -> list[str]:
    lines = []
    for group in cycles(edges):
        lines.append(f"packages {' <-> '.join(group)} import each other:")
        for (src, dst), imps in sorted(edges.items()):
            if src in group and dst in group:
                lines += [f"  {src} -> {dst}: {imp}" for imp in imps]
    return lines


def test_no_import_cycle_between_packages():
    edges = package_edges(imports(PACKAGE_ROOT))
    report = cycle_report(edges)
    assert not report, "import cycle between eocube's packages (a package may only import lower floors):\n" + "\n".join(
        report)


def test_no_import_of_another_packages_private_module():
    bad = private_imports(imports(PACKAGE_ROOT))
    assert not bad, (
        "imports of another package's private module or name (give it a public name in that package, or move it "
        "to the core):\n" + "\n".join(f"  {imp}" for imp in bad))


def test_the_graph_sees_eocubes_imports():
    """The parser finds the imports it must (so that the two checks above are not vacuous)."""
    found = imports(PACKAGE_ROOT)
    edges = package_edges(found)
    assert ("cli", "models") in edges and ("io", "errors") in edges
    assert ("errors", "cli") not in edges
    assert len(modules(PACKAGE_ROOT)) > 100 and len(found) > 300


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_checks_find_a_cycle_and_private_imports(tmp_path):
    """On a made-up package: a cycle through a lazy import, and private imports in three spellings."""
    root = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/_shared.py": "def helper(): ...\ndef _hidden(): ...\n",
        "pkg/core.py": "from ._shared import helper\n",
        "pkg/a/__init__.py": "from .mod import f\n",
        "pkg/a/mod.py": "from ..b import g\n\ndef f():\n    return g()\n",
        "pkg/a/_impl.py": "X = 1\n",
        "pkg/b/__init__.py": "def g():\n    from ..a._impl import X\n    return X\n",
        "pkg/b/user.py": "import pkg.a._impl\nfrom ..a import _impl\nfrom .._shared import _hidden\nfrom ..core import helper\n",
    })
    found = imports(root)
    edges = package_edges(found)
    assert cycles(edges) == [["a", "b"]]
    report = "\n".join(cycle_report(edges))
    assert "pkg.a.mod:1 imports pkg.b" in report and "pkg.b:2 imports pkg.a._impl" in report
    assert sorted(map(str, private_imports(found))) == [
        "pkg.b.user:1 imports pkg.a._impl",
        "pkg.b.user:2 imports pkg.a._impl",
        "pkg.b.user:3 imports pkg._shared._hidden",
        "pkg.b:2 imports pkg.a._impl",
    ]
    assert ("core", "_shared") in edges  # a core private module is shared, not private
    assert all(imp.target != "pkg._shared" for imp in private_imports(found))


@pytest.mark.parametrize("module, package", [("eocube", "eocube"), ("eocube.cube", "cube"), ("eocube.fill._nodata", "fill")])
def test_package_of(module, package):
    assert package_of(module) == package
