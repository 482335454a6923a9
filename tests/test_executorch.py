"""ExecuTorch, the third local runtime: single-op .pte programs, their runner, profile and sweep.

ExecuTorch is imported inside the tests only (it takes seconds to import), and
the whole file is skipped, with its reason, where the package is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from conftest import run_bench
from harness.errors import InvalidProfile, InvalidSignature
from harness.models import onnx_models, pte_models
from harness.profiles import load_profile, parse_profile
from harness.signature import make_signature, parse_signature

pytestmark = pytest.mark.skipif(importlib.util.find_spec("executorch") is None,
                                reason="ExecuTorch (the executorch package) is not installed")

CONV = make_signature("conv2d", c_in=8, h=8, w=8, c_out=16, kernel=3, stride=1, padding=1, activation="relu6")
INVERTED_RESIDUAL = parse_signature(
    "inverted_residual(n=1,c_in=8,h=8,w=8,c_out=8,kernel=3,stride=1,padding=1,groups=1,"
    "mid_channels=24,activation=relu6,dtype=fp32)")  # with its residual add

FAST_EXECUTORCH_PROFILE = """\
name: {name}
description: fast local ExecuTorch profile for tests
transport: {{type: local}}
runtime: {{name: executorch, delegate: {delegate}, threads: 1, cores: auto}}
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


def _onnx_output(sig) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_models.build_model(sig).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, onnx_models.make_inputs(sig))[0]


@pytest.fixture(scope="module")
def runners(tmp_path_factory: pytest.TempPathFactory):
    from harness.runners.executorch_local import ExecuTorchRunner

    cache = tmp_path_factory.mktemp("pte-cache")
    made = {delegate: ExecuTorchRunner(delegate=delegate, cache=cache) for delegate in ("xnnpack", "none")}
    yield made
    for runner in made.values():
        runner.close()


@pytest.mark.parametrize("delegate", ["xnnpack", "none"])
@pytest.mark.parametrize("sig", [CONV, INVERTED_RESIDUAL], ids=["conv2d", "inverted_residual"])
def test_program_computes_what_the_onnx_model_computes(runners, delegate: str, sig) -> None:
    op = runners[delegate].prepare(sig)
    try:
        got = op.outputs[0].numpy()
    finally:
        op.close()
    want = _onnx_output(sig)
    assert got.shape == want.shape == sig.output_shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)  # the same weights, inputs and ops


def test_int8_program_is_the_quantized_twin(runners) -> None:
    op = runners["xnnpack"].prepare(CONV.replace(dtype="int8"))
    try:
        got = op.outputs[0].numpy()
    finally:
        op.close()
    want = _onnx_output(CONV)
    assert np.abs(got - want).max() <= 0.1 * np.abs(want).max()  # int8 rounding of the fp32 model's numbers


def test_runner_identity_and_one_thread(runners) -> None:
    from executorch.extension.pybindings import portable_lib

    assert portable_lib._threadpool_get_thread_count() == 1
    identity = runners["xnnpack"].identity
    assert identity.runtime == "executorch" and identity.runtime_version == pte_models.executorch_version() != "unknown"
    assert runners["xnnpack"].identity.provider == "xnnpack" and runners["none"].identity.provider == "portable"


def test_programs_are_cached_and_deterministic(tmp_path: Path) -> None:
    first = pte_models.model_file(CONV, backend="portable", cache=tmp_path)
    assert pte_models.model_file(CONV, backend="portable", cache=tmp_path) == first
    assert first.read_bytes() == pte_models.build_program(CONV, backend="portable")


