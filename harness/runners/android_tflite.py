"""TFLite's ``benchmark_model`` on an Android device, over ADB.

Per device: the binary (and a delegate's libraries) is pushed once; the
identity the device reports (getprop, the binary's hash) is read once.  Per
op: the single-op ``.tflite`` model is pushed (skipped when the device has the
same bytes).  Per round: one ``benchmark_model`` invocation, pinned with
``taskset`` to the profile's core mask, with exactly the round's warm-up and
run counts (``--min_secs=0 --warmup_min_secs=0``: otherwise ``--num_runs`` is
only a minimum), guarded by the thermal zone and the pinned core's frequency
read before and after.

``benchmark_model`` prints statistics, not per-run times.  Builds that print a
median give one :class:`~harness.measurement.ToolSummary` per round; builds
that print none are run once per timed run (``--num_runs=1``), which gives real
per-run samples at the cost of a process start each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness import tflite_models
from harness.errors import DeviceUnavailable, InvalidProfile
from harness.measurement import Batch, Measurement, MeasurementSettings, ToolSummary, measure_interleaved
from harness.parsers import ToolOutputError
from harness.parsers.tflite_benchmark import parse_tflite_benchmark
from harness.profiles import DeviceProfile
from harness.runners.base import DeviceIdentity, register
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
)


@dataclass(frozen=True)
class DeviceState:
    temperature_c: float | None
    cpu_freq_khz: int | None


class TfliteBenchmarkRunner:
    """Measures single-op ``.tflite`` models with ``benchmark_model`` on one Android device."""

    def __init__(self, profile: DeviceProfile, transport: AdbTransport, seed: int = 0, cache: Path | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.profile = profile
        self.runtime = profile.runtime
        self.transport = transport
        self.seed, self.cache, self.sleep = seed, cache, sleep
        self.device_dir = self.runtime.device_dir.rstrip("/")
        self.binary = f"{self.device_dir}/benchmark_model"
        self.core = _first_core(self.runtime.core_mask)
        self.cooldowns = 0
        transport.connect()
        binary_hash = self._install_binary()
        self.delegate_dir = self._install_delegate()
        props = {key: transport.getprop(key) for key in IDENTITY_PROPS}
        model = " ".join(v for v in (props["ro.product.manufacturer"], props["ro.product.model"]) if v) or "unknown device"
        soc = props["ro.soc.model"] or props["ro.board.platform"] or "unknown SoC"
        self._identity = DeviceIdentity(
            model=f"{model} ({soc}; Android {props['ro.build.version.release'] or '?'}; {props['ro.build.fingerprint'] or 'no fingerprint'})",
            runtime="tflite-benchmark_model",
            runtime_version=f"sha256:{binary_hash[:16]}",
            provider=self.runtime.delegate if self.runtime.delegate != "none" else "cpu",
        )

    @property
    def identity(self) -> DeviceIdentity:
        return self._identity

    # ------------------------------------------------------------ set-up
    def _install_binary(self) -> str:
        """Push the profile's benchmark binary, or use the one the device already has; returns its sha256."""
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

    def _install_delegate(self) -> str | None:
        if self.runtime.delegate != "hexagon":
            return None
        if not self.runtime.delegate_lib_dir:
            raise InvalidProfile(f"profile {self.profile.source}: runtime.delegate_lib_dir must name the Hexagon libraries' folder")
        folder = Path(self.runtime.delegate_lib_dir).expanduser()
        libraries = sorted(folder.glob("*.so")) if folder.is_dir() else []
        if not libraries:
            raise DeviceUnavailable(f"device {self.profile.name!r}: no Hexagon delegate libraries (*.so) in {folder}")
        remote = f"{self.device_dir}/hexagon"
        for library in libraries:
            self.transport.push(library, f"{remote}/{library.name}")
        return remote

    # --------------------------------------------------------- measuring
    def prepare(self, signature: OpSignature) -> "_PushedModel":
        local = tflite_models.tflite_model_file(signature, seed=self.seed, cache=self.cache)
        remote = f"{self.device_dir}/models/{local.name}"
        self.transport.push(local, remote)
        return _PushedModel(self, signature, remote)

    def measure(self, signature: OpSignature, settings: MeasurementSettings) -> Measurement:
        op = self.prepare(signature)
        return measure_interleaved([op], settings)[0]

    def command(self, graph: str, warmup_runs: int, runs: int, min_secs: float) -> str:
        # The tool's own rule is ours: at least --num_runs runs and at least --min_secs seconds
        # (min_secs 0 gives exactly num_runs).  Warm-up is counted in runs only.
        argv: list[object] = [
            self.binary,
            f"--graph={graph}",
            f"--num_threads={self.runtime.threads}",
            f"--warmup_runs={warmup_runs}",
            "--warmup_min_secs=0",
            f"--num_runs={runs}",
            f"--min_secs={min_secs:g}",
        ]
        if self.runtime.delegate == "hexagon":
            argv += ["--use_hexagon=true", f"--hexagon_lib_path={self.delegate_dir}"]
        elif self.runtime.delegate in ("nnapi", "gpu", "xnnpack"):
            argv.append(f"--use_{self.runtime.delegate}=true")
        if self.runtime.core_mask:
            argv = ["taskset", self.runtime.core_mask, *argv]
        return command_line(argv)

    def device_state(self) -> DeviceState:
        zone = self.profile.thermal.thermal_zone
        freq = f"/sys/devices/system/cpu/cpu{self.core}/cpufreq/scaling_cur_freq"
        result = self.transport.shell(f'echo "temp=$(cat {quote(zone)} 2>/dev/null)"; echo "freq=$(cat {quote(freq)} 2>/dev/null)"')
        values = dict(line.strip().partition("=")[::2] for line in result.output.splitlines() if "=" in line)
        freq_text = values.get("freq", "").strip()
        return DeviceState(temperature_c=_millidegrees(values.get("temp", "").strip()),
                           cpu_freq_khz=int(freq_text) if freq_text.isdigit() else None)

    def cool_down(self, state: DeviceState) -> DeviceState:
        """Wait, polling, while the device is hotter than the profile allows (at most a few cool-down periods)."""
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
    def __init__(self, runner: TfliteBenchmarkRunner, signature: OpSignature, remote: str) -> None:
        self.runner, self.signature, self.remote = runner, signature, remote

    def take_batch(self, settings: MeasurementSettings, warmup_runs: int) -> Batch:
        runner = self.runner
        before = runner.cool_down(runner.device_state())
        first = self._invoke(warmup_runs, settings.runs, settings.min_timed_s)
        stats = first.inference
        samples: tuple[float, ...] = ()
        if stats is not None and stats.count >= 1 and stats.all_same and stats.curr_us is not None:
            # "count=N curr=X(all same)": every run took X (the tool's clock is in whole µs).
            x = stats.curr_us
            summary = ToolSummary(count=stats.count, median_us=x, mean_us=x, std_us=0.0, min_us=x, p5_us=x, p95_us=x)
        elif stats is not None and stats.median_us is not None and stats.count >= 1:
            summary = ToolSummary(count=stats.count, median_us=stats.median_us, mean_us=stats.avg_us or stats.median_us,
                                  std_us=stats.std_us or 0.0, min_us=stats.min_us or stats.median_us,
                                  p5_us=stats.p5_us, p95_us=stats.p95_us)
        else:
            # No median printed: one invocation per timed run gives true per-run samples.
            samples = tuple(self._single_run(warmup_runs) for _ in range(settings.runs))
            summary = None
        after = runner.device_state()
        return Batch(samples_us=samples, warmup_runs=warmup_runs, summary=summary,
                     throttled=_throttled(before, after, runner.profile.thermal.max_temp_c),
                     temperature_c=_max_or_none(before.temperature_c, after.temperature_c),
                     cpu_freq_khz=_min_or_none(before.cpu_freq_khz, after.cpu_freq_khz))

    def _invoke(self, warmup_runs: int, runs: int, min_secs: float = 0.0):
        result = self.runner.transport.shell(self.runner.command(self.remote, warmup_runs, runs, min_secs))
        if not result.ok:
            tail = " | ".join(result.output.strip().splitlines()[-2:])
            raise DeviceUnavailable(f"benchmark_model failed on {self.signature.key} (exit {result.exit_code}): {tail[:300]}")
        try:
            return parse_tflite_benchmark(result.output)
        except ToolOutputError as err:
            raise DeviceUnavailable(f"benchmark_model output for {self.signature.key} not understood: {err}") from None

    def _single_run(self, warmup_runs: int) -> float:
        parsed = self._invoke(warmup_runs, 1)
        stats = parsed.inference
        value = None if stats is None else (stats.curr_us or stats.avg_us or stats.median_us)
        value = value or parsed.inference_avg_us
        if value is None:
            raise DeviceUnavailable(f"benchmark_model printed no inference time for {self.signature.key}")
        return float(value)

    def close(self) -> None:
        pass


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


def _from_profile(profile: DeviceProfile) -> TfliteBenchmarkRunner:
    spec = profile.transport
    if not spec.address and not spec.serial:
        raise DeviceUnavailable(
            f"device {profile.name!r}: its profile names no ADB serial or address; pass --adb HOST:PORT or --adb SERIAL"
        )
    transport = AdbTransport(address=spec.address, serial=spec.serial, connect_timeout_s=spec.connect_timeout_s)
    return TfliteBenchmarkRunner(profile, transport)


register("adb", "tflite", _from_profile)
