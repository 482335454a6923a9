"""The device farm on a real two-host Ray cluster on loopback, each host with two loopback ADB phones.

The hosts are two ``ray start`` nodes on this machine (tests/ray_loopback.py);
the phones are :class:`LoopbackAdbDevice` instances speaking the real ADB
protocol, announced as the hosts' resources, each driven by its actor through
``adb-shell``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.fake_device import LoopbackAdbDevice, standin_benchmark_model_path
from harness.farm.actor import profile_for_unit
from harness.farm.cluster import AttachedDevice, FarmError, announced_resources, ray_start_command
from harness.farm.sweep import calibration_agreement, farm_sweep, farm_targets
from harness.lut import store as lut_store
from harness.plans import load_plan
from harness.profiles import load_profile
from harness.sweep import run_sweep

from conftest import FAST_PHONE_MEASUREMENT, run_bench, small_plan_yaml
from harness.farm.loopback import LoopbackRayCluster

RAY_INSTALLED = (Path(sys.executable).parent / "ray").exists() or shutil.which("ray") is not None



# ------------------------------------------------------------------ no cluster needed
def test_attached_devices_parse_and_become_resources() -> None:
    device = AttachedDevice.parse("pixel=127.0.0.1:5555")
    assert device.resource == "chameleon-device/pixel/127.0.0.1:5555" and device.is_address
    assert AttachedDevice.from_resource(device.resource) == device
    assert not AttachedDevice.parse("s835=FA79A1A00123").is_address
    for bad in ("pixel", "=x", "pixel=", "pi xel=1", "pixel=a b"):
        with pytest.raises(FarmError):
            AttachedDevice.parse(bad)
    with pytest.raises(FarmError, match="given twice"):
        announced_resources([device, device])
    argv = ray_start_command([device], address="10.0.0.1:6379", block=True)
    assert argv[:3] == ["ray", "start", "--address=10.0.0.1:6379"] and argv[-1] == "--block"
    assert json.loads(next(a for a in argv if a.startswith("--resources="))[len("--resources="):]) == {device.resource: 1.0}
    assert "--resources={\"chameleon-trainer\": 2.0}" in ray_start_command([], address="10.0.0.1:6379", trainer_slots=2)
    with pytest.raises(FarmError, match="measures .* or trains"):
        ray_start_command([device], trainer_slots=2)


def test_calibration_agreement() -> None:
    reference = {"a": 100.0, "b": 50.0, "c": 10.0}
    close = {"a": 104.0, "b": 51.0, "c": 9.8}
    far = {"a": 130.0, "b": 66.0, "c": 13.1}
    agreed = calibration_agreement({"u1": reference, "u2": close}, 0.10)
    assert agreed["agree"] and agreed["median_ratio_to_reference"]["u2"] == pytest.approx(1.02)
    refused = calibration_agreement({"u1": reference, "u2": close, "u3": far}, 0.10)
    assert not refused["agree"] and refused["worst_unit"] == "u3" and refused["worst_difference"] == pytest.approx(0.31)


def test_farm_command_lines_fail_in_one_line(tmp_path: Path) -> None:
    unreachable = run_bench("farm", "status", "127.0.0.1:1", timeout=60)
    assert unreachable.returncode == 2 and "cannot reach the farm at 127.0.0.1:1" in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1
    two = run_bench("sweep", "--device", "pixel", "--device", "s835", timeout=60)
    assert two.returncode == 2 and "several need --farm" in two.stderr
    bad = run_bench("sweep", "--device", "pixel", "--farm", "--attach", "pixel", timeout=60)
    assert bad.returncode == 2 and "expected PROFILE=UNIT" in bad.stderr
    local = run_bench("sweep", "--device", "xeon", "--farm", "127.0.0.1:1", "--out", "x.parquet", timeout=60)
    assert local.returncode == 2 and "--out applies to a one-device sweep" in local.stderr
    lonely = run_bench("farm", "join", "127.0.0.1:1", timeout=60)
    assert lonely.returncode == 2 and "--attach" in lonely.stderr


# ------------------------------------------------------------------ the loopback farm
def _loopphone_profile(folder: Path) -> Path:
    """The pixel profile as `loopphone`: one quick round, the loopback phone's stand-in benchmark_model."""
    repo_profiles = Path(__file__).resolve().parent.parent / "device_profiles"
    text = (repo_profiles / "pixel.yaml").read_text().replace("name: pixel", "name: loopphone")
    text = text.split("measurement:")[0] + FAST_PHONE_MEASUREMENT + "thermal:" + text.split("thermal:")[1]
    path = folder / "loopphone.yaml"
    path.write_text(text.replace("~/android/arm64/benchmark_model", str(standin_benchmark_model_path())))
    return path


