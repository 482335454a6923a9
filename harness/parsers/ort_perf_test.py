"""Parse the output of ONNX Runtime's ``onnxruntime_perf_test``.

What the tool prints (read from onnxruntime/test/perftest/performance_runner.{h,cc}
across versions), by version family (``format``):

``"old"`` (ORT 0.x, the README's sample)::

    Total time cost:58.8053            <- seconds, sum of the timed runs
    Total iterations:1000
    Average time cost:58.8053 ms
    Total run time:58.8102 s
    Min Latency is 0.0559777sec        <- -s statistics: Min, Max, P50, P90, P95, P99, P999
    ...

``"1.x"``::

    Session creation time cost: 0.0455 s
    First inference time cost: 3 ms
    Total inference time cost: 1.05 s
    Total inference requests: 1000
    Average inference time cost: 1.05 ms
    Total inference run time: 1.06 s
    Number of inferences per second: 943.4
    Avg CPU usage: 98 %
    Peak working set size: 41000960 bytes
    Avg CPU usage:98                   <- a second, space-less block, when no result file
    Peak working set size:41000960
    Runs:1000
    Min Latency: 0.000987 s            <- -s statistics
    ...
    P999 Latency: 0.0021 s

``"current"``: as 1.x but ``Average inference time cost total: X ms`` (plus
``Average inference time cost submission: X ms`` with CUDA I/O binding), and
with ``--data_shape`` a per-shape block (``Latency per shape group:``,
``Shape group N (...)``) whose indented latencies are not the run's.

Times print with C++'s default 6 significant digits, so small latencies come
out as ``8.7e-05``.  A line cut short (``P999 Latency is 0.0623472se``, the
end of the README's sample) is ignored: its unit is incomplete, so its number
may be too.  With ``-v`` each timed run prints ``iteration:N,time_cost:X``
(seconds), collected in ``per_run_ms``.

The result file (``onnxruntime_perf_test ... model.onnx result.csv``) is opened
for appending and gets one row per timed run and no header::

    model_name,time_cost_s,peak_working_set_bytes,avg_cpu_usage,run_index

followed, with ``-s``, by a blank line and the statistics block.  See
:func:`parse_ort_result_csv`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from harness.parsers.text import NUMBER, ToolOutputError, split_lines, to_number

_N = rf"({NUMBER})"

# (regex, format) for the average line; the first that matches names the format.
_AVERAGES = [
    (re.compile(rf"^\s*Average inference time cost total:\s*{_N}\s*ms\b"), "current"),
    (re.compile(rf"^\s*Average inference time cost(?: \(excluding warm-up\))?:\s*{_N}\s*ms\b"), "1.x"),
    (re.compile(rf"^\s*Average time cost:\s*{_N}\s*ms\b"), "old"),
]

# Fields printed before the average line (they belong to the run it ends) ...
_BEFORE = {
    "session_creation_s": re.compile(rf"^\s*Session creation time cost:\s*{_N}\s*s\s*$"),
    "first_inference_ms": re.compile(rf"^\s*First inference time cost:\s*{_N}\s*ms\s*$"),
    "total_time_s": re.compile(
        rf"^\s*Total (?:inference )?time cost(?: \(including warm-up\))?:\s*{_N}(?:\s*s)?\s*$"),
    "requests": re.compile(r"^\s*Total (?:inference requests|iterations):\s*(\d+)\s*$"),
}
# ... and after it.
_AFTER = {
    "run_time_s": re.compile(rf"^\s*Total (?:inference )?run time:\s*{_N}\s*s\s*$"),
    "avg_cpu_usage": re.compile(rf"^\s*Avg CPU usage:\s*{_N}\s*%?\s*$"),
    "peak_working_set_bytes": re.compile(r"^\s*Peak working set size:\s*(\d+)(?:\s*bytes)?\s*$"),
    "runs": re.compile(r"^\s*Runs:\s*(\d+)\s*$"),
    "average_submission_ms": re.compile(rf"^\s*Average inference time cost submission:\s*{_N}\s*ms\s*$"),
}
_LATENCY = re.compile(rf"^\s*(Min|Max|P50|P90|P95|P99|P999) Latency(?: is |:\s*){_N}\s*(?:sec|s)\s*$")
_SHAPE_BLOCK = re.compile(r"^\s*(?:Latency per shape group:|Shape group \d+)")
_ITERATION = re.compile(rf"^\s*iteration:\s*(\d+)\s*,\s*time_cost:\s*{_N}\s*$")


@dataclass(frozen=True)
class OrtPerfResult:
    """What one ``onnxruntime_perf_test`` run printed; units in the field names.

    ``average_ms`` is the mean time per timed run; ``runs`` their count
    (``Runs:``, else ``Total inference requests`` / ``Total iterations``, else
    the ``-v`` lines); the latencies are in seconds, as printed (None where
    not printed: they need ``-s`` or no result file); ``total_time_s`` is the
    sum of the timed runs, ``run_time_s`` the wall time they took.
    """

    average_ms: float | None
    runs: int | None
    p50_s: float | None
    p90_s: float | None
    p95_s: float | None
    p99_s: float | None
    p999_s: float | None
    min_s: float | None
    max_s: float | None
    total_time_s: float | None
    avg_cpu_usage: float | None
    format: str
    per_run_ms: list[float] = field(default_factory=list)
    run_time_s: float | None = None
    session_creation_s: float | None = None
    first_inference_ms: float | None = None
    peak_working_set_bytes: int | None = None
    average_submission_ms: float | None = None

    def to_json(self) -> dict:
        """Summary times in microseconds, the run count, the median and p95 where printed, per-run times where printed."""

        def us(value: float | None, scale: float) -> float | None:
            return None if value is None else value * scale

        out: dict = {
            "tool": "onnxruntime_perf_test",
            "format": self.format,
            "init_us": us(self.session_creation_s, 1e6),
            "first_inference_us": us(self.first_inference_ms, 1e3),
            "inference_avg_us": us(self.average_ms, 1e3),
            "runs": self.runs,
            "total_time_us": us(self.total_time_s, 1e6),
            "run_time_us": us(self.run_time_s, 1e6),
            "min_us": us(self.min_s, 1e6),
            "max_us": us(self.max_s, 1e6),
            "p50_us": us(self.p50_s, 1e6),
            "p90_us": us(self.p90_s, 1e6),
            "p95_us": us(self.p95_s, 1e6),
            "p99_us": us(self.p99_s, 1e6),
            "p999_us": us(self.p999_s, 1e6),
            "avg_cpu_usage_percent": self.avg_cpu_usage,
            "peak_working_set_bytes": self.peak_working_set_bytes,
        }
        if self.p50_s is not None:
            out["median_us"] = out["p50_us"]
        if self.average_submission_ms is not None:
            out["submission_avg_us"] = us(self.average_submission_ms, 1e3)
        if self.per_run_ms:
            out["per_run_us"] = [v * 1e3 for v in self.per_run_ms]
        return out


def _first(pattern: re.Pattern, lines: list[str]) -> str | None:
    for line in lines:
        match = pattern.match(line)
        if match:
            return match.group(1)
    return None


def _last(pattern: re.Pattern, lines: list[str]) -> str | None:
    for line in reversed(lines):
        match = pattern.match(line)
        if match:
            return match.group(1)
    return None


def parse_ort_perf_test(text: str) -> OrtPerfResult:
    """Parse ``onnxruntime_perf_test``'s stdout; a text holding several runs is parsed for its last."""
    lines = split_lines(text)
    averages: list[tuple[int, float | None, str]] = []
    for i, line in enumerate(lines):
        for pattern, fmt in _AVERAGES:
            match = pattern.match(line)
            if match:
                averages.append((i, to_number(match.group(1)), fmt))
                break
    if not averages:
        raise ToolOutputError(
            "onnxruntime_perf_test output has no summary: expected a line 'Average inference time cost total: "
            "X ms' (or, in older versions, 'Average inference time cost: X ms' / 'Average time cost:X ms')")
    at, average_ms, fmt = averages[-1]
    before = lines[averages[-2][0] + 1 if len(averages) > 1 else 0:at]
    after = lines[at + 1:]

    found: dict[str, float | None] = {}
    for key, pattern in _BEFORE.items():
        value = _last(pattern, before)
        found[key] = to_number(value) if value is not None else None
    for key, pattern in _AFTER.items():
        value = _first(pattern, after)
        found[key] = to_number(value) if value is not None else None

    latencies: dict[str, float | None] = {}
    for line in after:
        if _SHAPE_BLOCK.match(line):
            break
        match = _LATENCY.match(line)
        if match:
            latencies.setdefault(match.group(1).lower(), to_number(match.group(2)))

    per_run_ms = []
    for line in before:
        match = _ITERATION.match(line)
        if match:
            value = to_number(match.group(2))
            if value is not None:
                per_run_ms.append(value * 1e3)

    runs = found["runs"] if found["runs"] is not None else found["requests"]
    if runs is None and per_run_ms:
        runs = len(per_run_ms)
    peak = found["peak_working_set_bytes"]
    return OrtPerfResult(
        average_ms=average_ms,
        runs=int(runs) if runs is not None else None,
        p50_s=latencies.get("p50"),
        p90_s=latencies.get("p90"),
        p95_s=latencies.get("p95"),
        p99_s=latencies.get("p99"),
        p999_s=latencies.get("p999"),
        min_s=latencies.get("min"),
        max_s=latencies.get("max"),
        total_time_s=found["total_time_s"],
        avg_cpu_usage=found["avg_cpu_usage"],
        format=fmt,
        per_run_ms=per_run_ms,
        run_time_s=found["run_time_s"],
        session_creation_s=found["session_creation_s"],
        first_inference_ms=found["first_inference_ms"],
        peak_working_set_bytes=int(peak) if peak is not None else None,
        average_submission_ms=found["average_submission_ms"],
    )


