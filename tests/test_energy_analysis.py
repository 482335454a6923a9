"""Energy per inference from power traces: CSV import, ChamNet's protocol (§4.3), results and trace files.

Synthetic traces (harness.energy.synthetic) have an exact answer: 5 kHz, 4.2 V,
18 s idle, 1000 runs, noise, a slowly drifting baseline and per-run texture.
They go through each CSV format, back through read_trace, into analyze.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.energy.analysis import EnergyResult, WindowNotFound, analyze
from harness.energy.store import ENERGY_SCHEMA, EnergyFileError, append_results, load_trace, read_results, recompute, relative_trace_path, result_of, result_row, save_trace
from harness.energy.synthetic import make_trace, write_monsoon_package_csv, write_plain_csv, write_powertool_csv
from harness.energy.trace import Trace
from harness.energy.trace_import import TraceFormatError, read_trace
from harness.errors import ChameleonError
from harness.signature import make_signature

WRITERS = {
    "plain": write_plain_csv,
    "powertool": write_powertool_csv,
    "powertool-power": lambda trace, path: write_powertool_csv(trace, path, variant="power"),
    "monsoon-python": write_monsoon_package_csv,
    "monsoon-python-np2": lambda trace, path: write_monsoon_package_csv(trace, path, numpy2_repr=True, usb=True),
}

CASES = {  # name: make_trace arguments
    "protocol-seed0": dict(seed=0),
    "protocol-seed1": dict(seed=1),
    "protocol-seed2": dict(seed=2, idle_ma=90, active_ma=600),
    "short-latency": dict(seed=3, latency_ms=1.0),
    "long-latency": dict(seed=4, latency_ms=250.0, runs=100),
    "noisy": dict(seed=5, noise_ma=80.0),
    "strong-drift": dict(seed=6, drift_ma_per_s=4.0),
}

_TRACES: dict[str, tuple[Trace, dict]] = {}


def synthetic(case: str) -> tuple[Trace, dict]:
    if case not in _TRACES:
        _TRACES[case] = make_trace(**CASES[case])
    return _TRACES[case]


def check_accuracy(result: EnergyResult, truth: dict) -> None:
    energy_error = result.energy_per_run_mj / truth["energy_per_run_mj"] - 1
    window_error = result.window_s / truth["window_s"] - 1
    assert abs(energy_error) < 0.02, f"energy off by {energy_error:.2%}"
    assert abs(window_error) < 0.01, f"window off by {window_error:.2%}"
    assert abs(result.window_start_s - truth["window_start_s"]) < 0.01 * truth["window_s"]
    assert result.uncertainty_mj > 0
    assert result.latency_per_run_ms == pytest.approx(truth["latency_per_run_ms"], rel=0.01)


# ----------------------------------------------------------------- accuracy
FORMAT_CASES = [(case, fmt) for case in CASES for fmt in ("plain", "powertool", "monsoon-python")] + [
    ("protocol-seed0", fmt) for fmt in ("powertool-power", "monsoon-python-np2")]  # variants of a format: one case


@pytest.mark.parametrize("case, fmt", FORMAT_CASES)
def test_energy_and_window_through_each_csv_format(tmp_path: Path, case: str, fmt: str) -> None:
    trace, truth = synthetic(case)
    imported = read_trace(WRITERS[fmt](trace, tmp_path / "trace.csv"))
    assert imported.samples == trace.samples
    assert imported.sample_rate_hz == 5000.0
    result = analyze(imported, truth["runs"], idle_s=18)
    check_accuracy(result, truth)
    drift_warned = any("drifts" in w for w in result.warnings)
    assert drift_warned == (case == "strong-drift"), result.warnings
    if case != "strong-drift":
        assert result.warnings == ()


def test_uncertainty_covers_the_error_in_most_cases() -> None:
    covered, total = 0, 0
    for seed in range(12):
        trace, truth = make_trace(seed=100 + seed, latency_ms=[20, 5, 60][seed % 3], runs=[1000, 1000, 300][seed % 3])
        result = analyze(trace, truth["runs"], idle_s=18)
        error = abs(result.energy_per_run_mj - truth["energy_per_run_mj"])
        covered += error <= 2 * result.uncertainty_mj
        total += 1
        assert result.uncertainty_mj < 0.01 * result.energy_per_run_mj  # and it is not uselessly wide
    assert covered >= 0.8 * total


def test_result_fields_are_consistent() -> None:
    trace, truth = synthetic("protocol-seed0")
    result = analyze(trace, 1000, idle_s=18)
    assert result.window_end_s - result.window_start_s == pytest.approx(result.window_s)
    assert result.energy_per_run_mj == pytest.approx(result.mean_active_power_mw * result.latency_per_run_ms / 1000)
    assert result.baseline_ma == pytest.approx(0.5 * (truth["baseline_at_start_ma"] + truth["baseline_at_end_ma"]), abs=1.0)
    assert result.baseline_drift_ma == pytest.approx(0.5 * (40 - 8.75), abs=3.0)  # 0.5 mA/s between the parts' centres
    assert result.mean_power_mw == pytest.approx(result.mean_active_power_mw + result.baseline_ma * 4.2, rel=0.01)
    assert result.runs == 1000 and result.dropped_samples == 0 and result.samples == pytest.approx(truth["window_s"] * 5000, abs=20)
    assert json.loads(json.dumps(result.to_json()))["energy_per_run_mj"] == result.energy_per_run_mj


def test_without_idle_s_the_part_before_the_window_is_the_baseline() -> None:
    trace, truth = synthetic("protocol-seed1")
    check_accuracy(analyze(trace, 1000), truth)


# ----------------------------------------------------------------- warnings
def test_dropped_samples_are_filled_counted_and_warned(tmp_path: Path) -> None:
    trace, truth = make_trace(seed=7, dropped=40)
    imported = read_trace(write_plain_csv(trace, tmp_path / "t.csv"))
    assert imported.dropped_samples == 40 and imported.samples == trace.samples
    assert imported.metadata["gaps_filled"] is True
    result = analyze(imported, 1000, idle_s=18)
    check_accuracy(result, truth)
    assert result.dropped_samples == 40
    assert any("dropped 40 sample" in w for w in result.warnings)


def test_host_window_cross_check() -> None:
    trace, truth = synthetic("protocol-seed0")
    agreed = analyze(trace, 1000, idle_s=18, host_window=(truth["window_start_s"] + 0.01, truth["window_end_s"] - 0.02))
    assert agreed.warnings == ()
    late = analyze(trace, 1000, idle_s=18, host_window=(truth["window_start_s"] + 1.5, truth["window_end_s"] + 1.5))
    assert any("host's start/stop" in w and "disagree" in w for w in late.warnings)


def test_short_idle_and_cut_workload_are_warned() -> None:
    trace, truth = make_trace(seed=8, idle_s=6, tail_idle_s=0)
    result = analyze(trace, 1000, idle_s=18)
    assert any("shorter than the 18 s asked" in w for w in result.warnings)
    assert any("touches the end of the trace" in w for w in result.warnings)
    check_accuracy(result, truth)  # a constant baseline: the drift's bias is in the uncertainty
    assert abs(result.energy_per_run_mj - truth["energy_per_run_mj"]) < 2 * result.uncertainty_mj


def test_other_active_stretches_are_left_out_of_the_baseline() -> None:
    trace, truth = synthetic("protocol-seed0")
    current = trace.current_ma.copy()
    current[5 * 5000:int(5.8 * 5000)] += 700  # a burst during the idle part
    burst = Trace(current, trace.voltage_v, trace.sample_rate_hz)
    result = analyze(burst, 1000, idle_s=18)
    check_accuracy(result, truth)
    assert any("other active stretch" in w for w in result.warnings)


def test_bursty_idle_is_warned() -> None:
    trace, truth = synthetic("protocol-seed0")
    current, rng = trace.current_ma.copy(), np.random.default_rng(1)
    for start in rng.integers(0, trace.samples - 200, 60):  # radio wake-ups, 1-20 ms, all along the trace
        current[start:start + rng.integers(5, 100)] += rng.uniform(200, 900)
    result = analyze(Trace(current, trace.voltage_v, trace.sample_rate_hz), 1000, idle_s=18)
    assert any("idle current is bursty" in w for w in result.warnings)
    assert abs(result.energy_per_run_mj / truth["energy_per_run_mj"] - 1) < 0.02


@pytest.mark.parametrize("drift", [0.0, 0.5, 10.0])
def test_flat_trace_has_no_window(drift: float) -> None:
    trace, _ = make_trace(seed=9, active_ma=150, drift_ma_per_s=drift)  # active = idle: nothing happens
    with pytest.raises(WindowNotFound, match="no workload window") as err:
        analyze(trace, 1000, idle_s=18)
    assert "\n" not in str(err.value) and isinstance(err.value, ChameleonError)


def test_all_active_trace_has_no_window() -> None:
    trace, _ = make_trace(seed=10, idle_s=0, tail_idle_s=0, runs=500)
    with pytest.raises(WindowNotFound):
        analyze(trace, 500)


# ----------------------------------------------------------------- import
def test_import_metadata_and_rates(tmp_path: Path) -> None:
    trace, _ = make_trace(seed=11, idle_s=1, runs=100, tail_idle_s=1)
    package = read_trace(write_monsoon_package_csv(trace, tmp_path / "p.csv"))
    assert package.metadata["format"] == "monsoon-python"
    assert package.metadata["sample_rate_assumed"] is True and package.metadata["time_column_ignored"] is True
    np.testing.assert_allclose(package.current_ma, trace.current_ma)
    given = read_trace(tmp_path / "p.csv", sample_rate_hz=4000)
    assert given.sample_rate_hz == 4000 and given.metadata["sample_rate_assumed"] is False
    plain = read_trace(write_plain_csv(trace, tmp_path / "plain.csv"))
    assert plain.metadata["format"] == "plain" and plain.metadata["sample_rate_source"] == "time column"
    np.testing.assert_allclose(plain.current_ma, trace.current_ma, atol=1e-4)
    np.testing.assert_allclose(plain.voltage_v, trace.voltage_v, atol=1e-5)
    power = read_trace(write_powertool_csv(trace, tmp_path / "pw.csv", variant="power"))
    np.testing.assert_allclose(power.current_ma, trace.current_ma, atol=2e-3)  # printed power / printed voltage
    plain_variant = read_trace(write_powertool_csv(trace, tmp_path / "pt.csv", variant="plain"))
    assert plain_variant.metadata["format"] == "monsoon-powertool"


def test_header_matching_ignores_case_and_spaces(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("\ufeffTIME(S) , main avg current(MA),Main Avg Voltage ( V )\r\n0.0,100,4.2\r\n0.001,101,4.2\r\n0.002,102,4.2\r\n")
    trace = read_trace(path)
    assert trace.sample_rate_hz == 1000.0 and trace.current_ma.tolist() == [100, 101, 102]


def test_import_is_fast(tmp_path: Path) -> None:
    trace, _ = synthetic("protocol-seed0")  # 40 s at 5 kHz: 200k rows
    for name in ("plain", "monsoon-python"):
        path = WRITERS[name](trace, tmp_path / f"{name}.csv")
        began = time.perf_counter()
        read_trace(path)
        assert time.perf_counter() - began < 2.0


EXPECTED = ("Monsoon PowerTool", "Monsoon Python package", "time_s,current_mA,voltage_V")


@pytest.mark.parametrize(
    "text, message",
    [
        ("timestamp,amps\n1,2\n", "unrecognised trace header 'timestamp,amps'"),
        ("", "empty file"),
        ("\n\n  \n", "empty file"),
        ("1.0,2.0,3.0\n2.0,3.0,4.0\n", "unrecognised trace header"),
        ("time_s,current_mA,voltage_V\n0.0,1,4.2\n", "fewer than 2 samples"),
        ("time_s,current_mA,voltage_V\n", "fewer than 2 samples"),
        ("time_s,current_mA,voltage_V\n0.0,1,4.2\n0.1,abc,4.2\n0.2,1,4.2\n", "line 3: 'abc' in column 'current_mA' is not a number"),
        ("time_s,current_mA,voltage_V\n0.0,1,4.2\n0.1,,4.2\n", "line 3: '' in column 'current_mA'"),
        ("time_s,current_mA,voltage_V\n0.0,1,4.2\n0.1,2\n", "line 3 has 2 cell(s)"),
        ("time_s,current_mA,voltage_V\n0.0,1,4.2\n0.1,nan,4.2\n", "line 3: a cell is not a finite number"),
        ("time_s,current_mA,voltage_V\n0.0,1,4.2\n0.1,1,4.2\n0.1,1,4.2\n", "time column is not increasing at line 4"),
        ("time_s,current_mA,voltage_V\n0.2,1,4.2\n0.1,1,4.2\n", "time column is not increasing at line 3"),
        ("Time(ms),Main(mA),\n1,2,\n2,3,\n", "no main voltage column"),
    ],
)
def test_format_errors_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceFormatError) as err:
        read_trace(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value) and isinstance(err.value, ChameleonError)
    if "unrecognised" in message or "empty" in message:
        assert all(name in str(err.value) for name in EXPECTED)


def test_missing_file_and_voltage_fallback(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="no such file"):
        read_trace(tmp_path / "nope.csv")
    path = tmp_path / "novolt.csv"
    path.write_text("Time(ms),Main(mA),\n1,2,\n2,3,\n")
    assert read_trace(path, voltage_v=4.2).voltage_v.tolist() == [4.2, 4.2]


# ----------------------------------------------------------------- store
SIG = make_signature("conv2d", c_in=3, h=224, w=224, c_out=32, kernel=3, stride=2, activation="relu6")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def stored_row(result: EnergyResult, trace: Trace, *, when: datetime = T0, device: str = "s835", trace_file: str | None = None,
               **key) -> dict:
    key = key or {"signature": SIG}
    return result_row(result, device_id=device, device_model="SM-G950U", monitor="simulated", session_id="abc123",
                      sample_rate_hz=trace.sample_rate_hz, voltage_v=4.2, idle_s=18, trace_file=trace_file,
                      measured_at=when, **key)


def test_trace_npz_round_trip_is_exact(tmp_path: Path) -> None:
    trace, _ = make_trace(seed=12, idle_s=1, runs=50, dropped=3, start_time_s=1714564800.123456)
    back = load_trace(save_trace(trace, tmp_path / "traces" / "t.npz"))
    assert np.array_equal(back.current_ma, trace.current_ma) and np.array_equal(back.voltage_v, trace.voltage_v)
    assert (back.sample_rate_hz, back.start_time_s, back.dropped_samples, back.source, back.metadata) == \
           (trace.sample_rate_hz, trace.start_time_s, trace.dropped_samples, trace.source, trace.metadata)
    plain = Trace(np.array([1.0, 2.0]), np.array([4.2, 4.2]), 5000.0)
    assert load_trace(save_trace(plain, tmp_path / "p.npz")).start_time_s is None
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(EnergyFileError, match="not a readable trace file"):
        load_trace(tmp_path / "bad.npz")
    with pytest.raises(EnergyFileError, match="no such trace file"):
        load_trace(tmp_path / "missing.npz")


def test_results_append_read_newest_wins(tmp_path: Path) -> None:
    trace, _ = synthetic("protocol-seed0")
    result = analyze(trace, 1000, idle_s=18, host_window=(0.0, 1.0))
    path = tmp_path / "energy" / "s835.parquet"
    op = stored_row(result, trace)
    net = stored_row(result, trace, arch_id="chamnet-a", genes=[1, 0.5, 3], space="chamnet-mobile")
    other_device = stored_row(result, trace, device="pixel")
    append_results(path, [op, net, other_device])
    newer = stored_row(EnergyResult(**{**result.to_json(), "warnings": (), "energy_per_run_mj": 1.0}), trace,
                       when=T0 + timedelta(hours=1))
    older = stored_row(EnergyResult(**{**result.to_json(), "warnings": (), "energy_per_run_mj": 2.0}), trace,
                       when=T0 - timedelta(hours=1))
    table = append_results(path, [newer, older])
    assert table.num_rows == 3
    back = read_results(path)
    assert back.schema.metadata[b"chameleon.file"] == b"energy-results"
    assert back.schema.metadata[b"chameleon.energy_schema_version"] == b"1"
    rows = {(r["device_id"], r["entry"]): r for r in back.to_pylist()}
    assert rows[("s835", "operator")]["energy_per_run_mj"] == 1.0
    assert rows[("s835", "operator")]["signature"] == SIG.key and rows[("s835", "operator")]["c_out"] == 32
    assert rows[("pixel", "operator")]["energy_per_run_mj"] == result.energy_per_run_mj
    network = rows[("s835", "network")]
    assert json.loads(network["genes"]) == [1, 0.5, 3] and network["kind"] is None and network["signature"] is None
    assert result_of(network) == result  # warnings come back as the tuple they were
    assert network["measured_at"] == T0


def test_results_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(EnergyFileError, match="no such file"):
        read_results(tmp_path / "missing.parquet")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(EnergyFileError, match="not a readable Parquet file"):
        read_results(tmp_path / "corrupt.parquet")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "foreign.parquet")
    with pytest.raises(EnergyFileError, match="not Chameleon energy results"):
        read_results(tmp_path / "foreign.parquet")
    lut_like = pa.table({"x": [1]}).replace_schema_metadata({b"chameleon.file": b"operator-latency-lut"})
    pq.write_table(lut_like, tmp_path / "lut.parquet")
    with pytest.raises(EnergyFileError, match="operator-latency-lut"):
        read_results(tmp_path / "lut.parquet")
    future = ENERGY_SCHEMA.empty_table().replace_schema_metadata(
        {b"chameleon.file": b"energy-results", b"chameleon.energy_schema_version": b"2"})
    pq.write_table(future, tmp_path / "v2.parquet")
    with pytest.raises(EnergyFileError, match="version 2") as err:
        read_results(tmp_path / "v2.parquet")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="exactly one of signature"):
        trace, _ = synthetic("protocol-seed0")
        stored_row(analyze(trace, 1000), trace, signature=SIG, arch_id="x")


def test_recompute_reproduces_the_stored_figures(tmp_path: Path) -> None:
    results = tmp_path / "energy.parquet"
    rows = []
    for i, case in enumerate(("protocol-seed0", "strong-drift")):
        trace, truth = synthetic(case)
        trace_path = save_trace(trace, tmp_path / "traces" / f"{case}.npz")
        host = (truth["window_start_s"], truth["window_end_s"] + 2.0 * i)
        result = analyze(trace, truth["runs"], idle_s=18, host_window=host, smooth_s=0.03)
        rows.append(result_row(result, signature=SIG.replace(c_out=32 + 8 * i), device_id="s835", device_model="SM-G950U",
                               monitor="simulated", session_id="s1", sample_rate_hz=5000, voltage_v=4.2, idle_s=18,
                               host_window=host, analysis={"smooth_s": 0.03},
                               trace_file=relative_trace_path(results, trace_path)))
    rows.append(stored_row(analyze(*synthetic("protocol-seed1")[:1], 1000), synthetic("protocol-seed1")[0],
                           arch_id="no-trace"))
    append_results(results, rows)
    before = read_results(results).to_pylist()
    assert before[0]["trace_file"] == "traces/protocol-seed0.npz"
    again = recompute(results)
    assert len(again) == 2
    after = read_results(results).to_pylist()
    for old, new in zip(before, after):
        for name in ("energy_per_run_mj", "uncertainty_mj", "window_s", "warnings", "analysis", "measured_at"):
            assert new[name] == old[name], name
    assert any("disagree" in w for w in after[1]["warnings"].split("\n"))
    changed = recompute(results, smooth_s=0.01, write=False)
    assert changed[0]["energy_per_run_mj"] == pytest.approx(changed[0]["previous_energy_per_run_mj"], rel=0.001)
    assert json.loads(changed[0]["analysis"])["smooth_s"] == 0.01
    assert read_results(results).to_pylist()[0]["analysis"] == before[0]["analysis"]  # write=False leaves the file
    with pytest.raises(ValueError, match="unknown analysis setting"):
        recompute(results, smoothing=3)