def test_export_failure_is_one_line_naming_the_signature(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torch

    def refuse(*args, **kwargs):
        raise RuntimeError("Dynamo failed\nmany lines\nof trace")

    monkeypatch.setattr(torch.export, "export", refuse)
    with pytest.raises(InvalidSignature) as raised:
        pte_models.model_file(CONV, cache=tmp_path)
    message = str(raised.value)
    assert "\n" not in message and CONV.key in message and "Dynamo failed" in message
    assert not list(tmp_path.rglob("*.pte"))  # nothing half-written in the cache
    with pytest.raises(InvalidSignature, match="XNNPACK only"):
        pte_models.build_program(CONV.replace(dtype="int8"), backend="portable")


def test_profiles_validate_the_executorch_runtime(tmp_path: Path) -> None:
    profile = load_profile("xeon-executorch")
    assert profile.runtime.name == "executorch" and profile.runtime.delegate == "xnnpack"
    assert profile.measurement == load_profile("xeon").measurement  # measured as the ORT column is
    path = tmp_path / "bad.yaml"
    base = {"name": "bad", "transport": {"type": "local"}, "runtime": {"name": "executorch", "delegate": "gpu"}}
    with pytest.raises(InvalidProfile, match="delegate xnnpack"):
        parse_profile(base, path)
    with pytest.raises(InvalidProfile, match="local transport"):
        parse_profile({**base, "transport": {"type": "adb"}, "runtime": {"name": "executorch"}}, path)


@pytest.mark.slow
def test_bench_sweep_writes_an_executorch_lut(profiles_dir: Path, tmp_path: Path) -> None:
    from harness.lut import store as lut_store

    (profiles_dir / "fastet.yaml").write_text(FAST_EXECUTORCH_PROFILE.format(name="fastet", delegate="xnnpack"))
    plan = tmp_path / "tiny.yaml"
    plan.write_text("name: tiny\ndtypes: [fp32, int8]\nentries:\n"
                    "  - {kind: conv2d, c_in: 8, h: 8, w: same, c_out: 16, kernel: 3, activation: relu}\n"
                    "  - {kind: inverted_residual, c_in: 8, h: 8, w: same, c_out: same, expansion: 3, kernel: 3}\n")
    out = tmp_path / "lut.parquet"
    result = run_bench("sweep", "--device", "fastet", "--plan", str(plan), "--out", str(out),
                       env={"CHAMELEON_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    rows = lut_store.read_lut(out).to_pylist()
    assert len(rows) == 5  # 2 kinds x 2 dtypes + the identity overhead probe
    for row in rows:
        assert row["median_us"] > 0 and row["device_id"] == "fastet"
        assert (row["runtime"], row["runtime_version"], row["provider"]) == \
            ("executorch", pte_models.executorch_version(), "xnnpack")
        assert row["threads"] == 1


def test_a_network_program_computes_what_its_onnx_network_computes_and_is_timed_whole(
        runners, profiles_dir: Path, tmp_path: Path) -> None:
    """A space's network as one .pte: the ONNX network's numbers, timed by `bench measure-networks`."""
    import onnxruntime as ort

    from harness.networks.tables import read_arch_table
    from optimizer.spaces import get_space

    space = get_space("chamnet-mobile-mini")
    arch = space.random(1, 3)[0]
    pte = space.export_pte(arch, tmp_path / "nets" / "net0.pte")
    onnx_path = space.export_onnx(arch, tmp_path / "net0.onnx")
    network = runners["xnnpack"].prepare_file(pte)
    try:
        got = network.outputs[0].numpy()
        x = network.inputs[0].numpy()
    finally:
        network.close()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)

    (profiles_dir / "fastet.yaml").write_text(FAST_EXECUTORCH_PROFILE.format(name="fastet", delegate="xnnpack"))
    out = tmp_path / "arch.parquet"
    result = run_bench("measure-networks", str(tmp_path / "nets"), "--device", "fastet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert read_arch_table(out).column("latency_ms:fastet").to_pylist()[0] > 0
    (tmp_path / "nets" / "bad.pte").write_bytes(b"not a program")
    with pytest.raises(Exception, match="ExecuTorch cannot load it"):
        runners["xnnpack"].prepare_file(tmp_path / "nets" / "bad.pte")
