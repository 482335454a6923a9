"""Cumulative energy counters: Intel RAPL (Linux powercap) for the Xeon, NVIDIA NVML for CUDA GPUs.

Unlike a power monitor's trace, a counter only gives the energy used between
two readings, so an op's energy is measured by reading the counter around many
runs of it, long enough for the counter's update period (RAPL updates about
every millisecond, NVML's total-energy counter about every 100 ms), and
subtracting the idle power over the same time when asked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from contextlib import nullcontext
from typing import Callable, ContextManager, Protocol

from harness.errors import ChameleonError

POWERCAP = Path("/sys/class/powercap")


class CounterUnavailable(ChameleonError):
    """The energy counter cannot be read here; the message says why."""


class EnergyCounter(Protocol):
    name: str

    def read_mj(self) -> float:
        """Energy used since an arbitrary origin, in mJ (wrap-around already unfolded)."""


@dataclass(frozen=True)
class RaplDomain:
    path: Path
    name: str
    max_range_uj: int


class RaplCounter:
    """Sum of the package domains (``intel-rapl:N``) of Linux's powercap interface.

    Each ``energy_uj`` counter wraps at ``max_energy_range_uj``; readings are
    unfolded by remembering the last value, so the counter must be read at
    least once per wrap period (minutes at server power levels).
    """

    name = "rapl"

    def __init__(self, root: Path = POWERCAP) -> None:
        self.domains = _package_domains(root)
        self._last: dict[Path, int] = {}
        self._unfolded_uj: dict[Path, int] = {d.path: 0 for d in self.domains}

    def _read_raw(self, domain: RaplDomain) -> int:
        try:
            return int((domain.path / "energy_uj").read_text().strip())
        except PermissionError:
            raise CounterUnavailable(
                f"{domain.path / 'energy_uj'} is readable only by root (Linux restricts RAPL since 5.10, CVE-2020-8694): "
                "run as root or make it readable (chmod a+r)"
            ) from None
        except (OSError, ValueError) as err:
            raise CounterUnavailable(f"cannot read {domain.path / 'energy_uj'} ({err})") from None

    def read_mj(self) -> float:
        total_uj = 0
        for domain in self.domains:
            raw = self._read_raw(domain)
            last = self._last.get(domain.path)
            if last is not None:
                self._unfolded_uj[domain.path] += unfold_delta(last, raw, domain.max_range_uj)
            self._last[domain.path] = raw
            total_uj += self._unfolded_uj[domain.path]
        return total_uj / 1000.0


def unfold_delta(before: int, after: int, max_range: int) -> int:
    """Energy between two readings of a counter that wraps to 0 after ``max_range``."""
    return after - before if after >= before else after + (max_range + 1 - before)


def _package_domains(root: Path) -> list[RaplDomain]:
    if not root.is_dir():
        raise CounterUnavailable(
            f"no Linux powercap interface here ({root} is missing: not a Linux host with the intel_rapl driver, "
            "or a container/VM that hides it); RAPL energy cannot be measured on this machine"
        )
    domains = []
    for path in sorted(root.glob("intel-rapl:*")):
        if path.name.count(":") != 1:  # intel-rapl:0:0 and the like are sub-domains of a package
            continue
        try:
            name = (path / "name").read_text().strip()
            max_range = int((path / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError) as err:
            raise CounterUnavailable(f"cannot read RAPL domain {path} ({err})") from None
        domains.append(RaplDomain(path, name, max_range))
    if not domains:
        raise CounterUnavailable(f"{root} has no intel-rapl:N package domains (not an Intel CPU, or RAPL disabled)")
    return domains


class NvmlCounter:
    """NVIDIA NVML's total-energy counter of one GPU (Volta and newer), in mJ since the driver loaded."""

    name = "nvml"

    def __init__(self, index: int = 0) -> None:
        try:
            import pynvml
        except ImportError:
            raise CounterUnavailable("NVML energy needs the nvidia-ml-py package (pip install nvidia-ml-py)") from None
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.read_mj()
        except pynvml.NVMLError as err:
            raise CounterUnavailable(f"NVML cannot read GPU {index}'s energy counter ({err}): no NVIDIA driver/GPU, "
                                     "or a GPU older than Volta") from None

    def read_mj(self) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))


@dataclass(frozen=True)
class CounterEnergy:
    counter: str
    runs: int
    seconds: float
    energy_mj: float  # total over the runs
    idle_power_mw: float | None  # measured before the runs, when asked
    energy_per_run_mj: float  # idle energy over the same time subtracted, when measured

    def to_json(self) -> dict:
        return dict(self.__dict__)


def measure_with_counter(counter: EnergyCounter, run_once: Callable[[], object], min_seconds: float = 2.0,
                         min_runs: int = 10, idle_seconds: float = 0.0, clock: Callable[[], float] = time.perf_counter,
                         sleep: Callable[[float], None] = time.sleep,
                         around_runs: Callable[[], ContextManager[object]] = nullcontext) -> CounterEnergy:
    """Run ``run_once`` for at least ``min_seconds`` and ``min_runs`` between two counter readings.

    With ``idle_seconds`` > 0 the idle power is read first over that time and
    its energy over the measured time subtracted, so the result is the energy
    the workload added (ChamNet's baseline subtraction, for counters).
    ``around_runs`` encloses the runs alone, not the idle wait (a contention probe's ``timed``).
    """
    idle_power = None
    if idle_seconds > 0:
        start_mj, start = counter.read_mj(), clock()
        sleep(idle_seconds)
        idle_power = (counter.read_mj() - start_mj) / (clock() - start)  # mJ/s = mW
    runs = 0
    with around_runs():
        start_mj, start = counter.read_mj(), clock()
        while runs < min_runs or clock() - start < min_seconds:
            run_once()
            runs += 1
        seconds = clock() - start
    energy = counter.read_mj() - start_mj
    active = energy - (idle_power * seconds if idle_power is not None else 0.0)  # mW·s = mJ
    return CounterEnergy(counter.name, runs, seconds, energy, idle_power, active / runs)


def counter_for(source: str) -> EnergyCounter:
    """The counter a profile's ``energy.source`` names (rapl or nvml)."""
    if source == "rapl":
        return RaplCounter()
    if source == "nvml":
        return NvmlCounter()
    raise CounterUnavailable(f"energy source {source!r} is not a counter (rapl or nvml); a monsoon is sampled with bench energy session")
