"""The chunk ledger of a resumable write: one marker file per finished chunk.

A chunk's marker is written *after* its data, so a marker always means "this
chunk is on disk". Resuming skips the chunks that have a marker and recomputes
the others. The ledger lives inside the store (``<store>/.eocube-progress/``),
which Zarr readers ignore, and is removed once the write is complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

LEDGER_DIR = ".eocube-progress"


def ledger_path(store: str | os.PathLike[str], variable: str) -> Path:
    """Folder holding the markers of ``variable`` in ``store``."""
    return Path(store) / LEDGER_DIR / variable


def chunk_key(index: tuple[int, ...]) -> str:
    """File name of a chunk's marker (``"0.3.1.2"``)."""
    return ".".join(str(i) for i in index)


def done_chunks(store: str | os.PathLike[str], variable: str) -> set[tuple[int, ...]]:
    """Indices of the chunks already written.

    Parameters
    ----------
    store
        Path of the Zarr store.
    variable
        Name of the array in the store.

    Returns
    -------
    set of tuple of int
        Block indices with a marker.
    """
    folder = ledger_path(store, variable)
    if not folder.is_dir():
        return set()
    done = set()
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue  # a marker being written (see mark_done)
        try:
            done.add(tuple(int(p) for p in entry.name.split(".")))
        except ValueError:
            continue
    return done


def mark_done(folder: str, index: tuple[int, ...]) -> None:
    """Record that the chunk ``index`` is on disk (atomically: write, then rename).

    Parameters
    ----------
    folder
        The ledger folder (from :func:`ledger_path`).
    index
        Block index of the chunk.
    """
    key = chunk_key(index)
    tmp = os.path.join(folder, f".{key}.{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write("done\n")
    os.replace(tmp, os.path.join(folder, key))


def clear_ledger(store: str | os.PathLike[str]) -> None:
    """Remove the whole ledger of a store (after a complete write)."""
    shutil.rmtree(Path(store) / LEDGER_DIR, ignore_errors=True)
