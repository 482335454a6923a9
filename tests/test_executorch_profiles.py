"""Per-operator ETDump profiles of single-op ExecuTorch programs: kernels, sums against the timed run, units, sidecar.

A few smoke-plan signatures are profiled once (module fixture) inside an open
runner; the unit checks are also driven with made-up profiles, and the
sidecar and the command with files.  Skipped where ExecuTorch is not installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.signature import make_signature, parse_signature

pytestmark = pytest.mark.skipif(importlib.util.find_spec("executorch") is None,
                                reason="ExecuTorch (the executorch package) is not installed")

# Smoke-plan signatures (benchmarks/plans/smoke.yaml).
CONV = make_signature("conv2d", c_in=3, h=56, w=56, c_out=16, kernel=3, stride=2, activation="relu6")
DEPTHWISE = make_signature("depthwise_conv", c_in=32, h=28, w=28, kernel=3, stride=2, activation="relu6")
INT8_CONV = CONV.replace(dtype="int8")
INVERTED_RESIDUAL = parse_signature(
    "inverted_residual(n=1,c_in=24,h=28,w=28,c_out=24,kernel=3,stride=1,padding=1,groups=1,"
    "mid_channels=72,activation=relu6,dtype=fp32)")
CASES = {"conv": (CONV, "xnnpack"), "depthwise": (DEPTHWISE, "xnnpack"), "int8": (INT8_CONV, "xnnpack"),
         "inverted_residual": (INVERTED_RESIDUAL, "xnnpack"), "portable_conv": (CONV, "portable")}

FAST_PROFILE = """\
name: fast-executorch
description: fast local ExecuTorch profile for tests
transport: {type: local}
runtime: {name: executorch, delegate: xnnpack, threads: 1, cores: auto}
dtypes: [fp32, int8]
measurement: {warmup_runs: 1, runs: 3, min_timed_s: 0.002, rounds: 2, interleave_group: 4, cv_threshold: 10.0, max_attempts: 1}
"""


@pytest.fixture(scope="module")
def profiled():
    """Each case profiled (10 runs) and compared with a quick timed run less the identity's overhead."""
    from harness.measurement import MeasurementSettings
    from harness.runners.executorch_local import ExecuTorchRunner
    from harness.runners.executorch_profiles import check_against_timed, profile_signature

    settings = MeasurementSettings(warmup_runs=1, runs=5, min_timed_s=0.002, rounds=1, max_attempts=1)
    runners = {backend: ExecuTorchRunner(delegate=delegate) for backend, delegate in
               (("xnnpack", "xnnpack"), ("portable", "none"))}
    try:
        overhead = runners["xnnpack"].measure(make_signature("identity"), settings).stats.median_us
        found = {}
        for name, (sig, backend) in CASES.items():
            timed = runners[backend].measure(sig, settings).stats.median_us
            found[name] = check_against_timed(profile_signature(sig, backend=backend, runs=10), timed, overhead, "runner")
        yield found
    finally:
        for runner in runners.values():
            runner.close()


# ------------------------------------------------------------ the profiles
@pytest.mark.parametrize("case", list(CASES))
def test_profiles_exist_and_sum_within_10pct_or_are_flagged(profiled, case: str) -> None:
    p = profiled[case]
    assert p.runs == 10 and p.events and p.units_ok and p.units_scale == p.delegate_units_scale == 1
    assert all(e.median_us >= 0 for e in p.events)
    assert 0 < p.sum_us <= p.method_us * 1.05  # the calls are inside the method
    assert p.sum_us >= 0.8 * p.method_us       # ...and are most of it: nothing big goes unprofiled
    assert p.wall_us is not None and p.wall_us >= p.method_us
    assert p.timed_us is not None and p.overhead_us is not None and p.timed_source == "runner"
    assert p.sum_within_10pct != p.flagged
    if p.flagged:
        assert p.flag in ("outside-method", "inside-method", "timed-slower", "profile-slower", "below-overhead") and p.note
        assert "\n" not in p.note


