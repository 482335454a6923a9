"""What every tool-output parser shares: its error, how tools print numbers, and line splitting."""

from __future__ import annotations

import math
import re

from harness.errors import ChameleonError


class ToolOutputError(ChameleonError):
    """A tool's output that holds no recognisable summary (wrong tool, failed or cut-short run)."""


# A number as C++ iostreams print it: integers, fixed, scientific (1.23457e+06,
# 5.6e-05), and nan/inf (any case, signed: glibc prints "-nan").
NUMBER = r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|(?i:nan|inf(?:inity)?))"


def to_number(text: str) -> float | None:
    """The float a tool printed, or None for nan/inf (they carry no measurement)."""
    value = float(text)
    return value if math.isfinite(value) else None


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` with CRLF / CR line endings normalised and trailing whitespace kept off."""
    return [line.rstrip() for line in re.split(r"\r\n|\r|\n", text)]
