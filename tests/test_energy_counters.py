"""Energy counters: RAPL through a powercap tree laid out as the kernel's, NVML where a GPU exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import one_line_error, run_bench
from harness.energy.counters import CounterUnavailable, RaplCounter, measure_with_counter, unfold_delta


def powercap(root: Path, packages: dict[str, int], max_range: int = 262143328850) -> Path:
    """A /sys/class/powercap tree: intel-rapl:N package domains (and a sub-domain that must be ignored)."""
    for index, (name, energy) in enumerate(packages.items()):
        domain = root / f"intel-rapl:{index}"
        domain.mkdir(parents=True)
        (domain / "name").write_text(f"{name}\n")
        (domain / "energy_uj").write_text(f"{energy}\n")
        (domain / "max_energy_range_uj").write_text(f"{max_range}\n")
        sub = root / f"intel-rapl:{index}:0"
        sub.mkdir()
        (sub / "name").write_text("core\n")
        (sub / "energy_uj").write_text("5\n")
        (sub / "max_energy_range_uj").write_text(f"{max_range}\n")
    return root


def test_unfold_handles_wrap_around() -> None:
    assert unfold_delta(100, 350, 1000) == 250
    assert unfold_delta(900, 50, 1000) == 151  # 900 → 1000 (100 + 1 for the wrap to 0) → 50


def test_rapl_sums_packages_and_unfolds_wraps(tmp_path: Path) -> None:
    root = powercap(tmp_path / "powercap", {"package-0": 1_000_000, "package-1": 2_000_000}, max_range=10_000_000)
    counter = RaplCounter(root)
    assert [d.name for d in counter.domains] == ["package-0", "package-1"]
    assert counter.read_mj() == 0.0
    (root / "intel-rapl:0" / "energy_uj").write_text("4000000\n")  # +3 J
    (root / "intel-rapl:1" / "energy_uj").write_text("500000\n")  # wrapped: +8,000,001 + 500,000 µJ
    assert counter.read_mj() == pytest.approx((3_000_000 + 8_500_001) / 1000)


def test_rapl_missing_or_unreadable_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(CounterUnavailable, match="no Linux powercap interface"):
        RaplCounter(tmp_path / "nothing")
    root = powercap(tmp_path / "powercap", {"package-0": 1})
    (root / "intel-rapl:0" / "energy_uj").chmod(0)
    if os.geteuid() == 0:
        pytest.skip("root reads any file: the permission path cannot be shown here")
    with pytest.raises(CounterUnavailable, match="readable only by root"):
        RaplCounter(root).read_mj()


def test_measure_with_counter_subtracts_idle_power() -> None:
    class Clocked:
        """A counter whose power is 1 W idle and 3 W while running (simulated time)."""

        name = "test"

        def __init__(self) -> None:
            self.now, self.mj = 0.0, 0.0

        def read_mj(self) -> float:
            return self.mj

        def sleep(self, seconds: float) -> None:
            self.now += seconds
            self.mj += 1000.0 * seconds

        def run(self) -> None:
            self.now += 0.01
            self.mj += 3000.0 * 0.01

    sim = Clocked()
    result = measure_with_counter(sim, sim.run, min_seconds=1.0, min_runs=5, idle_seconds=2.0, clock=lambda: sim.now, sleep=sim.sleep)
    assert result.idle_power_mw == pytest.approx(1000.0)
    assert result.runs >= 100 and result.energy_per_run_mj == pytest.approx(20.0)  # (3 W − 1 W) × 10 ms


def test_bench_energy_measure_on_this_machine_or_says_why(tmp_path: Path) -> None:
    result = run_bench("energy", "measure", "--device", "xeon", "--seconds", "0.5", "--json")
    if Path("/sys/class/powercap/intel-rapl:0").exists() and os.access("/sys/class/powercap/intel-rapl:0/energy_uj", os.R_OK):
        assert result.returncode == 0, result.stderr
    else:
        line = one_line_error(result)
        assert "powercap" in line or "root" in line or "RAPL" in line
