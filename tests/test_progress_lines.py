"""Progress that reaches a log (issue 16, point 3): plain timestamped lines at least every interval, a heartbeat
where no progress comes, nothing for a short step, the rich bar untouched on a terminal."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from harness.errors import ChameleonError
from harness.progress_lines import EVERY_VARIABLE, ProgressLines, duration, every_s, progress_line, track


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(every: float = 30.0) -> tuple[ProgressLines, FakeClock, list[tuple[float, str]]]:
    clock = FakeClock()
    printed: list[tuple[float, str]] = []
    lines = ProgressLines(every=lambda: every, clock=clock, stamp=lambda: "12:00:00", heartbeat=False)
    return lines, clock, printed


def _writer(clock: FakeClock, printed: list[tuple[float, str]]):
    return lambda text: printed.append((clock.now, text))


def test_a_step_shorter_than_the_interval_prints_nothing() -> None:
    lines, clock, printed = _lines()
    step = lines.push("sweep", _writer(clock, printed))
    for done in range(10):
        clock.now += 2.9
        lines.update(step, done, 10)
        lines.tick()
    lines.pop(step)
    assert printed == []  # a quick failure stays one line on stderr


def test_a_line_at_least_every_interval_with_or_without_progress() -> None:
    lines, clock, printed = _lines(every=30.0)
    write = _writer(clock, printed)
    started = clock.now
    job = lines.push("optimize pipeline", write)
    # 100 s without any progress callback (a GP fit), then a training step whose updates come in bursts,
    # with a 95 s stretch of none (one long training); the heartbeat ticks each second as the thread would.
    updates = {130: 0, 131: 1, 132: 2, 250: 3, 251: 4, 252: 5, 400: 6}
    training = None
    for second in range(1, 500):
        clock.now = started + second
        if second == 100:
            lines.relabel(job, "step 2/4: accuracy predictor")
            training = lines.push("training", write)
        if training is not None and second in updates:
            lines.update(training, updates[second], 6, "32 px: 0.91")
        lines.tick()
    lines.pop(training)
    lines.pop(job)
    times = [started] + [t for t, _ in printed]
    assert max(b - a for a, b in zip(times, times[1:])) <= 30.0
    assert all(text.startswith("12:00:00 ") for _, text in printed)
    assert any("still running: optimize pipeline" in text for _, text in printed)
    assert any("step 2/4: accuracy predictor › training: 5/6" in text for _, text in printed)
    assert printed[-1][1].endswith("training: 6/6 done in 6 min 39 s")


def test_progress_line_says_what_done_total_rate_and_eta() -> None:
    line = progress_line(["sweep xeon · smoke"], 62.0, 30, 120, 60.0, "conv2d 3x8x8→16 fp32")
    assert line == "sweep xeon · smoke: 30/120 (25%) in 1 min 2 s, 2.0 s each, ETA 3 min 0 s — conv2d 3x8x8→16 fp32"
    assert progress_line(["sweep"], 10.0, 50, 100, 10.0) == "sweep: 50/100 (50%) in 10 s, 5.0/s, ETA 10 s"
    assert progress_line(["training"], 40.0, 0, 8, 40.0) == "training: 0/8 (0%) in 40 s, none finished yet"
    assert progress_line(["job", "step 3/4: EES"], 45.0, None, None, 0.0) == "still running: job › step 3/4: EES, 45 s"


def test_durations_read_as_a_person_writes_them() -> None:
    assert [duration(s) for s in (0.25, 45, 130, 3900)] == ["0.2 s", "45 s", "2 min 10 s", "1 h 05 min"]


def test_an_interrupted_step_that_showed_says_where_it_stopped() -> None:
    lines, clock, printed = _lines(every=5.0)
    step = lines.push("measure networks", _writer(clock, printed))
    lines.update(step, 0, 10)
    clock.now += 6
    lines.update(step, 3, 10)
    lines.pop(step)
    assert printed[-1][1] == "12:00:00 measure networks: stopped at 3/10 after 6.0 s"


def test_the_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EVERY_VARIABLE, raising=False)
    assert every_s() == 20.0 < 30.0  # the default leaves room under the 30 s a log reader may wait
    monkeypatch.setenv(EVERY_VARIABLE, "0.5")
    assert every_s() == 0.5
    for bad in ("0", "-3", "soon", "nan"):
        monkeypatch.setenv(EVERY_VARIABLE, bad)
        with pytest.raises(ChameleonError, match=EVERY_VARIABLE):
            every_s()


def test_the_heartbeat_thread_prints_while_the_main_thread_is_busy() -> None:
    printed: list[str] = []
    lines = ProgressLines(every=lambda: 0.05)
    step = lines.push("a long epoch", printed.append)
    deadline = time.monotonic() + 5
    while len(printed) < 3 and time.monotonic() < deadline:
        sum(range(10_000))  # busy, with no progress callback
    lines.pop(step)
    assert len(printed) >= 3 and all("still running: a long epoch" in p for p in printed)
    count = len(printed)
    time.sleep(0.2)
    assert len(printed) == count  # the thread stops with the last step


def test_in_a_log_track_writes_plain_lines_and_on_a_terminal_the_bar() -> None:
    clock = FakeClock()
    lines = ProgressLines(every=lambda: 1.0, clock=clock, stamp=lambda: "12:00:00", heartbeat=False)
    log = io.StringIO()
    with track("sweep", Console(file=log, width=200), describe=str, lines=lines) as progress:
        progress(0, 4, None)
        clock.now += 1.5
        progress(2, 4, "conv")
    assert log.getvalue().splitlines()[0].startswith("12:00:00 sweep: 2/4 (50%) in 1.5 s")
    assert "\x1b[" not in log.getvalue()

    terminal = io.StringIO()
    with track("sweep", Console(file=terminal, force_terminal=True, width=120), describe=str, lines=lines) as progress:
        progress(0, 4, None)
        progress(4, 4, "conv")
    assert "still running" not in terminal.getvalue() and "12:00:00" not in terminal.getvalue()
    assert "4/4" in terminal.getvalue()  # the rich bar, drawn in place
    assert lines.seconds_until_due() is None  # nothing went on the stack of log lines


def test_no_console_shows_nothing() -> None:
    with track("sweep", None) as progress:
        progress(1, 2, "x")
        progress.relabel("other")


# --------------------------------------------------------------- real runs, stderr to a file
STEADY_PROFILE = """\
name: steadycpu
description: local CPU profile whose ops take 0.4 s each, for progress and contention tests
transport: {type: local}
runtime: {name: onnxruntime, provider: cpu, threads: 1, cores: auto}
dtypes: [fp32, int8]
measurement: {warmup_runs: 1, runs: 3, min_timed_s: 0.4, max_runs: 1000000, rounds: 2, interleave_group: 4, cv_threshold: 10.0, max_attempts: 1}
"""
STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d) ")


def stamped_seconds(log: str) -> list[int]:
    found = [STAMP.match(line) for line in log.splitlines()]
    return [int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) for m in found if m]


@pytest.mark.slow
def test_a_sweep_with_stderr_to_a_file_prints_a_line_every_interval(tmp_path: Path, small_plan: Path) -> None:
    profile = tmp_path / "steadycpu.yaml"
    profile.write_text(STEADY_PROFILE)
    log = tmp_path / "sweep.log"
    with log.open("w") as stderr:
        done = subprocess.run([sys.executable, "-m", "harness", "sweep", "--device", str(profile), "--plan", str(small_plan),
                               "--out", str(tmp_path / "lut.parquet"), "--json"], stdout=subprocess.PIPE, stderr=stderr,
                              text=True, timeout=240, stdin=subprocess.DEVNULL, env={**os.environ, EVERY_VARIABLE: "1"})
    text = log.read_text()
    assert done.returncode == 0, text
    stamps = stamped_seconds(text)
    # 15 ops of 0.4 s: several seconds, each with a line; stamps are whole seconds, so 1 s apart reads as 1 or 2.
    assert len(stamps) >= 4, text
    assert max(b - a for a, b in zip(stamps, stamps[1:])) <= 2, text
    assert re.search(r"steadycpu · small: \d+/15 \(\d+%\)", text), text
    assert "steadycpu · small: 15/15 done in" in text
    assert "contention" in json.loads(done.stdout)["sweep"]
