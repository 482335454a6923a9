"""Device profiles: the built-in ones, loading, validation messages, core pinning."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.errors import ChameleonError, InvalidProfile, UnknownDevice
from harness.measurement import MeasurementSettings
from harness.paths import profiles_dir
from harness.profiles import DeviceProfile, RuntimeSpec, available_devices, load_all_profiles, load_profile, pinned_cores
from harness.signature import DTYPES

BUILTIN = sorted(["cuda", "hexagon-v62", "pixel", "s835", "xeon", "s835-ort", "xeon-executorch", "s835-executorch"])


def one_line(err: BaseException) -> str:
    message = str(err)
    assert message and "\n" not in message
    return message


# ------------------------------------------------------------------ built-in profiles
@pytest.fixture(scope="module")
def builtin() -> dict[str, DeviceProfile]:
    return {p.name: p for p in load_all_profiles()}


def test_available_devices_lists_builtins():
    assert available_devices() == BUILTIN
    assert available_devices(profiles_dir()) == BUILTIN


def test_all_builtin_profiles_load(builtin):
    assert sorted(builtin) == BUILTIN
    for name, profile in builtin.items():
        assert profile.source == profiles_dir() / f"{name}.yaml"
        assert profile.description
        assert profile.dtypes and set(profile.dtypes) <= set(DTYPES)
        assert isinstance(profile.measurement, MeasurementSettings)
        assert profile.runtime.threads >= 1
        assert load_profile(name) == profile


def test_local_profiles(builtin):
    xeon, cuda = builtin["xeon"], builtin["cuda"]
    assert (xeon.transport.type, xeon.runtime.name, xeon.runtime.provider) == ("local", "onnxruntime", "cpu")
    assert xeon.runtime.cores is None  # "auto"
    assert xeon.dtypes == ("fp32", "int8")
    assert xeon.energy.source == "rapl"
    assert (cuda.transport.type, cuda.runtime.name, cuda.runtime.provider) == ("local", "onnxruntime", "cuda")
    assert cuda.measurement.warmup_runs == 10
    assert cuda.measurement.warmup_max_s == 0.5


@pytest.mark.parametrize("name, mask", [("pixel", "0x8"), ("s835", "0x10"), ("hexagon-v62", "0x10")])
def test_android_profiles_use_adb_and_tflite_with_a_core_mask(builtin, name, mask):
    profile = builtin[name]
    assert profile.transport.type == "adb"
    assert profile.runtime.name == "tflite"
    assert profile.runtime.core_mask == mask
    assert profile.runtime.threads == 1
    assert profile.energy.source == "monsoon"
    assert profile.thermal.max_temp_c == 45.0


def test_hexagon_is_int8_with_the_hexagon_delegate(builtin):
    hexagon = builtin["hexagon-v62"]
    assert hexagon.dtypes == ("int8",)
    assert hexagon.runtime.delegate == "hexagon"
    assert hexagon.runtime.delegate_lib_dir
    assert builtin["pixel"].runtime.delegate == "none"
    assert builtin["s835"].runtime.delegate == "none"
    assert builtin["pixel"].dtypes == ("fp32",) and builtin["s835"].dtypes == ("fp32",)


def test_s835_energy_settings(builtin):
    energy = builtin["s835"].energy
    assert (energy.voltage_v, energy.idle_s, energy.runs, energy.sample_hz) == (4.2, 18.0, 1000, 5000.0)


def test_profiles_dir_follows_environment(tmp_path, monkeypatch):
    (tmp_path / "mine.yaml").write_text("name: mine\n")
    monkeypatch.setenv("CHAMELEON_PROFILES", str(tmp_path))
    assert available_devices() == ["mine"]
    assert load_profile("mine").name == "mine"


# ------------------------------------------------------------------ unknown devices, folders, paths
def test_unknown_device_lists_known_ones():
    with pytest.raises(UnknownDevice) as info:
        load_profile("galaxy-s99")
    message = one_line(info.value)
    assert "galaxy-s99" in message
    for name in BUILTIN:
        assert name in message
    assert isinstance(info.value, ChameleonError)


def test_unknown_device_in_empty_folder(tmp_path):
    with pytest.raises(UnknownDevice, match="known: none"):
        load_profile("xeon", directory=tmp_path)


def test_available_devices_of_missing_and_custom_folders(tmp_path):
    assert available_devices(tmp_path / "nope") == []
    assert available_devices(tmp_path) == []
    (tmp_path / "b.yaml").write_text("name: b\n")
    (tmp_path / "a.yaml").write_text("name: a\n")
    (tmp_path / "notes.txt").write_text("not a profile\n")
    assert available_devices(tmp_path) == ["a", "b"]


def test_minimal_profile_gets_defaults(tmp_path):
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    profile = load_profile("tiny", directory=tmp_path)
    assert profile.transport.type == "local"
    assert profile.runtime.name == "onnxruntime" and profile.runtime.provider == "cpu"
    assert profile.runtime.threads == 1 and profile.runtime.cores is None
    assert profile.dtypes == ("fp32",)
    assert profile.measurement == MeasurementSettings()
    assert profile.description == ""


def test_load_by_path(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text("name: bench\nruntime:\n  cores: [0]\ndtypes: [int8]\nmeasurement:\n  runs: 21\n")
    profile = load_profile(str(path))
    assert profile.name == "bench"
    assert profile.runtime.cores == (0,)
    assert profile.dtypes == ("int8",)
    assert profile.measurement.runs == 21
    assert profile.source == path


def test_integer_values_accepted_for_floats(tmp_path):
    (tmp_path / "f.yaml").write_text("name: f\ntransport:\n  connect_timeout_s: 5\nenergy:\n  monsoon_serial: 12345\n")
    profile = load_profile("f", directory=tmp_path)
    assert profile.transport.connect_timeout_s == 5.0 and isinstance(profile.transport.connect_timeout_s, float)
    assert profile.energy.monsoon_serial == "12345"


def test_adb_with_address(tmp_path):
    (tmp_path / "phone.yaml").write_text(
        "name: phone\ntransport:\n  type: adb\n  address: '192.168.1.20:5555'\n"
        "runtime:\n  name: tflite\n  core_mask: '0x10'\n"
    )
    profile = load_profile("phone", directory=tmp_path)
    assert profile.transport.address == "192.168.1.20:5555"
    assert profile.transport.serial is None


# ------------------------------------------------------------------ invalid profiles
GOOD = {
    "name": "dev",
    "transport": "  type: local\n",
    "runtime": "  name: onnxruntime\n  threads: 1\n",
}


def write_profile(folder: Path, body: str, name: str = "dev") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(body)
    return path


INVALID = {
    "yaml syntax": ("name: dev\nruntime: [unclosed\n", ["invalid YAML", "line"]),
    "yaml tab indentation": ("name: dev\nruntime:\n\tthreads: 1\n", ["invalid YAML"]),
    "not a mapping": ("- name\n- dev\n", ["must be a mapping"]),
    "missing name": ("description: x\n", ["name"]),
    "unknown top-level key": ("name: dev\nthreads: 2\n", ["unknown key", "'threads'"]),
    "unknown nested key": ("name: dev\nruntime:\n  thread: 2\n", ["runtime", "'thread'"]),
    "unknown transport key": ("name: dev\ntransport:\n  kind: adb\n", ["transport", "'kind'"]),
    "unknown energy key": ("name: dev\nenergy:\n  volts: 4\n", ["energy", "'volts'"]),
    "unknown thermal key": ("name: dev\nthermal:\n  max_temp: 40\n", ["thermal", "'max_temp'"]),
    "section not a mapping": ("name: dev\nruntime: onnxruntime\n", ["runtime", "must be a mapping"]),
    "threads wrong type": ("name: dev\nruntime:\n  threads: two\n", ["runtime", "threads", "'two'"]),
    "threads bool": ("name: dev\nruntime:\n  threads: true\n", ["threads"]),
    "threads float": ("name: dev\nruntime:\n  threads: 1.5\n", ["threads"]),
    "threads zero": ("name: dev\nruntime:\n  threads: 0\n", ["threads", "> 0"]),
    "threads negative": ("name: dev\nruntime:\n  threads: -2\n", ["threads", "> 0"]),
    "transport type usb": ("name: dev\ntransport:\n  type: usb\n", ["transport", "type", "'usb'", "local, adb"]),
    "runtime name": ("name: dev\nruntime:\n  name: tensorrt\n", ["runtime", "name", "'tensorrt'"]),
    "provider": ("name: dev\nruntime:\n  provider: rocm\n", ["provider", "'rocm'"]),
    "delegate": ("name: dev\nruntime:\n  delegate: dsp\n", ["delegate", "'dsp'"]),
    "energy source": ("name: dev\nenergy:\n  source: multimeter\n", ["source", "'multimeter'"]),
    "name mismatch": ("name: other\n", ["name", "'other'", "'dev'"]),
    "name not a string": ("name: 5\n", ["name"]),
    "description not a string": ("name: dev\ndescription: [a]\n", ["description"]),
    "core_mask zero": ("name: dev\ntransport:\n  type: adb\nruntime:\n  name: tflite\n  core_mask: '0x0'\n",
                       ["core_mask", "'0x0'"]),
    "core_mask not hex": ("name: dev\ntransport:\n  type: adb\nruntime:\n  name: tflite\n  core_mask: big\n",
                          ["core_mask", "'big'"]),
    "core_mask unquoted": ("name: dev\ntransport:\n  type: adb\nruntime:\n  name: tflite\n  core_mask: 0x10\n",
                           ["core_mask"]),
    "cores a number": ("name: dev\nruntime:\n  cores: 3\n", ["cores"]),
    "cores a word": ("name: dev\nruntime:\n  cores: all\n", ["cores", "'all'"]),
    "cores empty": ("name: dev\nruntime:\n  cores: []\n", ["cores"]),
    "cores negative": ("name: dev\nruntime:\n  cores: [-1]\n", ["cores"]),
    "cores text items": ("name: dev\nruntime:\n  cores: ['3']\n", ["cores"]),
    "threads exceed cores": ("name: dev\nruntime:\n  threads: 2\n  cores: [0]\n", ["threads", "cores"]),
    "serial and address": ("name: dev\ntransport:\n  type: adb\n  serial: ABC\n  address: '1.2.3.4:5555'\n"
                           "runtime:\n  name: tflite\n", ["transport", "serial", "address"]),
    "tflite locally": ("name: dev\nruntime:\n  name: tflite\n", ["runtime", "tflite"]),
    "connect timeout": ("name: dev\ntransport:\n  connect_timeout_s: 0\n", ["connect_timeout_s"]),
    "dtypes unknown": ("name: dev\ndtypes: [fp16]\n", ["dtypes", "fp16"]),
    "dtypes empty": ("name: dev\ndtypes: []\n", ["dtypes"]),
    "dtypes not a list": ("name: dev\ndtypes: fp32\n", ["dtypes"]),
    "measurement runs 0": ("name: dev\nmeasurement:\n  runs: 0\n", ["measurement", "runs"]),
    "measurement unknown key": ("name: dev\nmeasurement:\n  repeats: 3\n", ["measurement", "repeats"]),
    "measurement not a mapping": ("name: dev\nmeasurement: [1]\n", ["measurement", "must be a mapping"]),
    "measurement cv": ("name: dev\nmeasurement:\n  cv_threshold: 0\n", ["measurement", "cv_threshold"]),
    "measurement max_runs": ("name: dev\nmeasurement:\n  runs: 50\n  max_runs: 10\n", ["measurement", "max_runs"]),
    "thermal negative": ("name: dev\nthermal:\n  max_temp_c: -1\n", ["thermal", "max_temp_c"]),
    "energy runs text": ("name: dev\nenergy:\n  runs: many\n", ["energy", "runs"]),
    "monsoon serial bool": ("name: dev\nenergy:\n  monsoon_serial: yes\n", ["monsoon_serial"]),
}


@pytest.mark.parametrize("body, fragments", list(INVALID.values()), ids=list(INVALID))
def test_invalid_profile(tmp_path, body, fragments):
    path = write_profile(tmp_path, body)
    with pytest.raises(InvalidProfile) as info:
        load_profile("dev", directory=tmp_path)
    message = one_line(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert isinstance(info.value, ChameleonError)


def test_empty_file_reports_missing_name(tmp_path):
    write_profile(tmp_path, "")
    with pytest.raises(InvalidProfile, match="missing required key 'name'"):
        load_profile("dev", directory=tmp_path)


def test_unknown_key_message_lists_known_keys(tmp_path):
    write_profile(tmp_path, "name: dev\nruntime:\n  thread: 2\n")
    with pytest.raises(InvalidProfile) as info:
        load_profile("dev", directory=tmp_path)
    message = one_line(info.value)
    assert "threads" in message and "cores" in message  # the known keys of runtime


def test_yaml_error_names_the_line(tmp_path):
    write_profile(tmp_path, "name: dev\ndescription: ok\nruntime:\n  threads: [1\n")
    with pytest.raises(InvalidProfile, match=r"line \d+") as info:
        load_profile("dev", directory=tmp_path)
    one_line(info.value)


def test_non_utf8_profile_is_invalid_profile(tmp_path):
    (tmp_path / "dev.yaml").write_bytes(b"name: dev\ndescription: \xff\xfe\n")
    with pytest.raises(InvalidProfile) as info:
        load_profile("dev", directory=tmp_path)
    assert str(tmp_path / "dev.yaml") in one_line(info.value)


def test_load_all_profiles_fails_on_a_bad_one(tmp_path):
    write_profile(tmp_path, "name: good\n", name="good")
    write_profile(tmp_path, "name: bad\nruntime:\n  threads: 0\n", name="bad")
    with pytest.raises(InvalidProfile, match="bad.yaml"):
        load_all_profiles(tmp_path)


def test_measurement_wrong_type_names_the_key(tmp_path):
    write_profile(tmp_path, "name: dev\nmeasurement:\n  runs: two\n")
    with pytest.raises(InvalidProfile) as info:
        load_profile("dev", directory=tmp_path)
    assert "runs" in one_line(info.value)


def test_measurement_fractional_runs_rejected(tmp_path):
    write_profile(tmp_path, "name: dev\nmeasurement:\n  runs: 2.5\n")
    with pytest.raises(InvalidProfile, match="runs"):
        load_profile("dev", directory=tmp_path)


# ------------------------------------------------------------------ pinned_cores
ALLOWED = sorted(os.sched_getaffinity(0))


def test_auto_picks_the_last_allowed_cpu():
    assert pinned_cores(RuntimeSpec(threads=1, cores=None)) == (ALLOWED[-1],)


@pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two allowed CPUs")
def test_auto_picks_the_last_allowed_cpus_for_more_threads():
    assert pinned_cores(RuntimeSpec(threads=2, cores=None)) == tuple(ALLOWED[-2:])


def test_explicit_cores_are_kept():
    assert pinned_cores(RuntimeSpec(threads=1, cores=(ALLOWED[0],))) == (ALLOWED[0],)


def test_cpu_not_allowed_is_rejected():
    missing = max(ALLOWED) + 1000
    with pytest.raises(InvalidProfile) as info:
        pinned_cores(RuntimeSpec(threads=1, cores=(ALLOWED[0], missing)))
    message = one_line(info.value)
    assert str(missing) in message and "runtime.cores" in message


def test_pinned_cores_uses_sched_getaffinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 5, 7})
    assert pinned_cores(RuntimeSpec(threads=1)) == (7,)
    assert pinned_cores(RuntimeSpec(threads=2)) == (5, 7)
    assert pinned_cores(RuntimeSpec(threads=1, cores=(5,))) == (5,)
    with pytest.raises(InvalidProfile, match=r"\[0\]"):
        pinned_cores(RuntimeSpec(threads=1, cores=(0,)))


def test_xeon_auto_cores_resolve_here(builtin):
    cores = pinned_cores(builtin["xeon"].runtime)
    assert len(cores) == builtin["xeon"].runtime.threads
    assert set(cores) <= set(ALLOWED)


# ------------------------------------------------------------------ which runner a profile gets
def test_every_builtin_profile_has_a_runner_in_the_table(builtin):
    from harness.runners.registry import BUILTIN_RUNNERS

    for profile in builtin.values():
        assert (profile.transport.type, profile.runtime.name) in BUILTIN_RUNNERS, profile.name


def test_builtin_runner_table_names_factories_that_exist():
    import importlib

    from harness.runners.registry import BUILTIN_RUNNERS

    for key, target in BUILTIN_RUNNERS.items():
        module_name, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module_name), attribute)), key


def test_unknown_runtime_lists_the_known_pairs(builtin):
    import dataclasses

    from harness.errors import DeviceUnavailable
    from harness.runners import make_runner

    xeon = builtin["xeon"]
    profile = dataclasses.replace(xeon, runtime=dataclasses.replace(xeon.runtime, name="nope"))
    with pytest.raises(DeviceUnavailable) as caught:
        make_runner(profile)
    assert one_line(caught.value) == (
        "device 'xeon': no runner for runtime 'nope' over the local transport (known: executor_runner over adb, "
        "onnxruntime_perf_test over adb, tflite over adb, executorch over local, litert over local, onnxruntime over local)"
    )


def test_a_runner_registered_at_run_time_is_used_and_listed(builtin, monkeypatch):
    import dataclasses

    from harness.errors import DeviceUnavailable
    from harness.runners import make_runner, register, registry

    monkeypatch.setattr(registry, "_REGISTRY", {})
    xeon = builtin["xeon"]
    profile = dataclasses.replace(xeon, runtime=dataclasses.replace(xeon.runtime, name="mine"))
    made = []
    register("local", "mine", lambda p: made.append(p.name) or "my runner")
    assert make_runner(profile) == "my runner" and made == ["xeon"]
    register("local", "onnxruntime", lambda p: "replaces the built-in")
    assert make_runner(xeon) == "replaces the built-in"
    other = dataclasses.replace(xeon, runtime=dataclasses.replace(xeon.runtime, name="other"))
    with pytest.raises(DeviceUnavailable, match=r"known: .*mine over local, onnxruntime over local\)$"):
        make_runner(other)


def test_reading_profiles_and_luts_loads_no_runtime():
    import subprocess
    import sys

    code = (
        "import sys, harness.runners, harness.profiles, harness.lut.store\n"
        "harness.profiles.load_all_profiles()\n"
        "loaded = [m for m in ('onnxruntime', 'ai_edge_litert', 'harness.runners.onnxruntime_local',"
        " 'harness.runners.litert_local', 'harness.runners.android_tflite', 'harness.runners.android_ort') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
