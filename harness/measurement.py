"""How one operator is timed: warm-up, timed runs, statistics, re-measurement.

The statistics are pure functions; the timing loop takes the thing to run as a
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
from typing import Any, Callable, Protocol, Sequence, TypeVar

import numpy as np

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

    def __post_init__(self) -> None:
        for f in fields(self):
            value, expected = getattr(self, f.name), f.type
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not numeric or (expected in (int, "int") and not isinstance(value, int)):
                raise ValueError(f"{f.name} must be {'an integer' if expected in (int, 'int') else 'a number'}, got {value!r}")
        problems = []
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
class TimingStats:
    """Summary of one batch of timed runs, in microseconds."""

    median_us: float
    p10_us: float | None  # None when the runs are known only through a tool's summary
    p90_us: float | None
    mean_us: float
    std_us: float
    min_us: float
    runs: int
    mad_us: float | None  # median absolute deviation from the median; None as for p10/p90
    percentile_cv: float | None = None  # spread from a tool's printed p5/p95, where it gives no per-run times

    @property
    def cv(self) -> float:
        """Robust coefficient of variation: 1.4826 * MAD / median.

        Without per-run times: (p95 - p5) / (3.29 * median) from the tool's
        printed percentiles (the same quantity for normal noise), else std / mean.

        With hundreds of runs per op, a handful of interrupted runs (other
        tenants, timer interrupts) inflate std / mean far more than they move
        the median; this estimate of the spread (equal to std / mean for normal
        noise) ignores them, so it flags batches whose *typical* runs disagree.
        """
        if self.mad_us is None:
            if self.percentile_cv is not None:
                return self.percentile_cv
            return self.std_us / self.mean_us if self.mean_us > 0 else math.inf
        return 1.4826 * self.mad_us / self.median_us if self.median_us > 0 else math.inf


@dataclass(frozen=True)
class ToolSummary:
    """The statistics a benchmark tool printed for one invocation, when it prints no per-run times.

    TFLite's ``benchmark_model`` prints ``count= min= max= avg= std=`` and, in
    newer builds, ``median=``: enough for a median, mean, spread and minimum,
    not for percentiles.
    """

    count: int
    median_us: float
    mean_us: float
    std_us: float
    min_us: float
    p5_us: float | None = None
    p95_us: float | None = None

    def __post_init__(self) -> None:
        values = [self.median_us, self.mean_us, self.std_us, self.min_us]
        values += [v for v in (self.p5_us, self.p95_us) if v is not None]
        if self.count < 1 or not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(f"invalid tool summary {self}")

    @property
    def percentile_cv(self) -> float | None:
        if self.p5_us is None or self.p95_us is None or not self.median_us > 0:
            return None
        return (self.p95_us - self.p5_us) / (3.29 * self.median_us)


@dataclass(frozen=True)
class Batch:
    """The raw result of one round: per-run times (or the tool's summary of them) and its warm-up."""

    samples_us: tuple[float, ...]
    warmup_runs: int
    summary: ToolSummary | None = None
    # The device's state around the round, where the runner can read it (phones): whether it throttled,
    # the hottest thermal-zone reading and the lowest frequency of the pinned core seen before and after.
    throttled: bool | None = None
    temperature_c: float | None = None
    cpu_freq_khz: int | None = None

    def __post_init__(self) -> None:
        if not self.samples_us and self.summary is None:
            raise ValueError("a batch needs per-run samples or a tool summary")

    @property
    def runs(self) -> int:
        return len(self.samples_us) if self.samples_us else self.summary.count  # type: ignore[union-attr]

    @property
    def median_us(self) -> float:
        return float(np.median(self.samples_us)) if self.samples_us else self.summary.median_us  # type: ignore[union-attr]

    @property
    def total_us(self) -> float:
        if self.samples_us:
            return float(sum(self.samples_us))
        return self.summary.mean_us * self.summary.count  # type: ignore[union-attr]


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

    def columns(self) -> dict[str, Any]:
        """The figures as the LUT's (and network timings') columns, by name."""
        stats = self.stats
        return {"median_us": stats.median_us, "p10_us": stats.p10_us, "p90_us": stats.p90_us, "mean_us": stats.mean_us,
                "std_us": stats.std_us, "min_us": stats.min_us, "runs": stats.runs, "warmup_runs": self.warmup_runs,
                "cv": stats.cv, "attempts": self.attempts, "timed_total_us": self.timed_total_us,
                "throttled": self.throttled, "temperature_c": self.temperature_c, "cpu_freq_khz": self.cpu_freq_khz}


def summarize(samples_us: Sequence[float]) -> TimingStats:
    """Median, 10th/90th percentiles, mean, population std and min of the samples."""
    values = np.asarray(samples_us, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples to summarize")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("samples must be finite and non-negative")
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return TimingStats(
        median_us=float(median),
        p10_us=float(p10),
        p90_us=float(p90),
        mean_us=float(values.mean()),
        std_us=float(values.std()),
        min_us=float(values.min()),
        runs=int(values.size),
        mad_us=float(np.median(np.abs(values - median))),
    )


Clock = Callable[[], int]  # nanoseconds, monotonic


def time_callable(run_once: Callable[[], object], settings: MeasurementSettings, warmup_runs: int | None = None,
                  clock: Clock = time.perf_counter_ns) -> Batch:
    """Warm up, then time ``run_once`` at least ``settings.runs`` times and for at least ``min_timed_s``."""
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
    while len(samples) < settings.runs or (timed_ns < budget_ns and len(samples) < settings.max_runs):
        start = clock()
        run_once()
        elapsed = clock() - start
        timed_ns += elapsed
        samples.append(elapsed / 1e3)
    return Batch(samples_us=tuple(samples), warmup_runs=warmups)


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


def combine_rounds(batches: Sequence[Batch]) -> TimingStats:
    """Pool the samples of an op's rounds; the median is the median of the round medians.

    A round that fell into a slow period moves the pooled median towards it;
    the median of round medians ignores it as long as most rounds were clean.
    Spread statistics (percentiles, mean, std, MAD) describe all pooled runs.
    """
    round_median = float(np.median([batch.median_us for batch in batches]))
    if any(not batch.samples_us for batch in batches):
        return _combine_summaries(batches, round_median)
    pooled = summarize([x for batch in batches for x in batch.samples_us])
    if len(batches) == 1:
        return pooled
    mad = float(np.median(np.abs(np.concatenate([np.asarray(b.samples_us) for b in batches]) - round_median)))
    return replace(pooled, median_us=round_median, mad_us=mad)


def _combine_summaries(batches: Sequence[Batch], round_median: float) -> TimingStats:
    """Rounds known (at least partly) through tool summaries: exact pooled mean, std and min; no percentiles."""
    counts, means, stds, mins = [], [], [], []
    for batch in batches:
        if batch.summary is not None:
            s = batch.summary
            counts.append(s.count), means.append(s.mean_us), stds.append(s.std_us), mins.append(s.min_us)
        else:
            values = np.asarray(batch.samples_us)
            counts.append(values.size), means.append(values.mean()), stds.append(values.std()), mins.append(values.min())
    n = np.asarray(counts, dtype=np.float64)
    m = np.asarray(means)
    mean = float((n * m).sum() / n.sum())
    variance = float((n * (np.asarray(stds) ** 2 + (m - mean) ** 2)).sum() / n.sum())
    spreads = [b.summary.percentile_cv for b in batches if b.summary is not None]
    percentile_cv = float(np.median(spreads)) if spreads and all(v is not None for v in spreads) else None
    return TimingStats(median_us=round_median, p10_us=None, p90_us=None, mean_us=mean, std_us=math.sqrt(variance),
                       min_us=float(min(mins)), runs=int(n.sum()), mad_us=None, percentile_cv=percentile_cv)


def measure_prepared(items: Sequence[T], prepare: Callable[[T], PreparedOp],
                     settings: MeasurementSettings) -> list[Measurement]:
    """Prepare each item on the device (an operator signature, a model file), time them interleaved, release them all."""
    ops: list[PreparedOp] = []
    try:
        for item in items:
            ops.append(prepare(item))
        return measure_interleaved(ops, settings)
    finally:
        for op in ops:
            op.close()


def measure_interleaved(ops: Sequence[PreparedOp], settings: MeasurementSettings) -> list[Measurement]:
    """Time a group of prepared ops in interleaved rounds; see :class:`MeasurementSettings`."""
    per_round = round_settings(settings)
    batches: list[list[Batch]] = [[] for _ in ops]
    for round_index in range(settings.rounds):
        warmups = settings.warmup_runs if round_index == 0 else min(1, settings.warmup_runs)
        for op, taken in zip(ops, batches):
            taken.append(op.take_batch(per_round, warmups))
    # Extra rounds, still interleaved, for the ops whose runs disagree.
    for _ in range(settings.max_attempts - 1):
        noisy = [i for i, taken in enumerate(batches) if combine_rounds(taken).cv > settings.cv_threshold]
        if not noisy:
            break
        for i in noisy:
            batches[i].append(ops[i].take_batch(per_round, min(1, settings.warmup_runs)))
    return [_measurement(taken, settings) for taken in batches]


def _measurement(taken: Sequence[Batch], settings: MeasurementSettings) -> Measurement:
    temperatures = [b.temperature_c for b in taken if b.temperature_c is not None]
    frequencies = [b.cpu_freq_khz for b in taken if b.cpu_freq_khz is not None]
    flags = [b.throttled for b in taken if b.throttled is not None]
    return Measurement(
        stats=combine_rounds(taken),
        warmup_runs=sum(b.warmup_runs for b in taken),
        attempts=len(taken) - settings.rounds + 1,
        timed_total_us=float(sum(b.total_us for b in taken)),
        throttled=any(flags) if flags else None,
        temperature_c=max(temperatures) if temperatures else None,
        cpu_freq_khz=min(frequencies) if frequencies else None,
    )
