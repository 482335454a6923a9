"""Parsers: a benchmarking tool's text output in, numbers out.

Each parser takes the text a tool printed (or wrote) and needs no device, so a
log captured yesterday from a phone parses the same as one captured now:

- :func:`parse_tflite_benchmark` — TFLite's ``benchmark_model`` (TF 1.x to
  current LiteRT builds), see :mod:`harness.parsers.tflite_benchmark`;
- :func:`parse_ort_perf_test` — ONNX Runtime's ``onnxruntime_perf_test``, and
  :func:`parse_ort_result_csv` for the per-run file it writes, see
  :mod:`harness.parsers.ort_perf_test`;
- :func:`parse_tool_output` — the CLI's entry point: a format name and a text,
  a JSON-ready dict back.

Text without a recognisable summary raises :class:`ToolOutputError`, a
:class:`~harness.errors.ChameleonError` whose one-line message names what was
expected.
"""

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


# Parsers are imported after the helpers above, which they use.
from harness.parsers.ort_perf_test import OrtPerfResult, parse_ort_perf_test, parse_ort_result_csv
from harness.parsers.tflite_benchmark import NodeTypeRow, OpRow, RunStats, TfliteBenchmarkResult, parse_run_stats, parse_tflite_benchmark

FORMATS = ("tflite", "ort")


def parse_tool_output(fmt: str, text: str) -> dict:
    """Parse ``text`` printed by the tool ``fmt`` names and return its JSON-ready summary.

    ``fmt`` is ``"tflite"`` (``benchmark_model``) or ``"ort"``
    (``onnxruntime_perf_test``); times in the result are in microseconds.
    """
    if fmt == "tflite":
        return parse_tflite_benchmark(text).to_json()
    if fmt == "ort":
        return parse_ort_perf_test(text).to_json()
    raise ToolOutputError(f"unknown tool output format {fmt!r}: expected one of {', '.join(FORMATS)}")


__all__ = [
    "FORMATS",
    "NodeTypeRow",
    "OpRow",
    "OrtPerfResult",
    "RunStats",
    "TfliteBenchmarkResult",
    "ToolOutputError",
    "parse_ort_perf_test",
    "parse_ort_result_csv",
    "parse_run_stats",
    "parse_tflite_benchmark",
    "parse_tool_output",
]
