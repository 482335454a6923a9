"""The host's speed in a LUT (issue 17): real sweeps with the reference kernel, resumes, rescaling, merges, reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.host_speed import REFERENCE_SIGNATURE, host_report, lut_baseline, rescaled
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
    for row in table.to_pylist():
        assert row["reference_us"] > 0 and row["raw_median_us"] > 0
        assert row["median_us"] == pytest.approx(row["raw_median_us"] * row["reference_baseline_us"] / row["reference_us"])
        assert row["ci_low_us"] <= row["median_us"] <= row["ci_high_us"]
        assert row["descheduled_runs"] >= 0 and 0 < row["cpu_share"] <= 1.5
    report = host_report(table)
    assert report.rows_with_reference == table.num_rows and report.speed_low <= 1.0 <= report.speed_high * 1.0001
    assert "host speed" in report.line() and "medians known to" in report.line()
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
    assert table.column("reference_baseline_us").null_count == table.num_rows  # still one unit: unscaled


def test_rescaled_expresses_every_time_at_another_baseline(host_aware, small_plan, tmp_path):
    out = tmp_path / "lut.parquet"
    run_sweep(host_aware, load_plan(small_plan), out)
    table = lut_store.read_lut(out)
    own = lut_baseline(table)
    half = rescaled(table, own / 2)
    for before, after in zip(table.to_pylist(), half.to_pylist()):
        for column in ("median_us", "min_us", "p10_us", "ci_high_us"):
            assert after[column] == pytest.approx(before[column] / 2)
        assert after["raw_median_us"] == before["raw_median_us"] and after["reference_baseline_us"] == own / 2
    lut_store.validate_table(half, "rescaled")


def test_merge_brings_two_luts_to_the_first_ones_baseline(host_aware, small_plan, tmp_path):
    plan = load_plan(small_plan)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    run_sweep(host_aware, plan, a, limit=4)
    run_sweep(host_aware, plan, b)
    table_b = lut_store.read_lut(b)
    # Pretend b's first sweep ran on a host 25% slower: its own baseline reads 1.25 x a's.
    slow = rescaled(table_b, lut_baseline(lut_store.read_lut(a)) * 1.25)
    merged = lut_store.merge_tables([lut_store.read_lut(a), slow])
    base_a, base_b = lut_baseline(lut_store.read_lut(a)), lut_baseline(table_b)
    assert set(merged.column("reference_baseline_us").to_pylist()) == {base_a}
    by_key = {r["signature"]: r for r in merged.to_pylist()}
    from_b = [row for row in table_b.to_pylist() if by_key[row["signature"]]["session_id"] == row["session_id"]]
    assert from_b  # b's newer rows won
    for row in from_b:  # whatever baseline b was carried at, its rows come back at a's
        assert by_key[row["signature"]]["median_us"] == pytest.approx(row["median_us"] * base_a / base_b)


def test_bench_lut_show_prints_the_host_line(host_aware, small_plan, tmp_path):
    from tests.conftest import run_bench

    out = tmp_path / "lut.parquet"
    run_sweep(host_aware, load_plan(small_plan), out, limit=3)
    shown = run_bench("lut", "show", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "host: host speed" in shown.stdout
