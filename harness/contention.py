"""Was this host quiet while it measured?  A probe of CPU contention around the timed runs, and its verdict.

A local measurement pins one thread to one core and times it by the wall
clock; anything else that runs on that core (another tenant, a second job)
stretches the timed runs, long ones (a whole network, descheduled mid-run)
more than short ones (one operator), so a contended run both reads slow and
disagrees with its own LUT.  The probe wraps every batch of timed runs of a
local CPU runner (:meth:`ContentionProbe.watch`) and reads three things over
exactly those intervals:

* **CPU share**: CPU time of the measuring thread (``time.thread_time``; with
  several intra-op threads the process's CPU time per thread) over wall time.
  A quiet pinned core gives ~1.0; two busy tenants on it give ~0.33.
* **Steal** (Linux, ``/proc/stat``): the share of the pinned cores' time the
  hypervisor gave to other virtual machines, which the CPU share may not show.
* **Load**: the 1-minute load average and the runnable tasks against the CPUs
  this process may use, reported for context (they count every core, and a
  busy core elsewhere does not slow ours).

:class:`ContentionReport` holds the figures, ``trusted`` and a one-line
``reason``; ``to_json()`` is what the commands put in their ``--json``.

May import: :mod:`harness.profiles` (which cores a profile pins).  Nothing else of the harness, never the optimizer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Below this share of its timed wall time on a CPU, the measuring thread lost more than a tenth of it to other
# tasks: the same threshold benchmarks/lut_fidelity.py warns at, because a tenth is the whole ±10% the LUT's
# network predictions are held to, and a network descheduled mid-run is stretched by about the time it lost.
CPU_SHARE_WARNING = 0.9
# Time stolen by the hypervisor stretches timed runs just as a tenant on the core does: the same tenth.
STEAL_WARNING = 0.1
# Below this many seconds of timed runs a share says little (one 4 ms time slice is 0.4% of a second, but a
# handful of short batches can each land on a burst), and the figures rest on little anyway: no verdict.
MIN_JUDGED_S = 1.0
PROC_STAT = Path("/proc/stat")
PROC_LOADAVG = Path("/proc/loadavg")
TICK_FIELDS = 8  # user nice system idle iowait irq softirq steal (guest time is counted in user already)
STEAL_FIELD = 7
# /proc/stat counts in ticks of 10 ms and costs ~45 µs a read: around a batch of one 200 µs run (a cold-cache
# sweep times runs one by one) two reads would cost more than the run and see no tick.  Batches back to back are
# one stretch, read at most every TICKS_EVERY_S; a pause longer than that between batches starts a new stretch.
TICKS_EVERY_S = 0.05


@dataclass(frozen=True)
class ContentionReport:
    """How contended the host was during the timed runs of one measuring step, and whether to trust its figures."""

    checked: bool  # False: not measured on this host's CPU (a phone, a GPU), nothing to judge here
    trusted: bool
    reason: str  # one line
    timed_s: float = 0.0  # wall seconds of timed runs the figures cover
    cpu_s: float = 0.0  # CPU seconds the measuring thread got in them (per thread with several)
    steal_ticks: int = 0  # of the pinned cores, in /proc/stat's ticks
    total_ticks: int = 0
    load_1min: float | None = None
    runnable: int | None = None  # tasks runnable at the end (this one included)
    cpus: int | None = None  # CPUs this process may use
    cores: tuple[int, ...] = ()  # the pinned cores
    threads: int = 1

    @property
    def cpu_share(self) -> float | None:
        return self.cpu_s / self.timed_s if self.timed_s > 0 else None

    @property
    def steal_share(self) -> float | None:
        return self.steal_ticks / self.total_ticks if self.total_ticks > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {"checked": self.checked, "trusted": self.trusted, "reason": self.reason,
                "cpu_share": self.cpu_share, "cpu_share_warning": CPU_SHARE_WARNING,
                "steal_share": self.steal_share, "steal_warning": STEAL_WARNING, "timed_s": self.timed_s,
                "load_1min": self.load_1min, "runnable": self.runnable, "cpus": self.cpus,
                "cores": list(self.cores), "threads": self.threads}


def judge(timed_s: float, cpu_share: float | None, steal_share: float | None, load_1min: float | None = None,
          cpus: int | None = None, cores: Sequence[int] = ()) -> tuple[bool, str]:
    """The verdict on a step's figures: (trusted, one-line reason).  Pure, so the rules are tested on readings."""
    where = f"core {', '.join(map(str, cores))}" if cores else "its core"
    if timed_s < MIN_JUDGED_S:
        return True, f"not judged: {timed_s:.2f} s of timed runs is too little to tell contention"
    problems = []
    if cpu_share is not None and cpu_share < CPU_SHARE_WARNING:
        problems.append(f"the measuring thread was on a CPU {cpu_share:.0%} of its timed wall time "
                        f"(other tasks shared {where}; below {CPU_SHARE_WARNING:.0%} latencies read high)")
    if steal_share is not None and steal_share > STEAL_WARNING:
        problems.append(f"the hypervisor stole {steal_share:.0%} of {where}'s time (over {STEAL_WARNING:.0%})")
    load = f"; load {load_1min:.1f} on {cpus} CPUs" if load_1min is not None and cpus else ""
    if problems:
        return False, "host contended, figures untrustworthy: " + "; ".join(problems) + load + \
            "; measure again on a quiet machine"
    steal = f", {steal_share:.0%} stolen" if steal_share is not None else ""
    share = "" if cpu_share is None else f"measuring thread on a CPU {cpu_share:.0%} of {timed_s:.1f} s timed{steal}"
    return True, f"quiet: {share}{load}"


