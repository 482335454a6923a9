"""Whole networks as .tflite (harness.models.tflite_models.build_network_tflite) timed by the local LiteRT runner."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from conftest import FAST_PROFILE, run_bench
from harness.models import onnx_models
from harness.models import tflite_models
from harness.errors import InvalidModelFile, InvalidSignature
from harness.networks.tables import read_arch_table
from harness.networks.timing import measure_networks
from harness.profiles import load_profile
from harness.runners import make_runner
from optimizer.spaces import get_space

Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter

FAST_LITERT = FAST_PROFILE.replace("{{name: onnxruntime, provider: cpu, threads: 1, cores: auto}}",
                                   "{{name: litert, delegate: xnnpack, threads: 1, cores: auto}}")


@pytest.fixture(scope="module")
def mini() -> tuple[object, np.ndarray]:
    space = get_space("chamnet-mobile-mini")
    return space, space.random(3, 0)


@pytest.fixture()
def litert_profile(tmp_path: Path):
    path = tmp_path / "fastlitert.yaml"
    path.write_text(FAST_LITERT.format(name="fastlitert"))
    return load_profile(path)


def run_tflite(data: bytes, x: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_mini_network_computes_what_the_onnx_network_computes(mini):
    space, archs = mini
    for genes in archs:
        units = space.signatures(genes)
        data = tflite_models.build_network_tflite(units, seed=3)
        assert data == tflite_models.build_network_tflite(units, seed=3)  # deterministic
        x = tflite_models.network_input(units, seed=1)
        assert x.shape == tflite_models.model_input_shape(units[0])
        session = ort.InferenceSession(onnx_models.build_network(units, seed=3).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        expected = session.run(None, {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
        got = run_tflite(data, x)
        assert got.shape == expected.shape == tflite_models.model_output_shape(units[-1])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))
        # Another seed, other weights.
        assert not np.allclose(run_tflite(tflite_models.build_network_tflite(units, seed=4), x), got)


def test_network_builder_refuses_what_build_network_refuses(mini):
    space, archs = mini
    conv = space.signatures(archs[0])[0]  # the stem: 3 channels in, more out
    with pytest.raises(InvalidSignature):
        tflite_models.build_network_tflite([])
    with pytest.raises(InvalidSignature):
        tflite_models.build_network_tflite([conv, conv])  # 8 channels do not feed a 3-channel input
    with pytest.raises(InvalidSignature):
        tflite_models.build_network_tflite([conv.replace(dtype="int8")])


def test_litert_profile_makes_the_local_runner(litert_profile):
    assert (litert_profile.transport.type, litert_profile.runtime.name) == ("local", "litert")
    runner = make_runner(litert_profile)
    try:
        assert (runner.identity.runtime, runner.identity.provider) == ("litert", "xnnpack")
        assert runner.identity.runtime_version
    finally:
        runner.close()


def test_mini_networks_timed_with_measure_networks(mini, litert_profile, tmp_path):
    space, archs = mini
    paths = [tflite_models.write_network(space.signatures(g), tmp_path / f"net{i}.tflite") for i, g in enumerate(archs)]
    timings = measure_networks(litert_profile, paths)
    assert [t.path for t in timings] == paths
    for t in timings:
        assert t.median_us > 0 and t.runs >= litert_profile.measurement.runs
        assert (t.runtime, t.provider, t.device_id, t.threads) == ("litert", "xnnpack", "fastlitert", 1)
    # Without the default delegate: LiteRT's own kernels, reported as such.
    cpu = FAST_LITERT.replace("delegate: xnnpack", "delegate: none").format(name="fastlitert-cpu")
    (tmp_path / "fastlitert-cpu.yaml").write_text(cpu)
    [plain] = measure_networks(load_profile(tmp_path / "fastlitert-cpu.yaml"), paths[:1])
    assert plain.provider == "cpu" and plain.median_us > 0


def test_unloadable_tflite_is_refused(litert_profile, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(InvalidModelFile, match="LiteRT cannot load it"):
        measure_networks(litert_profile, [bad])


@pytest.mark.slow
def test_bench_measure_networks_fills_a_litert_column(mini, tmp_path):
    space, archs = mini
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "fastlitert.yaml").write_text(FAST_LITERT.format(name="fastlitert"))
    with open(tmp_path / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch_id", "path", *space.gene_names])
        for i, g in enumerate(archs):
            tflite_models.write_network(space.signatures(g), tmp_path / f"net{i}.tflite")
            writer.writerow([f"net{i}", f"net{i}.tflite", *(int(v) for v in g)])
    out = tmp_path / "arch.parquet"
    result = run_bench("measure-networks", str(tmp_path / "manifest.csv"), "--device", "fastlitert", "--out", str(out),
                       env={"CHAMELEON_PROFILES": str(profiles)})
    assert result.returncode == 0, result.stderr
    values = read_arch_table(out).column("latency_ms:fastlitert").to_pylist()
    assert len(values) == 3 and all(v > 0 and not math.isnan(v) for v in values)
    # a folder of .tflite files is a manifest too (arch_id = the file stem)
    folder_out = tmp_path / "folder.parquet"
    (tmp_path / "manifest.csv").unlink()
    result = run_bench("measure-networks", str(tmp_path), "--device", "fastlitert", "--out", str(folder_out),
                       env={"CHAMELEON_PROFILES": str(profiles)})
    assert result.returncode == 0, result.stderr
    table = read_arch_table(folder_out)
    assert sorted(table.column("arch_id").to_pylist()) == ["net0", "net1", "net2"]
