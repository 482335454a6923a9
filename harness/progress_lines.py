"""Progress of long steps: a rich bar on a terminal, plain timestamped lines in a log.

A bar is redrawn in place, which a log file cannot show: with stderr to a file
a 30-minute step printed nothing at all.  :func:`track` is the one progress
display every long step uses (sweeps, network measurements, trainings,
NetAdapt's proposals): on a terminal it is the rich bar as before; otherwise
the step goes on a process-wide stack of activities (:class:`ProgressLines`)
and a line is printed at most every ``CHAMELEON_PROGRESS_EVERY_S`` seconds
(default 20), and by a heartbeat thread at least that often while anything is
on the stack, even when no progress callback comes (one long training, a GP
fit, the search)::

    12:04:31 2/4 accuracy predictor › training chamnet-mobile-mini on digits: 12/48 (25%) in 2 min 10 s, 11 s each, ETA 6 min 36 s — 48 px: 0.912 in 95 s
    12:04:51 still running: 3/4 search, 45 s

Nothing is printed for a step shorter than the interval, so a quick failure
stays one line.  Imports rich only to draw a bar.

May import: :mod:`harness.errors`.  Never the optimizer.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness.errors import ChameleonError

EVERY_VARIABLE = "CHAMELEON_PROGRESS_EVERY_S"
# A reader of a log should never wait 30 s for a sign of life; 20 s leaves room for a late wake-up of the
# heartbeat thread (the main thread holding the interpreter lock in a long call) and keeps a 40-minute job at
# about 120 lines.
DEFAULT_EVERY_S = 20.0
SEPARATOR = " › "


def every_s() -> float:
    """The interval between lines: ``CHAMELEON_PROGRESS_EVERY_S`` when set (tests use a fraction of a second)."""
    text = os.environ.get(EVERY_VARIABLE, "").strip()
    if not text:
        return DEFAULT_EVERY_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 86400:
        raise ChameleonError(f"{EVERY_VARIABLE}={text!r}: give the seconds between progress lines, "
                             f"a number above 0 (default {DEFAULT_EVERY_S:g})")
    return value


def duration(seconds: float) -> str:
    """``45 s``, ``2 min 10 s``, ``1 h 05 min``: how long, readably."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def progress_line(labels: list[str], elapsed_s: float, done: int | None, total: int | None, counting_s: float,
                  detail: str = "") -> str:
    """One line (without its timestamp): what, done/total, rate and ETA; or ``still running`` without counts."""
    what = SEPARATOR.join(labels)
    if total is None or total <= 0 or done is None:
        return f"still running: {what}, {duration(elapsed_s)}"
    text = f"{what}: {done}/{total} ({done / total:.0%}) in {duration(elapsed_s)}"
    if done > 0 and counting_s > 0:
        rate = done / counting_s
        text += f", {rate:.1f}/s" if rate >= 1 else f", {duration(1 / rate)} each"
        text += f", ETA {duration((total - done) / rate)}"
    else:
        text += ", none finished yet"
    return text + (f" — {detail}" if detail else "")


@dataclass
class Activity:
    """One step on the stack: its label, where it writes, and its counts so far."""

    label: str
    write: Callable[[str], None]
    started: float
    done: int | None = None
    total: int | None = None
    counting_since: float | None = None  # the first count: rates start here, not at the step's setup
    detail: str = ""
    printed: bool = False


def _local_time() -> str:
    return time.strftime("%H:%M:%S")


class ProgressLines:
    """The stack of activities and the rule for their lines: one at most every ``every`` seconds, the innermost
    activity's, and (with ``heartbeat``) a thread that prints one when that long has passed without.

    ``clock`` and ``stamp`` are parameters so that tests drive it with a fake clock (and call :meth:`tick`).
    """

    def __init__(self, every: Callable[[], float] = every_s, clock: Callable[[], float] = time.monotonic,
                 stamp: Callable[[], str] = _local_time, heartbeat: bool = True) -> None:
        self._every, self._clock, self._stamp, self._heartbeat = every, clock, stamp, heartbeat
        self._stack: list[Activity] = []
        self._lock = threading.RLock()
        self._interval = DEFAULT_EVERY_S
        self._last_line = 0.0
        self._thread: _Heartbeat | None = None

    # ---- the stack
    def push(self, label: str, write: Callable[[str], None]) -> Activity:
        with self._lock:
            now = self._clock()
            if not self._stack:
                self._interval = self._every()
                self._last_line = now  # the first line comes one interval after the first step starts
            activity = Activity(label=label, write=write, started=now)
            self._stack.append(activity)
            if self._heartbeat and self._thread is None:
                self._thread = _Heartbeat(self)
                self._thread.start()
            return activity

    def pop(self, activity: Activity) -> None:
        with self._lock:
            if activity in self._stack:
                labels = self._labels(activity)
                self._stack.remove(activity)
                # A step that showed in the log says that it ended; a short one stays out of it.
                if activity.printed and activity.total:
                    took = duration(self._clock() - activity.started)
                    self._print(activity, f"{SEPARATOR.join(labels)}: {activity.done}/{activity.total} done in {took}"
                                if activity.done == activity.total else
                                f"{SEPARATOR.join(labels)}: stopped at {activity.done}/{activity.total} after {took}")
            thread = self._thread if not self._stack else None
            if thread is not None:
                self._thread = None
        if thread is not None:
            thread.stop()

    def update(self, activity: Activity, done: int, total: int | None, detail: str = "") -> None:
        with self._lock:
            if activity.counting_since is None:
                activity.counting_since = self._clock()
            activity.done, activity.total, activity.detail = done, total, detail
        self.tick()

    def relabel(self, activity: Activity, label: str) -> None:
        """A new step under the same activity (the main job's steps): its own label and clock."""
        with self._lock:
            activity.label, activity.started = label, self._clock()
            activity.done = activity.total = activity.counting_since = None
            activity.detail = ""

    # ---- the lines
    def seconds_until_due(self) -> float | None:
        with self._lock:
            if not self._stack:
                return None
            return max(0.0, self._last_line + self._interval - self._clock())

    def tick(self) -> None:
        """Print the innermost activity's line if an interval has passed since the last line."""
        with self._lock:
            if not self._stack:
                return
            now = self._clock()
            if now - self._last_line < self._interval:
                return
            activity = self._stack[-1]
            counting = now - activity.counting_since if activity.counting_since is not None else 0.0
            line = progress_line(self._labels(activity), now - activity.started, activity.done, activity.total,
                                 counting, activity.detail)
            self._print(activity, line)

    def _labels(self, activity: Activity) -> list[str]:
        upto = self._stack[:self._stack.index(activity) + 1] if activity in self._stack else [activity]
        return [a.label for a in upto if a.label]

    def _print(self, activity: Activity, line: str) -> None:
        self._last_line = self._clock()
        activity.printed = True
        activity.write(f"{self._stamp()} {line}")


