"""`optimize` end to end: a LUT over all of ChamNet-Mobile, accuracy observations, EES under budgets.

The LUT here is synthetic (latency an affine function of MACs per kind, written
through the harness's own LUT writer): a full chamnet-mobile sweep of this CPU
takes hours.  Its provenance columns say it is synthetic.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from harness.lut import store as lut_store
from harness.measurement import Measurement, TimingStats
from harness.plans import load_plan
from harness.runners import DeviceIdentity
from harness.sweep import OVERHEAD_SIGNATURE, make_row
from optimizer.spaces import get_space

PER_KIND_NS_PER_MAC = {"conv2d": 0.25, "inverted_residual": 0.45, "global_avgpool": 1.0, "fc": 0.3}


def synthetic_accuracy(space, X: np.ndarray) -> np.ndarray:
    """Smooth and saturating in MACs, with a preference for resolution: a stand-in for trained accuracy."""
    macs = space.macs_many(X) / 1e6
    resolution = X[:, space.gene_names.index("resolution")]
    return 0.78 - 0.35 * np.exp(-macs / 120.0) + 0.02 * (resolution - 160) / 64


@pytest.fixture(scope="module")
def synthetic_lut(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lut") / "synthetic.parquet"
    identity = DeviceIdentity(model="synthetic (affine in MACs) — not a measurement", runtime="synthetic",
                              runtime_version="0", provider="none")
    rows = []
    for signature in list(load_plan("chamnet-mobile").signatures) + [OVERHEAD_SIGNATURE]:
        median = 5.0 + PER_KIND_NS_PER_MAC.get(signature.kind, 0.5) * signature.macs / 1000.0
        stats = TimingStats(median_us=median, p10_us=median, p90_us=median, mean_us=median, std_us=0.0, min_us=median,
                            runs=1, mad_us=0.0)
        rows.append(make_row(signature, Measurement(stats, 0, 1, median), identity, "synthetic", 1, "synthetic"))
    lut_store.write_lut_atomic(lut_store.rows_to_table(rows), out)
    return out


@pytest.fixture(scope="module")
def observations(tmp_path_factory) -> Path:
    space = get_space("chamnet-mobile")
    X = np.vstack([space.sobol_pool(90, seed=1), np.array(list(space.baselines().values()))])
    path = tmp_path_factory.mktemp("obs") / "accuracy.csv"
    table = {name: X[:, i].astype(np.int64) for i, name in enumerate(space.gene_names)}
    table["accuracy"] = synthetic_accuracy(space, X)
    pacsv.write_csv(pa.table(table), path)
    return path


def run_optimize(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "optimizer", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)


@pytest.mark.slow
def test_frontier_meets_budgets_and_beats_baselines(synthetic_lut: Path, observations: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--lut", str(synthetic_lut), "--space", "chamnet-mobile", "--latency", "20,40,80ms", "--accuracy", str(observations),
            "--generations", "40", "--out", str(out), "--json"]
    result = run_optimize(*args)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [c["latency_budget_ms"] for c in document["choices"]] == [20.0, 40.0, 80.0]
    for choice in document["choices"]:
        assert choice["predicted_latency_ms"] <= choice["latency_budget_ms"]
        if choice["best_baseline_accuracy"] is not None:
            assert choice["predicted_accuracy"] >= choice["best_baseline_accuracy"] - 1e-12
        assert Path(choice["onnx"]).exists()
    assert Path(document["frontier_png"]).read_bytes()[:4] == b"\x89PNG"
    again = json.loads(run_optimize(*args[:-3], "--out", str(tmp_path / "again"), "--json").stdout)
    assert [c["genes"] for c in again["choices"]] == [c["genes"] for c in document["choices"]]  # same seed, same result
    other = json.loads(run_optimize(*args[:-3], "--out", str(tmp_path / "other"), "--seed", "7", "--json").stdout)
    for choice in other["choices"]:
        assert choice["predicted_latency_ms"] <= choice["latency_budget_ms"]


def test_bad_input_is_one_line(synthetic_lut: Path, observations: Path, tmp_path: Path) -> None:
    def one_line(result: subprocess.CompletedProcess[str]) -> str:
        lines = result.stderr.splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        return lines[0]

    base = ["--accuracy", str(observations), "--out", str(tmp_path / "x")]
    assert "unknown search space" in one_line(run_optimize("--lut", str(synthetic_lut), "--space", "nope", "--latency", "20ms", *base))
    assert "no architecture" in one_line(run_optimize("--lut", str(synthetic_lut), "--latency", "0.01ms", "--generations", "5", *base))
    assert "budget" in one_line(run_optimize("--lut", str(synthetic_lut), "--latency", "fast", *base))
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1]}), foreign)
    assert "not a Chameleon LUT" in one_line(run_optimize("--lut", str(foreign), "--latency", "20ms", *base))
    outside = tmp_path / "outside.csv"
    space = get_space("chamnet-mobile")
    row = {name: [int(v)] for name, v in zip(space.gene_names, space.high)}
    row["resolution"] = [999]
    row["accuracy"] = [0.5]
    pacsv.write_csv(pa.table(row), outside)
    line = one_line(run_optimize("--lut", str(synthetic_lut), "--latency", "20ms", "--accuracy", str(outside), "--out", str(tmp_path / "y")))
    assert "outside.csv" in line


@pytest.mark.slow
def test_energy_budget_with_an_energy_model(synthetic_lut: Path, observations: Path, tmp_path: Path) -> None:
    space = get_space("chamnet-mobile")
    X = np.vstack([space.sobol_pool(90, seed=2), np.array(list(space.baselines().values()))])
    energy = tmp_path / "energy.csv"
    table = {name: X[:, i].astype(np.int64) for i, name in enumerate(space.gene_names)}
    table["energy_mj"] = 2.0 + space.macs_many(X) / 1e7  # a stand-in: energy grows with work
    pacsv.write_csv(pa.table(table), energy)
    result = run_optimize("--lut", str(synthetic_lut), "--latency", "80ms", "--energy", "25mJ", "--energy-model", str(energy),
                          "--accuracy", str(observations), "--generations", "30", "--out", str(tmp_path / "e"), "--json")
    assert result.returncode == 0, result.stderr
    choice = json.loads(result.stdout)["choices"][0]
    assert choice["predicted_latency_ms"] <= 80 and choice["predicted_energy_mj"] <= 25


def test_estimate_applies_a_saved_network_correction(synthetic_lut: Path, tmp_path: Path) -> None:
    from optimizer.latency.lut_model import NetworkCorrection

    space = get_space("chamnet-mobile")
    net = tmp_path / "net.txt"
    net.write_text("\n".join(sig.key for sig in space.signatures(space.baselines()["mobilenetv2-1.0x-224"])) + "\n")
    plain = json.loads(run_optimize("estimate", "--lut", str(synthetic_lut), str(net), "--json").stdout)
    fitted = NetworkCorrection(scale=1.1, boundary_us=2.0, boundary_element_us=0.0, networks=3, device="synthetic")
    corrected_file = fitted.save(tmp_path / "correction.json")
    result = run_optimize("estimate", "--lut", str(synthetic_lut), str(net), "--correction", str(corrected_file), "--json")
    corrected = json.loads(result.stdout)
    assert corrected["plain_us"] == pytest.approx(plain["latency_us"])
    expected = 1.1 * plain["latency_us"] - 2.0 * (corrected["operators"] - 1)
    assert corrected["latency_us"] == pytest.approx(expected)

    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    bad = run_optimize("estimate", "--lut", str(synthetic_lut), str(net), "--correction", str(broken))
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "network correction" in bad.stderr
    other = NetworkCorrection(scale=1.0, device="pixel").save(tmp_path / "other.json")
    bad = run_optimize("--lut", str(synthetic_lut), "--latency", "20ms", "--accuracy", str(broken), "--correction", str(other))
    assert bad.returncode == 2 and "fitted on device 'pixel'" in bad.stderr