def test_a_lone_conv_under_xnnpack_is_one_kernel_and_blocks_are_several(profiled) -> None:
    conv = profiled["conv"]
    assert conv.one_kernel and conv.kernels == 1 and conv.delegate_calls == 1 and conv.operator_calls == 0
    # XNNPACK converts NCHW to NHWC and back inside the call: boundary kernels, counted apart.
    assert conv.boundary_kernels == 2 and all(e.op.startswith("Transpose") for e in conv.events if e.boundary)
    assert profiled["depthwise"].one_kernel
    block = profiled["inverted_residual"]
    assert block.delegate_calls == 1 and block.kernels == 4 and not block.one_kernel  # expand, depthwise, project, add
    portable = profiled["portable_conv"]
    assert portable.delegate_calls == 0 and portable.operator_calls == 2 and portable.kernels == 2  # conv, then relu6
    assert {e.op for e in portable.events} == {"convolution.out", "hardtanh.out"}
    int8 = profiled["int8"]
    assert int8.boundary_kernels >= 2 and any(e.op.startswith("Convert") for e in int8.events)  # (de)quantize


# -------------------------------------------------------------------- units
def _made_up(call_us: float, inner_us: list[float], method_us: float | None = None):
    from harness.runners.executorch_profiles import DELEGATE_CALL, DELEGATE_OP, OpProfile, ProfileEvent

    events = [ProfileEvent(f"Op #{i}", f"Op #{i}", DELEGATE_OP, False, 0, t) for i, t in enumerate(inner_us)]
    events.append(ProfileEvent("DELEGATE_CALL", "", DELEGATE_CALL, False, 0, call_us))
    return OpProfile(signature=CONV.key, backend="xnnpack", runs=10, events=tuple(events), sum_us=call_us,
                     method_us=method_us or call_us * 1.01, wall_us=None, kernels=len(inner_us), boundary_kernels=0,
                     delegate_calls=1, operator_calls=0, boundary_us=0.0)


def test_delegate_operators_in_other_units_are_rescaled_or_flagged() -> None:
    from harness.runners.executorch_profiles import check_against_timed, checked_units

    fine = checked_units(_made_up(100.0, [20.0, 60.0]))
    assert fine.units_ok and fine.delegate_units_scale == 1 and not fine.units_note
    # executorch#4504: the delegate's operators read in ns while the rest reads µs.
    ticks = checked_units(_made_up(100.0, [20_000.0, 60_000.0]))
    assert ticks.units_ok and ticks.delegate_units_scale == pytest.approx(1e-3) and "4504" in ticks.units_note
    assert [e.median_us for e in ticks.events] == pytest.approx([20.0, 60.0, 100.0])
    assert ticks.sum_us == 100.0  # the calls keep the runtime's clock
    # Not a power of 1000 away (a tick rate taken for ns): refused, and the signature flagged.
    odd = check_against_timed(checked_units(_made_up(100.0, [1000.0, 3000.0])), 110.0, 5.0, "lut")
    assert not odd.units_ok and odd.flag == "units" and not odd.sum_within_10pct and "cannot be reconciled" in odd.note
    # A call too short for XNNPACK's whole microseconds to say anything: left alone.
    assert checked_units(_made_up(3.0, [0.0, 0.0])).units_ok


def test_a_dump_in_other_units_is_rescaled_against_an_independent_clock() -> None:
    from harness.runners.executorch_profiles import check_against_timed, checked_units

    milli = checked_units(_made_up(0.1, [0.02, 0.06]), reference_us=120.0)  # read 1000x too small
    assert milli.units_scale == pytest.approx(1000) and milli.method_us == pytest.approx(101.0)
    assert milli.sum_us == pytest.approx(100.0) and "rescaled x1000" in milli.units_note
    # A dump from elsewhere (no wall time): held to the timed run instead, then compared with it.
    far = check_against_timed(_made_up(100_000.0, [20_000.0, 60_000.0]), 112.0, 10.0, "lut")
    assert far.units_scale == pytest.approx(1e-3) and far.sum_within_10pct and not far.flagged
    assert far.sum_over_timed == pytest.approx(100.0 / 102.0)
    stray = check_against_timed(_made_up(100.0, [20.0, 60.0], method_us=500.0), 100.0, 0.0, "lut")
    assert stray.flag == "units"  # five times the timed run: no power of 1000 explains it


