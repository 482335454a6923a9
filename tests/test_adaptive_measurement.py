"""Adaptive stopping, descheduled runs and the reference kernel (issue 17): fake clocks and scripted ops, no device."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.measurement import (Batch, MeasurementSettings, measure_interleaved, median_confidence_interval,
                                 time_callable)


# ------------------------------------------------------------------ the median's confidence interval
def test_confidence_interval_holds_the_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    trials = 2000
    for _ in range(trials):
        low, high = median_confidence_interval(rng.lognormal(0.0, 0.3, size=41))  # true median exp(0) = 1
        hits += low <= 1.0 <= high
    assert 0.93 <= hits / trials <= 0.985


def test_confidence_interval_narrows_with_runs_and_brackets_the_median():
    rng = np.random.default_rng(1)
    widths = []
    for n in (11, 101, 1001):
        samples = rng.normal(100.0, 5.0, size=n)
        low, high = median_confidence_interval(samples)
        assert low <= np.median(samples) <= high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]


def test_confidence_interval_of_one_run_is_that_run():
    assert median_confidence_interval([7.0]) == (7.0, 7.0)


# ------------------------------------------------------------------ descheduled runs
class Clocks:
    """A wall clock and a thread CPU clock; each run costs ``wall`` ns, of which the thread has ``cpu`` on a CPU."""

    def __init__(self, runs: list[tuple[int, int]]) -> None:
        self.wall_ns = self.cpu_ns = 0
        self.runs, self.calls = runs, 0

    def wall(self) -> int:
        return self.wall_ns

    def cpu(self) -> int:
        return self.cpu_ns

    def work(self) -> None:
        wall, cpu = self.runs[self.calls % len(self.runs)]
        self.calls += 1
        self.wall_ns += wall
        self.cpu_ns += cpu


def settings(**changes) -> MeasurementSettings:
    base = dict(warmup_runs=0, warmup_max_s=10.0, runs=6, min_timed_s=0.0, max_runs=100, rounds=1,
                interleave_group=4, cv_threshold=0.1, max_attempts=1)
    base.update(changes)
    return MeasurementSettings(**base)


def test_descheduled_runs_are_dropped_and_replaced():
    # Every third run lost half its wall time to other tasks: 100 µs of work read as 200 µs.
    clocks = Clocks([(100_000, 100_000), (100_000, 100_000), (200_000, 100_000)])
    batch = time_callable(clocks.work, settings(exclude_descheduled=True), clock=clocks.wall, cpu_clock=clocks.cpu)
    assert batch.samples_us == (100.0,) * 6
    assert batch.descheduled_runs == 2 and clocks.calls == 8
    assert batch.cpu_ns / batch.wall_ns == pytest.approx(800 / 1000)  # every timed run counts in the share


def test_descheduled_runs_are_kept_when_not_excluded_but_still_counted_in_the_share():
    clocks = Clocks([(100_000, 100_000), (200_000, 100_000)])
    batch = time_callable(clocks.work, settings(exclude_descheduled=False), clock=clocks.wall, cpu_clock=clocks.cpu)
    assert sorted(set(batch.samples_us)) == [100.0, 200.0]
    assert batch.descheduled_runs == 0 and batch.cpu_ns < batch.wall_ns


def test_a_core_never_free_ends_the_batch_instead_of_looping():
    clocks = Clocks([(300_000, 100_000)])  # every run descheduled
    batch = time_callable(clocks.work, settings(exclude_descheduled=True, runs=5, max_runs=20), clock=clocks.wall,
                          cpu_clock=clocks.cpu)
    assert batch.descheduled_runs == 20 and len(batch.samples_us) == 5
    assert clocks.calls == 25


def test_without_a_cpu_clock_nothing_is_read_or_dropped():
    clocks = Clocks([(100_000, 0)])
    batch = time_callable(clocks.work, settings(exclude_descheduled=True), clock=clocks.wall)
    assert len(batch.samples_us) == 6 and batch.cpu_ns is None and batch.descheduled_runs == 0


# ------------------------------------------------------------------ adaptive stopping
class ScriptedOp:
    """Draws each run from a normal distribution of the given median and CV; counts the runs it was asked for."""

    def __init__(self, median_us: float, cv: float, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.median_us, self.cv = median_us, cv
        self.requests: list[int] = []

    def take_batch(self, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        n = max(settings.runs, math.ceil(settings.min_timed_s * 1e6 / self.median_us))
        n = min(n, settings.max_runs)
        self.requests.append(n)
        samples = self.median_us * (1 + self.cv * self.rng.standard_normal(n))
        return Batch(samples_us=tuple(np.maximum(samples, 0.0)), warmup_runs=warmup_runs)

    def close(self) -> None:  # pragma: no cover
        pass


def adaptive(**changes) -> MeasurementSettings:
    base = dict(warmup_runs=1, warmup_max_s=0.01, runs=11, min_timed_s=0.0, max_runs=100_000, rounds=3,
                interleave_group=24, cv_threshold=0.1, max_attempts=10, precision=0.01, max_timed_s=10.0)
    base.update(changes)
    return MeasurementSettings(**base)


def test_a_steady_op_stops_after_the_first_rounds():
    op = ScriptedOp(1000.0, cv=0.002, seed=0)
    [m] = measure_interleaved([op], adaptive())
    assert len(op.requests) == 3 and m.attempts == 1 and m.stats.runs == 12
    assert (m.ci_high_us - m.ci_low_us) / 2 <= 0.01 * m.stats.median_us


@pytest.mark.parametrize("cv", [0.03, 0.08])
def test_a_noisy_op_gets_the_runs_its_spread_needs_and_reaches_the_precision(cv):
    op = ScriptedOp(50.0, cv=cv, seed=2)
    [m] = measure_interleaved([op], adaptive())
    half_width = (m.ci_high_us - m.ci_low_us) / 2
    assert half_width <= 0.01 * m.stats.median_us
    needed = (1.96 * 1.2533 * cv / 0.01) ** 2
    assert needed / 2 < m.stats.runs < 4 * needed  # sized by the spread, not by a fixed floor
    assert m.stats.median_us == pytest.approx(50.0, rel=0.02)


def test_the_time_cap_stops_an_op_that_cannot_reach_the_precision():
    op = ScriptedOp(1000.0, cv=0.5, seed=3)
    [m] = measure_interleaved([op], adaptive(max_timed_s=0.2))
    assert m.timed_total_us <= 0.2e6 * 1.6  # a round may overshoot by its own size, never by much
    assert (m.ci_high_us - m.ci_low_us) / 2 > 0.01 * m.stats.median_us  # and the row says how far it got


def test_the_round_cap_stops_extra_rounds():
    op = ScriptedOp(10.0, cv=0.5, seed=4)
    [m] = measure_interleaved([op], adaptive(max_attempts=2))
    assert len(op.requests) == 4 and m.attempts == 2


def test_only_unfinished_ops_take_extra_rounds():
    steady, noisy = ScriptedOp(100.0, 0.001, 5), ScriptedOp(100.0, 0.1, 6)
    measure_interleaved([steady, noisy], adaptive())
    assert len(steady.requests) == 3 and len(noisy.requests) > 3


def test_fixed_method_is_unchanged_when_precision_is_zero():
    op = ScriptedOp(100.0, 0.001, 7)
    [m] = measure_interleaved([op], adaptive(precision=0.0, min_timed_s=0.003))
    assert op.requests == [10, 10, 10] and m.attempts == 1


# ------------------------------------------------------------------ the reference kernel
class Host:
    """A host that is fast or slow, round by round (``slow[round]``): the reference reads 100 or 130 µs."""

    def __init__(self, slow: list[bool]) -> None:
        self.slow, self.round = slow, 0

    @property
    def is_slow(self) -> bool:
        return self.slow[min(self.round, len(self.slow) - 1)]


class Reference:
    """Reads the host; a round takes ``per_round`` readings, and the host keeps one state through a round."""

    def __init__(self, host: Host, per_round: int = 2) -> None:
        self.host, self.readings, self.per_round = host, 0, per_round

    def take_batch(self, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        self.host.round = self.readings // self.per_round
        self.readings += 1
        return Batch(samples_us=(130.0 if self.host.is_slow else 100.0,) * 5, warmup_runs=warmup_runs)

    def close(self) -> None:  # pragma: no cover
        pass


class HostOp:
    """An op 2x slower in the slow state."""

    def __init__(self, host: Host, base_us: float) -> None:
        self.host, self.base_us, self.batches = host, base_us, 0

    def take_batch(self, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        self.batches += 1
        value = self.base_us * (2.0 if self.host.is_slow else 1.0)
        return Batch(samples_us=(value,) * max(settings.runs, 3), warmup_runs=warmup_runs)

    def close(self) -> None:  # pragma: no cover
        pass


def fixed(**changes) -> MeasurementSettings:
    return adaptive(precision=0.0, reference_every_s=0.0, **changes)


def test_batches_taken_while_the_host_is_slow_are_taken_again_and_dropped():
    host = Host([False, True, False, False, True, False])
    op = HostOp(host, 40.0)
    [m] = measure_interleaved([op], fixed(max_attempts=5, reference_wait_s=0.0), reference=Reference(host),
                              baseline_us=100.0)
    assert m.stats.median_us == pytest.approx(40.0)  # never the slow state's 80
    assert m.off_baseline_rounds == 1 and m.at_baseline is True
    assert op.batches == 4 and m.attempts == 2  # 3 rounds, one lost, taken again once
    assert m.reference_us == pytest.approx(100.0) and m.reference_baseline_us == 100.0


def test_a_batch_waits_for_the_host_to_come_back_to_its_fast_state():
    host = Host([False, True, True, False])
    reference = Reference(host)
    op = HostOp(host, 40.0)
    [m] = measure_interleaved([op], fixed(max_attempts=5), reference=reference, baseline_us=100.0)
    assert m.stats.median_us == pytest.approx(40.0) and m.off_baseline_rounds == 0 and m.attempts == 1
    assert op.batches == 3 and reference.readings > 6  # it read through the slow spell instead of timing in it


def test_a_host_slow_throughout_keeps_everything_and_says_so():
    host = Host([True])
    op = HostOp(host, 40.0)
    [m] = measure_interleaved([op], fixed(max_attempts=3, reference_wait_s=0.01), reference=Reference(host),
                              baseline_us=100.0)
    assert m.at_baseline is False and m.stats.median_us == pytest.approx(80.0)
    assert op.batches == 3 and m.off_baseline_rounds == 3  # not waited for again, no rounds taken again
    assert m.attempts == 1


def test_without_a_baseline_the_fastest_calibration_reading_is_the_baseline(monkeypatch):
    import harness.measurement as measurement

    monkeypatch.setattr(measurement, "CALIBRATION_S", 0.01)
    host = Host([True, False, True, False])
    measurements = measure_interleaved([HostOp(host, 10.0), HostOp(host, 20.0)], fixed(max_attempts=4),
                                       reference=Reference(host, per_round=3))
    assert all(m.reference_baseline_us == 100.0 for m in measurements)
    assert [m.stats.median_us for m in measurements] == [pytest.approx(10.0), pytest.approx(20.0)]


def test_a_reading_brackets_every_batch():
    host = Host([False])
    reference = Reference(host)
    ops = [HostOp(host, 10.0), HostOp(host, 10.0), HostOp(host, 10.0)]
    measure_interleaved(ops, fixed(max_attempts=1), reference=reference, baseline_us=100.0)
    assert reference.readings == 3 * 3 + 3  # before each batch (every_s 0) and one closing each round


def test_without_a_reference_nothing_is_held():
    host = Host([True])
    [m] = measure_interleaved([HostOp(host, 10.0)], fixed(max_attempts=1))
    assert m.reference_us is None and m.at_baseline is None and m.off_baseline_rounds is None


def test_settings_check_the_new_fields():
    with pytest.raises(ValueError, match="precision"):
        MeasurementSettings(precision=1.5)
    with pytest.raises(ValueError, match="max_timed_s"):
        MeasurementSettings(max_timed_s=0.0)
    with pytest.raises(ValueError, match="exclude_descheduled must be true or false"):
        MeasurementSettings(exclude_descheduled=1)  # type: ignore[arg-type]


# ------------------------------------------------------------------ cold runs (cold_cache)
class CacheOp:
    """An op that runs fast when it ran last among the shared log (its data still cached), slow after others."""

    def __init__(self, name: str, log: list[str], hot_us: float = 50.0, cold_us: float = 80.0) -> None:
        self.name, self.log, self.hot_us, self.cold_us = name, log, hot_us, cold_us

    def take_batch(self, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        samples = []
        for _ in range(warmup_runs):
            self.log.append(self.name)
        for _ in range(max(settings.runs, 1)):
            samples.append(self.hot_us if self.log and self.log[-1] == self.name else self.cold_us)
            self.log.append(self.name)
        return Batch(samples_us=tuple(samples), warmup_runs=warmup_runs)

    def close(self) -> None:  # pragma: no cover
        pass


def test_cold_runs_follow_other_ops_and_time_what_a_network_sees():
    log: list[str] = []
    ops = [CacheOp(f"op{i}", log) for i in range(5)]
    hot = measure_interleaved(ops, adaptive(precision=0.0, max_attempts=1, rounds=2))
    assert all(m.stats.median_us == 50.0 for m in hot)  # back to back: each run finds its own data cached
    log.clear()
    cold = measure_interleaved(ops, adaptive(precision=0.0, max_attempts=1, cold_cache=True))
    assert all(m.stats.median_us == 80.0 and m.stats.runs == 11 for m in cold)
    assert cold[0].attempts == 11  # cycles
    # Every op ran once per cycle, in an order shuffled cycle by cycle.
    cycles = [log[k:k + 5] for k in range(5 + 5 * 1, len(log), 5)]  # after the warm-up run and first timed run
    assert all(sorted(c) == [f"op{i}" for i in range(5)] for c in cycles)
    assert len({tuple(c) for c in cycles}) > 1


def test_a_lone_cold_op_is_still_cold_through_fillers_and_done_ops_fill_cycles():
    from harness.measurement import COLD_CYCLE_MIN_OPS

    steady = [ScriptedOp(100.0, 0.001, seed) for seed in range(11)]
    noisy = ScriptedOp(100.0, 0.08, 11)
    measurements = measure_interleaved([*steady, noisy], adaptive(cold_cache=True, runs=5))
    runs = sorted(len(op.requests) for op in steady)
    # The noisy op took extra cycles; in them the first done ops ran beside it as fillers, the others rested.
    assert len(noisy.requests) == runs[-1] > runs[0] == 6  # warm-up cycle + 5
    assert sum(r == runs[-1] for r in runs) == COLD_CYCLE_MIN_OPS - 1
    half = (measurements[-1].ci_high_us - measurements[-1].ci_low_us) / 2
    assert half <= 0.01 * measurements[-1].stats.median_us


def test_cold_runs_are_held_to_the_fast_state_run_by_run():
    host = Host([False, True, False, False, True, False, False, False] * 10)
    reference = Reference(host, per_round=4)
    ops = [HostOp(host, 40.0), HostOp(host, 20.0)]
    measurements = measure_interleaved(ops, fixed(max_attempts=5, reference_wait_s=0.0, cold_cache=True, runs=6),
                                       reference=reference, baseline_us=100.0)
    assert [m.stats.median_us for m in measurements] == [pytest.approx(40.0), pytest.approx(20.0)]
    assert all(m.stats.runs >= 6 and m.off_baseline_rounds > 0 and m.at_baseline for m in measurements)


def test_cold_cycles_give_each_op_the_runs_it_asked_for_not_the_noisiest_ops():
    from harness.measurement import COLD_CYCLE_MIN_OPS

    steady = [ScriptedOp(100.0, 0.02, seed) for seed in range(10)]
    noisy = [ScriptedOp(100.0, 0.08, 10 + seed) for seed in range(10)]
    measurements = measure_interleaved([*steady, *noisy], adaptive(cold_cache=True, runs=5))
    runs = [m.stats.runs for m in measurements]
    # A steady op leaves the cycles once its median is known: only the few needed to keep the last noisy
    # op's cycles cold ride along as fillers (before, every op of the group ran as long as the noisiest).
    assert sum(r < 100 for r in runs[:10]) >= 10 - (COLD_CYCLE_MIN_OPS - 1)
    assert sum(runs) < 0.5 * len(runs) * max(runs)
    for m in measurements:
        assert (m.ci_high_us - m.ci_low_us) / 2 <= 0.01 * m.stats.median_us


def test_fillers_cost_a_group_at_most_one_ops_cap():
    steady = [ScriptedOp(100.0, 0.001, seed) for seed in range(11)]
    noisy = ScriptedOp(100.0, 0.3, 11)  # would ask for thousands of runs
    settings = adaptive(cold_cache=True, runs=5, max_timed_s=0.05)
    measure_interleaved([*steady, noisy], settings)
    filler_runs = sum(len(op.requests) for op in steady) - 11 * 6  # beyond each op's warm-up cycle and 5 runs
    assert filler_runs * 100.0 <= 0.05e6 + 7 * 100.0  # the budget, and the cycle that crossed it
    assert len(noisy.requests) < 0.05e6 / 100.0  # so the noisy op stopped short of its own cap
