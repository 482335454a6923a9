"""What every runner on an Android device shares: the tool binary, the identity, the thermal guard.

A runtime on Android is one small subclass of :class:`AndroidRunner`: which
model file to push, which command runs a round, and how to read its output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.errors import DeviceUnavailable
from harness.measurement import Batch, Measurement, MeasurementSettings, measure_interleaved
from harness.profiles import DeviceProfile
from harness.runners.base import DeviceIdentity
from harness.signature import OpSignature
from harness.transports.adb import AdbTransport, command_line, file_sha256, quote

# getprop keys that identify a device; the simulator answers with its own values.
IDENTITY_PROPS = (
    "ro.product.manufacturer",
    "ro.product.model",
    "ro.board.platform",
    "ro.soc.model",
    "ro.build.version.release",
    "ro.build.fingerprint",
    "ro.serialno",
)


@dataclass(frozen=True)
class DeviceState:
    temperature_c: float | None
    cpu_freq_khz: int | None


class AndroidRunner:
    """Base of the runners that measure single-op models with a benchmark tool on an Android device.

    Per device: the tool binary is pushed once (or the one already on the
    device is used) and the identity the device reports is read once.  Per op:
    the model is pushed (skipped when the device has the same bytes).  Per
    round: one tool invocation pinned with ``taskset`` to the profile's core
    mask, guarded by the thermal zone and the pinned core's frequency read
    before and after; a device hotter than the profile allows is left to cool
    down first.
    """

    tool_name = "tool"  # the binary's name on the device
    runtime_label = "tool"  # the LUT's runtime column

    def __init__(self, profile: DeviceProfile, transport: AdbTransport, seed: int = 0, cache: Path | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.profile = profile
        self.runtime = profile.runtime
        self.transport = transport
        self.seed, self.cache, self.sleep = seed, cache, sleep
        self.device_dir = self.runtime.device_dir.rstrip("/")
        self.binary = f"{self.device_dir}/{self.tool_name}"
        self.core = _first_core(self.runtime.core_mask)
        self.cooldowns = 0
        transport.connect()
        binary_hash = self._install_binary()
        self.install_extras()
        props = {key: transport.getprop(key) for key in IDENTITY_PROPS}
        model = " ".join(v for v in (props["ro.product.manufacturer"], props["ro.product.model"]) if v) or "unknown device"
        soc = props["ro.soc.model"] or props["ro.board.platform"] or "unknown SoC"
        self._identity = DeviceIdentity(
            model=f"{model} ({soc}; Android {props['ro.build.version.release'] or '?'}; {props['ro.build.fingerprint'] or 'no fingerprint'})",
            runtime=self.runtime_label,
            runtime_version=f"sha256:{binary_hash[:16]}",
            provider=self.runtime.delegate if self.runtime.delegate != "none" else "cpu",
            unit=props["ro.serialno"] or None,
        )

    @property
    def identity(self) -> DeviceIdentity:
        return self._identity

    # --------------------------------------------------- for subclasses
    def install_extras(self) -> None:
        """Push what the runtime needs besides its binary (a delegate's libraries)."""

    def model_file(self, signature: OpSignature) -> Path:
        raise NotImplementedError

    def take_batch(self, signature: OpSignature, remote_model: str, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        """One tool invocation (or several, for per-run samples): the round's timings, without device state."""
        raise NotImplementedError

    # ------------------------------------------------------------ set-up
    def _install_binary(self) -> str:
        """Push the profile's tool binary, or use the one the device already has; returns its sha256."""
        local = Path(self.runtime.benchmark_binary).expanduser() if self.runtime.benchmark_binary else None
        if local is not None and local.is_file():
            self.transport.push(local, self.binary, executable=True)
            return file_sha256(local)
        device_hash = self.transport.shell(f"sha256sum {quote(self.binary)} 2>/dev/null")
        fields = device_hash.output.split()
        if device_hash.ok and fields:
            return fields[0]
        where = f"{local} does not exist here, and" if local else "the profile names no runtime.benchmark_binary, and"
        raise DeviceUnavailable(f"device {self.profile.name!r}: {where} the device has no {self.binary}")

    def pinned(self, argv: list[object]) -> str:
        """The command line, pinned to the profile's cores when it names a mask; every value quoted."""
        if self.runtime.core_mask:
            argv = ["taskset", self.runtime.core_mask, *argv]
        return command_line(argv)

    def run_tool(self, command: str, signature: OpSignature) -> str:
        result = self.transport.shell(command)
        if not result.ok:
            tail = " | ".join(result.output.strip().splitlines()[-2:])
            raise DeviceUnavailable(f"{self.tool_name} failed on {signature.key} (exit {result.exit_code}): {tail[:300]}")
        return result.output

    # --------------------------------------------------------- measuring
    def prepare(self, signature: OpSignature) -> "_PushedModel":
        local = self.model_file(signature)
        remote = f"{self.device_dir}/models/{local.name}"
        self.transport.push(local, remote)
        return _PushedModel(self, signature, remote)

    def measure(self, signature: OpSignature, settings: MeasurementSettings) -> Measurement:
        return measure_interleaved([self.prepare(signature)], settings)[0]

    def device_state(self) -> DeviceState:
        zone = self.profile.thermal.thermal_zone
        freq = f"/sys/devices/system/cpu/cpu{self.core}/cpufreq/scaling_cur_freq"
        result = self.transport.shell(f'echo "temp=$(cat {quote(zone)} 2>/dev/null)"; echo "freq=$(cat {quote(freq)} 2>/dev/null)"')
        values = dict(line.strip().partition("=")[::2] for line in result.output.splitlines() if "=" in line)
        freq_text = values.get("freq", "").strip()
        return DeviceState(temperature_c=_millidegrees(values.get("temp", "").strip()),
                           cpu_freq_khz=int(freq_text) if freq_text.isdigit() else None)

    def cool_down(self, state: DeviceState) -> DeviceState:
        """Wait, polling, while the device is hotter than the profile allows (at most four cool-down periods)."""
        limit = self.profile.thermal.max_temp_c
        waited = 0.0
        while state.temperature_c is not None and state.temperature_c > limit and waited < 4 * self.profile.thermal.cooldown_s:
            step = min(5.0, self.profile.thermal.cooldown_s)
            self.sleep(step)
            waited += step
            state = self.device_state()
        if waited:
            self.cooldowns += 1
        return state

    def close(self) -> None:
        self.transport.close()


class _PushedModel:
    """A model on the device; each round is one guarded call of the runner's tool."""

    def __init__(self, runner: AndroidRunner, signature: OpSignature, remote: str) -> None:
        self.runner, self.signature, self.remote = runner, signature, remote

    def take_batch(self, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        runner = self.runner
        before = runner.cool_down(runner.device_state())
        timings = runner.take_batch(self.signature, self.remote, settings, warmup_runs)
        after = runner.device_state()
        return Batch(samples_us=timings.samples_us, warmup_runs=timings.warmup_runs, summary=timings.summary,
                     throttled=_throttled(before, after, runner.profile.thermal.max_temp_c),
                     temperature_c=_max_or_none(before.temperature_c, after.temperature_c),
                     cpu_freq_khz=_min_or_none(before.cpu_freq_khz, after.cpu_freq_khz))

    def close(self) -> None:
        pass


def transport_for(profile: DeviceProfile) -> AdbTransport:
    spec = profile.transport
    if not spec.address and not spec.serial:
        raise DeviceUnavailable(
            f"device {profile.name!r}: its profile names no ADB serial or address; pass --adb HOST:PORT or --adb SERIAL "
            f"(no phone at hand: `bench fake-device` serves a loopback stand-in, then --adb 127.0.0.1:5555)"
        )
    return AdbTransport(address=spec.address, serial=spec.serial, connect_timeout_s=spec.connect_timeout_s)


def _first_core(mask: str | None) -> int:
    if not mask:
        return 0
    value = int(mask, 16)
    return (value & -value).bit_length() - 1


def _millidegrees(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value / 1000.0 if value > 200 else value  # most zones report millidegrees, a few degrees


def _throttled(before: DeviceState, after: DeviceState, max_temp_c: float) -> bool | None:
    if before.temperature_c is None and after.cpu_freq_khz is None:
        return None
    hot = any(t is not None and t > max_temp_c for t in (before.temperature_c, after.temperature_c))
    slowed = before.cpu_freq_khz is not None and after.cpu_freq_khz is not None and after.cpu_freq_khz < 0.9 * before.cpu_freq_khz
    return hot or slowed


def _max_or_none(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _min_or_none(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None
