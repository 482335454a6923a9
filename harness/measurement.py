"""How one operator is timed: warm-up, timed runs, rounds, when to stop, the host's state around them.

The statistics are pure functions (:mod:`harness.run_statistics`); the timing loop takes the thing to run as a
plain callable and the clock as a parameter, so the same method serves every
local runner and tests can drive it without a device.  A runner prepares ops
(:class:`PreparedOp`: anything that can take a batch of timed runs — a local
session, or a phone running ``benchmark_model`` with its own per-run samples)
and :func:`measure_interleaved` schedules their rounds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

import numpy as np

from harness.run_statistics import (CONFIDENCE_Z, Batch, TimingStats, ToolSummary, combine_rounds,  # noqa: F401
                                    median_confidence_interval, summarize)

T = TypeVar("T")  # what a runner prepares: an operator signature, a model file


@dataclass(frozen=True)
class MeasurementSettings:
    """The measurement method; device profiles override these per device.

    Each op is timed in ``rounds`` rounds, interleaved with the other ops of its
    group of ``interleave_group`` signatures, so that a burst of interference
    from other tenants (seconds long on a shared machine) slows one round of
    many ops rather than every run of a few; the op's median is the median of
    its round medians.  Within the op's rounds, ``runs`` is a minimum: short
    ops are timed until ``min_timed_s`` of timed runs have accumulated (as
    benchmark_model's ``--min_secs``).  Warm-up stops after ``warmup_runs`` runs
    or ``warmup_max_s`` seconds, whichever comes first (at least one run); later
    rounds re-warm with one run.  An op whose robust CV stays above
    ``cv_threshold`` gets up to ``max_attempts - 1`` extra rounds.

    With ``precision`` > 0 the stopping rule is adaptive instead: the first
    ``rounds`` rounds are short (``min_timed_s`` is then the op's whole
    minimum), and an op gets extra rounds until the 95% confidence interval of
    its median is within ± ``precision`` of it (distribution-free, from the
    order statistics of its pooled runs) or its caps are reached; its median
    is then the pooled median (rounds differ in size).  ``network_cycles``
    times whole networks (not ops) run by run in shuffled cycles, as
    ``cold_cache`` times ops.  ``exclude_descheduled``
    and ``reference_kernel`` make the timing drift- and contention-proof; see
    :func:`time_callable` and :func:`measure_interleaved`.
    """

    warmup_runs: int = 5
    warmup_max_s: float = 0.01
    runs: int = 11
    min_timed_s: float = 0.15
    max_runs: int = 3000
    rounds: int = 3
    interleave_group: int = 24
    cv_threshold: float = 0.10
    max_attempts: int = 3
    # Adaptive stopping (0: off, the fixed method above).  After ``rounds`` rounds, an op whose median is not yet
    # known to ± ``precision`` (relative half-width of its 95% confidence interval, at least ``runs`` runs) gets
    # extra rounds sized to what its spread needs, up to ``max_attempts - 1`` of them and ``max_timed_s`` of runs.
    precision: float = 0.0
    max_timed_s: float = 1.0
    # Drop and repeat runs in which the measuring thread was off its CPU (descheduled, or its time stolen by the
    # hypervisor), read from the thread's CPU clock; only runners that compute on the calling thread can tell.
    exclude_descheduled: bool = False
    # Time a fixed reference kernel at least every ``reference_every_s`` while timing, wait (up to
    # ``reference_wait_s`` a batch) for it to read within ``reference_tolerance`` of the LUT's baseline (the
    # host's fast state) before a batch, and keep only the batches whose readings on both sides are; the others
    # are taken again in extra rounds (``max_attempts``).
    reference_kernel: bool = False
    reference_tolerance: float = 0.03
    reference_every_s: float = 0.01
    reference_wait_s: float = 0.1
    # Time every run cold: one run of each op of the group in turn (a cycle, shuffled), so each op's weights and
    # activations come from memory as they do inside a network, not from the caches its own previous run warmed;
    # each run is then its own batch between reference readings (held to the fast state run by run).  ``runs``
    # is then the minimum number of cycles; the adaptive rule adds cycles for the ops short of ``precision``.
    cold_cache: bool = False
    # Time whole networks (harness.networks.timing) as cold_cache times ops: one run of each network of the group
    # in turn, shuffled cycle by cycle, each run held to the fast state between reference readings.  A network's
    # batch of back-to-back runs spans tens of milliseconds, long enough for the host's state to change inside it
    # while the readings around it saw none; one run of a few milliseconds is bracketed closely.
    network_cycles: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value, expected = getattr(self, f.name), f.type
            if expected in (bool, "bool"):
                if not isinstance(value, bool):
                    raise ValueError(f"{f.name} must be true or false, got {value!r}")
                continue
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not numeric or (expected in (int, "int") and not isinstance(value, int)):
                raise ValueError(f"{f.name} must be {'an integer' if expected in (int, 'int') else 'a number'}, got {value!r}")
        problems = []
        if not (math.isfinite(self.precision) and 0 <= self.precision < 1):
            problems.append(f"precision must be in [0, 1) (0: fixed method), got {self.precision}")
        if not (math.isfinite(self.reference_tolerance) and self.reference_tolerance >= 0):
            problems.append(f"reference_tolerance must be >= 0 (0: read the host, hold nothing), got {self.reference_tolerance}")
        if not (math.isfinite(self.reference_every_s) and self.reference_every_s >= 0):
            problems.append(f"reference_every_s must be >= 0, got {self.reference_every_s}")
        if not (math.isfinite(self.reference_wait_s) and self.reference_wait_s >= 0):
            problems.append(f"reference_wait_s must be >= 0, got {self.reference_wait_s}")
        if not (math.isfinite(self.max_timed_s) and self.max_timed_s > 0):
            problems.append(f"max_timed_s must be > 0, got {self.max_timed_s}")
        if self.warmup_runs < 0:
            problems.append(f"warmup_runs must be >= 0, got {self.warmup_runs}")
        if self.runs < 1:
            problems.append(f"runs must be >= 1, got {self.runs}")
        if self.max_runs < self.runs:
            problems.append(f"max_runs ({self.max_runs}) must be >= runs ({self.runs})")
        if self.min_timed_s < 0 or self.warmup_max_s < 0:
            problems.append("min_timed_s and warmup_max_s must be >= 0")
        if not self.cv_threshold > 0:
            problems.append(f"cv_threshold must be > 0, got {self.cv_threshold}")
        if self.max_attempts < 1:
            problems.append(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.rounds < 1 or self.interleave_group < 1:
            problems.append(f"rounds and interleave_group must be >= 1, got {self.rounds} and {self.interleave_group}")
        if problems:
            raise ValueError("; ".join(problems))

@dataclass(frozen=True)
class Measurement:
    """An op's statistics over its rounds plus what it cost to get them."""

    stats: TimingStats
    warmup_runs: int  # over all rounds
    attempts: int  # 1 + extra rounds taken because the CV was over the threshold
    timed_total_us: float  # sum of every timed run of every round
    throttled: bool | None = None  # any round throttled; None where the runner cannot tell
    temperature_c: float | None = None  # hottest reading over the rounds
    cpu_freq_khz: int | None = None  # lowest reading over the rounds
    # The 95% confidence interval of the median (distribution-free; None from tool summaries).
    ci_low_us: float | None = None
    ci_high_us: float | None = None
    descheduled_runs: int | None = None  # runs dropped and repeated; None where the runner cannot tell
    cpu_share: float | None = None  # the measuring thread's CPU time over the wall time of its timed runs
    # With a reference kernel: its median around the batches kept (the host's speed then), the baseline they
    # were held to, and the rounds dropped because the host was off it.  Kept batches are all off it when
    # ``off_baseline_rounds`` equals the rounds taken: the caps were reached and the row says so.
    reference_us: float | None = None
    reference_baseline_us: float | None = None
    off_baseline_rounds: int | None = None
    at_baseline: bool | None = None

    def columns(self) -> dict[str, Any]:
        """The figures as the LUT's (and network timings') columns, by name."""
        stats = self.stats
        return {"median_us": stats.median_us, "p10_us": stats.p10_us, "p90_us": stats.p90_us, "mean_us": stats.mean_us,
                "std_us": stats.std_us, "min_us": stats.min_us, "runs": stats.runs, "warmup_runs": self.warmup_runs,
                "cv": stats.cv, "attempts": self.attempts, "timed_total_us": self.timed_total_us,
                "throttled": self.throttled, "temperature_c": self.temperature_c, "cpu_freq_khz": self.cpu_freq_khz,
                "ci_low_us": self.ci_low_us, "ci_high_us": self.ci_high_us, "descheduled_runs": self.descheduled_runs,
                "cpu_share": self.cpu_share, "reference_us": self.reference_us,
                "reference_baseline_us": self.reference_baseline_us, "off_baseline_rounds": self.off_baseline_rounds,
                "at_baseline": self.at_baseline}

Clock = Callable[[], int]  # nanoseconds, monotonic

# A run during which the measuring thread had its CPU for less than this share of the wall time lost a tenth of
# it to other tasks or to the hypervisor (a thread's CPU clock excludes stolen time): the whole ±10% a LUT's
# network predictions are held to, so it is dropped and repeated.  Quiet runs read a share of ~1.0.
DESCHEDULED_CPU_SHARE = 0.9


def time_callable(run_once: Callable[[], object], settings: MeasurementSettings, warmup_runs: int | None = None,
                  clock: Clock = time.perf_counter_ns, cpu_clock: Clock | None = None) -> Batch:
    """Warm up, then time ``run_once`` at least ``settings.runs`` times and for at least ``min_timed_s``.

    With ``cpu_clock`` (the measuring thread's CPU clock, ``time.thread_time_ns``,
    for runners that compute on the calling thread) every run's CPU time is
    read around its wall time; with ``settings.exclude_descheduled`` a run
    whose share is below :data:`DESCHEDULED_CPU_SHARE` is dropped and another
    taken in its place, at most ``max_runs`` times per batch (on a core that is
    never free the batch then ends with what it has, dropped runs counted).
    """
    warm_deadline = clock() + int(settings.warmup_max_s * 1e9)
    warmups = 0
    target = settings.warmup_runs if warmup_runs is None else warmup_runs
    while warmups < target:
        run_once()
        warmups += 1
        if clock() >= warm_deadline:
            break
    samples: list[float] = []
    timed_ns = 0
    budget_ns = int(settings.min_timed_s * 1e9)
    descheduled = cpu_total = wall_total = 0
    exclude = settings.exclude_descheduled and cpu_clock is not None
    while len(samples) < settings.runs or (timed_ns < budget_ns and len(samples) < settings.max_runs):
        if cpu_clock is not None:
            cpu_start = cpu_clock()  # outside the wall window: reading it costs nothing timed
            start = clock()
            run_once()
            elapsed = clock() - start
            cpu = cpu_clock() - cpu_start
            cpu_total += cpu
            wall_total += elapsed
            if exclude and cpu < DESCHEDULED_CPU_SHARE * elapsed and descheduled < settings.max_runs:
                descheduled += 1
                continue
        else:
            start = clock()
            run_once()
            elapsed = clock() - start
        timed_ns += elapsed
        samples.append(elapsed / 1e3)
    if cpu_clock is None:
        return Batch(samples_us=tuple(samples), warmup_runs=warmups)
    return Batch(samples_us=tuple(samples), warmup_runs=warmups, descheduled_runs=descheduled, cpu_ns=cpu_total,
                 wall_ns=wall_total)


class PreparedOp(Protocol):
    """An op loaded on its device and ready to time (a session, a pushed model...)."""

    def take_batch(self, settings: MeasurementSettings, warmup_runs: int) -> Batch: ...

    def close(self) -> None: ...


def round_settings(settings: MeasurementSettings) -> MeasurementSettings:
    """The share of the run count and time budget that one round gets."""
    return replace(
        settings,
        runs=max(1, math.ceil(settings.runs / settings.rounds)),
        min_timed_s=settings.min_timed_s / settings.rounds,
        max_runs=max(1, math.ceil(settings.max_runs / settings.rounds)),
    )

def measure_prepared(items: Sequence[T], prepare: Callable[[T], PreparedOp], settings: MeasurementSettings, *,
                     reference: PreparedOp | None = None, baseline_us: float | None = None) -> list[Measurement]:
    """Prepare each item on the device (an operator signature, a model file), time them interleaved, release them all.

    ``reference`` and ``baseline_us``: see :func:`measure_interleaved` (the
    caller owns the reference op and keeps it open across groups).
    """
    ops: list[PreparedOp] = []
    try:
        for item in items:
            ops.append(prepare(item))
        return measure_interleaved(ops, settings, reference=reference, baseline_us=baseline_us)
    finally:
        for op in ops:
            op.close()


def measure_in_groups(items: Sequence[T], prepare: Callable[[T], PreparedOp], settings: MeasurementSettings, *,
                      reference: PreparedOp | None = None, baseline_us: float | None = None,
                      then: Sequence[T] = ()) -> Iterator[tuple[list[T], list[Measurement]]]:
    """Measure ``items`` in groups of ``settings.interleave_group`` (see :func:`measure_prepared`), yielding each group
    and its measurements as it is done.

    With a ``reference``, the baseline found (or given) for the first group holds for the next ones.  ``then``:
    items measured after ``items``, in groups of their own; it is read only once ``items`` are done, so a caller
    may append to it while they are measured (a sweep's rows to take again).
    """
    for sequence in (items, then):
        start = 0
        while start < len(sequence):
            group = list(sequence[start:start + settings.interleave_group])
            start += len(group)
            measurements = measure_prepared(group, prepare, settings, reference=reference, baseline_us=baseline_us)
            if reference is not None:
                baseline_us = measurements[0].reference_baseline_us
            yield group, measurements


def reference_settings(settings: MeasurementSettings) -> MeasurementSettings:
    """What one reading of the reference kernel takes: the median of three runs (~0.4 ms on a Xeon core).

    The host's two states are 8-20% apart and each is steady to a percent, so
    three runs tell them apart; more would only slow the readings down.
    """
    return replace(settings, runs=3, min_timed_s=0.0, max_runs=3, exclude_descheduled=True)


# How long the reference is read to find the host's fast state when a LUT has no baseline yet: this host flips
# state every ~0.1 s and spends a fifth to all of its time fast, so two seconds of readings meet it.
CALIBRATION_S = 2.0
# Waits for the fast state that time out in a row before a group stops waiting: a host slow for that long
# (0.3 s at the default wait) is busy with a tenant for good; its ops are measured as it is, and say so.
WAITS_BEFORE_GIVING_UP = 3


def calibrate_baseline(reference: PreparedOp, settings: MeasurementSettings, seconds: float | None = None,
                       clock: Callable[[], float] = time.monotonic) -> float:
    """The reference kernel's time in the host's fast state: the fastest of its readings over ``seconds``."""
    readings = [reference.take_batch(reference_settings(settings), settings.warmup_runs).median_us]
    deadline = clock() + (CALIBRATION_S if seconds is None else seconds)
    while clock() < deadline:
        readings.append(reference.take_batch(reference_settings(settings), 0).median_us)
    return float(min(readings))


class _Rounds:
    """The batches of a group of ops, and around them the reference kernel's readings of the host's speed.

    With a reference, a reading is taken before an op's batch whenever the
    last one is older than ``reference_every_s``, and at the end of every
    round, so every batch lies between two readings; a batch is kept when
    both are within ``reference_tolerance`` of the baseline.  Before a batch,
    readings go on while the host is off its fast state, up to
    ``reference_wait_s``: the fast state comes back within a fraction of a
    second here, and ops are then timed while it lasts.  After
    :data:`WAITS_BEFORE_GIVING_UP` waits in a row that ended with the host
    still slow, it is not waited for again in this group (``stop_waiting``),
    nor are lost rounds taken again: the rows say so.
    """

    def __init__(self, ops: Sequence[PreparedOp], settings: MeasurementSettings, reference: PreparedOp | None,
                 baseline_us: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.ops, self.settings, self.reference, self.clock = ops, settings, reference, clock
        # A tolerance of 0 reads the host without holding batches to it: the rows record its speed, nothing more.
        monitor_only = baseline_us is None or settings.reference_tolerance == 0
        self.limit = math.inf if monitor_only else baseline_us * (1 + settings.reference_tolerance)
        self.stop_waiting, self.timeouts = False, 0
        self.batches: list[list[Batch]] = [[] for _ in ops]
        self.readings: list[float] = []
        # Per op and batch: (the reading before it, the reading after it), indexes into readings.
        self.brackets: list[list[tuple[int, int]]] = [[] for _ in ops]
        self._read_at = -math.inf
        self._waiting: list[tuple[int, int]] = []  # (op, batch) still waiting for the reading after it

    def _read(self, warmups: int) -> None:
        batch = self.reference.take_batch(reference_settings(self.settings), warmups)  # type: ignore[union-attr]
        self.readings.append(batch.median_us)
        self._read_at = self.clock()
        for i, b in self._waiting:
            self.brackets[i][b] = (self.brackets[i][b][0], len(self.readings) - 1)
        self._waiting = []

    def take(self, indices: Sequence[int], per_op: Callable[[int], MeasurementSettings], warmups: int) -> None:
        for i in indices:
            if self.reference is not None:
                if self.clock() - self._read_at >= self.settings.reference_every_s:
                    self._read(warmups if not self.readings else min(1, warmups))
                if not self.stop_waiting and self.readings[-1] > self.limit and self.settings.reference_wait_s > 0:
                    give_up = self.clock() + self.settings.reference_wait_s
                    while self.readings[-1] > self.limit and self.clock() < give_up:
                        self._read(0)
                    self.timeouts = self.timeouts + 1 if self.readings[-1] > self.limit else 0
                    self.stop_waiting = self.timeouts >= WAITS_BEFORE_GIVING_UP
            self.batches[i].append(self.ops[i].take_batch(per_op(i), warmups))
            if self.reference is not None:
                self.brackets[i].append((len(self.readings) - 1, -1))
                self._waiting.append((i, len(self.batches[i]) - 1))
        if self.reference is not None:
            self._read(min(1, warmups))  # closes the round: its last batches get their reading after

    def kept(self, i: int, baseline_us: float | None) -> list[int]:
        """The batches of op ``i`` taken with the host at its baseline speed (all of them without a reference)."""
        if self.reference is None or baseline_us is None or self.limit == math.inf:
            return list(range(len(self.batches[i])))
        return [b for b, (before, after) in enumerate(self.brackets[i])
                if max(self.readings[before], self.readings[after]) <= self.limit]


def measure_interleaved(ops: Sequence[PreparedOp], settings: MeasurementSettings, *,
                        reference: PreparedOp | None = None, baseline_us: float | None = None) -> list[Measurement]:
    """Time a group of prepared ops in interleaved rounds; see :class:`MeasurementSettings`.

    ``reference`` (a prepared reference kernel, see :mod:`harness.host_speed`)
    reads the host's speed around every batch.  This machine's host flips
    between a fast and a slow state for seconds at a time (another tenant on
    the physical core), and the ops it slows, it slows unequally (a
    memory-bound elementwise op 2×, a convolution 10%): no one factor
    corrects them, so a batch is kept only when the readings around it are
    within ``reference_tolerance`` of ``baseline_us``, the reference's time in
    the fast state, and an op short of ``rounds`` kept batches takes extra
    rounds (up to ``max_attempts - 1``).  Without ``baseline_us`` the fastest
    of :data:`CALIBRATION_S` seconds of readings is the baseline (the caller
    keeps it for the next groups: :attr:`Measurement.reference_baseline_us`).  An op
    whose caps are reached with no batch kept keeps all its batches; its row
    says so (``off_baseline_rounds``).
    """
    if not ops:
        return []
    if reference is not None and baseline_us is None and settings.reference_tolerance > 0:
        baseline_us = calibrate_baseline(reference, settings)
    if settings.cold_cache:
        return _measure_cold(ops, settings, reference, baseline_us)
    per_round = round_settings(settings)
    state = _Rounds(ops, settings, reference, baseline_us)
    everyone = range(len(ops))
    for round_index in range(settings.rounds):
        warmups = settings.warmup_runs if round_index == 0 else min(1, settings.warmup_runs)
        state.take(everyone, lambda _i: per_round, warmups)
    adaptive = settings.precision > 0 and all(b.samples_us for taken in state.batches for b in taken)
    rewarm = min(1, settings.warmup_runs)
    for _ in range(settings.max_attempts - 1):
        again: dict[int, MeasurementSettings] = {}
        for i in everyone:
            kept = [state.batches[i][b] for b in state.kept(i, baseline_us)]
            if len(kept) < settings.rounds and not state.stop_waiting:  # lost to a slow host: taken again
                again[i] = per_round
            elif not kept:  # a host slow throughout: nothing to wait for, the row will say so
                continue
            elif adaptive:
                if size := _runs_still_needed(kept, settings, per_round):
                    again[i] = replace(per_round, runs=size, min_timed_s=0.0, max_runs=size)
            elif combine_rounds(kept).cv > settings.cv_threshold:  # runs that disagree: another round
                again[i] = per_round
        if not again:
            break
        state.take(sorted(again), again.__getitem__, rewarm)
    if reference is not None and baseline_us is None:  # reading the host only: its fastest reading, for the record
        baseline_us = float(min(state.readings))
    return [_measurement(state, i, adaptive, baseline_us if reference is not None else None) for i in everyone]


# Ops in a cold cycle, at least (the group's own, then ones already measured, run as fillers): with fewer, an
# op's run would follow too little other work to have left the caches its previous run warmed.
COLD_CYCLE_MIN_OPS = 8


def _measure_cold(ops: Sequence[PreparedOp], settings: MeasurementSettings, reference: PreparedOp | None,
                  baseline_us: float | None) -> list[Measurement]:
    """``cold_cache``: cycles of one run per op, shuffled (seeded), each run a batch bracketed by readings."""
    single = replace(settings, runs=1, min_timed_s=0.0, max_runs=1)
    state = _Rounds(ops, settings, reference, baseline_us)
    rng = np.random.default_rng(len(ops))
    everyone = list(range(len(ops)))
    state.take(everyone, lambda _i: single, settings.warmup_runs)  # warm-up: every op once, hot
    state.batches = [[] for _ in ops]  # the warm-up cycle's runs follow their own warm-up: not cold, not kept
    state.brackets = [[] for _ in ops]
    adaptive = settings.precision > 0
    cycles, wanted = 0, dict.fromkeys(everyone, settings.runs)
    # What fillers may cost the group in all (µs of their runs): one op's cap.  Without it the last noisy op of
    # a group, asking for hundreds of runs, had seven fillers run beside it every time (80% of a sweep's runs).
    filler_budget_us = settings.max_timed_s * 1e6
    for _ in range(settings.max_attempts):
        if not wanted:
            break
        # An op leaves the cycles once it has the runs it asked for (each op asks for its own: a steady one
        # few, a noisy one many); ops done, or not timed this time, fill a cycle grown too short to be cold.
        remaining = dict(wanted)
        while remaining:
            timed = sorted(remaining)
            fillers = [i for i in everyone if i not in remaining][:max(0, COLD_CYCLE_MIN_OPS - len(timed))]
            if fillers and filler_budget_us <= 0:  # the rest would be timed hot or at fillers' cost: they stop
                break
            order = [int(i) for i in rng.permutation(timed + fillers)]
            state.take(order, lambda _i: single, 0)
            filler_budget_us -= sum(state.batches[i][-1].total_us for i in fillers)
            cycles += 1
            remaining = {i: n - 1 for i, n in remaining.items() if n > 1}
        if remaining:  # the fillers' budget is spent: no cycle of this group can be cold any more
            break
        wanted = {}
        for i in everyone:
            kept = [state.batches[i][b] for b in state.kept(i, baseline_us)]
            if len(kept) < settings.runs and not state.stop_waiting:  # runs lost to a slow host: taken again
                wanted[i] = settings.runs - len(kept)
            elif kept and adaptive and (size := _runs_still_needed([_pooled(kept)], settings, single)):
                wanted[i] = size
            elif kept and not adaptive and combine_rounds([_pooled(kept)]).cv > settings.cv_threshold:
                wanted[i] = math.ceil(settings.runs / settings.rounds)
    return [_measurement(state, i, True, baseline_us if reference is not None else None, attempts=cycles)
            for i in everyone]


def _pooled(batches: Sequence[Batch]) -> Batch:
    """Single-run batches as one batch of their runs."""
    return Batch(samples_us=tuple(x for b in batches for x in b.samples_us), warmup_runs=0)


def _runs_still_needed(taken: Sequence[Batch], settings: MeasurementSettings, per_round: MeasurementSettings) -> int:
    """How many more runs an op needs for its median to ± precision (0: done, or its caps are reached).

    The median's standard error is about 1.2533·σ/√n for a spread σ (the
    robust one: interrupted runs do not count); the next round asks for the
    runs that make z times it ``precision`` of the median, with a fifth more
    for luck, at least a round's worth and a quarter of its runs so far,
    within ``max_runs`` and ``max_timed_s``.
    """
    samples = [x for batch in taken for x in batch.samples_us]
    n = len(samples)
    median = float(np.median(samples))
    timed_s = sum(samples) / 1e6
    if n >= settings.max_runs or timed_s >= settings.max_timed_s or median <= 0:
        return 0
    low, high = median_confidence_interval(samples)
    if n >= settings.runs and (high - low) / 2 <= settings.precision * median:
        return 0
    cv = combine_rounds(taken, pooled_median=True).cv
    wanted = math.ceil(1.2 * (CONFIDENCE_Z * 1.2533 * cv / settings.precision) ** 2) if math.isfinite(cv) else n
    # The estimate of the spread is itself noisy: short of the precision with the runs it asked for, an op grows
    # by a quarter at least, so a few rounds reach it rather than many rounds of a handful of runs.
    more = max(per_round.runs, wanted - n, settings.runs - n, math.ceil(0.25 * n))
    affordable = math.floor((settings.max_timed_s - timed_s) / (median / 1e6))
    return max(1, min(more, settings.max_runs - n, affordable))


def _measurement(state: _Rounds, index: int, adaptive: bool, baseline_us: float | None,
                 attempts: int | None = None) -> Measurement:
    every = state.batches[index]
    at_baseline = state.kept(index, baseline_us)
    kept_indexes = at_baseline or list(range(len(every)))  # none kept: all, and the row says so
    taken = [every[b] for b in kept_indexes]
    temperatures = [b.temperature_c for b in every if b.temperature_c is not None]
    frequencies = [b.cpu_freq_khz for b in every if b.cpu_freq_khz is not None]
    flags = [b.throttled for b in every if b.throttled is not None]
    stats = combine_rounds(taken, pooled_median=adaptive)
    ci = None
    if all(b.samples_us for b in taken):
        ci = median_confidence_interval([x for b in taken for x in b.samples_us])
    cpu_read = [b for b in every if b.cpu_ns is not None and b.wall_ns]
    reference_us = off_baseline = None
    if baseline_us is not None:
        around = [state.readings[r] for b in kept_indexes for r in state.brackets[index][b]]
        reference_us = float(np.median(around))
        off_baseline = len(every) - len(at_baseline)
    settings = state.settings
    return Measurement(
        stats=stats,
        warmup_runs=sum(b.warmup_runs for b in every),
        attempts=len(every) - settings.rounds + 1 if attempts is None else attempts,
        timed_total_us=float(sum(b.total_us for b in every)),
        throttled=any(flags) if flags else None,
        temperature_c=max(temperatures) if temperatures else None,
        cpu_freq_khz=min(frequencies) if frequencies else None,
        ci_low_us=None if ci is None else ci[0],
        ci_high_us=None if ci is None else ci[1],
        descheduled_runs=sum(b.descheduled_runs for b in cpu_read) if cpu_read else None,
        # The CPU clock is read just outside the wall clock's window, so a quiet run reads a hair over 1: capped.
        cpu_share=min(1.0, sum(b.cpu_ns for b in cpu_read) / sum(b.wall_ns for b in cpu_read)) if cpu_read else None,  # type: ignore[misc]
        reference_us=reference_us,
        reference_baseline_us=baseline_us,
        off_baseline_rounds=off_baseline,
        # Reading the host without holding batches to it (tolerance 0) says nothing about the fast state.
        at_baseline=None if baseline_us is None or state.limit == math.inf else bool(at_baseline),
    )
