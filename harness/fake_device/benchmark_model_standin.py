"""The stand-in tool binaries for the loopback ADB device: ``benchmark_model``, ``onnxruntime_perf_test``, ``executor_runner``.

:func:`standin_benchmark_model_path` writes an executable Python script (its
``#!`` line names the current interpreter, ``sys.executable``, which must be
able to import LiteRT) to ``<cache>/fake_device/benchmark_model`` once and
returns that host path.  A test or demo pushes it to
``/data/local/tmp/benchmark_model`` as a user pushes the real binary; the
device does not install it by itself.

What the script does, and how it differs from the real tool (no DSP/GPU/NPU:
everything runs on the host's CPU; ``--use_hexagon=true`` fails without a
``libhexagon_interface.so`` in ``--hexagon_lib_path``), is in the docstring of
:mod:`harness.fake_device.benchmark_model_script`.  :func:`standin_ort_perf_test_path`
does the same for :mod:`harness.fake_device.ort_perf_test_script`, and
:func:`standin_executor_runner_path` for ExecuTorch's ``executor_runner``
(:mod:`harness.fake_device.executor_runner_script`, which needs PyTorch and
ExecuTorch in that interpreter).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from harness import paths
from types import ModuleType

from harness.fake_device import benchmark_model_script, executor_runner_script, ort_perf_test_script


def standin_script_text(script: ModuleType = benchmark_model_script) -> str:
    return f"#!{sys.executable}\n" + Path(script.__file__).read_text()


def _standin_path(name: str, script: ModuleType, cache: Path | None) -> Path:
    """Write ``script`` as the executable ``<cache>/fake_device/NAME`` (once; rewritten if stale)."""
    folder = Path(cache if cache is not None else paths.cache_dir()) / "fake_device"
    path = folder / name
    text = standin_script_text(script)
    try:
        if path.read_text() == text and os.access(path, os.X_OK):
            return path
    except OSError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


def standin_benchmark_model_path(cache: Path | None = None) -> Path:
    """Host path of the stand-in ``benchmark_model`` (written on first use, rewritten if stale)."""
    return _standin_path("benchmark_model", benchmark_model_script, cache)


def standin_ort_perf_test_path(cache: Path | None = None) -> Path:
    """Host path of the stand-in ``onnxruntime_perf_test`` (written on first use, rewritten if stale)."""
    return _standin_path("onnxruntime_perf_test", ort_perf_test_script, cache)


def standin_executor_runner_path(cache: Path | None = None) -> Path:
    """Host path of the stand-in ``executor_runner`` (written on first use, rewritten if stale)."""
    return _standin_path("executor_runner", executor_runner_script, cache)
