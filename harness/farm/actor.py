"""One device unit of the farm, driven where it is plugged in: the body of its Ray actor.

:class:`DeviceWorker` is a plain class (a test or a notebook can use it in
process); :func:`device_actor` wraps it as a Ray actor placed on the host that
announced the unit's resource (:mod:`harness.farm.cluster`), so the actor and
the phone share a host and no two jobs hold one phone.  A job
(:meth:`DeviceWorker.run_job`) health-checks the device first (reachable,
the unit it says it is, cool enough where the profile says how), then
measures a group of signatures with the profile's method and returns the LUT
rows: it never writes a file, the driver does.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from harness.errors import ChameleonError, DeviceUnavailable
from harness.farm.cluster import AttachedDevice
from harness.measurement import measure_prepared
from harness.profiles import DeviceProfile
from harness.runners import DeviceIdentity, make_runner
from harness.signature import parse_signature
from harness.sweep import make_row


@dataclass(frozen=True)
class Health:
    """What a health check read from the device before a job."""

    unit: str | None  # the serial the device reports
    temperature_c: float | None
    cooled_down_s: float


@dataclass(frozen=True)
class JobResult:
    """A measured group: its LUT rows (as :func:`harness.sweep.make_row` makes them) and the device's busy time."""

    rows: list[dict[str, Any]]
    busy_s: float  # the job's time on the device, health check included
    health: Health


def profile_for_unit(profile: DeviceProfile, device: AttachedDevice) -> DeviceProfile:
    """The profile with its transport aimed at this unit (``HOST:PORT`` over TCP, or a USB serial)."""
    if profile.transport.type != "adb":
        raise ChameleonError(f"device {profile.name!r}: the farm drives ADB devices; this profile uses the "
                             f"{profile.transport.type} transport (measure it with `bench sweep` on its host)")
    transport = dataclasses.replace(profile.transport, address=device.unit if device.is_address else None,
                                    serial=None if device.is_address else device.unit)
    return dataclasses.replace(profile, transport=transport)


class DeviceWorker:
    """Drives one unit: opens its runner on first use, reopens it after the device went away."""

    def __init__(self, profile: DeviceProfile, device: AttachedDevice) -> None:
        self.device = device
        self.profile = profile_for_unit(profile, device)
        self._runner: Any = None

    def _open(self) -> Any:
        if self._runner is None:
            self._runner = make_runner(self.profile)  # connects, installs the tool, reads the device's identity
        return self._runner

    def _drop(self) -> None:
        """Forget the connection (the device went away): the next job reconnects and reinstalls what it must."""
        if self._runner is not None:
            try:
                self._runner.close()
            except Exception:  # a dead connection may fail to close; it is dropped anyway
                pass
        self._runner = None

    def identity(self) -> DeviceIdentity:
        try:
            return self._open().identity
        except DeviceUnavailable:
            self._drop()
            raise

    def health(self) -> Health:
        """Reachable, answering as itself, and cool enough: else one DeviceUnavailable line."""
        try:
            runner = self._open()
            echo = runner.transport.shell("echo chameleon-ok")
            if not echo.ok or "chameleon-ok" not in echo.output:
                raise DeviceUnavailable(f"device {self.device}: does not answer a shell command ({echo.output.strip()[:80]!r})")
            state = runner.device_state()
            before = time.monotonic()
            state = runner.cool_down(state)  # waits while the device is hotter than its profile allows
            cooled = time.monotonic() - before
            limit = self.profile.thermal.max_temp_c
            if state.temperature_c is not None and state.temperature_c > limit:
                raise DeviceUnavailable(f"device {self.device}: {state.temperature_c:.0f} °C after cooling down "
                                        f"{cooled:.0f} s (the profile allows {limit:.0f} °C)")
        except DeviceUnavailable:
            self._drop()
            raise
        return Health(unit=runner.identity.unit, temperature_c=state.temperature_c, cooled_down_s=cooled)

    def run_job(self, signature_keys: list[str], session_id: str) -> JobResult:
        """Health-check, then measure these signatures interleaved (the profile's method) into LUT rows.

        Phones are measured without the host-speed reference kernel (no phone
        profile uses one; see :mod:`harness.host_speed`).
        """
        started = time.monotonic()
        health = self.health()
        runner = self._runner
        signatures = [parse_signature(key) for key in signature_keys]
        try:
            measurements = measure_prepared(signatures, runner.prepare, self.profile.measurement)
        except DeviceUnavailable:
            self._drop()
            raise
        identity = runner.identity
        rows = [make_row(s, m, identity, self.profile.name, self.profile.runtime.threads, session_id)
                for s, m in zip(signatures, measurements)]
        return JobResult(rows=rows, busy_s=time.monotonic() - started, health=health)

    def ping(self) -> float:
        """Nothing: what a round trip to the actor costs (the dispatch benchmark)."""
        return time.monotonic()

    def close(self) -> None:
        self._drop()


def device_actor(profile: DeviceProfile, device: AttachedDevice) -> Any:
    """A Ray actor driving ``device``, placed on the host that announced it; restarted by Ray when its host returns.

    It takes no CPU from Ray's accounting (the phone does the work) but the
    unit's resource, which only its host has.  Ray restarts it when its
    worker dies or its host comes back (``max_restarts=-1``); a job that
    failed is never retried by Ray (``max_task_retries=0``): the driver
    decides, so no group is measured twice into a LUT.
    """
    import ray

    remote = ray.remote(DeviceWorker).options(
        num_cpus=0, resources={device.resource: 1}, max_restarts=-1, max_task_retries=0,
    )
    return remote.remote(profile, device)
