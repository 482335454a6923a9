"""The contention warning (issue 16, point 4): the rules on chosen readings, the probe's bookkeeping, and a real
sweep whose pinned core two busy processes share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.contention import (
    CPU_SHARE_WARNING,
    MIN_JUDGED_S,
    STEAL_WARNING,
    ContentionProbe,
    ContentionReport,
    judge,
    read_core_ticks,
    read_load,
    summarize,
)
from harness.profiles import load_profile, pinned_cores


# ------------------------------------------------------------------ the rules, on readings
def test_a_quiet_host_is_trusted() -> None:
    trusted, reason = judge(12.0, 0.98, 0.0, load_1min=0.4, cpus=16, cores=(15,))
    assert trusted and reason.startswith("quiet:") and "98%" in reason and "load 0.4 on 16 CPUs" in reason


def test_a_shared_core_is_not_trusted_and_says_why() -> None:
    trusted, reason = judge(12.0, 0.34, 0.0, load_1min=18.5, cpus=16, cores=(15,))
    assert not trusted
    assert "34%" in reason and "core 15" in reason and "load 18.5 on 16 CPUs" in reason
    assert "\n" not in reason


def test_the_threshold_is_the_fidelity_benchmarks() -> None:
    assert CPU_SHARE_WARNING == 0.9  # benchmarks/lut_fidelity.py's CPU_SHARE_WARNING
    assert judge(10.0, CPU_SHARE_WARNING, None)[0]
    assert not judge(10.0, CPU_SHARE_WARNING - 0.01, None)[0]


def test_stolen_time_is_not_trusted_even_with_a_full_share() -> None:
    trusted, reason = judge(10.0, 1.0, STEAL_WARNING + 0.05, cores=(3,))
    assert not trusted and "stole 15%" in reason
    assert judge(10.0, 1.0, STEAL_WARNING - 0.05)[0]


def test_too_little_timed_is_not_judged() -> None:
    trusted, reason = judge(MIN_JUDGED_S / 2, 0.2, 0.5)
    assert trusted and reason.startswith("not judged")


# ------------------------------------------------------------------ the probe, with injected clocks and readers
class Readings:
    """Clocks and /proc readers a test steps by hand: each timed block lasts 2 s of wall, ``cpu`` s of CPU."""

    def __init__(self, cpu_per_block: float, steal_per_block: int = 0) -> None:
        self.wall = self.cpu = 0.0
        self.steal = self.total = 0
        self.cpu_per_block, self.steal_per_block = cpu_per_block, steal_per_block

    def clock(self) -> float:
        return self.wall

    def cpu_clock(self) -> float:
        return self.cpu

    def ticks(self, cores) -> tuple[int, int]:
        return self.steal, self.total

    def run_block(self) -> None:
        self.wall += 2.0
        self.cpu += self.cpu_per_block
        self.steal += self.steal_per_block
        self.total += 200


def _probe(readings: Readings) -> ContentionProbe:
    return ContentionProbe((5,), clock=readings.clock, cpu_clock=readings.cpu_clock, read_ticks=readings.ticks,
                           read_load=lambda: (3.0, 2), cpus=lambda: 8)


@pytest.mark.parametrize("cpu, steal, trusted", [(1.98, 0, True), (0.7, 0, False), (2.0, 40, False)])
def test_the_probe_adds_up_its_timed_blocks(cpu: float, steal: int, trusted: bool) -> None:
    readings = Readings(cpu, steal)
    probe = _probe(readings)
    for _ in range(3):
        with probe.timed():
            readings.run_block()
        readings.wall += 5.0  # between batches (building models, writing the LUT): not counted
    report = probe.report()
    assert report.timed_s == pytest.approx(6.0)
    assert report.cpu_share == pytest.approx(cpu / 2.0)
    assert report.steal_share == pytest.approx(steal / 200)
    assert report.trusted is trusted
    data = report.to_json()
    assert data["trusted"] is trusted and data["cores"] == [5] and data["load_1min"] == 3.0 and data["cpus"] == 8
    json.dumps(data, allow_nan=False)


def test_a_watched_op_counts_only_its_batches() -> None:
    readings = Readings(0.5)

    class Op:
        closed = False

        def take_batch(self, settings, warmup_runs):
            readings.run_block()
            return "batch"

        def close(self):
            Op.closed = True

    probe = _probe(readings)
    watched = probe.watching(lambda item: Op())("sig")
    assert watched.take_batch(None, 1) == "batch"
    watched.close()
    assert Op.closed and probe.report().timed_s == pytest.approx(2.0) and not probe.report().trusted


def test_a_device_off_this_host_is_not_checked(profiles_dir: Path) -> None:
    probe = ContentionProbe.for_profile(load_profile("pixel"))
    op = object()
    assert probe.watch(op) is op
    report = probe.report()
    assert report.trusted and not report.checked and "not checked" in report.reason


def test_proc_files_are_read(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 10 100 0 0 0 5 0 0\ncpu0 1 0 1 10 0 0 0 0 0 0\ncpu1 4 0 4 40 1 0 1 10 0 0\n")
    assert read_core_ticks([1], stat) == (10, 60)
    assert read_core_ticks([0, 1], stat) == (10, 72)
    assert read_core_ticks([1], tmp_path / "absent") is None
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("2.50 1.00 0.50 3/412 12345\n")
    assert read_load(loadavg) == (2.5, 3)


def test_a_job_is_trusted_only_when_every_step_is() -> None:
    quiet = ContentionReport(checked=True, trusted=True, reason="quiet: ...", timed_s=5, cpu_s=5)
    busy = ContentionReport(checked=True, trusted=False, reason="host contended, figures untrustworthy: ...",
                            timed_s=2, cpu_s=0.6)
    summary = summarize({"sweep": quiet, "networks": busy})
    assert not summary["trusted"] and summary["reason"].startswith("networks: host contended")
    assert summary["phases"]["networks"]["cpu_share"] == pytest.approx(0.3)
    assert summarize({"sweep": quiet})["trusted"]


# ------------------------------------------------------------------ a real sweep on a shared core
PROFILE = """\
name: steadycpu
description: local CPU profile whose ops take 0.5 s each
transport: {type: local}
runtime: {name: onnxruntime, provider: cpu, threads: 1, cores: auto}
dtypes: [fp32]
measurement: {warmup_runs: 1, runs: 3, min_timed_s: 0.5, max_runs: 1000000, rounds: 2, interleave_group: 4, cv_threshold: 10.0, max_attempts: 1}
"""
PLAN = """\
name: three
dtypes: [fp32]
entries:
  - {kind: conv2d, c_in: 8, h: 8, w: same, c_out: [8, 16], kernel: 3, activation: relu}
  - {kind: add, c_in: 8, h: 8, w: same}
