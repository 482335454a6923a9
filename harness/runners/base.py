"""The runner protocol and the device identity every runner reports.

Which runner serves a profile is :mod:`harness.runners.registry`'s business; this
module imports no concrete runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from harness.measurement import Measurement, MeasurementSettings, PreparedOp
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
    # The unit, as it reports itself (a phone's ro.serialno): which of several phones of one model measured a row.
    unit: str | None = None


class Runner(Protocol):
    """Prepares single-operator models on one device for timing."""

    @property
    def identity(self) -> DeviceIdentity: ...

    def prepare(self, signature: OpSignature) -> PreparedOp: ...

    def measure(self, signature: OpSignature, settings: MeasurementSettings) -> Measurement: ...

    def close(self) -> None: ...
