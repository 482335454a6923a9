"""The runner protocol and the registry that picks a runner for a device profile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from harness.errors import DeviceUnavailable
from harness.measurement import Measurement, MeasurementSettings, PreparedOp
from harness.profiles import DeviceProfile
from harness.signature import OpSignature


@dataclass(frozen=True)
class DeviceIdentity:
    """What the device itself reports, recorded in every LUT row.

    It is read from the hardware (CPU model, GPU name, a phone's getprop), never
    copied from the profile, so measurements from one machine cannot pass for
    another's.
    """

    model: str
    runtime: str
    runtime_version: str
    provider: str


class Runner(Protocol):
    """Prepares single-operator models on one device for timing."""

    @property
    def identity(self) -> DeviceIdentity: ...

    def prepare(self, signature: OpSignature) -> PreparedOp: ...

    def measure(self, signature: OpSignature, settings: MeasurementSettings) -> Measurement: ...

    def close(self) -> None: ...


RunnerFactory = Callable[[DeviceProfile], Runner]
_REGISTRY: dict[tuple[str, str], RunnerFactory] = {}


def register(transport: str, runtime: str, factory: RunnerFactory) -> None:
    _REGISTRY[(transport, runtime)] = factory


def make_runner(profile: DeviceProfile) -> Runner:
    """The runner for a profile's transport and runtime; raises DeviceUnavailable if there is none here."""
    _load_builtin_runners()
    key = (profile.transport.type, profile.runtime.name)
    factory = _REGISTRY.get(key)
    if factory is None:
        raise DeviceUnavailable(
            f"device {profile.name!r}: no runner for runtime {profile.runtime.name!r} over the "
            f"{profile.transport.type} transport (known: {', '.join(f'{r} over {t}' for t, r in sorted(_REGISTRY))})"
        )
    return factory(profile)


def _load_builtin_runners() -> None:
    # Imported lazily so that reading LUTs or profiles never loads a runtime.
    from harness.runners import android_ort, android_tflite, litert_local, onnxruntime_local  # noqa: F401