@dataclass
class Farm:
    root: Path
    cluster: LoopbackRayCluster
    phones: list[LoopbackAdbDevice]
    attached: list[AttachedDevice]
    profile_file: Path

    @property
    def profile(self):
        return load_profile(str(self.profile_file))

    def restart_phone(self, index: int) -> None:
        old = self.phones[index]
        phone = LoopbackAdbDevice(port=old.port, sandbox=old.sandbox, serial=old.serial)
        phone.authorize(self.root / "config" / "adbkey.pub")
        self.phones[index] = phone.start()


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory):
    if not RAY_INSTALLED:
        pytest.skip("Ray's `ray` command is not installed")
    root = tmp_path_factory.mktemp("farm")
    saved = os.environ.get("CHAMELEON_CONFIG")
    os.environ["CHAMELEON_CONFIG"] = str(root / "config")  # the driver's and the hosts' ADB key (the hosts inherit it)
    profile_file = _loopphone_profile(root)
    phones = []
    for i in range(4):
        phone = LoopbackAdbDevice(sandbox=root / f"phone{i}", serial=f"FARMPHONE{i}")
        phone.authorize(root / "config" / "adbkey.pub")
        phones.append(phone.start())
    attached = [AttachedDevice("loopphone", phone.address) for phone in phones]
    cluster = LoopbackRayCluster(root / "ray")
    try:
        cluster.start_head(attached[:2])
        cluster.add_node("host2", attached[2:])
        cluster.connect()
        cluster.wait_for_nodes(2)
        yield Farm(root, cluster, phones, attached, profile_file)
    finally:
        cluster.shutdown()
        for phone in phones:
            phone.stop()
        if saved is None:
            os.environ.pop("CHAMELEON_CONFIG", None)
        else:
            os.environ["CHAMELEON_CONFIG"] = saved


def _mid_plan(folder: Path) -> Path:
    """13 fp32 signatures (and 13 int8 ones a phone profile skips): five groups of three per phone, with the probe."""
    path = folder / "mid.yaml"
    path.write_text(small_plan_yaml("mid", [8, 12, 16, 20, 24, 32]))
    return path


def _check_lut(path: Path, planned: int, serial: str) -> None:
    table = lut_store.read_lut(path)  # validated: no duplicate signature, no NaN or negative time
    keys = table.column("signature").to_pylist()
    assert len(keys) == len(set(keys)) == planned, path
    assert set(table.column("unit").to_pylist()) == {serial}, path


@pytest.mark.slow
def test_farm_sweep_on_two_hosts_gives_the_luts_of_four_single_device_sweeps(farm: Farm, tmp_path: Path) -> None:
    plan = load_plan("smoke")
    profile = farm.profile
    targets = farm_targets(farm.attached, [profile], tmp_path / "farm")
    assert len(targets) == 4 and len({t.out for t in targets}) == 4
    result = farm_sweep(targets, plan)
    assert result.complete, result.to_json()
    assert all(u.jobs > 0 and u.busy_s > 0 for u in result.units)
    assert 0 < result.efficiency() <= 1
    by_address = {phone.address: phone for phone in farm.phones}
    for target in targets:
        (device,) = target.units
        single_out = tmp_path / "single" / target.out.name
        single = run_sweep(profile_for_unit(profile, device), plan, single_out)
        farm_lut, single_lut = lut_store.read_lut(target.out), lut_store.read_lut(single_out)
        assert farm_lut.num_rows == single_lut.num_rows == single.planned
        assert set(farm_lut.column("signature").to_pylist()) == set(single_lut.column("signature").to_pylist())
        serial = by_address[device.unit].serial
        _check_lut(target.out, single.planned, serial)
        _check_lut(single_out, single.planned, serial)


@pytest.mark.slow
def test_a_killed_phone_and_a_stopped_host_lose_no_row(farm: Farm, tmp_path: Path) -> None:
    plan = load_plan(_mid_plan(tmp_path))
    targets = farm_targets(farm.attached, [farm.profile], tmp_path / "luts")
    done = {"phone": False, "host": False}
    timers: list[threading.Timer] = []

    def on_event(event) -> None:
        if event.kind != "rows":
            return
        if event.unit == farm.attached[0] and not done["phone"]:  # a phone unplugged mid-sweep, back 2 s later
            done["phone"] = True
            farm.phones[0].stop()
            timers.append(threading.Timer(2.0, farm.restart_phone, (0,)))
            timers[-1].start()
        if event.unit in farm.attached[2:] and not done["host"]:  # its host powered off, back 3 s later
            done["host"] = True
            farm.cluster.stop_node("host2")
            timers.append(threading.Timer(3.0, farm.cluster.restart_node, ("host2",)))
            timers[-1].start()

    try:
        result = farm_sweep(targets, plan, on_event=on_event, retry_wait_s=0.5, host_wait_s=120)
    finally:
        for timer in timers:
            timer.join()
    assert done == {"phone": True, "host": True}
    assert result.complete, result.to_json()
    host2 = [u for u in result.units if u.device in farm.attached[2:]]
    assert any(u.left for u in host2), [u.to_json() for u in host2]
    by_address = {phone.address: phone for phone in farm.phones}
    for target, report in zip(targets, result.targets):
        _check_lut(target.out, report.planned, by_address[target.units[0].unit].serial)
    farm.cluster.wait_for_nodes(2)


