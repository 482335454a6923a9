"""Parse the output of ExecuTorch's ``executor_runner`` (and ``xnn_executor_runner``, the same source linked with XNNPACK).

What the tool prints (read from examples/portable/executor_runner/executor_runner.cpp,
extension/evalue_util/print_evalue.cpp and runtime/platform/default/posix.cpp
of pytorch/executorch, across versions):

Log lines go through ``ET_LOG``; the default platform layer writes them to
stderr as ``LEVEL HH:MM:SS.UUUUUU executorch:FILE:LINE] MESSAGE`` (the time
is since start-up, the level one of ``D I E F``), other platform layers as
``[FILE:LINE] MESSAGE``, logcat as ``I/ExecuTorch( 1234): MESSAGE``.  The
message is what counts, so any prefix is accepted.  Then, by version family
(``format``):

``"1.x"`` (``--num_executions`` and the total time, about 0.4 to 1.x)::

    I 00:00:00.000371 executorch:executor_runner.cpp:160] Model file /data/local/tmp/m.pte is loaded.
    I 00:00:00.000382 executorch:executor_runner.cpp:169] Using method forward
    I 00:00:00.000390 executorch:executor_runner.cpp:217] Setting up planned buffer 0, size 6144.
    I 00:00:00.001204 executorch:executor_runner.cpp:242] Method loaded.
    I 00:00:00.012017 executorch:executor_runner.cpp:282] Model executed successfully 20 time(s) in 10.613 ms.
    I 00:00:00.012020 executorch:executor_runner.cpp:286] 1 outputs:
    Output 0: tensor(sizes=[1, 16, 8, 8], [ ... ])

``"iterations"`` (current sources): as above but ``Setting up CPU planned
buffer``, ``Model loaded in X ms.``, one ``Iteration I of N: X ms`` line per
execution before the total, and the outputs printed as ``OutputX 0: ...``.

With the event tracer built in (``EXECUTORCH_BUILD_DEVTOOLS``) the run ends
with ``ETDump written to file 'PATH'.``.  A failed run ends with an ``E`` or
``F`` line (``Failed to parse model file ...``, ``In function main(), assert
failed (...): ...``); the oldest builds print ``Model executed successfully.``
with no count or time.

The total is the sum of the executions' times, each ``Method::execute`` alone
(the inputs are prepared before the clock starts); a ``%f`` figure, so six
decimals of a millisecond.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.parsers.text import NUMBER, ToolOutputError, split_lines, to_number

_N = rf"({NUMBER})"

_TOTAL = re.compile(rf"Model executed successfully (\d+) time\(s\) in {_N} ms\.?\s*$")
_TOTAL_WITHOUT_TIME = re.compile(r"Model executed successfully(?: (\d+) time\(s\))?\.\s*$")
_ITERATION = re.compile(rf"Iteration (\d+) of (\d+): {_N} ms\s*$")
_LOADED_IN = re.compile(rf"Model loaded in {_N} ms\.?\s*$")
_MODEL_FILE = re.compile(r"Model file (.+) is loaded\.\s*$")
_METHOD = re.compile(r"Using method (\S+)\s*$")
_ETDUMP = re.compile(r"ETDump written to file '(.*)'\.\s*$")
_OUTPUTS = re.compile(r"(\d+) outputs:\s*$")
_THREADS = re.compile(r"Resetting threadpool with num threads = (-?\d+)\s*$")
# An ET_LOG line of level E (error) or F (fatal) from the default platform layer, whatever it says.
_FAILURE = re.compile(r"^\s*[EF] \d+:\d\d:\d\d\.\d+ executorch:\S+\] (.*)$")


@dataclass(frozen=True)
class ExecutorRunnerResult:
    """What one ``executor_runner`` invocation printed; units in the field names.

    ``total_ms`` is the sum of ``executions`` executions' times; ``per_execution_ms``
    the time of each, in order, where the build logs them (else empty).
    """

    executions: int
    total_ms: float
    format: str
    per_execution_ms: list[float] = field(default_factory=list)
    load_ms: float | None = None
    model_path: str | None = None
    method: str | None = None
    outputs: int | None = None
    threads: int | None = None
    etdump_path: str | None = None

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.executions

    def to_json(self) -> dict:
        """Times in microseconds, the execution count and, where logged, each execution's time."""
        out: dict = {
            "tool": "executor_runner",
            "format": self.format,
            "executions": self.executions,
            "total_us": self.total_ms * 1e3,
            "inference_avg_us": self.mean_ms * 1e3,
            "load_us": None if self.load_ms is None else self.load_ms * 1e3,
            "model_path": self.model_path,
            "method": self.method,
            "outputs": self.outputs,
            "threads": self.threads,
            "etdump_path": self.etdump_path,
        }
        if self.per_execution_ms:
            ordered = sorted(self.per_execution_ms)
            middle = len(ordered) // 2
            median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
            out["per_run_us"] = [v * 1e3 for v in self.per_execution_ms]
            out["median_us"] = median * 1e3
            out["min_us"] = ordered[0] * 1e3
        return out


