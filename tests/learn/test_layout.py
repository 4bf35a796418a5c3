"""learn/'s layout: no import cycle between its modules, no module names a newcomer would confuse."""

from __future__ import annotations

import ast
from pathlib import Path

import eocube
import eocube.learn

LEARN = Path(eocube.learn.__file__).parent
PACKAGES = {p.name for p in Path(eocube.__file__).parent.iterdir() if p.is_dir() and (p / "__init__.py").exists()}


def _imports(path: Path) -> set[str]:
    """learn modules imported by a module, at the top or inside functions (``from .x import``, ``from . import x``)."""
    names = {p.stem for p in LEARN.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found |= {a.name for a in node.names if a.name in names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("eocube.learn."):
            found.add(node.module.split(".")[2])
    return found - {"__init__"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_modules_of_learn_import_each_other_without_a_cycle():
    graph = {p.stem: _imports(p) for p in LEARN.glob("*.py") if p.stem != "__init__"}
    assert graph["trainer"] >= {"tasks", "checkpoint"}  # the parser sees imports
    assert _cycle(graph) is None, f"import cycle in eocube.learn: {' -> '.join(_cycle(graph))}"
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # and finds one


MOVING = {"cli"}
"""``learn/cli.py`` only keeps the deprecated ``python -m eocube.learn.cli`` working: ``eocube train`` is
``eocube/cli/train.py`` (issue 22 item 4)."""


def test_no_two_learn_modules_or_a_module_and_a_package_share_a_name():
    names = sorted(p.stem for p in LEARN.glob("*.py") if p.stem != "__init__")
    plural = [(n, n + "s") for n in names if n + "s" in names]
    assert not plural, f"modules a newcomer would confuse: {plural}"
    like = {n for n in names if n in PACKAGES or n + "s" in PACKAGES} - MOVING
    assert not like, f"learn modules named like eocube packages: {like}"
