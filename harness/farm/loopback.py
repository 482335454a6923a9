"""A real multi-node Ray cluster on loopback: the farm's tests, benchmarks and demos on one machine.

Every node is a real ``ray start --block`` process (the command line
``bench farm join`` runs, from :func:`harness.farm.cluster.ray_start_command`)
in its own process group, so that a node can be stopped (SIGKILL to its group:
a host that lost power) and started again with the same devices.  The test
process connects to the head as the driver.  Node failure detection is cut
from Ray's default of tens of seconds to about two, through Ray's own
``RAY_health_check_*`` settings.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from harness.farm.cluster import AttachedDevice, ray_start_command

RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray 2.5x turns on token authentication when ~/.ray/auth_token exists (any local ray.init() writes one); a
    # loopback cluster has no one to keep out, and its nodes and drivers must agree: off for all of them.
    "RAY_AUTH_MODE": "disabled",
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
    # The test host has 2 cores and other tests: Ray need not pre-start idle workers.
    "RAY_num_prestart_python_workers": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class _Node:
    argv: list[str]
    process: subprocess.Popen | None = None


@dataclass
class LoopbackRayCluster:
    root: Path
    port: int = field(default_factory=free_port)
    nodes: dict[str, _Node] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _spawn(self, name: str) -> None:
        node = self.nodes[name]
        log = open(self.root / f"{name}.log", "ab")
        ray_bin = str(Path(sys.executable).parent)
        env = {**os.environ, **RAY_ENV, "PATH": ray_bin + os.pathsep + os.environ.get("PATH", "")}
        node.process = subprocess.Popen(node.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, env=env)
        log.close()

    def start_head(self, devices: Sequence[AttachedDevice] = (), trainer_slots: int = 0, num_cpus: int = 1) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # Ray's sockets live under its temp folder, and a socket path has at most 107 bytes: a short one in /tmp.
        self.temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        self.nodes["head"] = _Node(ray_start_command(devices, port=self.port, num_cpus=num_cpus, trainer_slots=trainer_slots,
                                                     node_ip="127.0.0.1", temp_dir=self.temp_dir, block=True))
        self._spawn("head")

    def add_node(self, name: str, devices: Sequence[AttachedDevice] = (), trainer_slots: int = 0, num_cpus: int = 1) -> None:
        self.nodes[name] = _Node(ray_start_command(devices, address=self.address, num_cpus=num_cpus,
                                                   trainer_slots=trainer_slots, node_ip="127.0.0.1", block=True))
        self._spawn(name)

    def connect(self, timeout_s: float = 60) -> None:
        """Connect this process as the driver (once the head answers); its children drive with the same settings."""
        import ray

        self._saved_env = {name: os.environ.get(name) for name in RAY_ENV}
        os.environ.update(RAY_ENV)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def wait_for_nodes(self, count: int, timeout_s: float = 60) -> None:
        import ray

        deadline = time.monotonic() + timeout_s
        while sum(1 for n in ray.nodes() if n["Alive"]) != count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the loopback cluster did not reach {count} live nodes in {timeout_s} s")
            time.sleep(0.2)

    def stop_node(self, name: str) -> None:
        """Stop a node as a host losing power would: every process of its group killed at once."""
        process = self.nodes[name].process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.nodes[name].process = None

    def restart_node(self, name: str) -> None:
        self.stop_node(name)
        self._spawn(name)

    def shutdown(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        for name in list(self.nodes)[::-1]:
            self.stop_node(name)
        if getattr(self, "temp_dir", None):
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        for name, value in getattr(self, "_saved_env", {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
