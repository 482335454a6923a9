"""The farm's state as a user asks for it: hosts, their devices, busy, idle, failed or gone.

Hosts and devices come from Ray itself (the nodes and the device resources
they announce; a device resource in use is a busy unit).  Failures are what
drivers saw: a farm sweep posts each unit's state to a small detached actor on
the head, the :class:`FarmBoard`, which ``bench farm status`` reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from harness.farm.cluster import TRAINER_RESOURCE, AttachedDevice, devices_in

BOARD_NAME = "chameleon-farm-board"
NAMESPACE = "chameleon"


class FarmBoard:
    """The last state each unit's driver reported (the body of a detached actor on the head)."""

    def __init__(self) -> None:
        self._states: dict[str, dict[str, Any]] = {}

    def report(self, device: str, state: str, problem: str | None = None) -> None:
        self._states[device] = {"state": state, "problem": problem, "since": time.time()}

    def states(self) -> dict[str, dict[str, Any]]:
        return dict(self._states)


def farm_board() -> Any:
    """The farm's board (created on the head on first use)."""
    import ray

    remote = ray.remote(FarmBoard).options(name=BOARD_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                                           num_cpus=0, resources={"node:__internal_head__": 0.001})
    return remote.remote()


@dataclass(frozen=True)
class DeviceStatus:
    device: AttachedDevice
    state: str  # idle, busy, failed, gone
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"device": str(self.device), "profile": self.device.profile, "unit": self.device.unit,
                "state": self.state, "problem": self.problem}


@dataclass(frozen=True)
class HostStatus:
    node_id: str
    address: str
    alive: bool
    cpus: float
    trainer_slots: float
    devices: list[DeviceStatus] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "address": self.address, "alive": self.alive, "cpus": self.cpus,
                "trainer_slots": self.trainer_slots, "devices": [d.to_json() for d in self.devices]}


def farm_status() -> list[HostStatus]:
    """Every host the farm has seen, live first, with its devices' states (Ray must be initialised)."""
    import ray

    available = ray.available_resources()
    try:
        reported = ray.get(farm_board().states.remote(), timeout=10)
    except Exception:  # no board yet, or the head busy: states from Ray alone
        reported = {}
    live_devices = {d for node in ray.nodes() if node["Alive"] for d in devices_in(node.get("Resources", {}))}
    hosts = []
    for node in ray.nodes():
        resources = node.get("Resources", {})
        devices = []
        for device in devices_in(resources):
            board = reported.get(str(device), {})
            if not node["Alive"]:
                if device in live_devices:
                    continue  # announced again by the host that came back
                state = "gone"
            elif board.get("state") == "failed":
                state = "failed"
            else:
                state = "busy" if available.get(device.resource, 0.0) < 1.0 else "idle"
            devices.append(DeviceStatus(device, state, board.get("problem") if state in ("failed", "gone") else None))
        if not node["Alive"] and not devices:
            continue  # a host that left and came back: shown once, live
        hosts.append(HostStatus(node_id=node["NodeID"], address=node.get("NodeManagerAddress", "?"), alive=bool(node["Alive"]),
                                cpus=float(resources.get("CPU", 0.0)), trainer_slots=float(resources.get(TRAINER_RESOURCE, 0.0)),
                                devices=devices))
    return sorted(hosts, key=lambda h: (not h.alive, h.address, h.node_id))
