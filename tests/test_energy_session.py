"""Energy from the command line: `bench energy import` on synthetic traces, and a lab session in demo mode
(the Monsoon package's own code on a simulated monitor, the loopback ADB phone): killed and resumed, on a
busy CPU, with items that fail (exit 1), interrupted (exit 130); its temporary folders go on every way out
(each session here gets its own TMPDIR to check that)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
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


def _session(out: Path, *extra: str, items: tuple[str, ...] = ("--plan", "smoke", "--limit", "3")) -> list[str]:
    return [sys.executable, "-m", "harness", "energy", "session", "--device", "s835", "--demo", *items,
            "--idle-s", "1", "--runs", "200", "--out", str(out), "--yes", *extra]


def _own_tmpdir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A TMPDIR of the test's own, and the environment that gives it to a session."""
    folder = tmp_path / "tmp"
    folder.mkdir(exist_ok=True)
    return folder, {**os.environ, "TMPDIR": str(folder)}


def _leftovers(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.iterdir())


@pytest.mark.slow
def test_demo_session_completes_is_killed_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "session"
    tmpdir, env = _own_tmpdir(tmp_path)
    process = subprocess.Popen(_session(out), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=env, text=True)
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

    assert len(_leftovers(tmpdir)) == 1  # SIGKILL: nothing runs on that path, the demo phone's folder stays...
    resumed = subprocess.run(_session(out, "--json"), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
                             env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert _leftovers(tmpdir) == []  # ...until the next demo session, which removes it (its process is gone)
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


def _busy_cpus(count: int) -> list[subprocess.Popen]:
    """``count`` processes spinning in Python, one per core the CI machine has (two)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


@pytest.mark.slow
def test_demo_session_measures_every_item_on_a_busy_cpu(tmp_path: Path) -> None:
    """Both cores busy: the simulated monitor hands its samples over late instead of losing them (issue 16)."""
    out = tmp_path / "session"
    tmpdir, env = _own_tmpdir(tmp_path)
    spinners = _busy_cpus(2)
    try:
        command = _session(out, "--json", items=("--plan", "smoke", "--limit", "2"))
        command[command.index("--runs") + 1] = "50"
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240, env=env)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)["manifest"]
    assert [i["status"] for i in manifest["items"]] == ["done", "done"], [i["error"] for i in manifest["items"]]
    for item in manifest["items"]:
        assert item["result"]["energy_per_run_mj"] > 0 and item["result"]["runs"] == 50
    assert _leftovers(tmpdir) == []


def _broken_model(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "zz_broken.tflite"
    path.write_bytes(b"not a flatbuffer")
    return path


def test_a_session_that_measures_nothing_exits_1_and_leaves_no_temporary_folder(tmp_path: Path) -> None:
    models = tmp_path / "models"
    _broken_model(models)
    tmpdir, env = _own_tmpdir(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmpdir / f"chameleon-demo-phone-{gone.pid}-abc123"  # what a session killed with SIGKILL left
    (stale / "data").mkdir(parents=True)
    result = subprocess.run(_session(tmp_path / "session", items=("--models", str(models))), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 1, result.stderr
    assert "0 of 1 items measured (1 failed)" in result.stdout
    assert "failed: zz_broken.tflite: benchmark_model failed" in result.stderr
    assert _leftovers(tmpdir) == []


@pytest.mark.slow
def test_a_session_with_a_failed_item_keeps_the_measured_ones_and_exits_1(tmp_path: Path) -> None:
    from harness.energy.session import plan_items
    from harness.plans import load_plan
    from harness.profiles import load_profile

    models = tmp_path / "models"
    _broken_model(models)
    good = plan_items(load_plan("smoke"), load_profile("s835"))[0][2]()
    (models / "aa_good.tflite").write_bytes(good.read_bytes())
    tmpdir, env = _own_tmpdir(tmp_path)
    out = tmp_path / "session"
    command = _session(out, items=("--models", str(models)))
    command[command.index("--runs") + 1] = "30"
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 1, result.stderr
    assert "1 of 2 items measured (1 failed; the measured ones are kept" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert [i["status"] for i in manifest["items"]] == ["done", "failed"]
    assert store.read_results(out / "results.parquet").num_rows == 1
    assert _leftovers(tmpdir) == []


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-c"])
def test_an_interrupted_session_exits_130_and_removes_its_temporary_folder(stop: signal.Signals, tmp_path: Path) -> None:
    out = tmp_path / "session"
    tmpdir, env = _own_tmpdir(tmp_path)
    command = _session(out)
    command[command.index("--idle-s") + 1] = "60"  # long inside the first item: the signal comes mid-measurement
    # A terminal's foreground job takes Ctrl-C with the default disposition; a test run started in the background
    # (as CI runners may start it) inherits SIGINT ignored, which Python then keeps, so restore the default.
    # PYTHONFAULTHANDLER: a session that does not stop in time is made to print where it waits (SIGABRT below).
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**env, "PYTHONFAULTHANDLER": "1"}, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    baseline = threading.Event()

    def read_stderr() -> None:
        for line in process.stderr:
            lines.append(line)
            if "baseline" in line:  # "ITEM: idle 60 s for the baseline, then 200 runs": the monitor is sampling
                baseline.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert baseline.wait(120), "".join(lines)
        assert len(_leftovers(tmpdir)) == 1  # the demo phone's folder, while it runs
        process.send_signal(stop)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # the faulthandler prints every thread's stack on stderr
            process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    stderr = "".join(lines)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and str(out) in stderr
    assert _leftovers(tmpdir) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert [i["status"] for i in manifest["items"]] == ["pending"] * 3  # nothing half-measured is recorded


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log-file"])
def test_the_live_current_rewrites_a_terminal_line_and_logs_a_plain_line_every_30_s(
        terminal: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from harness.cli import energy as energy_cli

    written = io.StringIO()
    clock = _Clock()
    monkeypatch.setattr(energy_cli, "err", Console(file=written, width=200))
    monkeypatch.setattr(energy_cli, "time", clock)
    ui = energy_cli._RichSessionUI(ask=False, terminal=terminal)
    for _ in range(600):  # five minutes of chunks, ten a second, for two items
        ui.current("conv2d(a)", 850.0)
        ui.current("conv2d(b)", 120.0)
        clock.now += 0.5
    text = written.getvalue()
    if terminal:
        assert text.count("\r") == 2 * 600 and "\n" not in text  # one line, rewritten
    else:
        lines = text.splitlines()
        assert "\r" not in text and len(lines) == 2 * 10  # one line per item per 30 s
        assert lines[0] == "  conv2d(a): 850.0 mA" and lines[1] == "  conv2d(b): 120.0 mA"


def test_the_set_up_removes_the_demo_phone_folder_when_it_fails_half_way(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception after the loopback phone started (here: reaching it) still takes its folder away."""
    import tempfile

    from harness.energy import session as lab
    from harness.profiles import load_profile
    from harness.runners import android

    tmpdir, _ = _own_tmpdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    seen: list[str] = []

    def unreachable(profile):
        seen.extend(_leftovers(tmpdir))
        raise RuntimeError("the phone vanished")

    monkeypatch.setattr(android, "transport_for", unreachable)
    with pytest.raises(RuntimeError, match="vanished"):
        with lab.lab_setup(load_profile("s835"), adb=None, monsoon_serial=None, demo=True, voltage_v=4.2, ui=lab.SessionUI()):
            pass
    assert len(seen) == 1 and seen[0].startswith(lab.DEMO_SANDBOX_PREFIX)
    assert _leftovers(tmpdir) == []
