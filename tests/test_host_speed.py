"""The host's speed in a LUT (issue 17): real sweeps with the reference kernel, resumes, rescaling, merges, reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.host_speed import REFERENCE_SIGNATURE, host_report, lut_baseline
from harness.lut import store as lut_store
from harness.plans import load_plan
from harness.profiles import load_profile
from harness.sweep import run_sweep
from tests.conftest import FAST_PROFILE

HOST_AWARE = FAST_PROFILE + """\
  precision: 0.02
  max_timed_s: 0.05
  exclude_descheduled: true
  reference_kernel: true
""".replace("  max_attempts: 1\n", "  max_attempts: 3\n")


@pytest.fixture(autouse=True)
def short_calibration(monkeypatch):
    """A new LUT looks for the host's fast state for 2 s; a tenth of that is plenty for these tests."""
    import harness.measurement as measurement

    monkeypatch.setattr(measurement, "CALIBRATION_S", 0.2)


@pytest.fixture()
def host_aware(profiles_dir: Path):
    (profiles_dir / "hostcpu.yaml").write_text(HOST_AWARE.format(name="hostcpu"))
    return load_profile("hostcpu")


def test_a_sweep_records_the_host_columns_and_one_baseline(host_aware, small_plan, tmp_path):
    out = tmp_path / "lut.parquet"
    result = run_sweep(host_aware, load_plan(small_plan), out)
    table = lut_store.read_lut(out)
    assert result.measured == table.num_rows > 10
    baselines = set(table.column("reference_baseline_us").to_pylist())
    assert len(baselines) == 1 and next(iter(baselines)) > 0
    tolerance = host_aware.measurement.reference_tolerance
    for row in table.to_pylist():
        assert row["reference_us"] > 0 and row["off_baseline_rounds"] >= 0 and row["at_baseline"] in (True, False)
        if row["at_baseline"]:  # every batch kept lay between readings within the tolerance of the baseline
            assert row["reference_us"] <= row["reference_baseline_us"] * (1 + tolerance)
        assert row["ci_low_us"] <= row["median_us"] <= row["ci_high_us"]
        assert row["descheduled_runs"] >= 0 and 0 < row["cpu_share"] <= 1.0
    report = host_report(table)
    assert report.rows_with_reference == table.num_rows
    assert report.rows_off_baseline == sum(not r["at_baseline"] for r in table.to_pylist())
    assert "host held to its fast state" in report.line() and "medians known to" in report.line()
    assert REFERENCE_SIGNATURE.key not in table.column("signature").to_pylist()  # timed, never a row


def test_a_resumed_sweep_keeps_the_luts_baseline(host_aware, small_plan, tmp_path):
    out = tmp_path / "lut.parquet"
    run_sweep(host_aware, load_plan(small_plan), out, limit=5)
    first = lut_baseline(lut_store.read_lut(out))
    run_sweep(host_aware, load_plan(small_plan), out)
    table = lut_store.read_lut(out)
    assert set(table.column("reference_baseline_us").to_pylist()) == {first}
    assert table.num_rows > 6


def test_a_lut_without_a_baseline_is_resumed_without_scaling(host_aware, small_plan, tmp_path):
    from dataclasses import replace

    out = tmp_path / "lut.parquet"
    without = replace(host_aware.measurement, reference_kernel=False)  # as a LUT of schema version 1 was measured
    run_sweep(host_aware, load_plan(small_plan), out, limit=5, settings=without)
    run_sweep(host_aware, load_plan(small_plan), out)
    table = lut_store.read_lut(out)
    assert table.column("reference_baseline_us").null_count == table.num_rows  # its rows alike: none held


def test_a_new_lut_can_be_held_to_another_luts_baseline(host_aware, small_plan, tmp_path):
    run_sweep(host_aware, load_plan(small_plan), tmp_path / "a.parquet", limit=3)
    first = lut_baseline(lut_store.read_lut(tmp_path / "a.parquet"))
    run_sweep(host_aware, load_plan(small_plan), tmp_path / "b.parquet", limit=3, reference_baseline_us=first)
    assert lut_baseline(lut_store.read_lut(tmp_path / "b.parquet")) == first


def test_bench_lut_show_prints_the_host_line(host_aware, small_plan, tmp_path):
    from tests.conftest import run_bench

    out = tmp_path / "lut.parquet"
    run_sweep(host_aware, load_plan(small_plan), out, limit=3)
    shown = run_bench("lut", "show", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "host: host held to its fast state" in shown.stdout


def test_a_group_that_never_met_the_fast_state_is_taken_again_at_the_end(host_aware, small_plan, tmp_path,
                                                                          monkeypatch):
    import dataclasses

    import harness.measurement as measurement

    real = measurement.measure_prepared
    groups: list[list[str]] = []

    def first_group_in_a_slow_spell(items, prepare, settings, **kwargs):
        measurements = real(items, prepare, settings, **kwargs)
        groups.append([s.key for s in items])
        if len(groups) == 1:  # the spell: nothing of the first group met the fast state
            return [dataclasses.replace(m, at_baseline=False) for m in measurements]
        return [dataclasses.replace(m, at_baseline=True) for m in measurements]

    monkeypatch.setattr(measurement, "measure_prepared", first_group_in_a_slow_spell)
    settings = dataclasses.replace(host_aware.measurement, interleave_group=4)
    out = tmp_path / "lut.parquet"
    result = run_sweep(host_aware, load_plan(small_plan), out, settings=settings)
    table = lut_store.read_lut(out)
    assert groups[-1] == groups[0]  # the first group again, last
    assert result.measured == table.num_rows == len({key for group in groups for key in group})
    assert all(table.column("at_baseline").to_pylist())  # the rows kept are the retaken ones


def test_a_group_still_slow_when_taken_again_is_written_as_measured(host_aware, small_plan, tmp_path, monkeypatch):
    import dataclasses

    import harness.measurement as measurement

    real = measurement.measure_prepared
    calls: list[int] = []

    def always_slow(items, prepare, settings, **kwargs):
        calls.append(len(items))
        return [dataclasses.replace(m, at_baseline=False) for m in real(items, prepare, settings, **kwargs)]

    monkeypatch.setattr(measurement, "measure_prepared", always_slow)
    out = tmp_path / "lut.parquet"
    result = run_sweep(host_aware, load_plan(small_plan), out, limit=6)
    table = lut_store.read_lut(out)
    assert result.measured == table.num_rows == 6 and sum(calls) == 12  # each taken twice, then written
    assert not any(table.column("at_baseline").to_pylist())  # and the rows say so
