"""`bench energy` against bad numbers, bad paths, bad traces and two writers at once (issue 15).

Each command line is run as a user runs it (a subprocess, :func:`conftest.run_bench`).
The session tests never reach the lab set-up: they pass ``--demo`` (whose set-up
starts a loopback phone and takes a while) and require the refusal within
seconds, which proves the check comes before any set-up.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from conftest import one_line_error, run_bench
from harness.atomic import exclusive_lock
from harness.energy import store
from harness.energy.analysis import EnergyResult, analyze
from harness.energy.synthetic import make_trace, write_plain_csv, write_powertool_csv
from harness.energy.trace import Trace
from harness.errors import ChameleonError, SweepLocked
from harness.signature import make_signature

FAST_S = 15.0  # a refusal before set-up takes an interpreter's start-up, not a phone's and a monitor's
HUGE = str(10**23)


@pytest.fixture(scope="module")
def small_trace() -> tuple[Trace, dict]:
    """Two seconds of idle, 100 runs of 10 ms, a second of tail: about 4 s at 5 kHz."""
    return make_trace(idle_s=2, runs=100, latency_ms=10, noise_ma=5, tail_idle_s=1, seed=1)


@pytest.fixture(scope="module")
def good_csv(small_trace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_powertool_csv(small_trace[0], tmp_path_factory.mktemp("traces") / "good.csv")


def _fast_one_line(*args: str) -> str:
    started = time.monotonic()
    result = run_bench(*args, timeout=2 * FAST_S)
    line = one_line_error(result)
    assert time.monotonic() - started < FAST_S, "refused only after a slow set-up"
    return line


def _fast_lines(cases: list[tuple[str, ...]]) -> list[str]:
    """:func:`_fast_one_line` of each command line, run side by side (each is an interpreter's start-up, mostly)."""
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda args: _fast_one_line(*args), cases))


# ----------------------------------------------------------------- session: numbers and --out before any set-up
def _session(out: Path, *extra: str) -> list[str]:
    return ["energy", "session", "--device", "s835", "--demo", "--plan", "smoke", "--yes", "--out", str(out), *extra]


SESSION_NUMBERS = [("--idle-s", "nan"), ("--idle-s", "-5"), ("--idle-s", "inf"), ("--idle-s", "86400"),
                   ("--runs", HUGE), ("--limit", HUGE)]


def test_session_refuses_bad_numbers_before_any_set_up(tmp_path: Path) -> None:
    out = tmp_path / "session"
    lines = _fast_lines([tuple(_session(out, option, value)) for option, value in SESSION_NUMBERS])
    for (option, value), line in zip(SESSION_NUMBERS, lines):
        assert option in line and value in line, (option, value, line)
    assert not out.exists()


def test_session_refuses_an_out_that_is_a_file_before_any_set_up(tmp_path: Path) -> None:
    out = tmp_path / "results.txt"
    out.write_text("my notes\n")
    line = _fast_one_line(*_session(out, "--idle-s", "1", "--runs", "10"))
    assert str(out) in line and "not a folder" in line
    assert out.read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.txt"]


def test_session_refuses_an_out_below_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = _fast_one_line(*_session(blocker / "session", "--idle-s", "1"))
    assert "a-file" in line and "not a folder" in line


# ----------------------------------------------------------------- import and measure: numbers
IMPORT_NUMBERS = [("--idle-s", "nan"), ("--idle-s", "-5"), ("--idle-s", "inf"), ("--runs", HUGE),
                  ("--rate", "nan"), ("--rate", "inf"), ("--rate", "0")]


def test_import_refuses_bad_numbers(good_csv: Path) -> None:
    cases = []
    for option, value in IMPORT_NUMBERS:
        args = {"--runs": "100", option: value}
        cases.append(("energy", "import", str(good_csv), *(x for pair in args.items() for x in pair)))
    for (option, value), line in zip(IMPORT_NUMBERS, _fast_lines(cases)):
        assert option in line and value in line, (option, value, line)


def test_import_still_accepts_good_numbers(good_csv: Path) -> None:
    result = run_bench("energy", "import", str(good_csv), "--runs", "100", "--idle-s", "0", "--rate", "5000", "--json")
    assert result.returncode == 0, result.stderr


def test_measure_refuses_non_finite_seconds() -> None:
    # Refused before the counter is opened or the op run (inf would run it for ever); typer itself refuses NaN.
    cases = [(option, value) for option in ("--seconds", "--idle-seconds") for value in ("nan", "inf", "1e9")]
    lines = _fast_lines([("energy", "measure", "--device", "xeon", option, value) for option, value in cases])
    for (option, value), line in zip(cases, lines):
        assert option in line, (option, value, line)


