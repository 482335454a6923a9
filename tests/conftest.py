"""Shared fixtures: a throw-away model cache, a fast device profile and small plans.

The fast profile is a real ``xeon``-style profile (local ONNX Runtime, one
pinned thread) with a small time budget, so sweeps in tests exercise the real
runner and the real Parquet files in seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Generated models go to a per-session folder, never the user's ~/.cache.
os.environ.setdefault("CHAMELEON_CACHE", tempfile.mkdtemp(prefix="chameleon-test-cache-"))

FAST_PROFILE = """\
name: {name}
description: fast local CPU profile for tests
transport: {{type: local}}
runtime: {{name: onnxruntime, provider: cpu, threads: 1, cores: auto}}
dtypes: [fp32, int8]
measurement:
  warmup_runs: 1
  runs: 3
  min_timed_s: 0.002
  rounds: 2
  interleave_group: 4
  cv_threshold: 10.0
  max_attempts: 1
"""


# A phone profile's measurement block cut to one quick round: the loopback phone tests time, not measure.
FAST_PHONE_MEASUREMENT = """\
measurement:
  warmup_runs: 1
  runs: 3
  min_timed_s: 0.0
  rounds: 1
  interleave_group: 3
  cv_threshold: 10.0
  max_attempts: 1
"""


def small_plan_yaml(name: str, channels: list[int]) -> str:
    return f"""\
name: {name}
dtypes: [fp32, int8]
entries:
  - {{kind: conv2d, c_in: 8, h: 8, w: same, c_out: {channels}, kernel: 3, activation: relu}}
  - {{kind: depthwise_conv, c_in: {channels}, h: 8, w: same, kernel: 3}}
  - {{kind: add, c_in: 8, h: 8, w: same}}
"""


@pytest.fixture()
def profiles_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A profiles folder holding the repository's profiles plus the fast test profile ``fastcpu``."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    repo_profiles = Path(__file__).resolve().parent.parent / "device_profiles"
    for profile in repo_profiles.glob("*.yaml"):
        (folder / profile.name).write_text(profile.read_text())
    (folder / "fastcpu.yaml").write_text(FAST_PROFILE.format(name="fastcpu"))
    monkeypatch.setenv("CHAMELEON_PROFILES", str(folder))
    return folder


@pytest.fixture()
def small_plan(tmp_path: Path) -> Path:
    """A plan of 3 x (conv, depthwise) channel variants + an add, in fp32 and int8: 14 signatures."""
    path = tmp_path / "small.yaml"
    path.write_text(small_plan_yaml("small", [8, 16, 24]))
    return path


def run_bench(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real `bench` command line in a subprocess, as a user would."""
    return _run_program("harness", args, env, timeout)


def run_optimize(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real `optimize` command line in a subprocess, as a user would."""
    return _run_program("optimizer", args, env, timeout)


def _run_program(package: str, args: tuple[str, ...], env: dict[str, str] | None, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", package, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Assert the run failed the way bad input must: exit 2, one line on stderr, no traceback."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].strip(), result.stderr
    return lines[0]

