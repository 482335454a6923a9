"""The `bench` and `optimize` command lines, run as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import one_line_error, run_bench
from harness.lut import store as lut_store
from harness.sweep import OVERHEAD_SIGNATURE


@pytest.fixture()
def swept(profiles_dir: Path, small_plan: Path, tmp_path: Path) -> Path:
    out = tmp_path / "fast.parquet"
    result = run_bench("sweep", "--device", "fastcpu", "--plan", str(small_plan), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_sweep_prints_a_summary_and_json(profiles_dir: Path, small_plan: Path, tmp_path: Path) -> None:
    out = tmp_path / "lut.parquet"
    result = run_bench("sweep", "--device", "fastcpu", "--plan", str(small_plan), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert document["sweep"]["measured"] == document["sweep"]["planned"] == document["lut"]["rows"] == 15
    assert document["lut"]["all_medians_positive"] is True
    assert document["lut"]["overhead_us"] > 0
    assert {entry["kind"] for entry in document["lut"]["by_kind"]} == {"conv2d", "depthwise_conv", "add"}

    again = run_bench("sweep", "--device", "fastcpu", "--plan", str(small_plan), "--out", str(out))
    assert again.returncode == 0
    assert "measured 0 new, 15 already there" in " ".join(again.stdout.split())


def test_sweep_rejects_unknown_device() -> None:
    line = one_line_error(run_bench("sweep", "--device", "nosuch", "--plan", "smoke"))
    assert "unknown device 'nosuch'" in line and "xeon" in line


def test_sweep_rejects_a_plan_with_a_bad_kernel(tmp_path: Path) -> None:
    plan = tmp_path / "bad.yaml"
    plan.write_text("name: bad\nentries:\n  - {kind: conv2d, c_in: 8, h: 8, w: same, c_out: 8, kernel: 0}\n")
    out = tmp_path / "never.parquet"
    line = one_line_error(run_bench("sweep", "--device", "xeon", "--plan", str(plan), "--out", str(out)))
    assert str(plan) in line and "kernel" in line
    assert not out.exists()


def test_sweep_rejects_unknown_plan_and_malformed_yaml(tmp_path: Path) -> None:
    assert "unknown plan" in one_line_error(run_bench("sweep", "--device", "xeon", "--plan", "nosuchplan"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nentries: [ {kind: conv2d\n")
    assert "broken.yaml" in one_line_error(run_bench("sweep", "--device", "xeon", "--plan", str(broken)))


def test_sweep_rejects_an_unwritable_output_before_measuring(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = one_line_error(run_bench("sweep", "--device", "xeon", "--plan", "smoke", "--out", str(blocker / "lut.parquet")))
    assert "a-file" in line


def test_sweep_on_a_device_without_a_runner_here_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(run_bench("sweep", "--device", "pixel", "--plan", "smoke", "--out", str(tmp_path / "p.parquet")))
    assert "pixel" in line and "adb" in line


def test_lut_show_on_a_truncated_file(swept: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.parquet"
    data = swept.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    line = one_line_error(run_bench("lut", "show", str(truncated)))
    assert "truncated.parquet" in line and "not a readable Parquet file" in line


def test_lut_show_on_a_foreign_parquet_file(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1, 2, 3]}), foreign)
    assert "not a Chameleon LUT" in one_line_error(run_bench("lut", "show", str(foreign)))
    assert "no such file" in one_line_error(run_bench("lut", "show", str(tmp_path / "missing.parquet")))


def test_lut_show_json_and_plot(swept: Path, tmp_path: Path) -> None:
    png = tmp_path / "plot.png"
    result = run_bench("lut", "show", str(swept), "--json", "--plot", str(png))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows"] == 15 and summary["devices"] == ["fastcpu"] and summary["pending_part_rows"] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    human = run_bench("lut", "show", str(swept))
    assert human.returncode == 0 and "fastcpu" in human.stdout and "conv2d" in human.stdout


def test_lut_query(swept: Path) -> None:
    found = run_bench("lut", "query", str(swept), OVERHEAD_SIGNATURE.key, "--json")
    assert found.returncode == 0, found.stderr
    entry = json.loads(found.stdout)
    assert entry["found"] is True and entry["kind"] == "identity" and entry["median_us"] > 0

    absent = OVERHEAD_SIGNATURE.replace(c_in=3, c_out=3).key
    missing = run_bench("lut", "query", str(swept), absent)
    assert missing.returncode == 1 and "no entry" in missing.stderr

    assert "malformed signature" in one_line_error(run_bench("lut", "query", str(swept), "conv2d(k=3"))
    assert "kernel" in one_line_error(run_bench("lut", "query", str(swept), OVERHEAD_SIGNATURE.key.replace("kernel=1", "kernel=3")))


def test_lut_merge_combines_sessions_without_duplicates(profiles_dir: Path, small_plan: Path, tmp_path: Path) -> None:
    first, second, merged = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "merged.parquet"
    assert run_bench("sweep", "--device", "fastcpu", "--plan", str(small_plan), "--out", str(first), "--limit", "6").returncode == 0
    assert run_bench("sweep", "--device", "fastcpu", "--plan", str(small_plan), "--out", str(second)).returncode == 0
    result = run_bench("lut", "merge", str(merged), str(first), str(second), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows_in"] == 6 + 15 and report["rows_out"] == 15 and report["duplicates_dropped"] == 6
    table = lut_store.read_lut(merged)
    assert table.num_rows == 15
    newer_session = set(lut_store.read_lut(second).column("session_id").to_pylist())
    assert set(table.column("session_id").to_pylist()) == newer_session  # b measured every signature later
    refused = run_bench("lut", "merge", str(tmp_path / "m2.parquet"), str(first), str(second), "--on-duplicate", "error")
    assert "measured more than once" in one_line_error(refused)


def test_devices_and_plans_listings() -> None:
    devices = run_bench("devices", "--json")
    assert devices.returncode == 0, devices.stderr
    names = {d["name"] for d in json.loads(devices.stdout)["devices"]}
    assert {"xeon", "cuda", "pixel", "s835", "hexagon-v62"} <= names
    plans = run_bench("plans", "--json")
    assert plans.returncode == 0, plans.stderr
    counts = {p["name"]: p["signatures"] for p in json.loads(plans.stdout)["plans"]}
    assert counts["smoke"] > 50 and counts["chamnet-mobile"] > 50_000


def test_invalid_profile_is_one_line(profiles_dir: Path) -> None:
    (profiles_dir / "broken.yaml").write_text("name: broken\nruntime: {threads: two}\n")
    line = one_line_error(run_bench("sweep", "--device", "broken"))
    assert "broken.yaml" in line and "threads" in line


def test_optimize_estimate_counts_the_overhead_once(swept: Path, tmp_path: Path) -> None:
    table = lut_store.read_lut(swept).to_pylist()
    ops = [r for r in table if r["kind"] != "identity"][:4]
    overhead = next(r["median_us"] for r in table if r["kind"] == "identity")
    listing = tmp_path / "net.txt"
    listing.write_text("# a tiny network\n" + "\n".join(r["signature"] for r in ops) + "\n")
    result = subprocess.run([sys.executable, "-m", "optimizer", "estimate", "--lut", str(swept), str(listing), "--json"],
                            capture_output=True, text=True, env=os.environ.copy(), stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    estimate = json.loads(result.stdout)
    total = sum(r["median_us"] for r in ops)
    assert estimate["operator_sum_us"] == pytest.approx(total)
    assert estimate["latency_us"] == pytest.approx(total - 3 * overhead)
    # The estimate says how quiet and steady the LUT's host was (the test profile keeps no reference kernel).
    assert estimate["host"]["rows"] == len(table) and estimate["host"]["rows_with_reference"] == 0
    assert estimate["host"]["cpu_share_median"] is not None

    listing.write_text(OVERHEAD_SIGNATURE.replace(c_in=5, c_out=5).key + "\n")
    missing = subprocess.run([sys.executable, "-m", "optimizer", "estimate", "--lut", str(swept), str(listing)],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
    line = [x for x in missing.stderr.splitlines() if x.strip()]
    assert missing.returncode == 2 and len(line) == 1 and "bench sweep" in line[0]