# ----------------------------------------------------------------- traces: negative current, non-finite samples
def test_import_refuses_a_trace_of_negative_current(small_trace, tmp_path: Path) -> None:
    trace = small_trace[0]
    reversed_leads = Trace(current_ma=-trace.current_ma, voltage_v=trace.voltage_v, sample_rate_hz=trace.sample_rate_hz)
    path = write_plain_csv(reversed_leads, tmp_path / "reversed.csv")
    line = one_line_error(run_bench("energy", "import", str(path), "--runs", "100", "--idle-s", "2"))
    assert "negative" in line and "reversed" in line and "median" in line


def test_a_flat_negative_trace_is_refused_as_negative_not_as_no_window() -> None:
    rng = np.random.default_rng(0)
    flat = Trace(current_ma=-300 + rng.normal(0, 2, 20000), voltage_v=np.full(20000, 4.2), sample_rate_hz=5000)
    with pytest.raises(ChameleonError, match="negative") as err:
        analyze(flat, 100, idle_s=2)
    assert "reversed" in str(err.value) and "\n" not in str(err.value)


def test_a_positive_trace_with_a_slightly_negative_idle_is_still_measured(small_trace) -> None:
    # A monitor's offset can put a near-zero idle a hair below zero; the window's median decides, not the idle's.
    trace, truth = small_trace
    shifted = Trace(current_ma=trace.current_ma - 156.0, voltage_v=trace.voltage_v, sample_rate_hz=trace.sample_rate_hz)
    assert -10 < np.median(shifted.current_ma) < 0  # the idle, most of the trace, is a little below zero
    result = analyze(shifted, 100, idle_s=2)
    assert result.energy_per_run_mj == pytest.approx(truth["energy_per_run_mj"], rel=0.03)


@pytest.mark.parametrize("where", ["current_ma", "voltage_v"])
def test_non_finite_samples_are_refused(small_trace, where: str) -> None:
    trace = small_trace[0]
    arrays = {"current_ma": trace.current_ma.copy(), "voltage_v": trace.voltage_v.copy()}
    arrays[where][1234] = np.nan
    arrays[where][5000] = np.inf
    with pytest.raises(ChameleonError, match=r"2 \w+ sample") as err:
        analyze(Trace(sample_rate_hz=trace.sample_rate_hz, **arrays), 100, idle_s=2)
    assert "finite" in str(err.value)


@pytest.mark.parametrize("runs, idle_s", [(0, None), (10**23, None), (100, float("nan")), (100, -5.0)])
def test_analyze_refuses_bad_settings_as_the_users_problem(small_trace, runs: int, idle_s: float | None) -> None:
    with pytest.raises(ChameleonError):
        analyze(small_trace[0], runs, idle_s=idle_s)


# ----------------------------------------------------------------- import: files that are not traces
def _garbage_files(folder: Path, good: Path) -> dict[str, Path]:
    text = good.read_text()
    files = {
        "binary": bytes(range(256)) * 40,
        "utf-16-cut-short": text[:20000].encode("utf-16"),
        "utf-16-broken": b"\xff\xfe" + "time_s,current_mA".encode("utf-16-le") + b"\x00\xd8\x41",
        "latin-1": "time_s,current_mA,voltage_V\n0,1\xe9,4.2\n0.0002,1,4.2\n".encode("latin-1"),
        "nul-in-data": text.encode()[:4000] + b"\x00\x00\xff\xfe" * 50 + b"\n",
        "one-huge-line": b"x" * 3_000_000,
        "huge-header-cell": b"time_s,current_mA,voltage_V," + b"y" * 300_000 + b"\n0,1,4.2,0\n",
        "empty": b"",
        "only-newlines": b"\n\n\r\n",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.csv"
        paths[name].write_bytes(data)
    return paths


def test_garbage_and_non_utf8_traces_are_one_line(tmp_path: Path, good_csv: Path) -> None:
    files = _garbage_files(tmp_path, good_csv)
    lines = _fast_lines([("energy", "import", str(path), "--runs", "10") for path in files.values()])
    for (name, path), line in zip(files.items(), lines):
        assert str(path) in line, (name, line)
        assert len(line) < 600, (name, line)  # says what is wrong; does not echo megabytes of the file


def test_a_trace_saved_as_utf16_text_is_read(good_csv: Path, tmp_path: Path) -> None:
    utf16 = tmp_path / "unicode-text.csv"
    utf16.write_bytes(good_csv.read_text().encode("utf-16"))
    result = run_bench("energy", "import", str(utf16), "--runs", "100", "--idle-s", "2", "--json")
    assert result.returncode == 0, result.stderr


def test_a_trace_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)  # reading it would block for ever
    line = _fast_one_line("energy", "import", str(fifo), "--runs", "10")
    assert "not a regular file" in line


# ----------------------------------------------------------------- the results file: two writers at once
SIG = make_signature("conv2d", c_in=8, h=16, w=16, c_out=8, kernel=3, activation="relu")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
RESULT = EnergyResult(energy_per_run_mj=1.0, uncertainty_mj=0.01, window_start_s=2.0, window_end_s=3.0, window_s=1.0,
                      latency_per_run_ms=10.0, baseline_ma=150.0, baseline_drift_ma=0.0, mean_power_mw=3000.0,
                      mean_active_power_mw=100.0, runs=100, samples=5000, dropped_samples=0)


