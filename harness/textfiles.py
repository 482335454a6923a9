"""Reading the text files users give us (profiles, plans, imports) with one set of failure reasons."""

from __future__ import annotations

from pathlib import Path


class UnreadableText(Exception):
    """Why a text file could not be read, in a few words; callers put it into their own one-line error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_utf8(path: Path) -> str:
    """The file's text; raises :class:`UnreadableText` for a folder, a missing file, an I/O error or non-UTF-8 bytes."""
    if path.is_dir():
        raise UnreadableText("it is a folder, not a file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UnreadableText("no such file") from None
    except OSError as err:
        raise UnreadableText(err.strerror or str(err)) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UnreadableText(f"not UTF-8 text (byte {err.start})") from None
