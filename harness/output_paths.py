"""Checks of the paths a command will write, made before any work starts.

A command that measures for minutes and then cannot write its figure or its folder loses the user's
time; one that writes ``DIR.png`` when asked for ``DIR`` loses their trust.  These checks turn both
into one line (:class:`harness.errors.OutputNotWritable`, exit 2) before anything is measured.
Imports only the standard library and :mod:`harness.errors`.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import OutputNotWritable

__all__ = ["check_png_path", "prepare_output_folder"]


def check_png_path(path: str | Path, option: str = "--png") -> Path:
    """A PNG file to write: a name ending in ``.png``, not a folder, in a folder that exists or can be made."""
    path = Path(path)
    if path.is_dir():
        raise OutputNotWritable(f"{option} {path}: is a folder; give a file name such as {path / 'figure.png'}")
    if path.suffix.lower() != ".png":
        raise OutputNotWritable(f"{option} {path}: a figure is written as PNG; give a file name ending in .png")
    _make_folder(path.parent, path, option)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputNotWritable(f"{option} {path}: file is not writable")
    return path


def prepare_output_folder(path: str | Path, option: str = "--out") -> Path:
    """An output folder: created if missing; refused when it is a file or cannot be written in."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputNotWritable(f"{option} {path}: is a file, not a folder; give a folder (it is created if missing)")
    _make_folder(path, path, option)
    return path


def _make_folder(folder: Path, path: Path, option: str) -> None:
    """Create ``folder`` (the output folder, or an output file's) or say in one line, naming ``path``, why not."""
    blocking = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise OutputNotWritable(f"{option} {path}: {blocking} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise OutputNotWritable(f"{option} {path}: cannot create folder {folder} ({problem.strerror or problem})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputNotWritable(f"{option} {path}: the folder {folder} is not writable")
