"""The statistics of timed runs: a round's raw result (:class:`Batch`), its summary and the median's interval.

Pure functions and records, no clock and no device: :mod:`harness.measurement`
times rounds and decides when to stop; this module says what a set of runs
amounts to (median, percentiles, robust spread, the median's distribution-free
confidence interval) and how rounds are pooled.  Importing them from
:mod:`harness.measurement` works too.

May import: numpy.  Nothing else of the harness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np


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
    # Runs dropped because the measuring thread was off its CPU during them (see time_callable), and the CPU and
    # wall time of every timed run, dropped ones included, where the runner reads the thread's CPU clock.
    descheduled_runs: int = 0
    cpu_ns: int | None = None
    wall_ns: int | None = None

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


CONFIDENCE_Z = 1.96  # 95%


def median_confidence_interval(samples_us: Sequence[float], z: float = CONFIDENCE_Z) -> tuple[float, float]:
    """The distribution-free confidence interval of the median: order statistics n/2 ∓ z·√n/2 of the sorted runs.

    The number of runs below the true median is Binomial(n, 1/2); with its
    normal approximation the interval holds the median with the probability
    that ``z`` stands for (1.96: 95%).  Needs no assumption about the shape of
    the run-time distribution (skewed, with a long tail of interrupted runs).
    """
    values = np.sort(np.asarray(samples_us, dtype=np.float64))
    n = values.size
    if n == 0:
        raise ValueError("no samples")
    half = z * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half))
    high = min(n - 1, math.ceil(n / 2 + half) - 1)
    return float(values[low]), float(values[max(low, high)])


def combine_rounds(batches: Sequence[Batch], pooled_median: bool = False) -> TimingStats:
    """Pool the samples of an op's rounds; the median is the median of the round medians.

    A round that fell into a slow period moves the pooled median towards it;
    the median of round medians ignores it as long as most rounds were clean.
    Spread statistics (percentiles, mean, std, MAD) describe all pooled runs.
    With ``pooled_median`` (adaptive stopping: rounds of very different sizes)
    the median is that of the pooled runs.
    """
    round_median = float(np.median([batch.median_us for batch in batches]))
    if any(not batch.samples_us for batch in batches):
        return _combine_summaries(batches, round_median)
    pooled = summarize([x for batch in batches for x in batch.samples_us])
    if len(batches) == 1 or pooled_median:
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
