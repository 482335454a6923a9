"""Which devices a host has, as Ray resources, and the ``ray start`` command lines that announce them.

A device unit is announced on the host it is plugged into as the custom
resource ``chameleon-device/PROFILE/UNIT`` with capacity 1 (UNIT: the USB
serial, or ``HOST:PORT`` for a device over TCP), so the actor that drives it
is placed on that host, and two jobs never hold one phone.  Training slots are
another resource (``chameleon-trainer``), announced only by hosts that train,
and a host announces one kind or the other: measurement actors and training
tasks never share a node.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from harness.errors import ChameleonError

DEVICE_RESOURCE_PREFIX = "chameleon-device/"
TRAINER_RESOURCE = "chameleon-trainer"
DEFAULT_PORT = 6379

_UNIT = re.compile(r"^[A-Za-z0-9._:\-]+$")
_PROFILE = re.compile(r"^[A-Za-z0-9._\-]+$")


class FarmError(ChameleonError):
    """A farm that cannot be reached or used as asked: one line for the user."""


@dataclass(frozen=True, order=True)
class AttachedDevice:
    """One device unit on one host: the profile it is measured with, and how the host reaches it."""

    profile: str
    unit: str  # USB serial, or HOST:PORT over TCP

    @classmethod
    def parse(cls, text: str) -> "AttachedDevice":
        """``PROFILE=UNIT`` as typed after ``--attach`` (``pixel=FA79A1A00123``, ``s835=127.0.0.1:5555``)."""
        profile, sep, unit = text.partition("=")
        profile, unit = profile.strip(), unit.strip()
        if not sep or not profile or not unit:
            raise FarmError(f"--attach {text!r}: expected PROFILE=UNIT, e.g. pixel=FA79A1A00123 or pixel=127.0.0.1:5555")
        if not _PROFILE.match(profile):
            raise FarmError(f"--attach {text!r}: a profile name has letters, digits, '.', '_' and '-' only")
        if not _UNIT.match(unit):
            raise FarmError(f"--attach {text!r}: a unit is a USB serial or HOST:PORT (letters, digits, '.', ':', '_', '-')")
        return cls(profile, unit)

    @property
    def resource(self) -> str:
        return f"{DEVICE_RESOURCE_PREFIX}{self.profile}/{self.unit}"

    @property
    def is_address(self) -> bool:
        return ":" in self.unit

    @classmethod
    def from_resource(cls, name: str) -> "AttachedDevice | None":
        if not name.startswith(DEVICE_RESOURCE_PREFIX):
            return None
        profile, sep, unit = name[len(DEVICE_RESOURCE_PREFIX):].partition("/")
        return cls(profile, unit) if sep and profile and unit else None

    def __str__(self) -> str:
        return f"{self.profile}={self.unit}"


def announced_resources(devices: Iterable[AttachedDevice], trainer_slots: int = 0) -> dict[str, float]:
    """The custom resources a host announces for its devices and training slots."""
    resources: dict[str, float] = {}
    for device in devices:
        if device.resource in resources:
            raise FarmError(f"--attach {device}: given twice")
        resources[device.resource] = 1.0
    if trainer_slots < 0:
        raise FarmError(f"--train-slots must be >= 0, got {trainer_slots}")
    if trainer_slots and resources:
        # A training saturates the host's cores and memory bandwidth, and the host runs the phones' tools' I/O
        # (pushes, ADB): never measure on a node while it trains.
        raise FarmError("a host measures (--attach) or trains (--train-slots), not both: its trainings would disturb "
                        "its phones' measurements")
    if trainer_slots:
        resources[TRAINER_RESOURCE] = float(trainer_slots)
    return resources


def devices_in(resources: Mapping[str, float]) -> list[AttachedDevice]:
    """The device units a node's resources announce."""
    found = [AttachedDevice.from_resource(name) for name in resources]
    return sorted(d for d in found if d is not None)


def ray_start_command(devices: Sequence[AttachedDevice], *, address: str | None = None, port: int = DEFAULT_PORT,
                      num_cpus: int | None = None, trainer_slots: int = 0, node_ip: str | None = None,
                      temp_dir: str | None = None, block: bool = False) -> list[str]:
    """``ray start`` for the head (``address`` None) or for a host joining ``address``, announcing its devices.

    The dashboard is off (a farm needs none, and it would take a port on
    every host); usage statistics are off.
    """
    argv = ["ray", "start"]
    if address is None:
        argv += ["--head", f"--port={port}", "--include-dashboard=false", "--disable-usage-stats"]
        if temp_dir:
            argv.append(f"--temp-dir={temp_dir}")
    else:
        argv.append(f"--address={address}")
    if node_ip:
        argv.append(f"--node-ip-address={node_ip}")
    if num_cpus is not None:
        argv.append(f"--num-cpus={num_cpus}")
    resources = announced_resources(devices, trainer_slots)
    if resources:
        argv.append("--resources=" + json.dumps(resources, sort_keys=True))
    if block:
        argv.append("--block")
    return argv


def connect(address: str, attach: Sequence[AttachedDevice] = ()) -> bool:
    """Connect this process to the farm at ``address`` as its driver; True when this call started Ray (shut it down).

    ``"local"``: start a Ray instance on this machine (the embedded farm)
    announcing the ``attach`` devices.  An address: join that farm as a
    driver (its hosts announce their own devices).  Already connected (a
    notebook, a test): nothing to do.
    """
    import ray

    if ray.is_initialized():
        return False
    quiet = {"logging_level": "ERROR", "log_to_driver": False}
    if address == "local":
        ray.init(resources=announced_resources(attach), include_dashboard=False, **quiet)
        return True
    if attach:
        raise FarmError("--attach announces devices of a farm started here (--farm local); a host of a running farm "
                        "announces its own with `bench farm join`")
    _check_reachable(address)
    try:
        ray.init(address=address, **quiet)
    except Exception as problem:  # Ray raises ConnectionError, RuntimeError or its own errors here: all one line
        reason = str(problem).strip().splitlines()[0] if str(problem).strip() else type(problem).__name__
        raise FarmError(f"cannot reach the farm at {address}: {reason[:200]}") from None
    return True


def _check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """A farm's head answers TCP on HOST:PORT: checked first, as Ray's own client waits minutes on a dead address."""
    if address == "auto":
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FarmError(f"farm address {address!r}: expected HOST:PORT (the head's, e.g. 192.168.1.10:{DEFAULT_PORT})")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as problem:
        raise FarmError(f"cannot reach the farm at {address}: {problem.strerror or problem} (is its head started? "
                        f"`bench farm head` on that host)") from None