def read_core_ticks(cores: Sequence[int], path: Path = PROC_STAT) -> tuple[int, int] | None:
    """(steal, total) ticks of ``cores`` summed from ``/proc/stat``; None where there is no such file (not Linux)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cores}
    steal = total = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name in wanted:
            ticks = [int(v) for v in rest.split()[:TICK_FIELDS]]
            total += sum(ticks)
            steal += ticks[STEAL_FIELD] if len(ticks) > STEAL_FIELD else 0
    return steal, total


def read_load(path: Path = PROC_LOADAVG) -> tuple[float | None, int | None]:
    """(1-minute load average, runnable tasks now): ``/proc/loadavg`` where it exists, else ``os.getloadavg``."""
    try:
        fields = path.read_text().split()
        return float(fields[0]), int(fields[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        pass
    try:
        return os.getloadavg()[0], None
    except (OSError, AttributeError):
        return None, None


def _allowed_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count()


class ContentionProbe:
    """Accumulates the readings of the timed intervals (:meth:`timed`, :meth:`watch`), then :meth:`report` judges them.

    Enter :meth:`timed` on the measuring thread.  The readers and clocks are
    parameters so that tests drive the probe with chosen readings.
    """

    def __init__(self, cores: Sequence[int], threads: int = 1, *, clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] | None = None,
                 read_ticks: Callable[[Sequence[int]], tuple[int, int] | None] = read_core_ticks,
                 read_load: Callable[[], tuple[float | None, int | None]] = read_load,
                 cpus: Callable[[], int | None] = _allowed_cpus) -> None:
        self.cores, self.threads = tuple(cores), max(1, int(threads))
        self.checked, self._unchecked_reason = True, ""
        self._clock = clock
        # One thread computes on the calling thread: its own CPU time.  With several, ONNX Runtime's pool does
        # part of the work: the process's CPU time, per thread (the calling thread spins while it waits).
        if cpu_clock is None:
            cpu_clock = time.thread_time if self.threads == 1 else (lambda: time.process_time() / self.threads)
        self._cpu_clock, self._read_ticks, self._read_load, self._cpus = cpu_clock, read_ticks, read_load, cpus
        self.timed_s = self.cpu_s = 0.0
        self.steal_ticks = self.total_ticks = 0
        self._ticks: tuple[int, int] | None = None  # the last reading of this stretch of batches, and when
        self._ticks_at = self._batch_end = -float("inf")

    @classmethod
    def unchecked(cls, reason: str) -> "ContentionProbe":
        """A probe that reads nothing: the measurement does not run on this host's CPU."""
        probe = cls(())
        probe.checked, probe._unchecked_reason = False, reason
        return probe

    @classmethod
    def for_profile(cls, profile: Any) -> "ContentionProbe":
        """The probe for a device profile: a local CPU runtime is checked on its pinned cores, anything else is not."""
        from harness.profiles import pinned_cores

        spec = profile.runtime
        if profile.transport.type != "local":
            return cls.unchecked(f"not checked: {profile.name} measures over {profile.transport.type}, "
                                 f"not on this host's CPU")
        if spec.provider != "cpu":
            return cls.unchecked(f"not checked: {profile.name} measures on {spec.provider}, not on a pinned CPU core")
        return cls(pinned_cores(spec), spec.threads)

    @contextmanager
    def timed(self) -> Iterator[None]:
        """Count the enclosed block as timed runs (call on the measuring thread)."""
        if not self.checked:
            yield
            return
        start = self._clock()
        if self._ticks is None or start - self._batch_end > TICKS_EVERY_S:  # a new stretch of batches
            self._ticks, self._ticks_at = self._read_ticks(self.cores), start
        wall0, cpu0 = start, self._cpu_clock()
        try:
            yield
        finally:
            cpu1, wall1 = self._cpu_clock(), self._clock()
            self.timed_s += wall1 - wall0
            self.cpu_s += cpu1 - cpu0
            if wall1 - self._ticks_at >= TICKS_EVERY_S:
                ticks = self._read_ticks(self.cores)
                if ticks is not None and self._ticks is not None:
                    self.steal_ticks += ticks[0] - self._ticks[0]
                    self.total_ticks += ticks[1] - self._ticks[1]
                self._ticks, self._ticks_at = ticks, wall1
            self._batch_end = wall1

    def watch(self, op: Any) -> Any:
        """``op`` (a prepared op) with each batch of timed runs counted by this probe; ``op`` itself when unchecked."""
        return _WatchedOp(op, self) if self.checked else op

    def watching(self, prepare: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """A runner's ``prepare`` whose ops this probe watches (for :func:`harness.measurement.measure_prepared`)."""
        return lambda item: self.watch(prepare(item))

    def report(self) -> ContentionReport:
        if not self.checked:
            return ContentionReport(checked=False, trusted=True, reason=self._unchecked_reason)
        load, runnable = self._read_load()
        cpus = self._cpus()
        steal_share = self.steal_ticks / self.total_ticks if self.total_ticks > 0 else None
        cpu_share = self.cpu_s / self.timed_s if self.timed_s > 0 else None
        trusted, reason = judge(self.timed_s, cpu_share, steal_share, load, cpus, self.cores)
        return ContentionReport(checked=True, trusted=trusted, reason=reason, timed_s=self.timed_s, cpu_s=self.cpu_s,
                                steal_ticks=self.steal_ticks, total_ticks=self.total_ticks, load_1min=load,
                                runnable=runnable, cpus=cpus, cores=self.cores, threads=self.threads)


class _WatchedOp:
    """A prepared op whose ``take_batch`` (warm-up and timed runs) runs inside its probe's :meth:`~ContentionProbe.timed`."""

    def __init__(self, op: Any, probe: ContentionProbe) -> None:
        self._op, self._probe = op, probe

    def take_batch(self, settings: Any, warmup_runs: int) -> Any:
        with self._probe.timed():
            return self._op.take_batch(settings, warmup_runs)

    def close(self) -> None:
        self._op.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._op, name)


def summarize(phases: Mapping[str, ContentionReport]) -> dict[str, Any]:
    """One verdict over a job's measuring steps: trusted only when each step is (a contended step spoils its own
    figures, however quiet the others were); the reason names the untrusted steps."""
    untrusted = [f"{name}: {report.reason}" for name, report in phases.items() if not report.trusted]
    if untrusted:
        reason = "; ".join(untrusted)
    else:
        judged = [f"{name}: {report.reason}" for name, report in phases.items() if report.checked]
        reason = "; ".join(judged) if judged else "not checked: nothing measured on this host's CPU"
    return {"trusted": not untrusted, "reason": reason, "phases": {name: r.to_json() for name, r in phases.items()}}
