"""Parsers: a benchmarking tool's text output in, numbers out.

Each parser takes the text a tool printed (or wrote) and needs no device, so a
log captured yesterday from a phone parses the same as one captured now:

- :func:`parse_tflite_benchmark` — TFLite's ``benchmark_model`` (TF 1.x to
  current LiteRT builds), see :mod:`harness.parsers.tflite_benchmark`;
- :func:`parse_ort_perf_test` — ONNX Runtime's ``onnxruntime_perf_test``, and
  :func:`parse_ort_result_csv` for the per-run file it writes, see
  :mod:`harness.parsers.ort_perf_test`;
- :func:`parse_executor_runner` — ExecuTorch's ``executor_runner``, see
  :mod:`harness.parsers.executorch_runner`;
- :func:`parse_tool_output` — the CLI's entry point: a format name and a text,
  a JSON-ready dict back.

Text without a recognisable summary raises :class:`ToolOutputError`, a
:class:`~harness.errors.ChameleonError` whose one-line message names what was
expected.
"""

from __future__ import annotations

from harness.parsers.text import NUMBER, ToolOutputError, split_lines, to_number
from harness.parsers.executorch_runner import ExecutorRunnerResult, parse_executor_runner
from harness.parsers.ort_perf_test import OrtPerfResult, parse_ort_perf_test, parse_ort_result_csv
from harness.parsers.tflite_benchmark import NodeTypeRow, OpRow, RunStats, TfliteBenchmarkResult, parse_run_stats, parse_tflite_benchmark

FORMATS = ("tflite", "ort", "executor_runner")


def parse_tool_output(fmt: str, text: str) -> dict:
    """Parse ``text`` printed by the tool ``fmt`` names and return its JSON-ready summary.

    ``fmt`` is ``"tflite"`` (``benchmark_model``), ``"ort"``
    (``onnxruntime_perf_test``) or ``"executor_runner"`` (ExecuTorch's);
    times in the result are in microseconds.
    """
    if fmt == "tflite":
        return parse_tflite_benchmark(text).to_json()
    if fmt == "ort":
        return parse_ort_perf_test(text).to_json()
    if fmt == "executor_runner":
        return parse_executor_runner(text).to_json()
    raise ToolOutputError(f"unknown tool output format {fmt!r}: expected one of {', '.join(FORMATS)}")


__all__ = [
    "ExecutorRunnerResult",
    "FORMATS",
    "NUMBER",
    "NodeTypeRow",
    "OpRow",
    "OrtPerfResult",
    "RunStats",
    "TfliteBenchmarkResult",
    "ToolOutputError",
    "parse_executor_runner",
    "parse_ort_perf_test",
    "parse_ort_result_csv",
    "parse_run_stats",
    "parse_tflite_benchmark",
    "parse_tool_output",
    "split_lines",
    "to_number",
]