def _message(pattern: re.Pattern, line: str) -> re.Match | None:
    """The pattern anywhere after the log prefix (the message ends the line)."""
    return pattern.search(line)


def parse_executor_runner(text: str) -> ExecutorRunnerResult:
    """Parse ``executor_runner``'s stdout and stderr (together, as ``adb shell`` returns them).

    A text holding several invocations (a log) is parsed for its last.  Raises
    :class:`ToolOutputError` with one line when there is no summary: naming
    the runner's own error when it printed one.
    """
    lines = split_lines(text)
    totals = [i for i, line in enumerate(lines) if _message(_TOTAL, line)]
    if not totals:
        raise ToolOutputError(_no_summary(lines))
    at = totals[-1]
    # The invocation starts after the previous summary; its outputs and ETDump line come after its own.
    start = totals[-2] + 1 if len(totals) > 1 else 0
    before, after = lines[start:at], lines[at + 1:]
    match = _message(_TOTAL, lines[at])
    assert match is not None
    executions = int(match.group(1))
    total_ms = to_number(match.group(2))
    if total_ms is None or total_ms < 0:
        raise ToolOutputError(f"executor_runner printed no usable total time: {lines[at].strip()[:120]!r}")
    if executions < 1:
        raise ToolOutputError("executor_runner executed the model 0 times (--num_executions=0?): no time to read")

    per_execution: dict[int, float] = {}
    for line in before:
        found = _message(_ITERATION, line)
        if found:
            value = to_number(found.group(3))
            if value is None or value < 0:
                raise ToolOutputError(f"executor_runner printed an unusable execution time: {line.strip()[:120]!r}")
            per_execution[int(found.group(1))] = value
    if per_execution and sorted(per_execution) != list(range(1, executions + 1)):
        raise ToolOutputError(f"executor_runner logged {len(per_execution)} execution times for "
                              f"{executions} executions (output cut or interleaved with another run)")

    def first(pattern: re.Pattern, where: list[str]) -> str | None:
        for line in where:
            found = _message(pattern, line)
            if found:
                return found.group(1)
        return None

    load = first(_LOADED_IN, before)
    outputs = first(_OUTPUTS, after)
    threads = first(_THREADS, before)
    return ExecutorRunnerResult(
        executions=executions,
        total_ms=total_ms,
        format="iterations" if per_execution else "1.x",
        per_execution_ms=[per_execution[i] for i in sorted(per_execution)],
        load_ms=None if load is None else to_number(load),
        model_path=first(_MODEL_FILE, before),
        method=first(_METHOD, before),
        outputs=None if outputs is None else int(outputs),
        threads=None if threads is None else int(threads),
        etdump_path=first(_ETDUMP, after),
    )


def _no_summary(lines: list[str]) -> str:
    """The one-line reason a text holds no ``Model executed successfully N time(s) in X ms.``."""
    for line in lines:
        found = _message(_TOTAL_WITHOUT_TIME, line)
        if found:
            return ("this executor_runner build prints no execution time ('Model executed successfully"
                    f"{' ' + found.group(1) + ' time(s)' if found.group(1) else ''}.'): use a build with "
                    "--num_executions that prints 'Model executed successfully N time(s) in X ms.'")
    failures = [found.group(1).strip() for line in lines if (found := _FAILURE.match(line))]
    if failures:
        return f"executor_runner failed: {failures[-1][:240]}"
    unknown_flag = next((line.strip() for line in lines if "unknown command line flag" in line), None)
    if unknown_flag:
        return f"executor_runner refused its command line: {unknown_flag[:200]}"
    return ("executor_runner output has no summary: expected a line 'Model executed successfully N time(s) "
            "in X ms.'")