def _network_row(name: str, when: datetime = T0) -> dict:
    return store.result_row(RESULT, arch_id=name, device_id="s835", device_model="SM-G950U", monitor="simulated",
                            session_id="s1", sample_rate_hz=5000, voltage_v=4.2, measured_at=when)


def _with_a_trace(folder: Path, small_trace) -> Path:
    trace = small_trace[0]
    results = folder / "results.parquet"
    trace_path = store.save_trace(trace, folder / "traces" / "op.npz")
    row = store.result_row(analyze(trace, 100, idle_s=2), signature=SIG, device_id="s835", device_model="SM-G950U",
                           monitor="simulated", session_id="s1", sample_rate_hz=trace.sample_rate_hz, voltage_v=4.2,
                           idle_s=2, trace_file=store.relative_trace_path(results, trace_path), measured_at=T0)
    store.append_results(results, [row])
    return results


def _run_all(*jobs) -> None:
    """Run the jobs at once, each in its own thread (each takes its own lock file descriptor); re-raise a failure."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def wrap(job) -> None:
        try:
            start.wait()
            job()
        except BaseException as err:  # noqa: BLE001: re-raised on the main thread
            errors.append(err)

    threads = [threading.Thread(target=wrap, args=(job,), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a writer is stuck"
    if errors:
        raise errors[0]


def test_two_writers_appending_to_one_results_file_lose_no_row(tmp_path: Path) -> None:
    results = tmp_path / "results.parquet"

    def writer(name: str):
        return lambda: [store.append_results(results, [_network_row(f"{name}-{i}")]) for i in range(15)]

    _run_all(writer("a"), writer("b"))
    names = set(store.read_results(results).column("arch_id").to_pylist())
    assert names == {f"{w}-{i}" for w in "ab" for i in range(15)}
    assert (tmp_path / "results.parquet.lock").exists()


def test_a_recompute_racing_appends_loses_no_row(tmp_path: Path, small_trace) -> None:
    results = _with_a_trace(tmp_path, small_trace)
    before = store.read_results(results).to_pylist()[0]

    def recompute():
        for _ in range(4):
            store.recompute(results)

    def append():
        for i in range(15):
            store.append_results(results, [_network_row(f"net-{i}")])

    _run_all(recompute, append)
    rows = store.read_results(results).to_pylist()
    assert {r["arch_id"] for r in rows if r["entry"] == "network"} == {f"net-{i}" for i in range(15)}
    operator = next(r for r in rows if r["entry"] == "operator")
    assert operator["energy_per_run_mj"] == pytest.approx(before["energy_per_run_mj"])


def test_a_recompute_keeps_a_row_measured_again_while_it_ran(tmp_path: Path, small_trace,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    results = _with_a_trace(tmp_path, small_trace)
    remeasured = {**store.read_results(results).to_pylist()[0], "energy_per_run_mj": 99.0,
                  "measured_at": T0 + timedelta(hours=1)}
    real_analyze = store.analyze

    def analyze_while_a_session_writes(*args, **kwargs):
        store.append_results(results, [remeasured])  # the session's newer measurement lands mid-recompute
        return real_analyze(*args, **kwargs)

    monkeypatch.setattr(store, "analyze", analyze_while_a_session_writes)
    _run_all(lambda: store.recompute(results))
    row = store.read_results(results).to_pylist()[0]
    assert row["energy_per_run_mj"] == 99.0 and row["measured_at"] == T0 + timedelta(hours=1)


def test_a_writer_that_holds_the_lock_too_long_makes_the_others_refuse_in_one_line(
        tmp_path: Path, small_trace, monkeypatch: pytest.MonkeyPatch) -> None:
    results = _with_a_trace(tmp_path, small_trace)
    monkeypatch.setattr(store, "LOCK_WAIT_S", 0.5)
    with exclusive_lock(results, "a stuck writer"):  # the lock every LUT and energy writer takes
        for job in (lambda: store.append_results(results, [_network_row("late")]), lambda: store.recompute(results)):
            with pytest.raises(SweepLocked) as err:
                _run_all(job)
            assert "results.parquet.lock" in str(err.value) and "\n" not in str(err.value)
    assert store.read_results(results).num_rows == 1


def test_session_refuses_an_op_beyond_the_phones_memory_before_any_set_up(tmp_path: Path) -> None:
    plan = tmp_path / "big.yaml"
    plan.write_text("name: big\ndtypes: [fp32]\nentries:\n  - {kind: conv2d, c_in: 2048, h: 1024, w: same, c_out: 16, kernel: 3}\n")
    started = time.monotonic()
    line = one_line_error(run_bench("energy", "session", "--device", "s835", "--demo", "--plan", str(plan), "--yes",
                                    "--out", str(tmp_path / "session")))
    assert time.monotonic() - started < 15
    assert "memory_limit_mb" in line and "s835" in line
