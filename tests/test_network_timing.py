"""Whole networks timed end to end with the LUT's runner and method: real ONNX Runtime runs of mini-space networks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.lut import store as lut_store
from harness.errors import DeviceUnavailable, InvalidModelFile
from harness.networks.timing import NetworkTiming, measure_network, measure_networks
from harness.plans import Plan
from harness.profiles import load_profile
from harness.runners import make_runner
from harness.sweep import run_sweep
from optimizer.spaces import get_space

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def networks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two mini-space networks far apart in size: the space's lower and upper corners."""
    space = get_space("chamnet-mobile-mini")
    folder = tmp_path_factory.mktemp("networks")
    return {"small": space.export_onnx(space.low, folder / "small.onnx"),
            "large": space.export_onnx(space.high, folder / "large.onnx")}


class RecordingRunner:
    """The real local ONNX Runtime runner, recording which model each timed round belongs to."""

    def __init__(self, profile) -> None:
        self.inner = make_runner(profile)
        self.rounds: list[tuple[str, int]] = []
        self.closed = 0

    @property
    def identity(self):
        return self.inner.identity

    def prepare_file(self, path: Path):
        prepared, log = self.inner.prepare_file(path), self.rounds

        class Recorded:
            def take_batch(self, settings, warmup_runs):
                log.append((Path(path).stem, warmup_runs))
                return prepared.take_batch(settings, warmup_runs)

            def close(self):
                prepared.close()

        return Recorded()

    def close(self) -> None:
        self.closed += 1
        self.inner.close()


def test_networks_come_back_in_order_with_lut_row_statistics(profiles_dir: Path, networks: dict[str, Path]) -> None:
    profile = load_profile("fastcpu")
    seen: list[tuple[int, int]] = []
    timings = measure_networks(profile, [networks["large"], networks["small"]],
                               progress=lambda done, total, path: seen.append((done, total)))
    assert [t.path for t in timings] == [networks["large"], networks["small"]]
    for timing in timings:
        assert isinstance(timing, NetworkTiming)
        assert 0 < timing.min_us <= timing.p10_us <= timing.median_us <= timing.p90_us
        assert timing.runs >= profile.measurement.runs
        assert timing.warmup_runs >= 1 and timing.attempts == 1 and timing.cv >= 0
        assert timing.timed_total_us >= timing.runs * timing.min_us
        assert timing.device_id == "fastcpu" and timing.threads == 1
        assert timing.runtime == "onnxruntime" and timing.provider == "CPUExecutionProvider"
    # The upper corner has ~14x the MACs of the lower one: measured slower by any margin of noise.
    assert timings[0].median_us > timings[1].median_us
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)


def test_networks_are_timed_in_interleaved_rounds(profiles_dir: Path, networks: dict[str, Path]) -> None:
    profile = load_profile("fastcpu")
    settings = replace(profile.measurement, rounds=3, warmup_runs=2)
    runner = RecordingRunner(profile)
    try:
        measure_networks(profile, [networks["small"], networks["large"]], settings, runner=runner)
    finally:
        runner.close()
    assert [name for name, _ in runner.rounds] == ["small", "large"] * 3
    # Full warm-up in the first round, one run in later rounds, as for operators.
    assert [w for _, w in runner.rounds] == [2, 2, 1, 1, 1, 1]
    assert runner.closed == 1  # a runner passed in is left to its owner


def test_with_network_cycles_each_run_is_its_own_batch_cycled_among_the_group(profiles_dir: Path,
                                                                             networks: dict[str, Path]) -> None:
    profile = load_profile("fastcpu")
    settings = replace(profile.measurement, runs=6, warmup_runs=2, precision=0.0, network_cycles=True)
    runner = RecordingRunner(profile)
    try:
        timings = measure_networks(profile, [networks["small"], networks["large"]], settings, runner=runner)
    finally:
        runner.close()
    # One warm-up cycle (the full warm-up, each network once), then cycles of one run each: never one network's
    # runs back to back in a batch, so every run lies close between the host readings around it.
    assert [w for _, w in runner.rounds[:2]] == [2, 2]
    cycles = runner.rounds[2:]
    assert len(cycles) == 12 and all(w == 0 for _, w in cycles)
    assert all(sorted(name for name, _ in cycles[k:k + 2]) == ["large", "small"] for k in range(0, 12, 2))
    assert all(t.runs == 6 and t.attempts == 6 for t in timings)


def test_groups_follow_the_interleave_group_setting(profiles_dir: Path, networks: dict[str, Path]) -> None:
    profile = load_profile("fastcpu")
    settings = replace(profile.measurement, rounds=2, interleave_group=1)
    runner = RecordingRunner(profile)
    try:
        timings = measure_networks(profile, [networks["small"], networks["large"]], settings, runner=runner)
    finally:
        runner.close()
    assert [name for name, _ in runner.rounds] == ["small", "small", "large", "large"]
    assert len(timings) == 2


def test_a_network_is_measured_on_the_lut_rows_device_and_software(profiles_dir: Path, networks: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    profile = load_profile("fastcpu")
    space = get_space("chamnet-mobile-mini")
    units = space.signatures(space.low)
    lut = tmp_path / "lut.parquet"
    run_sweep(profile, Plan("units", "", tmp_path / "units.yaml", tuple(dict.fromkeys(units))), lut)
    row = lut_store.read_lut(lut).to_pylist()[0]
    timing = measure_network(profile, networks["small"])
    for column in ("device_id", "device_model", "runtime", "runtime_version", "provider", "threads"):
        assert getattr(timing, column) == row[column], column


def test_timings_serialise_to_json(profiles_dir: Path, networks: dict[str, Path]) -> None:
    timing = measure_network(load_profile("fastcpu"), networks["small"])
    data = json.loads(json.dumps(timing.to_json()))
    assert data["path"] == str(networks["small"]) and data["median_us"] == timing.median_us
    assert data["measured_at"].endswith("+00:00")


def test_any_onnx_file_with_its_own_inputs_can_be_timed(profiles_dir: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["relu"]), helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["relu", "ids_f"], ["out"])],
        "two_inputs",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4])],
    )
    path = tmp_path / "two_inputs.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    timing = measure_network(load_profile("fastcpu"), path)
    assert timing.median_us > 0 and np.isfinite(timing.cv)


def test_missing_or_unloadable_files_are_one_line_errors(profiles_dir: Path, networks: dict[str, Path], tmp_path: Path) -> None:
    profile = load_profile("fastcpu")
    with pytest.raises(InvalidModelFile, match="no such model file") as missing:
        measure_networks(profile, [networks["small"], tmp_path / "absent.onnx"])
    assert "\n" not in str(missing.value)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(InvalidModelFile, match="cannot load") as unloadable:
        measure_network(profile, garbage)
    assert "\n" not in str(unloadable.value) and str(garbage) in str(unloadable.value)


def test_a_runner_that_cannot_open_model_files_is_refused(profiles_dir: Path, networks: dict[str, Path]) -> None:
    class OpsOnly:
        identity = None

        def close(self) -> None:
            pass

    with pytest.raises(DeviceUnavailable, match="cannot time whole model files"):
        measure_networks(load_profile("fastcpu"), [networks["small"]], runner=OpsOnly())
