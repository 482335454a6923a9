"""Sweeps end to end: real ONNX Runtime runs into real Parquet LUTs, resumed after kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import run_bench, small_plan_yaml
from harness.lut import store as lut_store
from harness.errors import LutFileError
from harness.plans import load_plan
from harness.profiles import load_profile
from harness.signature import IDENTITY
from harness.sweep import OVERHEAD_SIGNATURE, run_sweep, signatures_for_device


def test_sweep_writes_every_planned_row_with_positive_medians(profiles_dir: Path, small_plan: Path, tmp_path: Path) -> None:
    profile = load_profile("fastcpu")
    plan = load_plan(small_plan)
    out = tmp_path / "lut.parquet"
    result = run_sweep(profile, plan, out)

    table = lut_store.read_lut(out)
    assert result.measured == result.planned == len(plan.signatures) + 1  # + the overhead probe
    assert table.num_rows == result.planned
    assert set(table.column_names) == set(lut_store.LUT_COLUMNS)
    assert set(table.column("signature").to_pylist()) == {s.key for s in plan.signatures} | {OVERHEAD_SIGNATURE.key}
    for row in table.to_pylist():
        assert row["median_us"] > 0
        assert row["min_us"] <= row["p10_us"] <= row["median_us"] <= row["p90_us"]
        assert row["runs"] >= profile.measurement.runs
        assert row["device_id"] == "fastcpu" and row["runtime"] == "onnxruntime"
        assert row["provider"] == "CPUExecutionProvider" and row["threads"] == 1
        assert lut_store.row_signature(row).key == row["signature"]
    assert result.overhead_us == lut_store.find_row(table, OVERHEAD_SIGNATURE)["median_us"]
    assert not lut_store.parts_dir(out).exists() or not list(lut_store.parts_dir(out).glob("part-*"))


def test_second_sweep_measures_nothing_new(profiles_dir: Path, small_plan: Path, tmp_path: Path) -> None:
    profile, plan, out = load_profile("fastcpu"), load_plan(small_plan), tmp_path / "lut.parquet"
    run_sweep(profile, plan, out)
    before = pq.read_table(out)
    again = run_sweep(profile, plan, out)
    assert again.measured == 0 and again.already_measured == again.planned
    assert pq.read_table(out).equals(before)


def test_limit_then_resume_completes_without_duplicates(profiles_dir: Path, small_plan: Path, tmp_path: Path) -> None:
    profile, plan, out = load_profile("fastcpu"), load_plan(small_plan), tmp_path / "lut.parquet"
    first = run_sweep(profile, plan, out, limit=5)
    assert first.measured == 5 and first.remaining == first.planned - 5
    kept = {r["signature"]: r["measured_at"] for r in lut_store.read_lut(out).to_pylist()}
    second = run_sweep(profile, plan, out)
    assert second.already_measured == 5 and second.measured == second.planned - 5
    table = lut_store.read_lut(out)
    keys = table.column("signature").to_pylist()
    assert len(keys) == len(set(keys)) == second.planned
    for row in table.to_pylist():  # earlier measurements kept, not re-measured
        if row["signature"] in kept:
            assert row["measured_at"] == kept[row["signature"]]


def test_device_dtypes_filter_the_plan(profiles_dir: Path, small_plan: Path) -> None:
    plan = load_plan(small_plan)
    cuda_like = load_profile("cuda")  # fp32 only
    signatures, skipped = signatures_for_device(plan, cuda_like)
    assert skipped == sum(1 for s in plan.signatures if s.dtype == "int8") > 0
    assert signatures[0] == OVERHEAD_SIGNATURE and signatures[0].kind == IDENTITY
    assert all(s.dtype == "fp32" for s in signatures)


def test_resuming_into_another_devices_lut_is_refused(profiles_dir: Path, small_plan: Path, tmp_path: Path) -> None:
    (profiles_dir / "othercpu.yaml").write_text((profiles_dir / "fastcpu.yaml").read_text().replace("name: fastcpu", "name: othercpu"))
    plan, out = load_plan(small_plan), tmp_path / "lut.parquet"
    run_sweep(load_profile("fastcpu"), plan, out, limit=2)
    with pytest.raises(LutFileError, match="device_id fastcpu"):
        run_sweep(load_profile("othercpu"), plan, out)
    assert lut_store.read_lut(out).num_rows == 2  # nothing lost


def _rows(out: Path) -> list[str]:
    return lut_store.read_with_parts(out).column("signature").to_pylist()


def _start_slow_sweep(profiles_dir: Path, tmp_path: Path, **popen) -> tuple[subprocess.Popen, Path, Path]:
    """Start `bench sweep` in a subprocess on a plan that takes several seconds (82 signatures)."""
    slow = (profiles_dir / "fastcpu.yaml").read_text().replace("name: fastcpu", "name: slowcpu")
    (profiles_dir / "slowcpu.yaml").write_text(slow.replace("min_timed_s: 0.002", "min_timed_s: 0.06"))
    plan_file = tmp_path / "bigger.yaml"
    plan_file.write_text(small_plan_yaml("bigger", list(range(8, 8 * 21, 8))))
    out = tmp_path / "lut.parquet"
    env = {**os.environ, "CHAMELEON_PROFILES": str(profiles_dir)}
    # Ctrl-C as in a terminal: a shell that starts a job in the background (`.ci/run &`) makes it ignore SIGINT,
    # children inherit that, and Python then installs no KeyboardInterrupt handler; restore the default first.
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", "--device", "slowcpu", "--plan", str(plan_file), "--out", str(out)],
        stdin=subprocess.DEVNULL, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen,
    )
    return process, plan_file, out


def _wait_for_rows(process: subprocess.Popen, out: Path, rows: int) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None and len(_rows(out)) < rows:
        time.sleep(0.05)
    assert process.poll() is None, "the sweep finished before it could be stopped"


@pytest.mark.slow
def test_sigkill_halfway_then_rerun_ends_with_exactly_the_plan(profiles_dir: Path, tmp_path: Path) -> None:
    process, plan_file, out = _start_slow_sweep(profiles_dir, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    planned = len(load_plan(plan_file).signatures) + 1
    _wait_for_rows(process, out, 8)
    process.send_signal(signal.SIGKILL)
    process.wait()

    survived = _rows(out)
    assert 0 < len(survived) < planned
    assert len(survived) == len(set(survived))
    if out.exists():
        lut_store.read_lut(out)  # whatever the LUT file holds is readable

    rerun = run_bench("sweep", "--device", "slowcpu", "--plan", str(plan_file), "--out", str(out), "--json",
                      env={"CHAMELEON_PROFILES": str(profiles_dir)})
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)["sweep"]
    assert report["already_measured"] == len(survived)
    assert report["measured"] == planned - len(survived)
    keys = lut_store.read_lut(out).column("signature").to_pylist()
    assert len(keys) == len(set(keys)) == planned
    assert set(survived) <= set(keys)
    assert not list(lut_store.parts_dir(out).glob("part-*.parquet"))


@pytest.mark.slow
def test_ctrl_c_keeps_everything_measured_and_exits_130(profiles_dir: Path, tmp_path: Path) -> None:
    process, _, out = _start_slow_sweep(profiles_dir, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_rows(process, out, 8)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    keys = lut_store.read_lut(out).column("signature").to_pylist()  # folded into the LUT on the way out
    assert len(keys) >= 8 and len(keys) == len(set(keys))
    assert not list(lut_store.parts_dir(out).glob("part-*.parquet"))