class _Heartbeat(threading.Thread):
    """Ticks :class:`ProgressLines` when a line is due, until stopped (a daemon: it never holds the process)."""

    def __init__(self, lines: ProgressLines) -> None:
        super().__init__(name="chameleon-progress-lines", daemon=True)
        self._lines, self._stopped = lines, threading.Event()

    def run(self) -> None:
        while True:
            wait = self._lines.seconds_until_due()
            if wait is None or self._stopped.wait(max(wait, 0.01)):
                return
            try:
                self._lines.tick()
            except Exception:  # noqa: BLE001: stderr closed under us; a progress line is never worth a crash
                return

    def stop(self) -> None:
        self._stopped.set()


LINES = ProgressLines()  # the process's one stack: nested steps (a sweep inside the main job) share it


# ------------------------------------------------------------------ the display
class Tracker:
    """What a :func:`track` block yields: ``tracker(done, total, detail)`` reports progress; ``relabel`` starts
    a new step under the same display.  Extra positional arguments are ignored, so it serves as any of the
    harness's progress callbacks (``(done, total, signature)``, ``(done, total, path)``)."""

    def __init__(self, describe: Callable[[Any], str] | None = None) -> None:
        self._describe = describe

    def __call__(self, done: int, total: int | None = None, detail: Any = None, *_: Any) -> None:
        self.show(done, total, self._describe(detail) if self._describe and detail is not None else "")

    def show(self, done: int, total: int | None, detail: str) -> None:
        pass

    def relabel(self, label: str) -> None:
        pass


class _BarTracker(Tracker):
    def __init__(self, console: Any, label: str, describe: Callable[[Any], str] | None, indent: str, bold: bool,
                 transient: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        super().__init__(describe)
        columns = [TextColumn(indent + ("[bold]" if bold else "") + "{task.description}"), BarColumn(),
                   MofNCompleteColumn()]
        if describe is not None:
            columns.append(TextColumn("{task.fields[detail]}", style="dim"))
        columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
        self.bar = Progress(*columns, console=console, transient=transient)
        self.task = self.bar.add_task(label, total=None, detail="")

    def show(self, done: int, total: int | None, detail: str) -> None:
        # The bar appears with the first count: after the step has checked its inputs and knows its total.
        if not self.bar.live.is_started:
            self.bar.start()
        self.bar.update(self.task, completed=done, total=total, detail=detail)

    def relabel(self, label: str) -> None:
        self.bar.update(self.task, description=label)

    def close(self) -> None:
        if self.bar.live.is_started:
            self.bar.stop()


class _LineTracker(Tracker):
    def __init__(self, lines: ProgressLines, activity: Activity, describe: Callable[[Any], str] | None) -> None:
        super().__init__(describe)
        self.lines, self.activity = lines, activity

    def show(self, done: int, total: int | None, detail: str) -> None:
        self.lines.update(self.activity, done, total, detail)

    def relabel(self, label: str) -> None:
        self.lines.relabel(self.activity, label)


@contextmanager
def track(label: str, console: Any, *, describe: Callable[[Any], str] | None = None, bar: bool = True,
          indent: str = "", bold: bool = False, transient: bool = False,
          lines: ProgressLines | None = None) -> Iterator[Tracker]:
    """Show the progress of the enclosed step on ``console`` (rich, stderr): see the module docstring.

    ``console`` None: nothing is shown.  ``describe`` turns a callback's
    detail (a signature, a path) into the text after the counts; without it
    details are not shown.  ``bar=False`` (a whole job's steps): no bar on a
    terminal, only the lines and heartbeat in a log.
    """
    if console is None:
        yield Tracker()
        return
    if getattr(console, "is_terminal", False):
        if not bar:
            yield Tracker()
            return
        tracker = _BarTracker(console, label, describe, indent, bold, transient)
        try:
            yield tracker
        finally:
            tracker.close()
        return
    lines = lines or LINES

    def write(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    activity = lines.push(label, write)
    try:
        yield _LineTracker(lines, activity, describe)
    finally:
        lines.pop(activity)
