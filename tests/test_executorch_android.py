"""ExecuTorch on a phone over ADB: executor_runner's output parser, the s835-executorch profile, the runner and its ETDumps.

The parser tests need nothing.  The runner tests drive the loopback ADB device,
whose ``executor_runner`` stand-in runs the ``.pte`` through ExecuTorch's real
C++ runtime (its Python bindings), so they are skipped where ExecuTorch is not
installed.  The acceptance test sweeps the smoke plan locally
(``xeon-executorch``) and through the loopback phone (``s835-executorch``):
building the programs is most of its ten minutes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path

import pytest

from conftest import FAST_PHONE_MEASUREMENT, one_line_error, run_bench
from harness.errors import ChameleonError, DeviceUnavailable, InvalidProfile
from harness.fake_device import LoopbackAdbDevice, standin_executor_runner_path
from harness.parsers import ToolOutputError, parse_executor_runner, parse_tool_output
from harness.profiles import load_profile, parse_profile
from harness.signature import make_signature, parse_signature

needs_executorch = pytest.mark.skipif(importlib.util.find_spec("executorch") is None,
                                      reason="ExecuTorch (the executorch package) is not installed")

CONV = make_signature("conv2d", c_in=8, h=8, w=8, c_out=16, kernel=3, stride=1, padding=1, activation="relu6")

# What examples/portable/executor_runner/executor_runner.cpp prints, current sources (per-execution lines),
# ET_LOG on stderr and the outputs on stdout, as one adb shell stream.
CURRENT = """\
I 00:00:00.000158 executorch:executor_runner.cpp:425] Resetting threadpool with num threads = 1
I 00:00:00.000912 executorch:executor_runner.cpp:548] Model file /data/local/tmp/chameleon/models/a.pte is loaded.
I 00:00:00.000925 executorch:executor_runner.cpp:557] Using method forward
I 00:00:00.000931 executorch:executor_runner.cpp:613] Setting up CPU planned buffer 0, size 6144.
I 00:00:00.001520 executorch:executor_runner.cpp:677] Model loaded in 0.596610 ms.
I 00:00:00.001702 executorch:executor_runner.cpp:815] Iteration 1 of 3: 0.101421 ms
I 00:00:00.001750 executorch:executor_runner.cpp:815] Iteration 2 of 3: 0.041041 ms
I 00:00:00.001771 executorch:executor_runner.cpp:815] Iteration 3 of 3: 0.015503 ms
I 00:00:00.001779 executorch:executor_runner.cpp:823] Model executed successfully 3 time(s) in 0.157965 ms.
I 00:00:00.001785 executorch:executor_runner.cpp:831] 1 outputs: \r
OutputX 0: tensor(sizes=[1, 2], [0.5, 1.])
I 00:00:00.002304 executorch:executor_runner.cpp:299] ETDump written to file '/data/local/tmp/x.etdp'.
"""

# The 1.x releases: the total only, ``Method loaded.`` and ``Output 0:``.
RELEASE_1X = """\
I 00:00:00.000371 executorch:executor_runner.cpp:160] Model file /data/local/tmp/m.pte is loaded.
I 00:00:00.000382 executorch:executor_runner.cpp:169] Using method forward
I 00:00:00.000390 executorch:executor_runner.cpp:217] Setting up planned buffer 0, size 6144.
I 00:00:00.001204 executorch:executor_runner.cpp:242] Method loaded.
I 00:00:00.012017 executorch:executor_runner.cpp:282] Model executed successfully 20 time(s) in 10.613000 ms.
I 00:00:00.012020 executorch:executor_runner.cpp:286] 1 outputs: 
Output 0: tensor(sizes=[1, 2], [0.5, 1.])
"""


# ===================================================================== parser
def test_parser_reads_each_execution_of_current_builds() -> None:
    result = parse_executor_runner(CURRENT)
    assert result.format == "iterations" and result.executions == 3
    assert result.per_execution_ms == pytest.approx([0.101421, 0.041041, 0.015503])
    assert result.total_ms == pytest.approx(0.157965) and result.mean_ms == pytest.approx(0.157965 / 3)
    assert (result.model_path, result.method, result.outputs, result.threads) == \
        ("/data/local/tmp/chameleon/models/a.pte", "forward", 1, 1)
    assert result.load_ms == pytest.approx(0.59661) and result.etdump_path == "/data/local/tmp/x.etdp"
    as_json = parse_tool_output("executor_runner", CURRENT)
    assert as_json["per_run_us"] == pytest.approx([101.421, 41.041, 15.503]) and as_json["median_us"] == pytest.approx(41.041)


def test_parser_reads_the_total_of_1x_builds_and_any_log_prefix() -> None:
    result = parse_executor_runner(RELEASE_1X)
    assert result.format == "1.x" and result.executions == 20 and result.per_execution_ms == []
    assert result.mean_ms == pytest.approx(10.613 / 20) and result.etdump_path is None
    # Other platform layers and logcat put other prefixes before the same messages.
    logcat = "\n".join(f"I/ExecuTorch( 1234): {line.split('] ', 1)[1]}" if "] " in line else line
                       for line in RELEASE_1X.splitlines())
    assert parse_executor_runner(logcat).total_ms == pytest.approx(10.613)
    # A log of two invocations: the last one counts.
    assert parse_executor_runner(RELEASE_1X + CURRENT).executions == 3


@pytest.mark.parametrize("text, expected", [
    ("", "no summary"),
    ("Segmentation fault\n", "no summary"),
    ("I 00:00:00.000371 executorch:executor_runner.cpp:160] Model file m.pte is loaded.\n"
     "E 00:00:00.000380 executorch:executor_runner.cpp:545] Failed to parse model file m.pte\n",
     "failed: Failed to parse model file m.pte"),
    ("F 00:00:00.000380 executorch:executor_runner.cpp:535] In function main(), assert failed (file_loader.ok()): "
     "FileDataLoader::from() failed: 0x22\n", "FileDataLoader::from() failed: 0x22"),
    ("ERROR: unknown command line flag 'num_executions'\n", "refused its command line"),
    ("I 00:00:00.000398 executorch:executor_runner.cpp:181] Model executed successfully.\n", "prints no execution time"),
    (CURRENT.replace("Iteration 2 of 3: 0.041041 ms\n", ""), "2 execution times for 3 executions"),
    (CURRENT.replace("in 0.157965 ms", "in -nan ms"), "no usable total"),
])
def test_bad_output_is_one_clear_line(text: str, expected: str) -> None:
    with pytest.raises(ToolOutputError) as raised:
        parse_executor_runner(text)
    message = str(raised.value)
    assert isinstance(raised.value, ChameleonError) and "\n" not in message and expected in message


def test_bench_parse_reads_executor_runner_output(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.log", tmp_path / "bad.log"
    good.write_text(CURRENT)
    bad.write_text("Segmentation fault\n")
    result = run_bench("parse", "--format", "executor_runner", str(good))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["executions"] == 3
    assert "Model executed successfully" in one_line_error(run_bench("parse", "--format", "executor_runner", str(bad)))


# ==================================================================== profile
def test_the_s835_executorch_profile_and_its_checks(tmp_path: Path) -> None:
    profile = load_profile("s835-executorch")
    assert (profile.transport.type, profile.runtime.name, profile.runtime.delegate) == ("adb", "executor_runner", "xnnpack")
    assert profile.runtime.threads == 1 and profile.runtime.core_mask == load_profile("s835-ort").runtime.core_mask
    assert profile.runtime.etdump is False and profile.dtypes == ("fp32", "int8")
    path = tmp_path / "bad.yaml"
    phone = {"name": "bad", "transport": {"type": "adb"}, "runtime": {"name": "executor_runner"}}
    with pytest.raises(InvalidProfile, match="runs on Android devices"):
        parse_profile({**phone, "transport": {"type": "local"}}, path)
    with pytest.raises(InvalidProfile, match="delegate xnnpack"):
        parse_profile({**phone, "runtime": {"name": "executor_runner", "delegate": "hexagon"}}, path)
    with pytest.raises(InvalidProfile, match="executor_runner only"):
        parse_profile({**phone, "runtime": {"name": "onnxruntime_perf_test", "etdump": True}}, path)
    with pytest.raises(InvalidProfile, match="etdump must be bool"):
        parse_profile({**phone, "runtime": {"name": "executor_runner", "etdump": "yes"}}, path)
    with pytest.raises(InvalidProfile, match="runs as executor_runner"):
        parse_profile({**phone, "runtime": {"name": "executorch"}}, path)


# ============================================================ loopback phone
@pytest.fixture()
def device(tmp_path: Path):
    with LoopbackAdbDevice(sandbox=tmp_path / "device") as loopback:
        loopback.authorize(tmp_path / "keys" / "adbkey.pub")
        loopback.authorize(tmp_path / "config" / "adbkey.pub")
        yield loopback


def phone_profile(profiles_dir: Path, name: str, extra_runtime: str = "") -> str:
    """s835-executorch with one quick round, the stand-in binary, and ``extra_runtime`` lines in its runtime."""
    text = (profiles_dir / "s835-executorch.yaml").read_text().replace("name: s835-executorch", f"name: {name}")
    text = text.split("measurement:")[0] + FAST_PHONE_MEASUREMENT + "thermal:" + text.split("thermal:")[1]
    text = text.replace("~/android/arm64/xnn_executor_runner", str(standin_executor_runner_path()))
    text = text.replace("  etdump: false", "  etdump: false" if not extra_runtime else extra_runtime)
    (profiles_dir / f"{name}.yaml").write_text(text)
    return name


def open_runner(profiles_dir: Path, device: LoopbackAdbDevice, name: str, **runtime_lines: str):
    from harness.runners import make_runner

    profile = load_profile(phone_profile(profiles_dir, name, **runtime_lines))
    profile = dataclasses.replace(profile, transport=dataclasses.replace(profile.transport, address=device.address))
    return profile, make_runner(profile)


@needs_executorch
def test_runner_times_each_execution_through_the_real_runtime(profiles_dir: Path, device: LoopbackAdbDevice) -> None:
    profile, runner = open_runner(profiles_dir, device, "phone-et")
    try:
        identity = runner.identity
        assert "Loopback ADB device" in identity.model
        assert (identity.runtime, identity.provider) == ("executorch-executor_runner", "xnnpack")
        assert identity.runtime_version.startswith("sha256:")
        settings = dataclasses.replace(profile.measurement, rounds=2)
        result = runner.measure(CONV, settings)
        per_round = -(-settings.runs // settings.rounds)
        # Per-execution samples: every timed run is one, the warm-up executions are left out.
        assert result.stats.runs == settings.rounds * per_round and runner.logs_each_execution is True
        assert result.warmup_runs == settings.warmup_runs + 1 and 0 < result.stats.min_us <= result.stats.median_us
        command = runner.command("/m.pte", 7)
        assert command.startswith("taskset 0x10 ") and "--num_executions=7 --cpu_threads=1" in command
        assert "--etdump_path" not in command and not runner.etdump_path(CONV).exists()  # off by default
        assert {int(call["mask"], 16) for call in device.taskset_calls()} == {0x10}
    finally:
        runner.close()


@needs_executorch
def test_a_build_that_logs_only_the_total_gives_one_mean_a_round(profiles_dir: Path, device: LoopbackAdbDevice,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECUTOR_RUNNER_STANDIN_LOG", "1.x")  # the device's shell inherits it
    profile, runner = open_runner(profiles_dir, device, "phone-et-1x")
    try:
        settings = dataclasses.replace(profile.measurement, rounds=2)
        result = runner.measure(CONV, settings)
        assert runner.logs_each_execution is False
        assert result.stats.runs == settings.rounds and result.warmup_runs == 0 and result.stats.median_us > 0
    finally:
        runner.close()


@needs_executorch
def test_a_failing_program_is_one_line_naming_the_runners_error(profiles_dir: Path, device: LoopbackAdbDevice) -> None:
    profile, runner = open_runner(profiles_dir, device, "phone-et-bad")
    try:
        remote = "/data/local/tmp/chameleon/models/broken.pte"
        device.device_path(remote).parent.mkdir(parents=True, exist_ok=True)
        device.device_path(remote).write_bytes(b"not a program" * 8)
        with pytest.raises(DeviceUnavailable) as raised:
            runner.take_batch(CONV, remote, profile.measurement, 1)
        message = str(raised.value)
        assert "\n" not in message and "exit 1" in message and "Failed to parse model file" in message
    finally:
        runner.close()


@needs_executorch
def test_an_etdump_is_pulled_back_beside_the_lut_when_asked(profiles_dir: Path, device: LoopbackAdbDevice,
                                                            tmp_path: Path) -> None:
    from harness.lut import store as lut_store
    from harness.plans import load_plan
    from harness.sweep import OVERHEAD_SIGNATURE, run_sweep

    name = phone_profile(profiles_dir, "phone-et-dump", extra_runtime="  etdump: true")
    profile = load_profile(name)
    profile = dataclasses.replace(profile, transport=dataclasses.replace(profile.transport, address=device.address),
                                  dtypes=("fp32",))
    plan_file = tmp_path / "one.yaml"
    plan_file.write_text("name: one\ndtypes: [fp32]\nentries:\n"
                         "  - {kind: conv2d, c_in: 8, h: 8, w: same, c_out: 16, kernel: 3, activation: relu6}\n")
    out = tmp_path / "phone.parquet"
    result = run_sweep(profile, load_plan(plan_file), out)
    assert result.measured == 2 and not result.failures  # the conv and the overhead probe
    folder = tmp_path / "phone.parquet.etdump"
    kept = sorted(folder.iterdir())
    signatures = [parse_signature(row["signature"]) for row in lut_store.read_lut(out).to_pylist()]
    assert OVERHEAD_SIGNATURE in signatures
    assert [p.name for p in kept] == sorted(f"{s.digest}.etdp" for s in signatures)
    for path in kept:
        data = path.read_bytes()
        assert len(data) > 64 and data[8:12] == b"ED00"  # a size-prefixed flatbuffer with ETDump's identifier
    assert not list(device.device_path("/data/local/tmp/chameleon/etdump").iterdir())  # nothing left on the phone
    # A resumed sweep keeps what it has: the ETDumps are not taken again.
    stamps = {p.name: p.stat().st_mtime_ns for p in kept}
    run_sweep(profile, load_plan(plan_file), out)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


@needs_executorch
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CHAMELEON_LONG_TESTS") != "1",
                    reason="7 minutes on two cores (CHAMELEON_LONG_TESTS=1 runs it); the tests above cover each step")
@pytest.mark.timeout(2400)  # about 6 min building 75 programs, 1 min timing them here, 4 min through the phone
def test_smoke_sweep_over_the_loopback_phone_has_the_local_sweeps_signatures(profiles_dir: Path, device: LoopbackAdbDevice,
                                                                             tmp_path: Path) -> None:
    from harness.lut import store as lut_store

    local, phone = tmp_path / "xeon-executorch.parquet", tmp_path / "s835-executorch.parquet"
    # The local sweep builds every program into the session's model cache; the phone's sweep pushes the same files.
    result = run_bench("sweep", "--device", "xeon-executorch", "--plan", "smoke", "--out", str(local), "--json",
                       timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    phone_profile(profiles_dir, "s835-executorch")  # the real profile, one quick round, the stand-in binary
    result = run_bench("sweep", "--device", "s835-executorch", "--adb", device.address, "--plan", "smoke",
                       "--out", str(phone), "--json", env={"CHAMELEON_CONFIG": str(tmp_path / "config")}, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["sweep"]["failed"] == 0
    local_rows, phone_rows = lut_store.read_lut(local).to_pylist(), lut_store.read_lut(phone).to_pylist()
    assert sorted(r["signature"] for r in phone_rows) == sorted(r["signature"] for r in local_rows)
    assert len(phone_rows) == len(local_rows) == report["sweep"]["planned"]
    for row in phone_rows:
        assert (row["runtime"], row["provider"], row["threads"]) == ("executorch-executor_runner", "xnnpack", 1)
        assert "Loopback ADB device" in row["device_model"] and row["median_us"] > 0