def test_an_etdump_file_is_read_with_its_warmup_runs_dropped(tmp_path: Path) -> None:
    from executorch.runtime import Runtime

    from harness.models import pte_models
    from harness.runners.executorch_local import ExecuTorchRunner
    from harness.runners.executorch_profiles import ProfileUnavailable, check_against_timed, read_etdump

    runner = ExecuTorchRunner(delegate="xnnpack")
    try:
        path = pte_models.model_file(CONV)
        program = Runtime.get().load_program(path, enable_etdump=True)
        method = program.load_method("forward")
        inputs = list(pte_models.example_inputs(CONV))
        for _ in range(2 + 6):  # W + N, as the Android runner's ETDump invocation
            method.execute(inputs)
        dump = tmp_path / "conv.etdp"
        program.write_etdump_result_to_file(str(dump), str(tmp_path / "debug.bin"))
    finally:
        runner.close()
    p = read_etdump(dump, CONV, backend="xnnpack", program=path, warmup_runs=2)
    assert p.runs == 6 and p.one_kernel and p.wall_us is None and p.program == path.name
    checked = check_against_timed(p, timed_us=p.method_us * 1.5, overhead_us=0.0, source="lut")
    assert checked.units_ok and checked.units_scale == 1 and checked.flagged  # 67%: flagged, not rescaled
    with pytest.raises(ProfileUnavailable, match="no execution left"):
        read_etdump(dump, CONV, backend="xnnpack", warmup_runs=8)
    (tmp_path / "junk.etdp").write_bytes(b"not a flatbuffer")
    with pytest.raises(ProfileUnavailable) as raised:
        read_etdump(tmp_path / "junk.etdp", CONV, backend="xnnpack")
    assert "\n" not in str(raised.value)


# ------------------------------------------------------------------ sidecar
def _records(profiled) -> list[dict]:
    from harness.lut.store import now_utc

    return [p.to_record(device_id="xeon-executorch", runtime_version="1.5.1", harness_version="test",
                        profiled_at=now_utc()) for name, p in profiled.items() if name != "portable_conv"]


def test_sidecar_round_trip_and_merge(profiled, tmp_path: Path) -> None:
    from harness.lut import op_profiles as sidecar

    assert sidecar.sidecar_path(Path("luts/xeon-executorch.parquet")) == Path("luts/xeon-executorch.op-profiles.parquet")
    path = tmp_path / "lut.op-profiles.parquet"
    records = _records(profiled)
    sidecar.merge_into_sidecar(path, sidecar.rows_to_table(records[:2]))
    sidecar.merge_into_sidecar(path, sidecar.rows_to_table(records[1:]))  # replaces the shared row, keeps the others
    table = sidecar.read_op_profiles(path)
    assert table.num_rows == len(records) and set(table.column("signature").to_pylist()) == {r["signature"] for r in records}
    conv = next(r for r in table.to_pylist() if r["signature"] == CONV.key and r["backend"] == "xnnpack")
    assert conv["one_kernel"] and conv["kernels"] == 1 and len(conv["event_median_us"]) == len(conv["event_name"])


@pytest.mark.parametrize("damage", ["nan-event", "negative-sum", "ragged", "garbage", "a-lut"])
def test_a_corrupt_sidecar_is_refused_in_one_line(profiled, tmp_path: Path, damage: str) -> None:
    from harness.lut import op_profiles as sidecar

    path = tmp_path / "bad.op-profiles.parquet"
    table = sidecar.rows_to_table(_records(profiled)).to_pylist()
    if damage == "nan-event":
        table[0]["event_median_us"][0] = float("nan")
    elif damage == "negative-sum":
        table[1]["sum_us"] = -3.0
    elif damage == "ragged":
        table[0]["event_name"] = table[0]["event_name"][:-1]
    if damage == "garbage":
        path.write_bytes(b"PAR1 not really")
    elif damage == "a-lut":
        from lut_rows import write_lut

        write_lut(path, [])
    else:  # written around the writer's checks, as a damaged or hand-made file would be
        pq.write_table(pa.Table.from_pylist(table, schema=sidecar.SCHEMA), path)
    with pytest.raises(sidecar.OpProfilesFileError) as raised:
        sidecar.read_op_profiles(path)
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)


