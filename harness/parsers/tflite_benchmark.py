"""Parse the text output of TFLite's ``benchmark_model``.

What the tool prints (read from tensorflow/lite/tools/benchmark/benchmark_model.cc,
benchmark_tflite_model.cc, profiling_listener.cc and tensorflow/core/util/ (later
tsl/util/) stats_calculator.{h,cc} across versions):

- Each timed phase logs ``Running benchmark for at least N iterations and at
  least S seconds but terminate if exceeding M seconds.`` (TF 1.13 and older:
  ``Running benchmark for N iterations``), runs, then logs its statistics on
  one line followed by a blank line.  The first phase is the warm-up, the
  second the real (REGULAR) runs; both are always printed, so a run without
  warm-up shows ``count=0``.
- A statistics line is ``Stat::OutputToStream``: ``count=0`` when empty,
  ``count=N curr=X`` when every value was the same (``count=1 curr=X``, or
  ``count=5 curr=X(all same)``), else ``count= first= curr= min= max= avg= std=``;
  some newer builds append `` p5= median= p95=``.  Values are integer
  microseconds except ``avg`` (a double, so 6 significant digits: ``1.23457e+06``
  above a second).
- The summary line, by version family (``format``):
  ``"tf1"``     ``Average inference timings in us: Warmup: W, Init: I, no stats: X``;
  ``"tf2.0"``   ``Average inference timings in us: Warmup: W, Init: I, Inference: X``
  (TF about 2.0-2.2; the Android app's variant runs ``Overall <memory>`` on
  straight after X);
  ``"current"`` ``Inference timings in us: Init: I, First inference: F, Warmup (avg): W, Inference (avg): X``.
- Builds from about TF 2.3 prefix every log line with ``INFO: `` / ``WARN: ``
  / ``ERROR: `` (and ``VERBOSE: `` from the runtime); a multi-line message
  (an op table) carries the prefix on its first line only.  Captured through
  ``adb logcat`` the lines carry logcat's prefix instead (``I tflite  : ``,
  ``01-02 03:04:05.678  1234  1234 I tflite  : ``, ``I/tflite  ( 1234): ``);
  all of these are stripped, as are glog-style ``I0102 03:04:05.678 123 x.cc:45] ``.
- With ``--enable_op_profiling=true`` the profiler prints tables
  (``Run Order``, ``Top by Computation Time``, ``Top by Memory Use``,
  ``Summary by node type``), each cell starting with a TAB and right-aligned,
  then ``Timings (microseconds): count=...`` (the total of the profiled runs),
  ``Memory (bytes): count=0`` and ``N nodes observed``.  Older builds (about
  TF 2.0) print one such block, with a ``[start]`` column, before the summary.
  Current builds print, after the summary, ``Profiling Info for Benchmark
  Initialization:`` (whose ``Timings`` line is the init profile, usually
  ``count=1 curr=X``) and ``Operator-wise Profiling Info for Regular Benchmark
  Runs:``; their tables have no ``[start]`` column and a 40-wide node type
  that may hold spaces (XNNPACK's ``Convolution (NHWC, QC8) IGEMM``).  Names
  are in brackets for TFLite ops (``[tensor]:12``) and bare for delegate ops
  (``Delegate/Add (ND, QS8):9``).

Command-line facts the runner needs (``benchmark_model --help`` of current builds):

- ``--num_runs`` (default 50) is only a *minimum*: the REGULAR phase runs while
  ``run < num_runs or elapsed < min_secs`` (``--min_secs``, default 1.0), and stops
  starting new runs once ``--max_secs`` (default 150) has passed.  Likewise the
  warm-up honours ``--warmup_runs`` (default 1) and ``--warmup_min_secs``
  (default 0.5).  To get exactly N timed runs and W warm-up runs pass
  ``--num_runs=N --min_secs=0 --warmup_runs=W --warmup_min_secs=0`` (and keep
  N runs well under ``--max_secs``).  TF 1.13 and older have no ``min_secs``:
  they run exactly ``--num_runs``.
- ``--enable_op_profiling=true`` adds the op tables (profiled runs are the
  REGULAR ones); ``--run_delay`` sleeps between runs; ``--num_threads`` sets
  the interpreter's threads; ``--use_xnnpack``/``--use_gpu``/``--use_nnapi``/
  ``--use_hexagon`` pick a delegate.

A text holding several runs (a log) is parsed for its last complete run.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from harness.parsers.text import NUMBER, ToolOutputError, split_lines, to_number

# ---------------------------------------------------------------- data model


@dataclass(frozen=True)
class RunStats:
    """One ``count= first= curr= min= max= avg= std=[ p5= median= p95=]`` line, in microseconds.

    Fields the line did not print are None (``count=1 curr=X`` has only ``curr``).
    ``all_same`` is True when the tool printed the degenerate form, which it does
    when every value was equal (then first = min = max = avg = curr, std = 0).
    """

    count: int
    first_us: float | None = None
    curr_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    avg_us: float | None = None
    std_us: float | None = None
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None
    all_same: bool = False

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OpRow:
    """A row of a ``Run Order`` / ``Top by ...`` table; ``start_ms`` is None where the table has no ``[start]``."""

    node_type: str
    start_ms: float | None
    first_ms: float
    avg_ms: float
    percent: float
    cdf_percent: float
    mem_kb: float
    times_called: int
    name: str

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class NodeTypeRow:
    """A row of ``Summary by node type``: ``count`` nodes of this type, ``avg_ms`` per run in all."""

    node_type: str
    count: int
    avg_ms: float
    percent: float
    cdf_percent: float
    mem_kb: float
    times_called: int

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TfliteBenchmarkResult:
    """What one ``benchmark_model`` run printed.

    ``init_us``, ``first_inference_us``, ``warmup_avg_us`` and ``inference_avg_us``
    come from the summary line (``first_inference_us`` only in the ``"current"``
    format).  ``warmup`` and ``inference`` are the statistics lines of the
    warm-up and REGULAR phases, ``init`` the ``Timings`` line of the
    initialisation profile and ``op_profile`` that of the op-profiled runs
    (present only with ``--enable_op_profiling``).  The tables are those of
    the REGULAR runs; empty lists where not printed.
    """

    init_us: float | None
    first_inference_us: float | None
    warmup_avg_us: float | None
    inference_avg_us: float | None
    inference: RunStats | None
    warmup: RunStats | None
    init: RunStats | None
    run_order: list[OpRow]
    by_node_type: list[NodeTypeRow]
    format: str
    top_by_time: list[OpRow] = field(default_factory=list)
    op_profile: RunStats | None = None

    @property
    def runs(self) -> int | None:
        """How many timed (REGULAR) runs: the inference line's count, else the op profile's."""
        if self.inference is not None:
            return self.inference.count
        if self.op_profile is not None:
            return self.op_profile.count
        return None

    def to_json(self) -> dict:
        """Summary times in microseconds, the run count, median/p5/p95 where printed, tables where present."""
        out: dict = {
            "tool": "benchmark_model",
            "format": self.format,
            "init_us": self.init_us,
            "first_inference_us": self.first_inference_us,
            "warmup_avg_us": self.warmup_avg_us,
            "inference_avg_us": self.inference_avg_us,
            "runs": self.runs,
            "warmup_runs": self.warmup.count if self.warmup is not None else None,
        }
        if self.inference is not None:
            for key in ("median_us", "p5_us", "p95_us"):
                value = getattr(self.inference, key)
                if value is not None:
                    out[key] = value
        for key in ("inference", "warmup", "init", "op_profile"):
            stats = getattr(self, key)
            out[key] = stats.to_json() if stats is not None else None
        for key in ("run_order", "top_by_time", "by_node_type"):
            rows = getattr(self, key)
            if rows:
                out[key] = [row.to_json() for row in rows]
        return out


# ---------------------------------------------------------------- lines

# Log prefixes put before a message: logcat (threadtime, brief, tag), glog /
# absl, a bare "I file.cc:12] ", then TFLite's own "INFO: " severity tag.
_LOG_PREFIX = re.compile(
    r"""^(?:
        \d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*:\s?
      | [VDIWEF]/[^(:]+\(\s*\d+\):\s?
      | [IWEF]\d{4}\s+\d{2}:\d{2}:\d{2}\.\d+\s+\d+\s+[^\]\s]+\]\s?
      | [VDIWEF]\s+[\w./-]+:\d+\]\s?
      | [VDIWEF]\s+[\w./-]+\s*:\s
    )?
    (?:(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG|FATAL):\s?)?""",
    re.VERBOSE,
)

_SUMMARY = re.compile(r"(?P<average>Average )?[Ii]nference timings in us:\s*(?P<body>.*)")
_SUMMARY_FIELD = re.compile(rf"(?P<key>[A-Za-z][A-Za-z ()]*?)\s*:\s*(?P<value>{NUMBER})")
_SUMMARY_KEYS = {
    "init": "init_us",
    "first inference": "first_inference_us",
    "warmup": "warmup_avg_us",
    "warmup (avg)": "warmup_avg_us",
    "inference": "inference_avg_us",
    "inference (avg)": "inference_avg_us",
    "no stats": "inference_avg_us",
}
_STARTING = re.compile(r"\bSTARTING!")
_STATS_START = re.compile(r"(?:^|(?<=\s))count=(\d+)")
_STATS_FIELD = re.compile(rf"(?<![\w.])(first|curr|min|max|avg|std|p5|median|p95)=({NUMBER})")
_TABLE_TITLE = re.compile(r"^=+\s*(?P<title>.*?)\s*=+$")
_INIT_SECTION = "Profiling Info for Benchmark Initialization"
_RUN_SECTION = "Profiling Info for Regular Benchmark Runs"

_NUM_CELL = re.compile(rf"^{NUMBER}%?$")
_N = rf"({NUMBER})"
# Space-separated rows (a table whose TABs were turned into spaces on the way).
_ROW_WITH_START = re.compile(rf"^\s*(\S.*?)\s+{_N}\s+{_N}\s+{_N}\s+{_N}%\s+{_N}%\s+{_N}\s+(\d+)(?:\s+(.*?))?\s*$")
_ROW_NO_START = re.compile(rf"^\s*(\S.*?)\s+{_N}\s+{_N}\s+{_N}%\s+{_N}%\s+{_N}\s+(\d+)(?:\s+(.*?))?\s*$")
_TYPE_ROW = re.compile(rf"^\s*(\S.*?)\s+(\d+)\s+{_N}\s+{_N}%\s+{_N}%\s+{_N}\s+(\d+)\s*$")


def strip_log_prefix(line: str) -> str:
    """``line`` without a logcat / glog / ``INFO: `` prefix, and without surrounding whitespace."""
    return _LOG_PREFIX.sub("", line.strip(), count=1).strip()


def _num(text: str) -> float:
    value = to_number(text.rstrip("%"))
    if value is None:
        raise ValueError(text)
    return value


# ---------------------------------------------------------------- statistics line


def parse_run_stats(text: str) -> RunStats:
    """Parse one statistics line (``count=... first=...``), with or without a label or log prefix before it."""
    match = _STATS_START.search(text)
    if match is None:
        raise ToolOutputError(f"no statistics in {text.strip()[:80]!r}: expected 'count=N ...' "
                              "as in 'count=50 first=... curr=... min=... max=... avg=... std=...'")
    values: dict[str, float | None] = {}
    rest = re.split(r"[\r\n]", text[match.end():], maxsplit=1)[0]
    for key, value in _STATS_FIELD.findall(rest):
        values.setdefault(f"{key}_us", to_number(value))
    count = int(match.group(1))
    all_same = "(all same)" in rest or (count >= 1 and set(values) == {"curr_us"})
    return RunStats(count=count, all_same=all_same, **values)


# ---------------------------------------------------------------- op tables


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.split("\t")]


def _parse_op_row(line: str, has_start: bool | None) -> OpRow | None:
    """An op row from TAB-separated cells (read from the right), else from space-separated text."""
    if "\t" in line:
        cells = _cells(line)
        if len(cells) < 8:
            return None
        name = cells[-1]
        numeric = 0
        for cell in reversed(cells[:-1]):
            if not _NUM_CELL.match(cell):
                break
            numeric += 1
        if numeric not in (6, 7) or (has_start is not None and numeric != (7 if has_start else 6)):
            return None
        node_type = cells[-2 - numeric]
        if not node_type:
            return None
        nums = cells[-1 - numeric:-1]
        try:
            start = _num(nums[0]) if numeric == 7 else None
            first, avg, pct, cdf, mem = (_num(v) for v in nums[-6:-1])
            calls = int(nums[-1])
        except ValueError:
            return None
        return OpRow(node_type, start, first, avg, pct, cdf, mem, calls, name)
    patterns = [_ROW_WITH_START, _ROW_NO_START] if has_start is None else [_ROW_WITH_START if has_start else _ROW_NO_START]
    for pattern in patterns:
        match = pattern.match(line)
        if match is None:
            continue
        groups = match.groups()
        node_type, name = groups[0], groups[-1] or ""
        nums = groups[1:-2]
        try:
            start = _num(nums[0]) if len(nums) == 6 else None
            first, avg, pct, cdf, mem = (_num(v) for v in nums[-5:])
            calls = int(groups[-2])
        except ValueError:
            continue
        return OpRow(node_type, start, first, avg, pct, cdf, mem, calls, name)
    return None


def _parse_type_row(line: str) -> NodeTypeRow | None:
    if "\t" in line:
        cells = [cell for cell in _cells(line)]
        while cells and not cells[0]:
            cells.pop(0)
        if len(cells) < 7 or not all(_NUM_CELL.match(c) for c in cells[-6:]) or _NUM_CELL.match(cells[-7]):
            return None
        node_type = cells[-7]
        nums = cells[-6:]
    else:
        match = _TYPE_ROW.match(line)
        if match is None:
            return None
        node_type, *nums = match.groups()
    try:
        return NodeTypeRow(node_type, int(nums[0]), _num(nums[1]), _num(nums[2]), _num(nums[3]), _num(nums[4]),
                           int(nums[5]))
    except ValueError:
        return None


_TABLE_KINDS = {
    "run order": "run_order",
    "top by computation time": "top_by_time",
    "top by memory use": "top_by_memory",
    "summary by node type": "by_node_type",
}


# ---------------------------------------------------------------- the whole output


def _segment(lines: list[str], clean: list[str]) -> tuple[int, int, int]:
    """(start, summary, end) line indices of the last complete run in the text."""
    summaries = [i for i, line in enumerate(clean) if _SUMMARY.search(line)]
    if not summaries:
        raise ToolOutputError(
            "benchmark_model output has no summary: expected a line 'Inference timings in us: Init: I, "
            "First inference: F, Warmup (avg): W, Inference (avg): X' (or, before TF 2.3, 'Average inference "
            "timings in us: Warmup: W, Init: I, Inference: X' / '..., no stats: X')")
    summary = summaries[-1]
    start = summaries[-2] + 1 if len(summaries) > 1 else 0
    starts = [i for i in range(start, summary) if _STARTING.search(clean[i])]
    if starts:
        start = starts[-1]
    return start, summary, len(lines)


def _parse_summary(line: str) -> tuple[dict[str, float | None], str]:
    match = _SUMMARY.search(line)
    assert match is not None
    values: dict[str, float | None] = {}
    keys = set()
    for field_match in _SUMMARY_FIELD.finditer(match.group("body")):
        key = " ".join(field_match.group("key").lower().split())
        keys.add(key)
        if key in _SUMMARY_KEYS:
            values.setdefault(_SUMMARY_KEYS[key], to_number(field_match.group("value")))
    if "inference_avg_us" not in values:
        raise ToolOutputError(f"benchmark_model summary line has no inference average: {line.strip()[:120]!r}")
    if match.group("average"):
        fmt = "tf1" if "no stats" in keys else "tf2.0"
    else:
        fmt = "current"
    return values, fmt


def parse_tflite_benchmark(text: str) -> TfliteBenchmarkResult:
    """Parse ``benchmark_model``'s output (stdout and stderr together, or a logcat capture)."""
    lines = split_lines(text)
    clean = [strip_log_prefix(line) for line in lines]
    start, summary_at, end = _segment(lines, clean)
    values, fmt = _parse_summary(clean[summary_at])

    bare: list[RunStats] = []
    init: RunStats | None = None
    op_profile: RunStats | None = None
    tables: dict[str | None, dict[str, list]] = {}
    section: str | None = None
    table: str | None = None
    has_start: bool | None = None

    for i in range(start, end):
        raw, line = lines[i], clean[i]
        if not line:
            table = None
            continue
        if _INIT_SECTION in line:
            section, table = "init", None
            continue
        if _RUN_SECTION in line:
            section, table = "run", None
            continue
        title = _TABLE_TITLE.match(line)
        if title is not None:
            kind = _TABLE_KINDS.get(title.group("title").lower())
            table, has_start = kind, None
            if kind is not None:
                tables.setdefault(section, {})[kind] = []
            continue
        if table is not None:
            if "[node type]" in line.lower():
                has_start = "[start]" in line.lower()
                continue
            cells = raw if "\t" in raw else line
            row = _parse_type_row(cells) if table == "by_node_type" else _parse_op_row(cells, has_start)
            if row is not None:
                tables[section][table].append(row)
                continue
            table = None
        stats_match = _STATS_START.search(line)
        if stats_match is None:
            continue
        label = line[:stats_match.start()].strip()
        if label.startswith("Memory"):
            continue
        if label.startswith("Timings"):
            stats = parse_run_stats(line)
            if section == "init":
                init = stats
            else:
                op_profile = stats
            continue
        if i < summary_at:
            bare.append(parse_run_stats(line))

    warmup = inference = None
    if len(bare) >= 2:
        warmup, inference = bare[-2], bare[-1]
    elif len(bare) == 1:
        # One phase's line only (an edited or cut log): attribute it by its average.
        only = bare[0]
        if (only.avg_us is not None and values.get("warmup_avg_us") is not None
                and only.avg_us == values.get("warmup_avg_us") != values.get("inference_avg_us")):
            warmup = only
        else:
            inference = only

    chosen = tables.get("run") or tables.get(None) or {}
    return TfliteBenchmarkResult(
        init_us=values.get("init_us"),
        first_inference_us=values.get("first_inference_us"),
        warmup_avg_us=values.get("warmup_avg_us"),
        inference_avg_us=values.get("inference_avg_us"),
        inference=inference,
        warmup=warmup,
        init=init,
        run_order=list(chosen.get("run_order", [])),
        by_node_type=list(chosen.get("by_node_type", [])),
        format=fmt,
        top_by_time=list(chosen.get("top_by_time", [])),
        op_profile=op_profile,
    )
