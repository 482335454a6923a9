"""The measurement method: statistics, the timing loop (with a fake clock), interleaved rounds."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.measurement import Batch, Measurement, MeasurementSettings, TimingStats, combine_rounds, measure_interleaved, round_settings, summarize, time_callable


# ------------------------------------------------------------------ summarize
def test_summarize_matches_numpy():
    data = [12.0, 10.0, 11.0, 50.0, 10.5, 9.5, 10.2, 10.8, 11.1, 9.9]
    values = np.asarray(data)
    stats = summarize(data)
    median = np.median(values)
    assert stats.median_us == pytest.approx(median)
    assert stats.p10_us == pytest.approx(np.percentile(values, 10))
    assert stats.p90_us == pytest.approx(np.percentile(values, 90))
    assert stats.mean_us == pytest.approx(values.mean())
    assert stats.std_us == pytest.approx(values.std())  # population std
    assert stats.min_us == 9.5
    assert stats.runs == 10
    assert stats.mad_us == pytest.approx(np.median(np.abs(values - median)))
    assert all(type(v) is float for v in (stats.median_us, stats.p10_us, stats.p90_us, stats.mean_us, stats.std_us,
                                          stats.min_us, stats.mad_us))
    assert type(stats.runs) is int


def test_summarize_hand_computed():
    stats = summarize([1, 2, 3, 4, 5])
    assert stats.median_us == 3.0
    assert stats.mean_us == 3.0
    assert stats.min_us == 1.0
    assert stats.std_us == pytest.approx(math.sqrt(2.0))
    assert stats.mad_us == 1.0  # |x - 3| = 2,1,0,1,2
    assert stats.p10_us == pytest.approx(1.4)
    assert stats.p90_us == pytest.approx(4.6)
    assert stats.runs == 5


def test_summarize_single_sample():
    stats = summarize([7.5])
    assert (stats.median_us, stats.p10_us, stats.p90_us, stats.mean_us, stats.min_us) == (7.5,) * 5
    assert stats.std_us == 0.0 and stats.mad_us == 0.0 and stats.runs == 1
    assert stats.cv == 0.0


def test_summarize_accepts_any_sequence():
    assert summarize((3.0, 1.0, 2.0)).median_us == 2.0
    assert summarize(np.array([3.0, 1.0, 2.0])).median_us == 2.0


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [1.0, -0.5], [float("inf")], [1.0, float("-inf")]],
                         ids=["empty", "nan", "negative", "inf", "-inf"])
def test_summarize_rejects(bad):
    with pytest.raises(ValueError):
        summarize(bad)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_summarize_orders_its_statistics(data):
    stats = summarize(data)
    eps = 1e-9 * max(1.0, max(data))  # interpolation and summation rounding
    assert stats.min_us == min(data)
    assert stats.min_us - eps <= stats.p10_us <= stats.median_us + eps
    assert stats.median_us - eps <= stats.p90_us <= max(data) + eps
    assert min(data) - eps <= stats.mean_us <= max(data) + eps
    assert stats.std_us >= 0 and stats.mad_us >= 0
    assert stats.runs == len(data)


# ------------------------------------------------------------------ robust cv
def test_cv_is_robust_to_a_few_huge_outliers():
    data = [100.0 + (i % 5) * 0.5 for i in range(200)] + [5000.0, 8000.0, 12000.0]
    stats = summarize(data)
    assert stats.std_us / stats.mean_us > 1.0
    assert stats.cv < 0.02
    assert stats.cv == pytest.approx(1.4826 * stats.mad_us / stats.median_us)


def test_cv_flags_typical_runs_that_disagree():
    stats = summarize([50.0, 100.0, 150.0] * 10)
    assert stats.cv == pytest.approx(1.4826 * 50 / 100)


def test_cv_approximates_std_over_mean_for_normal_noise():
    rng = np.random.default_rng(0)
    data = rng.normal(1000.0, 50.0, size=20000)
    stats = summarize(data)
    assert stats.cv == pytest.approx(0.05, rel=0.05)
    assert stats.cv == pytest.approx(stats.std_us / stats.mean_us, rel=0.05)


def test_cv_of_zero_median_is_infinite():
    stats = TimingStats(median_us=0.0, p10_us=0.0, p90_us=0.0, mean_us=0.0, std_us=0.0, min_us=0.0, runs=1, mad_us=0.0)
    assert stats.cv == math.inf


# ------------------------------------------------------------------ time_callable with a fake clock
class FakeClock:
    """Nanoseconds that advance by ``step`` on every read, plus whatever the timed function costs."""

    def __init__(self, step: int = 0, start: int = 1_000_000) -> None:
        self.t = start
        self.step = step
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        now = self.t
        self.t += self.step
        return now


class FakeWork:
    def __init__(self, clock: FakeClock, cost_ns: int | list[int]) -> None:
        self.clock = clock
        self.costs = cost_ns
        self.calls = 0

    def __call__(self) -> None:
        cost = self.costs if isinstance(self.costs, int) else self.costs[self.calls % len(self.costs)]
        self.calls += 1
        self.clock.t += cost


def settings(**changes) -> MeasurementSettings:
    base = dict(warmup_runs=0, warmup_max_s=10.0, runs=5, min_timed_s=0.0, max_runs=1000, rounds=1,
                interleave_group=4, cv_threshold=0.1, max_attempts=1)
    base.update(changes)
    return MeasurementSettings(**base)


def run(cost_ns, step: int = 0, override: int | None = None, **changes):
    """time_callable on fake work; ``override`` is its warmup_runs argument, ``changes`` the settings."""
    clock = FakeClock(step=step)
    work = FakeWork(clock, cost_ns)
    batch = time_callable(work, settings(**changes), warmup_runs=override, clock=clock)
    return batch, work


def test_exactly_runs_samples_without_time_budget():
    batch, work = run(100_000, runs=5)
    assert isinstance(batch, Batch)
    assert batch.samples_us == (100.0,) * 5
    assert batch.warmup_runs == 0
    assert work.calls == 5


def test_samples_are_elapsed_microseconds_per_run():
    batch, _ = run([10_000, 20_000, 30_000], runs=6)
    assert batch.samples_us == (10.0, 20.0, 30.0, 10.0, 20.0, 30.0)


def test_clock_that_advances_per_read():
    # The function costs nothing; each read of the clock moves it 2 µs, so each sample is one step.
    batch, _ = run(0, step=2_000, runs=4)
    assert batch.samples_us == (2.0,) * 4


def test_keeps_timing_until_min_timed_s():
    # 100 µs per run, 1 ms budget: 10 runs although runs = 3.
    batch, work = run(100_000, runs=3, min_timed_s=0.001)
    assert len(batch.samples_us) == 10
    assert sum(batch.samples_us) == pytest.approx(1000.0)
    assert work.calls == 10


def test_runs_is_a_minimum_even_when_budget_is_met():
    batch, _ = run(1_000_000, runs=7, min_timed_s=0.001)  # the first run alone fills the budget
    assert len(batch.samples_us) == 7


def test_stops_at_max_runs():
    batch, work = run(100_000, runs=3, min_timed_s=10.0, max_runs=25)
    assert len(batch.samples_us) == 25
    assert work.calls == 25


def test_warmup_stops_at_warmup_runs():
    batch, work = run(100_000, runs=3, warmup_runs=4)
    assert batch.warmup_runs == 4
    assert work.calls == 4 + 3


def test_warmup_stops_at_warmup_max_s():
    # 100 µs per warm-up run, 250 µs warm-up budget: the third run crosses it.
    batch, work = run(100_000, runs=2, warmup_runs=50, warmup_max_s=250e-6)
    assert batch.warmup_runs == 3
    assert work.calls == 3 + 2


def test_warmup_runs_at_least_once_with_zero_time_budget():
    batch, _ = run(100_000, runs=2, warmup_runs=10, warmup_max_s=0.0)
    assert batch.warmup_runs == 1


def test_no_warmup_when_warmup_runs_is_zero():
    batch, work = run(100_000, runs=2, warmup_runs=0, warmup_max_s=0.0)
    assert batch.warmup_runs == 0
    assert work.calls == 2


def test_warmup_runs_argument_overrides_settings():
    batch, _ = run(100_000, override=1, runs=2, warmup_runs=9)
    assert batch.warmup_runs == 1
    batch, _ = run(100_000, override=0, runs=2, warmup_runs=9)
    assert batch.warmup_runs == 0


def test_warmup_samples_are_not_timed():
    # Warm-up runs are slow (cold caches); only the timed runs land in the samples.
    batch, _ = run([5_000_000, 5_000_000, 100_000, 100_000, 100_000], runs=3, warmup_runs=2)
    assert batch.samples_us == (100.0, 100.0, 100.0)


def test_default_clock_is_used_without_injection():
    batch = time_callable(lambda: None, settings(runs=3))
    assert len(batch.samples_us) == 3
    assert all(x >= 0 for x in batch.samples_us)


# ------------------------------------------------------------------ measure_interleaved with fake ops
class FakeOp:
    """A prepared op whose batches are scripted; records every call in a shared log."""

    def __init__(self, name: str, log: list, script: list[list[float]]) -> None:
        self.name = name
        self.log = log
        self.script = script
        self.calls: list[tuple[MeasurementSettings, int]] = []

    def take_batch(self, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        index = len(self.calls)
        self.calls.append((settings, warmup_runs))
        self.log.append(self.name)
        samples = self.script[min(index, len(self.script) - 1)]
        return Batch(samples_us=tuple(samples), warmup_runs=warmup_runs)

    def close(self) -> None:  # pragma: no cover - part of the protocol only
        pass


def ops_of(*scripts: list[list[float]]):
    log: list[str] = []
    return [FakeOp(f"op{i}", log, script) for i, script in enumerate(scripts)], log


STEADY = [[10.0, 10.0, 10.0]]
NOISY = [[5.0, 10.0, 20.0]]


def mset(**changes) -> MeasurementSettings:
    base = dict(warmup_runs=5, warmup_max_s=0.01, runs=9, min_timed_s=0.3, max_runs=300, rounds=3,
                interleave_group=24, cv_threshold=0.1, max_attempts=3)
    base.update(changes)
    return MeasurementSettings(**base)


def test_rounds_are_interleaved():
    ops, log = ops_of(STEADY, STEADY, STEADY)
    measure_interleaved(ops, mset(rounds=4))
    assert log == ["op0", "op1", "op2"] * 4


def test_each_round_gets_its_share_of_runs_and_budget():
    ops, _ = ops_of(STEADY)
    s = mset(runs=10, min_timed_s=0.3, max_runs=100, rounds=3)
    measure_interleaved(ops, s)
    expected = round_settings(s)
    assert expected.runs == 4 and expected.max_runs == 34
    assert expected.min_timed_s == pytest.approx(0.1)
    assert all(settings_ == expected for settings_, _ in ops[0].calls)


def test_first_round_warms_up_fully_later_rounds_once():
    ops, _ = ops_of(STEADY, STEADY)
    results = measure_interleaved(ops, mset(warmup_runs=5, rounds=3))
    for op, result in zip(ops, results):
        assert [w for _, w in op.calls] == [5, 1, 1]
        assert result.warmup_runs == 7


def test_no_rewarm_when_warmup_is_disabled():
    ops, _ = ops_of(STEADY)
    results = measure_interleaved(ops, mset(warmup_runs=0, rounds=3))
    assert [w for _, w in ops[0].calls] == [0, 0, 0]
    assert results[0].warmup_runs == 0


def test_median_is_median_of_round_medians():
    # Rounds with medians 10, 40, 12 → 12; the pooled samples' median would be 40.
    ops, _ = ops_of([[10.0, 10.0, 10.0], [40.0] * 7, [12.0, 12.0, 12.0]])
    [result] = measure_interleaved(ops, mset(max_attempts=1))
    assert result.stats.median_us == 12.0
    assert np.median([10.0] * 3 + [40.0] * 7 + [12.0] * 3) == 40.0
    # Spread statistics describe all pooled runs.
    assert result.stats.runs == 13
    assert result.stats.min_us == 10.0
    assert result.stats.mean_us == pytest.approx((30 + 280 + 36) / 13)
    assert result.stats.p90_us == 40.0


def test_one_slow_round_is_ignored():
    clean = [100.0, 101.0, 99.0, 100.0, 100.5]
    ops, _ = ops_of([clean, [900.0] * 5, clean, clean, clean])
    [result] = measure_interleaved(ops, mset(rounds=5, max_attempts=1))
    assert result.stats.median_us == 100.0
    assert result.stats.cv < 0.1


def test_combine_rounds_single_batch_is_plain_summary():
    batch = Batch(samples_us=(1.0, 2.0, 10.0), warmup_runs=0)
    assert combine_rounds([batch]) == summarize(batch.samples_us)


def test_steady_ops_take_no_extra_rounds():
    ops, log = ops_of(STEADY, STEADY)
    results = measure_interleaved(ops, mset(max_attempts=3))
    assert len(log) == 6
    assert [r.attempts for r in results] == [1, 1]


def test_extra_rounds_only_for_noisy_ops():
    ops, log = ops_of(STEADY, NOISY, STEADY)
    results = measure_interleaved(ops, mset(max_attempts=3, warmup_runs=5))
    assert log == ["op0", "op1", "op2"] * 3 + ["op1", "op1"]
    assert [r.attempts for r in results] == [1, 3, 1]
    assert [w for _, w in ops[1].calls] == [5, 1, 1, 1, 1]
    assert results[1].warmup_runs == 9
    assert results[0].warmup_runs == 7
    assert results[1].stats.runs == 15


def test_extra_rounds_stay_interleaved():
    ops, log = ops_of(NOISY, STEADY, NOISY)
    measure_interleaved(ops, mset(max_attempts=2))
    assert log == ["op0", "op1", "op2"] * 3 + ["op0", "op2"]


@pytest.mark.parametrize("max_attempts", [1, 2, 4])
def test_at_most_max_attempts_minus_one_extra_rounds(max_attempts):
    ops, log = ops_of(NOISY)
    [result] = measure_interleaved(ops, mset(max_attempts=max_attempts, rounds=2))
    assert len(log) == 2 + max_attempts - 1
    assert result.attempts == max_attempts
    assert result.stats.cv > 0.1  # still noisy: measured anyway, flagged by its cv


def test_extra_rounds_stop_once_cv_is_low():
    # Three noisy rounds, then a long steady round pulls the pooled MAD to zero.
    ops, log = ops_of([[5.0, 10.0, 20.0]] * 3 + [[10.0] * 30])
    [result] = measure_interleaved(ops, mset(max_attempts=5))
    assert len(log) == 4
    assert result.attempts == 2
    assert result.stats.cv <= 0.1


def test_cv_threshold_decides():
    # NOISY has cv = 1.4826 * 5 / 10 ≈ 0.74.
    ops, log = ops_of(NOISY)
    measure_interleaved(ops, mset(cv_threshold=0.8, max_attempts=3))
    assert len(log) == 3
    ops, log = ops_of(NOISY)
    measure_interleaved(ops, mset(cv_threshold=0.7, max_attempts=3))
    assert len(log) == 5


def test_timed_total_sums_every_run_of_every_round():
    ops, _ = ops_of([[10.0, 10.0], [10.0, 11.0], [10.0]], NOISY)
    results = measure_interleaved(ops, mset(rounds=3, max_attempts=2))
    assert [r.attempts for r in results] == [1, 2]
    assert results[0].timed_total_us == pytest.approx(51.0)
    assert results[1].timed_total_us == pytest.approx(4 * 35.0)  # three rounds + one extra
    assert all(isinstance(r, Measurement) for r in results)


def test_empty_group_measures_nothing():
    assert measure_interleaved([], mset()) == []


def test_round_settings_shares():
    s = mset(runs=11, min_timed_s=0.15, max_runs=3000, rounds=3)
    r = round_settings(s)
    assert (r.runs, r.max_runs) == (4, 1000)
    assert r.min_timed_s == pytest.approx(0.05)
    assert (r.warmup_runs, r.rounds, r.cv_threshold, r.max_attempts) == (s.warmup_runs, 3, s.cv_threshold, 3)
    one = round_settings(mset(runs=1, max_runs=1, rounds=5))
    assert (one.runs, one.max_runs) == (1, 1)


# ------------------------------------------------------------------ settings validation
def test_default_settings_are_valid():
    s = MeasurementSettings()
    assert s.runs >= 1 and s.max_runs >= s.runs and s.rounds >= 1


@pytest.mark.parametrize("changes, fragment", [
    (dict(warmup_runs=-1), "warmup_runs"),
    (dict(runs=0), "runs must be >= 1"),
    (dict(runs=10, max_runs=5), "max_runs"),
    (dict(min_timed_s=-0.1), "min_timed_s"),
    (dict(warmup_max_s=-1.0), "warmup_max_s"),
    (dict(cv_threshold=0.0), "cv_threshold"),
    (dict(cv_threshold=-0.1), "cv_threshold"),
    (dict(cv_threshold=float("nan")), "cv_threshold"),
    (dict(max_attempts=0), "max_attempts"),
    (dict(rounds=0), "rounds"),
    (dict(interleave_group=0), "interleave_group"),
])
def test_settings_validation(changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        MeasurementSettings(**changes)


def test_settings_report_every_problem_at_once():
    with pytest.raises(ValueError) as info:
        MeasurementSettings(runs=0, max_attempts=0)
    assert "runs" in str(info.value) and "max_attempts" in str(info.value)


def test_settings_are_frozen():
    s = MeasurementSettings()
    with pytest.raises(Exception):
        s.runs = 3  # type: ignore[misc]
    assert replace(s, runs=3).runs == 3




# ------------------------------------------------ rounds known through tool summaries
def test_summary_rounds_pool_mean_and_std_exactly() -> None:
    from harness.measurement import ToolSummary, combine_rounds

    rng = np.random.default_rng(3)
    rounds = [rng.normal(100 + 5 * i, 3 + i, size=20 + 7 * i) for i in range(3)]
    batches = [Batch(samples_us=(), warmup_runs=1,
                     summary=ToolSummary(count=len(r), median_us=float(np.median(r)), mean_us=float(r.mean()),
                                         std_us=float(r.std()), min_us=float(r.min())))
               for r in rounds]
    stats = combine_rounds(batches)
    everything = np.concatenate(rounds)
    assert stats.runs == everything.size
    assert stats.mean_us == pytest.approx(everything.mean())
    assert stats.std_us == pytest.approx(everything.std())
    assert stats.min_us == pytest.approx(everything.min())
    assert stats.median_us == pytest.approx(np.median([np.median(r) for r in rounds]))
    assert stats.p10_us is None and stats.p90_us is None and stats.mad_us is None
    assert stats.cv == pytest.approx(stats.std_us / stats.mean_us)


def test_a_batch_needs_samples_or_a_summary() -> None:
    with pytest.raises(ValueError):
        Batch(samples_us=(), warmup_runs=0)