"""
SPIN = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_a_sweep_whose_core_two_spinners_share_says_it_cannot_be_trusted(tmp_path: Path) -> None:
    profile, plan = tmp_path / "steadycpu.yaml", tmp_path / "three.yaml"
    profile.write_text(PROFILE)
    plan.write_text(PLAN)
    core = pinned_cores(load_profile(profile).runtime)[0]  # the sweep's subprocess inherits this affinity
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN, str(core)], stdin=subprocess.DEVNULL) for _ in range(2)]
    try:
        time.sleep(0.3)
        done = subprocess.run([sys.executable, "-m", "harness", "sweep", "--device", str(profile), "--plan", str(plan),
                               "--out", str(tmp_path / "lut.parquet"), "--json"], capture_output=True, text=True,
                              timeout=240, stdin=subprocess.DEVNULL)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["sweep"]["contention"]
    print("contended cpu share:", report["cpu_share"], "timed", report["timed_s"], "s")
    assert report["checked"] and report["timed_s"] >= MIN_JUDGED_S
    assert report["trusted"] is False and report["cpu_share"] < CPU_SHARE_WARNING
    assert report["cores"] == [core]
    warning = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "host contended" in warning[0]


def test_short_batches_back_to_back_read_the_ticks_as_one_stretch() -> None:
    from harness.contention import TICKS_EVERY_S

    readings = Readings(0.0)
    reads = []

    def ticks(cores):
        reads.append(readings.wall)
        return readings.steal, readings.total

    probe = ContentionProbe((5,), clock=readings.clock, cpu_clock=readings.cpu_clock, read_ticks=ticks,
                            read_load=lambda: (0.1, 1), cpus=lambda: 2)
    for _ in range(1000):  # 1000 batches of 200 µs, one tick of steal every 100 of them
        with probe.timed():
            readings.wall += 200e-6
            readings.cpu += 200e-6
            readings.total += 1
            readings.steal += readings.total % 100 == 0
    assert len(reads) <= 1 + 1000 * 200e-6 / TICKS_EVERY_S + 1  # not two a batch
    report = probe.report()
    assert report.timed_s == pytest.approx(0.2) and report.cpu_share == pytest.approx(1.0)
    assert report.steal_share == pytest.approx(0.01, abs=0.002)