# ------------------------------------------------------------------ command
def _bench(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    from harness.cli.app import app
    from harness.cli.common import run_command_line

    code = run_command_line(app, list(args), "bench")
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _strict(text: str) -> dict:
    def refuse(constant: str):
        raise AssertionError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_command_json_is_strict_and_writes_the_sidecar(profiled, tmp_path: Path, capsys) -> None:
    from harness.lut import op_profiles as sidecar
    from harness.runners import DeviceIdentity
    from harness.lut.store import rows_to_table, write_lut_atomic
    from harness.sweep import make_row
    from lut_rows import measurement

    profile = tmp_path / "fast-executorch.yaml"
    profile.write_text(FAST_PROFILE)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f'name: two\nsignatures: ["{CONV.key}", "{DEPTHWISE.key}"]\n')
    out = tmp_path / "p.op-profiles.parquet"
    code, stdout, stderr = _bench(capsys, "op-profiles", "--device", str(profile), "--plan", str(plan), "--runs", "5",
                                  "--out", str(out), "--json")
    assert code == 0, stderr
    report = _strict(stdout)
    assert report["signatures"] == 2 and report["one_kernel"] == 2
    assert report["within_10pct"] + report["flagged"] == 2 and sum(report["flags"].values()) == report["flagged"]
    assert all(p["timed_source"] == "runner" and p["events"] for p in report["profiles"])
    assert sidecar.read_op_profiles(out).num_rows == 2

    # With a LUT: its rows are the timed runs (the identity row the overhead); a LUT of another device is refused.
    identity = DeviceIdentity(model="cpu", runtime="executorch", runtime_version="1.5.1", provider="xnnpack")
    lut = tmp_path / "fast.parquet"
    rows = [make_row(s, measurement(m), identity, "fast-executorch", threads=1, session_id="s")
            for s, m in ((make_signature("identity"), 5.0), (CONV, 40.0))]
    write_lut_atomic(rows_to_table(rows), lut)
    code, stdout, stderr = _bench(capsys, "op-profiles", "--device", str(profile), "--plan", str(plan), "--runs", "5",
                                  "--lut", str(lut), "--json")
    assert code == 0, stderr
    by_source = {p["signature"]: p for p in _strict(stdout)["profiles"]}
    assert by_source[CONV.key]["timed_source"] == "lut" and by_source[CONV.key]["timed_us"] == 40.0
    assert by_source[CONV.key]["overhead_us"] == 5.0 and by_source[DEPTHWISE.key]["timed_source"] == "runner"
    assert (tmp_path / "fast.op-profiles.parquet").is_file()  # beside the LUT
    write_lut_atomic(rows_to_table([make_row(CONV, measurement(40.0), identity, "other", threads=1, session_id="s")]), lut)
    code, stdout, stderr = _bench(capsys, "op-profiles", "--device", str(profile), "--plan", str(plan), "--lut", str(lut))
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "other" in stderr


def test_command_refuses_a_corrupt_sidecar_before_profiling(tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.op-profiles.parquet"
    out.write_bytes(b"garbage")
    code, stdout, stderr = _bench(capsys, "op-profiles", "--device", "xeon-executorch", "--out", str(out), "--json")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "not a readable Parquet file" in stderr
    assert _strict(stdout)["exit_code"] == 2
    code, _, stderr = _bench(capsys, "op-profiles", "--device", "xeon", "--out", str(tmp_path / "y.parquet"))
    assert code == 2 and "runs onnxruntime" in stderr
