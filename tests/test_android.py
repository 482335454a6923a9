"""Android devices end to end: adb-shell transport, benchmark_model runner and sweeps, against the loopback device.

The loopback device speaks the real ADB protocol on 127.0.0.1 and runs the
stand-in benchmark_model (LiteRT on this CPU); the code under test is the
same that drives a phone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from conftest import FAST_PHONE_MEASUREMENT, run_bench
from harness.lut import store as lut_store
from harness.errors import DeviceUnavailable
from harness.fake_device import LoopbackAdbDevice, standin_benchmark_model_path, standin_ort_perf_test_path
from harness.plans import load_plan
from harness.profiles import load_profile
from harness.runners import make_runner
from harness.signature import make_signature
from harness.sweep import run_sweep
from harness.transports.adb import AdbCommandError, AdbTransport, command_line, ensure_key_pair, quote, split_exit_code

FAST_ANDROID = FAST_PHONE_MEASUREMENT


@pytest.fixture()
def device(tmp_path: Path):
    with LoopbackAdbDevice(sandbox=tmp_path / "device") as loopback:
        # Besides this user's keys (the default), the test clients' own, created on first use.
        loopback.authorize(tmp_path / "keys" / "adbkey.pub")
        loopback.authorize(tmp_path / "config" / "adbkey.pub")
        yield loopback


@pytest.fixture()
def transport(device: LoopbackAdbDevice, tmp_path: Path):
    adb = AdbTransport(address=device.address, key_path=tmp_path / "keys" / "adbkey", backoff_s=0.05)
    with adb:
        yield adb


def android_profile(profiles_dir: Path, name: str, base: str = "pixel", binary: Path | None = None, extra: str = "") -> str:
    """A copy of a phone profile with a fast measurement method and the stand-in binary."""
    text = (profiles_dir / f"{base}.yaml").read_text().replace(f"name: {base}", f"name: {name}")
    text = text.split("measurement:")[0] + FAST_ANDROID + "thermal:" + text.split("thermal:")[1] if "thermal:" in text else text
    text = text.replace("~/android/arm64/benchmark_model", str(binary or standin_benchmark_model_path()))
    text = text.replace("~/android/arm64/onnxruntime_perf_test", str(binary or standin_ort_perf_test_path())) + extra
    (profiles_dir / f"{name}.yaml").write_text(text)
    return name


# ------------------------------------------------------------------ transport
def test_key_pair_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    key = ensure_key_pair(tmp_path / "cfg" / "adbkey")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.with_name("adbkey.pub").exists()
    before = key.read_bytes()
    assert ensure_key_pair(key).read_bytes() == before


def test_values_are_quoted_and_exit_codes_recovered(transport: AdbTransport) -> None:
    assert command_line(["echo", "a b", "$(reboot)", "x;y"]) == "echo 'a b' '$(reboot)' 'x;y'"
    assert transport.run(["echo", "it's ; $HOME"]).output.strip() == "it's ; $HOME"
    assert transport.shell("exit 3").exit_code == 3
    assert transport.shell("printf 'no newline'").output == "no newline"
    with pytest.raises(AdbCommandError, match="exited 7"):
        transport.run(["sh", "-c", "echo oops; exit 7"])
    with pytest.raises(DeviceUnavailable):
        split_exit_code("output cut short")


def test_push_skips_identical_files_and_pull_round_trips(transport: AdbTransport, device: LoopbackAdbDevice, tmp_path: Path) -> None:
    local = tmp_path / "blob.bin"
    local.write_bytes(os.urandom(3_000_000))
    remote = "/data/local/tmp/chameleon/blob.bin"
    assert transport.push(local, remote) is True
    assert transport.push(local, remote) is False  # same md5 on the device: skipped
    assert device.device_path(remote).read_bytes() == local.read_bytes()
    local.write_bytes(os.urandom(1000))
    assert transport.push(local, remote) is True  # changed: pushed again
    back = transport.pull(remote, tmp_path / "back.bin")
    assert back.read_bytes() == local.read_bytes()


def test_a_dropped_connection_is_reconnected_with_backoff(transport: AdbTransport, device: LoopbackAdbDevice) -> None:
    assert transport.getprop("ro.product.model") == device.identity["ro.product.model"]
    device.drop_connections()
    assert transport.run(["echo", "back"]).output.strip() == "back"
    device.drop_next_shell_matching("second")
    assert transport.run(["echo", "second"]).output.strip() == "second"
    assert transport.reconnects >= 1


def test_an_unreachable_device_is_one_clear_error(tmp_path: Path) -> None:
    adb = AdbTransport(address="127.0.0.1:1", key_path=tmp_path / "adbkey", retries=1, backoff_s=0.01)
    with pytest.raises(DeviceUnavailable, match="127.0.0.1:1"):
        adb.run(["echo", "hi"])


# --------------------------------------------------------------------- runner
def test_runner_reports_the_devices_identity_not_the_profiles(profiles_dir: Path, device: LoopbackAdbDevice) -> None:
    name = android_profile(profiles_dir, "loopphone")
    profile = load_profile(name)
    profile = dataclasses.replace(profile, transport=dataclasses.replace(profile.transport, address=device.address))
    runner = make_runner(profile)
    try:
        identity = runner.identity
        assert "Loopback ADB device" in identity.model and "Pixel" not in identity.model
        assert identity.runtime == "tflite-benchmark_model" and identity.runtime_version.startswith("sha256:")
        measurement = runner.measure(make_signature("conv2d", c_in=8, h=8, w=8, c_out=8, kernel=3), profile.measurement)
        assert measurement.stats.median_us > 0 and measurement.stats.runs >= 3
        assert measurement.temperature_c is not None and measurement.cpu_freq_khz is not None
        assert measurement.throttled is False
        calls = device.taskset_calls()
        assert calls and {int(call["mask"], 16) for call in calls} == {int(profile.runtime.core_mask, 16)}
    finally:
        runner.close()


def test_a_hot_device_cools_down_and_throttled_rounds_are_marked(profiles_dir: Path, device: LoopbackAdbDevice) -> None:
    name = android_profile(profiles_dir, "hotphone")
    profile = load_profile(name)
    profile = dataclasses.replace(profile, transport=dataclasses.replace(profile.transport, address=device.address))
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the device cools while we wait
        waits.append(seconds)
        device.set_temperature_c(40.0)

    runner = make_runner(profile)
    runner.sleep = sleep
    try:
        device.set_temperature_c(60.0)  # over the profile's 45 °C
        cooled = runner.measure(make_signature("add", c_in=8, h=8, w=8), profile.measurement)
        assert waits and runner.cooldowns == 1 and cooled.throttled is False
        assert cooled.temperature_c == 40.0
        device.set_cpu_freq_khz(runner.core, 300_000)
        assert runner.device_state().cpu_freq_khz == 300_000  # the pinned core's frequency is what is read
    finally:
        runner.close()


def test_throttling_rule() -> None:
    from harness.runners.android import DeviceState, _throttled

    cool, fast, slow = 35.0, 2_150_400, 1_000_000
    assert _throttled(DeviceState(cool, fast), DeviceState(cool, fast), 45.0) is False
    assert _throttled(DeviceState(cool, fast), DeviceState(50.0, fast), 45.0) is True  # got hot during the round
    assert _throttled(DeviceState(cool, fast), DeviceState(cool, slow), 45.0) is True  # the core slowed down
    assert _throttled(DeviceState(None, None), DeviceState(None, None), 45.0) is None  # nothing readable


def test_hexagon_profile_pushes_the_delegate_and_asks_for_it(profiles_dir: Path, device: LoopbackAdbDevice, tmp_path: Path) -> None:
    libs = tmp_path / "hexagon_libs"
    libs.mkdir()
    for name in ("libhexagon_interface.so", "libhexagon_nn_skel_v62.so"):
        (libs / name).write_bytes(b"\x7fELF stand-in")
    text = (profiles_dir / "hexagon-v62.yaml").read_text().replace("~/android/hexagon_nn_skel_v1.20", str(libs))
    (profiles_dir / "hexagon-v62.yaml").write_text(text)
    name = android_profile(profiles_dir, "dsp", base="hexagon-v62")
    profile = load_profile(name)
    profile = dataclasses.replace(profile, transport=dataclasses.replace(profile.transport, address=device.address))
    runner = make_runner(profile)
    try:
        assert device.device_path("/data/local/tmp/chameleon/hexagon/libhexagon_interface.so").exists()
        command = runner.command("/data/local/tmp/chameleon/models/x.tflite", 1, 3, 0.0)
        assert "--use_hexagon=true" in command and "--hexagon_lib_path=/data/local/tmp/chameleon/hexagon" in command
        result = runner.measure(make_signature("conv2d", c_in=8, h=8, w=8, c_out=8, kernel=3, dtype="int8"), profile.measurement)
        assert result.stats.median_us > 0
        assert runner.identity.provider == "hexagon"
    finally:
        runner.close()


def test_onnxruntime_perf_test_runs_over_the_same_transport(profiles_dir: Path, device: LoopbackAdbDevice) -> None:
    name = android_profile(profiles_dir, "phone-ort", base="s835-ort")
    profile = load_profile(name)
    profile = dataclasses.replace(profile, transport=dataclasses.replace(profile.transport, address=device.address))
    runner = make_runner(profile)
    try:
        assert runner.identity.runtime == "onnxruntime_perf_test"
        settings = dataclasses.replace(profile.measurement, rounds=2)
        result = runner.measure(make_signature("conv2d", c_in=8, h=8, w=8, c_out=8, kernel=3, dtype="int8"), settings)
        # Per-run samples from the tool's result file: percentiles exist, unlike benchmark_model's summaries.
        per_round = -(-settings.runs // settings.rounds)  # each round runs ceil(runs / rounds)
        assert result.stats.runs == settings.rounds * per_round >= settings.runs and result.stats.p10_us is not None
        assert 0 < result.stats.min_us <= result.stats.median_us
        command = runner.command("/m.onnx", "/r.csv", 5)
        assert command.startswith("taskset 0x10 ") and "-m times -r 5 -x 1" in command and "-e cpu" in command
    finally:
        runner.close()


# ---------------------------------------------------------------------- sweep
@pytest.mark.slow
def test_sweep_over_adb_survives_two_disconnects_with_every_row(profiles_dir: Path, device: LoopbackAdbDevice,
                                                                small_plan: Path, tmp_path: Path) -> None:
    name = android_profile(profiles_dir, "loopphone")
    profile = load_profile(name)
    profile = dataclasses.replace(profile, transport=dataclasses.replace(profile.transport, address=device.address),
                                  dtypes=("fp32", "int8"))
    plan = load_plan(small_plan)
    runner = make_runner(profile)
    runner.transport.backoff_s = 0.05

    def on_progress(done: int, total: int, signature: object) -> None:
        if done in (3, 9):  # a disconnect in the middle of the next group, twice
            device.drop_next_shell_matching("--graph")

    out = tmp_path / "phone.parquet"
    try:
        result = run_sweep(profile, plan, out, runner=runner, on_progress=on_progress)
    finally:
        runner.close()
    assert runner.transport.reconnects == 2
    keys = lut_store.read_lut(out).column("signature").to_pylist()
    assert result.measured == result.planned == len(plan.signatures) + 1
    assert len(keys) == len(set(keys)) == result.planned
    table = lut_store.read_lut(out)
    assert set(table.column("device_model").to_pylist()) == {runner.identity.model}
    assert all(m >= 0 for m in table.column("median_us").to_pylist())


@pytest.mark.slow
def test_bench_sweep_pixel_with_adb_override(profiles_dir: Path, device: LoopbackAdbDevice, small_plan: Path, tmp_path: Path) -> None:
    android_profile(profiles_dir, "pixel", base="pixel")  # the pixel profile, fast, with the stand-in binary
    out = tmp_path / "pixel.parquet"
    result = run_bench("sweep", "--device", "pixel", "--adb", device.address, "--plan", str(small_plan), "--out", str(out), "--json",
                       env={"CHAMELEON_CONFIG": str(tmp_path / "config")})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sweep"]["measured"] == report["lut"]["rows"] == 8  # fp32 only: 7 plan signatures + the overhead probe
    assert report["sweep"]["skipped_dtype"] == 7
    assert report["lut"]["runtimes"][0].startswith("tflite-benchmark_model sha256:")
    key = tmp_path / "config" / "adbkey"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600  # created on first use


def test_quote_handles_empty_and_unicode() -> None:
    assert quote("") == "''" and quote("héllo wörld") == "'héllo wörld'"


def test_fast_checksum_equals_the_byte_sum() -> None:
    from harness.transports.adb import _fast_checksum

    data = os.urandom(300_000)
    assert _fast_checksum(data) == sum(data) & 0xFFFFFFFF
    assert _fast_checksum(bytearray(data)) == sum(data) & 0xFFFFFFFF
    assert _fast_checksum("sync:") == sum(b"sync:")
    assert _fast_checksum(b"") == 0


def test_a_device_that_closes_the_connection_is_reported_not_polled(tmp_path: Path) -> None:
    """A clean close (FIN) must surface as a dropped connection, not as endless empty reads."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def accept_then_close() -> None:
        connection, _ = server.accept()
        connection.recv(24)  # the client's CNXN header
        connection.shutdown(socket.SHUT_RDWR)
        connection.close()

    thread = threading.Thread(target=accept_then_close, daemon=True)
    thread.start()
    adb = AdbTransport(address=f"127.0.0.1:{server.getsockname()[1]}", key_path=tmp_path / "adbkey",
                       connect_timeout_s=600, retries=0)
    with pytest.raises(DeviceUnavailable, match="closed the connection"):
        adb.connect()
    thread.join(timeout=10)
    server.close()
