"""The CUDA runner: measured on a GPU where one exists, a clean one-line refusal elsewhere.

CI has no GPU, so the measuring test skips there; it runs wherever
onnxruntime-gpu sees a CUDA device.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from conftest import one_line_error, run_bench
from harness.lut import store as lut_store
from harness.plans import load_plan
from harness.profiles import load_profile
from harness.sweep import run_sweep

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDAExecutionProvider (needs an NVIDIA GPU and onnxruntime-gpu)")
def test_cuda_sweep_measures_on_the_gpu(small_plan: Path, tmp_path: Path) -> None:
    profile = load_profile("cuda")
    out = tmp_path / "cuda.parquet"
    result = run_sweep(profile, load_plan(small_plan), out)
    table = lut_store.read_lut(out)
    assert result.measured == table.num_rows > 0
    assert set(table.column("provider").to_pylist()) == {"CUDAExecutionProvider"}
    assert set(table.column("dtype").to_pylist()) == {"fp32"}  # the profile takes fp32 only
    assert min(table.column("median_us").to_pylist()) > 0


@pytest.mark.skipif(HAS_CUDA, reason="a GPU is present: the refusal path does not apply")
def test_cuda_device_without_a_gpu_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(run_bench("sweep", "--device", "cuda", "--plan", "smoke", "--out", str(tmp_path / "c.parquet")))
    assert "CUDAExecutionProvider" in line