@pytest.mark.slow
def test_sharded_units_share_the_plan_in_one_lut_after_agreeing(farm: Farm, tmp_path: Path) -> None:
    plan = load_plan(_mid_plan(tmp_path))
    targets = farm_targets(farm.attached[:2], [farm.profile], tmp_path / "luts", shard=True)
    assert len(targets) == 1 and targets[0].out.name == "loopphone.parquet"
    # Both loopback phones time real ORT runs on this one shared host, whose load can part them by more than the 10%
    # a lab's tolerance allows (it did in CI); merging, not the agreement threshold, is what this test is about.
    result = farm_sweep(targets, plan, tolerance=0.5)
    assert result.complete, result.to_json()
    calibration = result.targets[0].calibration
    assert calibration["agree"] and calibration["signatures"] == 8
    table = lut_store.read_lut(targets[0].out)
    keys = table.column("signature").to_pylist()
    assert len(keys) == len(set(keys)) == result.targets[0].planned
    # Both units measured the calibration set; which of them took the remaining groups depends on the shared host's
    # load (a unit retried after a slow job leaves its share to the other), so the LUT's units are those that wrote rows.
    assert len(calibration["median_ratio_to_reference"]) == 2
    writers = {u.serial for u in result.units if u.rows}
    assert writers and writers <= {farm.phones[0].serial, farm.phones[1].serial}
    assert set(table.column("unit").to_pylist()) == writers


@pytest.mark.slow
def test_a_driver_killed_with_sigkill_resumes_with_the_rows_it_wrote(farm: Farm, tmp_path: Path) -> None:
    out_dir = tmp_path / "luts"
    command = ["sweep", "--farm", farm.cluster.address, "--device", str(farm.profile_file), "--plan", str(_mid_plan(tmp_path)),
               "--out-dir", str(out_dir), "--json"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    driver = subprocess.Popen([sys.executable, "-m", "harness", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while not any(out_dir.glob("*.parquet.parts/part-*.parquet")) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.communicate()
    kept = {path.name: lut_store.read_with_parts(path).num_rows for path in sorted(out_dir.glob("*.parquet"))}
    assert sum(kept.values()) > 0  # a LUT readable after SIGKILL, with the groups already received
    again = run_bench(*command, env={"RAY_USAGE_STATS_ENABLED": "0"}, timeout=300)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)["farm_sweep"]
    assert report["complete"]
    by_address = {phone.address: phone for phone in farm.phones}
    for target in report["targets"]:
        name = Path(target["out"]).name
        assert target["already_measured"] >= kept.get(name, 0)
        unit = target["units"][0].split("=", 1)[1]
        _check_lut(Path(target["out"]), target["planned"], by_address[unit].serial)


@pytest.mark.slow
def test_farm_status_lists_both_hosts_and_their_phones(farm: Farm) -> None:
    result = run_bench("farm", "status", farm.cluster.address, "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    hosts = [h for h in json.loads(result.stdout)["hosts"] if h["alive"]]
    assert len(hosts) == 2
    devices = {d["device"]: d for h in hosts for d in h["devices"]}
    assert set(devices) == {str(d) for d in farm.attached}
    assert {d["state"] for d in devices.values()} <= {"idle", "busy"}


@pytest.mark.slow
def test_a_bare_farm_flag_starts_ray_on_this_machine(tmp_path: Path) -> None:
    """`bench sweep --farm` without an address: an embedded Ray instance with the --attach devices (no cluster)."""
    if not RAY_INSTALLED:
        pytest.skip("Ray's `ray` command is not installed")
    profile_file = _loopphone_profile(tmp_path)
    env = {"CHAMELEON_CONFIG": str(tmp_path / "config"), "RAY_USAGE_STATS_ENABLED": "0"}
    with LoopbackAdbDevice(sandbox=tmp_path / "phone", serial="EMBEDDED1") as phone:
        phone.authorize(tmp_path / "config" / "adbkey.pub")
        result = run_bench("sweep", "--farm", "--attach", f"loopphone={phone.address}", "--device", str(profile_file),
                           "--plan", str(_mid_plan(tmp_path)), "--out-dir", str(tmp_path / "luts"), "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["farm_sweep"]
    (target,) = report["targets"]
    assert report["complete"] and target["measured"] == target["planned"] == 14
    _check_lut(Path(target["out"]), 14, "EMBEDDED1")
