"""The names of layouts, outputs, tasks, mask kinds, methods and model files are written once, in ``eocube.names``.

* every package's constant, the command line's choices and the model engine's checks are those names;
* no module of eocube writes one of these sets of names again (a tuple, list, set or ``Literal[...]``
  of the same strings), found by parsing every module (nothing imported).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import get_args

import click
import pytest

from eocube import names

PACKAGE_ROOT = Path(importlib.util.find_spec("eocube").origin).parent

NAME_SETS = {
    "LAYOUTS": names.LAYOUTS, "VALID_INPUTS": names.VALID_INPUTS, "OUTPUT_KINDS": names.OUTPUT_KINDS,
    "POSTPROCESS_NAMES": names.POSTPROCESS_NAMES, "PAIRINGS": names.PAIRINGS, "TASKS": names.TASKS,
    "MASK_KINDS": names.MASK_KINDS, "FILL_METHODS": names.FILL_METHODS, "EVALUATED_METHODS": names.EVALUATED_METHODS,
    "CARD_NAME_PATTERNS": names.CARD_NAME_PATTERNS,
}
"""Sets of two or more names (one-name sets and pairs of common words such as ``("any", "all")`` are
found as such too, but ``("bf16", "fp16")`` also names torch dtypes: AUTOCASTS and MASK_OUTPUTS are
checked through the engine only)."""


def _literal_strings(node: ast.AST) -> frozenset[str] | None:
    """The strings of a tuple, list or set display (or a ``Literal[...]`` subscript) made only of strings."""
    if isinstance(node, ast.Subscript) and getattr(node.value, "id", getattr(node.value, "attr", None)) == "Literal":
        node = node.slice
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) > 1 and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return frozenset(e.value for e in node.elts)  # type: ignore[attr-defined]
    return None


def test_each_tuple_is_its_literal_type():
    for tuple_name, type_name in [("LAYOUTS", "LayoutName"), ("VALID_INPUTS", "ValidInput"),
                                  ("OUTPUT_KINDS", "OutputKind"), ("POSTPROCESS_NAMES", "PostprocessName"),
                                  ("MASK_OUTPUTS", "MaskOutput"), ("PAIRINGS", "Pairing"), ("AUTOCASTS", "Autocast"),
                                  ("TASKS", "TaskName"), ("MASK_KINDS", "MaskKind"), ("FILL_METHODS", "FillMethod")]:
        assert getattr(names, tuple_name) == get_args(getattr(names, type_name)), tuple_name
    assert set(names.EVALUATED_METHODS) <= set(names.FILL_METHODS)


def test_no_module_writes_a_set_of_names_again():
    wanted = {frozenset(v): k for k, v in NAME_SETS.items()}
    found = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        if path.name == "names.py" and path.parent == PACKAGE_ROOT:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            strings = _literal_strings(node)
            if strings is not None and strings in wanted:
                found.append(f"{path.relative_to(PACKAGE_ROOT.parent)}:{node.lineno} writes {wanted[strings]}")
    assert not found, "import these names from eocube.names instead:\n" + "\n".join(found)


def test_the_check_finds_names_written_again(tmp_path):
    """On a made-up module: the scan above is not vacuous."""
    tree = ast.parse('LAYOUTS = ("band", "time_band", "sequence")\nK = Literal["gapfill", "segmentation", "superres"]\n')
    got = [_literal_strings(node) for node in ast.walk(tree)]
    assert frozenset(names.LAYOUTS) in got and frozenset(names.TASKS) in got


def test_the_packages_use_the_names():
    from eocube import evaluate, fill, masks
    from eocube.cli import evaluate as cli_evaluate
    from eocube.learn import config
    from eocube.learn.export import MODEL_FILE
    from eocube.learn.tasks import TASK_CLASSES
    from eocube.models.card import card_candidates

    assert fill.METHOD_NAMES == names.FILL_METHODS
    assert set(fill.METHODS) == set(names.FILL_METHODS)
    assert evaluate.DEFAULT_METHODS == cli_evaluate.DEFAULT_METHODS == names.EVALUATED_METHODS
    assert masks.MASK_KINDS == names.MASK_KINDS
    assert config.TASKS == names.TASKS and set(TASK_CLASSES) == set(names.TASKS)
    assert MODEL_FILE == names.MODEL_FILE
    beside = card_candidates(Path("run") / names.MODEL_FILE)
    assert [p.name for p in beside] == ["model.pt2.json", "model.card.json", names.CARD_FILE]


def _choices(command: click.Command, option: str) -> tuple[str, ...]:
    param = next(p for p in command.params if p.name == option)
    assert isinstance(param.type, click.Choice)
    return tuple(param.type.choices)


def _command(name: str) -> click.Command:
    import importlib

    from eocube.cli import COMMANDS

    module, attr = COMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module), attr)


def test_the_command_line_offers_the_names():
    apply = _command("apply")
    assert _choices(apply, "layout") == names.LAYOUTS
    assert _choices(apply, "postprocess") == names.POSTPROCESS_NAMES
    assert _choices(apply, "autocast") == names.AUTOCASTS
    assert _choices(_command("gapfill"), "mask_kind") == names.MASK_KINDS
    assert _choices(_command("train"), "task") == names.TASKS


@pytest.mark.parametrize("field, value, what", [
    ("layout", "bands", "layout"), ("valid_input", "flag", "valid_input"), ("kind", "maps", "output"),
    ("mask", "some", "mask_output"), ("pairing", "closest", "pairing"),
])
def test_the_engine_refuses_other_names_and_lists_the_ones_it_takes(field, value, what):
    import numpy as np
    import torch

    from eocube.datasets import sentinel2_sample
    from eocube.models import ModelSpec, OptionError, OutputSpec, SourceSpec, apply_model

    allowed = {"layout": names.LAYOUTS, "valid_input": names.VALID_INPUTS, "kind": names.OUTPUT_KINDS,
               "mask": names.MASK_OUTPUTS, "pairing": names.PAIRINGS}[field]
    if field in ("layout", "valid_input"):
        spec = ModelSpec(sources=(SourceSpec(bands=("NDVI",), **{field: value}),))
    elif field in ("kind", "mask"):
        spec = ModelSpec(sources=(SourceSpec(bands=("NDVI",)),), output=OutputSpec(**{field: value}))
    else:
        spec = ModelSpec(sources=(SourceSpec(bands=("NDVI",)),), pairing=value)
    with pytest.raises(OptionError, match=what) as info:
        apply_model(sentinel2_sample(), torch.nn.Identity(), spec)
    assert str(allowed) in str(info.value) and np.all([repr(n) in str(info.value) for n in allowed])
