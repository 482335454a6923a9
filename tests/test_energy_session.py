"""Energy from the command line: `bench energy import` on synthetic traces, and a lab session in demo mode
(the Monsoon package's own code on a simulated monitor, the loopback ADB phone), killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import one_line_error, run_bench
from harness.energy import store
from harness.energy.synthetic import make_trace, write_monsoon_package_csv, write_powertool_csv


@pytest.mark.parametrize("writer", [write_powertool_csv, write_monsoon_package_csv])
def test_bench_energy_import_finds_the_truth(writer, tmp_path: Path) -> None:
    trace, truth = make_trace(idle_s=18, runs=1000, latency_ms=12, noise_ma=25, drift_ma_per_s=0.5, seed=11)
    path = writer(trace, tmp_path / "trace.csv")
    result = run_bench("energy", "import", str(path), "--runs", "1000", "--idle-s", "18", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("energy_per_run_mj", "window_s", "baseline_ma", "mean_power_mw", "uncertainty_mj"):
        assert key in report
    true_energy = truth["energy_per_run_mj"]
    true_window = truth["window_end_s"] - truth["window_start_s"]
    assert abs(report["energy_per_run_mj"] - true_energy) <= 0.02 * true_energy
    assert abs(report["window_s"] - true_window) <= 0.01 * true_window


def test_bench_energy_import_of_an_unknown_header_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n4,5,6\n")
    line = one_line_error(run_bench("energy", "import", str(bad), "--runs", "10"))
    assert "bad.csv" in line and "time_s" in line


def _session(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness", "energy", "session", "--device", "s835", "--demo", "--plan", "smoke",
            "--limit", "3", "--idle-s", "1", "--runs", "200", "--out", str(out), "--yes", *extra]


@pytest.mark.slow
def test_demo_session_completes_is_killed_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "session"
    process = subprocess.Popen(_session(out), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=os.environ.copy(), text=True)
    manifest_path = out / "manifest.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if manifest_path.exists() and any(i["status"] == "done" for i in json.loads(manifest_path.read_text())["items"]):
            break
        time.sleep(0.1)
    assert process.poll() is None, process.stderr.read() if process.stderr else ""
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = json.loads(manifest_path.read_text())
    first_done = [i for i in killed["items"] if i["status"] == "done"]
    assert 1 <= len(first_done) < 3

    resumed = subprocess.run(_session(out, "--json"), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads(resumed.stdout)["manifest"]
    assert [i["status"] for i in manifest["items"]] == ["done"] * 3
    assert any("resumed" in note for note in manifest["notes"])
    assert manifest["monitor"].endswith("(simulated)") and "Loopback" in manifest["device_model"]
    assert manifest["operator"] and manifest["settings"]["voltage_v"] == 4.2
    for before in first_done:  # measured once, kept as it was
        after = next(i for i in manifest["items"] if i["key"] == before["key"])
        assert after["result"] == before["result"]
    table = store.read_results(out / "results.parquet")
    assert table.num_rows == 3
    for item in manifest["items"]:
        assert item["result"]["energy_per_run_mj"] > 0 and item["result"]["runs"] == 200
        assert (out / item["trace_file"]).exists()
    recomputed = run_bench("energy", "recompute", str(out / "results.parquet"), "--json")
    assert recomputed.returncode == 0, recomputed.stderr
    for row in json.loads(recomputed.stdout)["rows"]:
        assert row["energy_per_run_mj"] == pytest.approx(row["previous_energy_per_run_mj"])


def test_session_refuses_usb_and_other_runtimes() -> None:
    line = one_line_error(run_bench("energy", "session", "--device", "s835", "--plan", "smoke", "--adb", "SERIAL123", "--yes"))
    assert "Wi-Fi" in line
    assert "benchmark_model" in one_line_error(run_bench("energy", "session", "--device", "xeon", "--plan", "smoke", "--yes"))