# ---------------------------------------------------------------- result file

_TIME_COLUMN = re.compile(r"time|latency|cost|duration", re.IGNORECASE)


def _header_unit(name: str) -> float:
    """Milliseconds per unit of a header's time column: ``..._ms``/``(ms)`` 1, ``us`` 1e-3, ``ns`` 1e-6, else seconds."""
    words = set(re.findall(r"[a-z]+", name.lower()))
    if words & {"ms", "msec", "millisecond", "milliseconds"}:
        return 1.0
    if words & {"us", "usec", "microsecond", "microseconds"}:
        return 1e-3
    if words & {"ns", "nsec", "nanosecond", "nanoseconds"}:
        return 1e-6
    return 1e3


def parse_ort_result_csv(text: str) -> list[float]:
    """Per-run times in milliseconds from ``onnxruntime_perf_test``'s result file.

    Accepted: the tool's own rows, ``model_name,time_cost_s,peak_working_set_bytes,avg_cpu_usage,run_index``
    with no header (the model name may itself hold commas: columns are read from
    the right); a statistics block after a blank line (``-s``) is skipped.  The
    tool appends, so a file reused across invocations holds several runs: a
    ``run_index`` of 0 starts a new one and only the last run is returned.
    Also accepted: a file whose first row is a header naming a time column
    (``time``, ``latency``, ``cost`` or ``duration``), in seconds unless the
    name says ``ms``, ``us`` or ``ns``.
    """
    rows = [row for row in csv.reader(io.StringIO(text.replace("\r\n", "\n").replace("\r", "\n")))
            if any(cell.strip() for cell in row)]
    rows = [row for row in rows if not (len(row) == 1 and "Latency" in row[0])]
    if not rows:
        raise ToolOutputError("onnxruntime_perf_test result file has no rows: expected "
                              "'model_name,time_cost_s,peak_working_set_bytes,avg_cpu_usage,run_index' per run")
    first = [cell.strip() for cell in rows[0]]
    if len(first) >= 5 and _is_number(first[-4]) and first[-1].isdigit():
        return _tool_rows(rows)
    columns = [i for i, name in enumerate(first) if _TIME_COLUMN.search(name)]
    if not columns or any(_is_number(cell) for cell in first):
        raise ToolOutputError(
            f"unrecognised onnxruntime_perf_test result file (first row {','.join(first)[:80]!r}): expected "
            "'model_name,time_cost_s,peak_working_set_bytes,avg_cpu_usage,run_index' rows, or a header "
            "naming a time column")
    column = columns[0]
    scale = _header_unit(first[column])
    out = []
    for n, row in enumerate(rows[1:], start=2):
        try:
            value = float(row[column])
        except (IndexError, ValueError):
            raise ToolOutputError(f"result file row {n} has no number in column {first[column]!r}") from None
        out.append(value * scale)
    return out


def _is_number(cell: str) -> bool:
    return re.fullmatch(NUMBER, cell.strip()) is not None


def _tool_rows(rows: list[list[str]]) -> list[float]:
    runs: list[list[float]] = []
    for n, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        if len(cells) < 5 or not _is_number(cells[-4]) or not cells[-1].isdigit():
            raise ToolOutputError(f"result file row {n} is not 'model_name,time_cost_s,peak_working_set_bytes,"
                                  f"avg_cpu_usage,run_index': {','.join(cells)[:80]!r}")
        if int(cells[-1]) == 0 or not runs:
            runs.append([])
        runs[-1].append(float(cells[-4]) * 1e3)
    return runs[-1]
