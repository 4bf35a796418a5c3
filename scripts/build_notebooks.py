"""Write the notebooks in notebooks/ from the cell lists in scripts/notebooks/nb*.py and execute them (outputs stored).

Run from the project root:  .venv/bin/python scripts/build_notebooks.py [NAME ...]

The notebooks are the source users read; this script only keeps them consistent and executed.
CI re-executes every notebook with nbmake (pytest --nbmake notebooks/).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_SOURCES = Path(__file__).resolve().parent / "notebooks"


def load_sources() -> dict[str, list[tuple[str, str]]]:
    """Notebook name -> cells, from scripts/notebooks/nb*.py (each defines NAME and CELLS)."""
    found = {}
    for path in sorted(NOTEBOOK_SOURCES.glob("nb*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found[module.NAME] = module.CELLS
    return found


NOTEBOOKS = load_sources()


def build(name: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source in NOTEBOOKS[name]:
        nb.cells.append(nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source))
    path = ROOT / "notebooks" / name
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(nb, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    for name in sys.argv[1:] or list(NOTEBOOKS):
        build(name)
