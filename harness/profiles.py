"""Device profiles: one YAML file per device in ``device_profiles/``.

A profile says where commands run (``transport``), what runs the models
(``runtime``), how to measure (``measurement``), which dtypes the device takes,
and the energy rig.  Profiles are validated on load: a typo in a key or a value
of the wrong type is one clear line naming the file and the key, never a
half-configured measurement.  Adding a phone is adding a file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from harness import paths
from harness.errors import InvalidPlan, InvalidProfile, UnknownDevice
from harness.measurement import MeasurementSettings
from harness.signature import DTYPES, OpSignature, working_set_bytes
from harness.textfiles import UnreadableText, read_utf8

TRANSPORTS = ("local", "adb")
RUNTIMES = ("onnxruntime", "tflite", "onnxruntime_perf_test", "litert", "executorch", "executor_runner")  # litert, executorch: this machine
ORT_PROVIDERS = ("cpu", "cuda")
DELEGATES = ("none", "hexagon", "nnapi", "gpu", "xnnpack")
ENERGY_SOURCES = ("none", "monsoon", "rapl", "nvml")
#: A profile without ``memory_limit_mb``: what a 2017 phone's benchmark process can count on.
DEFAULT_MEMORY_LIMIT_MB = 1024.0


@dataclass(frozen=True)
class TransportSpec:
    """Where commands run: this machine, or an Android device over ADB (serial or host:port)."""

    type: str = "local"
    serial: str | None = None
    address: str | None = None
    connect_timeout_s: float = 10.0


@dataclass(frozen=True)
class RuntimeSpec:
    """What runs a model, and with how many threads on which cores."""

    name: str = "onnxruntime"
    provider: str = "cpu"  # onnxruntime: cpu | cuda
    threads: int = 1
    cores: tuple[int, ...] | None = None  # local CPU ids to pin to; None = choose one automatically
    core_mask: str | None = None  # Android: taskset mask of the big core(s), e.g. "0x10"
    benchmark_binary: str | None = None  # host path of benchmark_model / onnxruntime_perf_test to push
    delegate: str = "none"
    delegate_lib_dir: str | None = None  # host folder of the delegate's libraries (Hexagon skel)
    device_dir: str = "/data/local/tmp/chameleon"
    etdump: bool = False  # executor_runner: also keep each op's ETDump beside the LUT (a separate, untimed run)


@dataclass(frozen=True)
class ThermalSpec:
    """Android: throttling guard read before and after each measurement."""

    max_temp_c: float = 45.0
    cooldown_s: float = 30.0
    thermal_zone: str = "/sys/class/thermal/thermal_zone0/temp"


@dataclass(frozen=True)
class EnergySpec:
    """The energy rig (the energy issue uses it; kept here so a device is one file)."""

    source: str = "none"
    monsoon_serial: str | None = None
    voltage_v: float = 4.2
    idle_s: float = 18.0
    runs: int = 1000
    sample_hz: float = 5000.0


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    transport: TransportSpec
    runtime: RuntimeSpec
    dtypes: tuple[str, ...]
    measurement: MeasurementSettings
    thermal: ThermalSpec = field(default_factory=ThermalSpec)
    energy: EnergySpec = field(default_factory=EnergySpec)
    source: Path | None = None
    # Channel counts layer-wise tables are measured at (multiples of it): the width the device's kernels
    # vectorise over, so a pruned layer never lands between two counts that cost the same.
    channel_step: int = 8
    # The most memory one single-op measurement may need (MB, see harness.signature.working_set_bytes):
    # what the device can give a benchmark process, with room for the runtime itself.
    memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB


# --------------------------------------------------------------- loading
def available_devices(directory: Path | None = None) -> list[str]:
    folder = directory or paths.profiles_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_profile(name: str, directory: Path | None = None) -> DeviceProfile:
    """Load and validate ``NAME.yaml`` from the profiles folder (or a path to a profile file)."""
    folder = directory or paths.profiles_dir()
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        path = candidate
    else:
        path = folder / f"{name}.yaml"
        if not path.is_file():
            known = ", ".join(available_devices(folder)) or "none"
            raise UnknownDevice(f"unknown device {name!r} (known: {known}; profiles in {folder})")
    return parse_profile(_read_yaml(path), path)


def load_all_profiles(directory: Path | None = None) -> list[DeviceProfile]:
    return [load_profile(name, directory) for name in available_devices(directory)]


def _read_yaml(path: Path) -> Any:
    try:
        text = read_utf8(path)
    except UnreadableText as err:
        raise InvalidProfile(f"profile {path}: cannot read ({err.reason})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise InvalidProfile(f"profile {path}: {where}invalid YAML ({problem})") from None


class _Section:
    """Typed access to one mapping of a profile, collecting its keys to reject unknown ones."""

    def __init__(self, path: Path, where: str, data: Any) -> None:
        self.path, self.where = path, where
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            self.fail(f"must be a mapping, got {type(data).__name__}")
        self.data = dict(data)
        self.used: set[str] = set()

    def fail(self, message: str) -> None:
        prefix = f"{self.where}: " if self.where else ""
        raise InvalidProfile(f"profile {self.path}: {prefix}{message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False,
            choices: tuple[str, ...] | None = None) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                self.fail(f"missing required key {key!r}")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            self.fail(f"{key} must be {names}, got {value!r}")
        if choices is not None and value not in choices:
            self.fail(f"{key} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def positive(self, key: str, kind: type, default: Any) -> Any:
        value = self.get(key, kind, default)
        if value is not None and not (math.isfinite(value) and value > 0):  # YAML's .nan and .inf are floats too
            self.fail(f"{key} must be a finite number > 0, got {value!r}")
        return value

    def section(self, key: str) -> "_Section":
        self.used.add(key)
        where = f"{self.where}.{key}" if self.where else key
        return _Section(self.path, where, self.data.get(key))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            self.fail(f"unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(sorted(self.used))})")


def parse_profile(data: Any, path: Path) -> DeviceProfile:
    top = _Section(path, "", data)
    name = top.get("name", str, required=True)
    if name != path.stem:
        top.fail(f"name {name!r} must match the file name {path.stem!r}")
    description = top.get("description", str, "")

    t = top.section("transport")
    transport = TransportSpec(
        type=t.get("type", str, "local", choices=TRANSPORTS),
        serial=t.get("serial", str),
        address=t.get("address", str),
        connect_timeout_s=t.positive("connect_timeout_s", float, 10.0),
    )
    t.done()
    if transport.type == "adb" and transport.serial and transport.address:
        t.fail("give either serial (USB) or address (host:port), not both")

    r = top.section("runtime")
    cores = r.get("cores", (list, str), "auto")
    if cores == "auto":
        core_ids = None
    elif isinstance(cores, list) and cores and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cores):
        core_ids = tuple(cores)
    else:
        r.fail(f"cores must be 'auto' or a non-empty list of CPU ids, got {cores!r}")
    runtime = RuntimeSpec(
        name=r.get("name", str, "onnxruntime", choices=RUNTIMES),
        provider=r.get("provider", str, "cpu", choices=ORT_PROVIDERS),
        threads=r.positive("threads", int, 1),
        cores=core_ids,
        core_mask=r.get("core_mask", str),
        benchmark_binary=r.get("benchmark_binary", str),
        delegate=r.get("delegate", str, "none", choices=DELEGATES),
        delegate_lib_dir=r.get("delegate_lib_dir", str),
        device_dir=r.get("device_dir", str, "/data/local/tmp/chameleon"),
        etdump=r.get("etdump", bool, False),
    )
    r.done()
    if runtime.core_mask is not None:
        try:
            if int(runtime.core_mask, 16) <= 0:
                raise ValueError
        except ValueError:
            r.fail(f"core_mask must be a non-zero hex mask such as '0x10', got {runtime.core_mask!r}")
    if transport.type == "local" and runtime.name not in ("onnxruntime", "litert", "executorch"):
        r.fail(f"runtime {runtime.name!r} runs on Android devices; a local profile uses onnxruntime, litert or executorch")
    if transport.type == "adb" and runtime.name == "executorch":
        r.fail("runtime 'executorch' runs on this machine (local transport); on an Android device ExecuTorch runs "
               "as executor_runner: set runtime.name to executor_runner")
    if runtime.name in ("executorch", "executor_runner") and runtime.delegate not in ("xnnpack", "none"):
        r.fail(f"runtime {runtime.name!r} takes delegate xnnpack (XNNPACK partitioner) or none (portable kernels), "
               f"got {runtime.delegate!r}")
    if runtime.etdump and runtime.name != "executor_runner":
        r.fail(f"etdump: ETDumps are kept for runtime executor_runner only, not {runtime.name!r}")
    if transport.type == "adb" and runtime.name == "litert":
        r.fail("runtime 'litert' is LiteRT on this machine; on an Android device LiteRT runs as tflite")
    if transport.type == "adb" and runtime.name == "onnxruntime":
        r.fail("on an Android device ONNX Runtime runs as onnxruntime_perf_test: set runtime.name to onnxruntime_perf_test")
    if runtime.cores is not None and runtime.threads > len(runtime.cores):
        r.fail(f"threads ({runtime.threads}) exceed the pinned cores {list(runtime.cores)}")

    dtypes = top.get("dtypes", list, ["fp32"])
    bad = [d for d in dtypes if d not in DTYPES]
    if not dtypes or bad:
        top.fail(f"dtypes must be a non-empty list of {', '.join(DTYPES)}, got {dtypes!r}")

    m = top.section("measurement")
    defaults = MeasurementSettings()
    values = {f.name: m.get(f.name, type(getattr(defaults, f.name)), getattr(defaults, f.name)) for f in fields(MeasurementSettings)}
    m.done()
    try:
        measurement = MeasurementSettings(**values)
    except ValueError as err:
        m.fail(str(err))

    th = top.section("thermal")
    thermal = ThermalSpec(
        max_temp_c=th.positive("max_temp_c", float, 45.0),
        cooldown_s=th.positive("cooldown_s", float, 30.0),
        thermal_zone=th.get("thermal_zone", str, ThermalSpec.thermal_zone),
    )
    th.done()

    e = top.section("energy")
    serial = e.get("monsoon_serial", (str, int))  # serials are numbers on the label; YAML reads them as int
    energy = EnergySpec(
        source=e.get("source", str, "none", choices=ENERGY_SOURCES),
        monsoon_serial=None if serial is None else str(serial),
        voltage_v=e.positive("voltage_v", float, 4.2),
        idle_s=e.positive("idle_s", float, 18.0),
        runs=e.positive("runs", int, 1000),
        sample_hz=e.positive("sample_hz", float, 5000.0),
    )
    e.done()
    channel_step = top.positive("channel_step", int, 8)
    memory_limit_mb = top.positive("memory_limit_mb", float, DEFAULT_MEMORY_LIMIT_MB)
    top.done()
    return DeviceProfile(
        name=name,
        description=description,
        transport=transport,
        runtime=runtime,
        dtypes=tuple(dtypes),
        measurement=measurement,
        thermal=thermal,
        energy=energy,
        source=path,
        channel_step=channel_step,
        memory_limit_mb=memory_limit_mb,
    )


def check_fits_memory(profile: DeviceProfile, signatures: list[OpSignature], what: str) -> None:
    """Refuse, before anything is built, signatures whose measurement needs more memory than the device's limit.

    ``what`` names the signatures' source (``plan smoke``) in the one-line message, which names the
    largest offender, its estimate and how many more there are.
    """
    limit = profile.memory_limit_mb * 1e6
    over = [(working_set_bytes(s), s) for s in signatures if working_set_bytes(s) > limit]
    if not over:
        return
    need, worst = max(over, key=lambda pair: pair[0])
    more = f" (and {len(over) - 1} more)" if len(over) > 1 else ""
    raise InvalidPlan(f"{what}: {worst.key} needs about {_size(need)}, more than device {profile.name}'s "
                      f"memory_limit_mb of {profile.memory_limit_mb:g} MB{more}; shrink the op or raise the profile's limit")


def _size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes < 1000 or unit == "TB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    raise AssertionError("unreachable")


def pinned_cores(spec: RuntimeSpec) -> tuple[int, ...]:
    """The local CPU ids to pin to: the profile's list, or the last ``threads`` allowed cores.

    The last cores are chosen because CPU 0 usually takes most interrupts.
    """
    allowed = sorted(os.sched_getaffinity(0))
    if spec.cores is None:
        return tuple(allowed[-spec.threads:])
    missing = [c for c in spec.cores if c not in allowed]
    if missing:
        raise InvalidProfile(f"runtime.cores {list(spec.cores)}: CPU(s) {missing} are not available here (available: {allowed})")
    return spec.cores
