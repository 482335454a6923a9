"""Architecture latency tables and latency monotonicity (SRCC / Kendall tau between devices, bootstrap CIs).

The tables are synthetic, built here: a NAS-Bench-201-like space (6 edges, 5
operations each) whose latency on a device is a sum of per-choice costs plus
noise; devices differ by how far their costs are from the first one's.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from scipy import stats

from optimizer.latency.architecture_tables import LatencyTable, LatencyTableError, UnknownTableDevice, read_latency_table, write_latency_table
from optimizer.crossdevice.monotonicity import monotonicity, pair_monotonicity, spearman

OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


def nb201_table(n: int = 1500, seed: int = 0, mixes: dict[str, float] | None = None, noise: float = 0.02,
                accuracy: bool = False) -> LatencyTable:
    """n distinct cells; device d's per-choice costs are (1 - mix) x the reference's + mix x random costs."""
    rng = np.random.default_rng(seed)
    cells = np.array(list(itertools.product(range(5), repeat=6)))
    X = cells[rng.choice(len(cells), n, replace=False)]
    reference = np.array([0.0, 0.05, 0.4, 1.0, 0.3])[None, :] * rng.uniform(0.8, 1.2, (6, 1))
    latency = {}
    for device, mix in (mixes or {"A": 0.0, "B": 0.55, "C": 0.1}).items():
        costs = (1 - mix) * reference + mix * rng.uniform(0, 1, (6, 5))
        clean = 1.0 + costs[np.arange(6)[None, :], X].sum(axis=1)
        latency[device] = clean * (1 + noise * rng.standard_normal(n))
    encoding = {f"edge{e}": np.array([OPS[v] for v in X[:, e]], dtype=object) for e in range(6)}
    acc = None
    if accuracy:  # convolutions help, "none" hurts: accuracy grows with the reference's cost, noisily
        acc = 0.5 + 0.1 * reference[np.arange(6)[None, :], X].sum(axis=1) + 0.01 * rng.standard_normal(n)
    return LatencyTable(np.array([f"cell{i}" for i in range(n)], dtype=object), encoding, latency, accuracy=acc,
                        accuracy_column="accuracy" if accuracy else None, source="synthetic")


def write_csv(path: Path, columns: dict) -> Path:
    pacsv.write_csv(pa.table(columns), path)
    return path


def run_optimize(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "optimizer", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)


# ------------------------------------------------------------------ the table format
def test_round_trip_parquet_and_csv(tmp_path):
    table = nb201_table(50)
    table.latency_ms["B"][[3, 7]] = np.nan
    for name in ("t.parquet", "t.csv"):
        path = write_latency_table(table, tmp_path / name)
        back = read_latency_table(path)
        assert back.devices == ["A", "B", "C"]
        assert list(back.encoding) == [f"edge{e}" for e in range(6)]
        assert back.encoding["edge0"].tolist() == table.encoding["edge0"].tolist()
        assert back.invalid == {"A": 0, "B": 2, "C": 0}
        np.testing.assert_allclose(back.latency("A"), table.latency("A"))
        assert back.arch_ids.tolist() == table.arch_ids.tolist()


def test_failed_measurements_are_counted_and_excluded_pairwise(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arch_id,gene,latency_ms:a,latency_ms:b,latency_ms:c\n"
                    "1,3,1.0,2.0,1.5\n2,4,2.0,,2.5\n3,5,3.0,nan,3.5\n4,6,4.0,-1,4.5\n5,7,5.0,0,0.7\n"
                    "6,8,6.0,inf,6.5\n7,9,7.0,8.0,7.5\n8,10,8.0,9.0,8.5\n9,11,9.0,7.0,9.5\n")
    table = read_latency_table(path)
    assert table.invalid == {"a": 0, "b": 5, "c": 0}
    assert table.encoding["gene"].dtype.kind == "i"
    report = monotonicity(table, bootstrap=0)
    ab = report.pairs[0]
    assert (ab.a, ab.b, ab.n) == ("a", "b", 4)
    keep = [0, 6, 7, 8]
    assert ab.srcc == pytest.approx(stats.spearmanr(table.latency("a")[keep], [2.0, 8.0, 9.0, 7.0]).statistic, abs=1e-12)
    assert report.pairs[1].n == 9 and report.to_json()["invalid"]["b"] == 5


def test_plain_device_columns_with_devices(tmp_path):
    path = write_csv(tmp_path / "t.csv", {"arch_id": ["x", "y", "z", "w"], "op": ["a", "b", "a", "b"],
                                          "rpi4": [1.0, 2.0, 3.0, 4.0], "pixel3": [2.0, 1.0, 4.0, 3.0]})
    table = read_latency_table(path, devices=["rpi4", "pixel3"])
    assert table.devices == ["rpi4", "pixel3"] and list(table.encoding) == ["op"]
    with pytest.raises(LatencyTableError, match="no 'latency_ms:<device>' columns"):
        read_latency_table(path)
    with pytest.raises(UnknownTableDevice, match="no device 'gpu'"):
        table.latency("gpu")


@pytest.mark.parametrize("columns, message", [
    ({"id": [1, 2], "latency_ms:a": [1.0, 2.0]}, "no 'arch_id' column"),
    ({"arch_id": [1, 1], "latency_ms:a": [1.0, 2.0]}, "duplicate arch_id"),
    ({"arch_id": [1, 2], "latency_ms:a": ["fast", "1.0"]}, "latency column 'latency_ms:a' is not numeric"),
])
def test_invalid_tables_are_one_line_errors(tmp_path, columns, message):
    path = write_csv(tmp_path / "t.csv", columns)
    with pytest.raises(LatencyTableError, match=message) as info:
        read_latency_table(path)
    assert "\n" not in str(info.value)


def test_table_from_luts(tmp_path):
    """Two LUTs of chamnet-mobile-mini (one scaled) give two device columns, ranked identically."""
    from harness.lut import store as lut_store
    from harness.measurement import Measurement, TimingStats
    from harness.runners import DeviceIdentity
    from harness.sweep import OVERHEAD_SIGNATURE, make_row
    from optimizer.latency.architecture_tables import table_from_luts
    from optimizer.spaces import get_space

    space = get_space("chamnet-mobile-mini")
    paths = {}
    for device, scale in (("slow", 3.0), ("fast", 1.0)):
        identity = DeviceIdentity(model="synthetic", runtime="synthetic", runtime_version="0", provider="none")
        rows = []
        for signature in list(space.all_signatures()) + [OVERHEAD_SIGNATURE]:
            median = scale * (5.0 + 0.3 * signature.macs / 1000.0)
            s = TimingStats(median_us=median, p10_us=median, p90_us=median, mean_us=median, std_us=0.0,
                            min_us=median, runs=1, mad_us=0.0)
            rows.append(make_row(signature, Measurement(s, 0, 1, median), identity, "synthetic", 1, "synthetic"))
        paths[device] = tmp_path / f"{device}.parquet"
        lut_store.write_lut_atomic(lut_store.rows_to_table(rows), paths[device])
    table = table_from_luts(space, paths, n=64, seed=1)
    assert table.devices == ["slow", "fast"] and len(table) == 64
    assert list(table.encoding) == list(space.gene_names)
    out = write_latency_table(table, tmp_path / "arch.parquet")
    back = read_latency_table(out)
    assert spearman(back.latency("slow"), back.latency("fast")) == pytest.approx(1.0)
    np.testing.assert_allclose(back.latency("slow") / back.latency("fast"), 3.0, rtol=0.05)
    result = run_optimize("latency-table", "--space", "chamnet-mobile-mini", "--lut", str(paths["slow"]), "--lut",
                          str(paths["fast"]), "--n", "32", "--out", str(tmp_path / "cli.csv"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["architectures"] == 32 and len(read_latency_table(tmp_path / "cli.csv")) == 32


# ------------------------------------------------------------------ the statistics
def test_srcc_equals_scipy_with_ties():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 20, 300).astype(float)  # many ties
    y = x + rng.integers(0, 10, 300)
    y[::7] = np.nan
    p = pair_monotonicity(x, y, bootstrap=0)
    keep = np.isfinite(y)
    assert p.n == keep.sum()
    assert abs(p.srcc - stats.spearmanr(x[keep], y[keep]).statistic) < 1e-12
    assert abs(p.kendall - stats.kendalltau(x[keep], y[keep]).statistic) < 1e-12


def test_matrix_flags_weak_pair_and_bootstrap_is_reproducible():
    table = nb201_table(800)
    report = monotonicity(table, bootstrap=300, seed=5)
    again = monotonicity(table, bootstrap=300, seed=5)
    other = monotonicity(table, bootstrap=300, seed=6)
    assert report.pairs == again.pairs and report.pairs != other.pairs
    for p in report.pairs:
        exact = stats.spearmanr(table.latency(p.a), table.latency(p.b)).statistic
        assert abs(p.srcc - exact) < 1e-12
        assert p.srcc_low <= p.srcc <= p.srcc_high and p.kendall_low <= p.kendall <= p.kendall_high
        assert p.srcc_high - p.srcc_low < 0.1
    ab = report.pairs[0]
    assert (ab.a, ab.b) == ("A", "B") and 0.6 < ab.srcc < 0.8 and ab.below_threshold
    ac = report.pairs[1]
    assert ac.srcc > 0.9 and not ac.below_threshold
    assert [tuple(f) for f in report.to_json()["flagged"]] == [("A", "B"), ("B", "C")]
    M = report.matrix()
    assert np.allclose(M, M.T) and np.allclose(np.diag(M), 1.0)


# ------------------------------------------------------------------ the command
@pytest.fixture(scope="module")
def table_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mono") / "nb201.csv"
    table = nb201_table(400)
    table.latency_ms["C"][:5] = np.nan
    return write_latency_table(table, path)


def test_cli_json_and_png(table_csv, tmp_path):
    png = tmp_path / "heat.png"
    result = run_optimize("monotonicity", str(table_csv), "--bootstrap", "200", "--png", str(png), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["devices"] == ["A", "B", "C"] and document["invalid"]["C"] == 5
    assert len(document["pairs"]) == 3 and ["A", "B"] in document["flagged"]
    assert png.stat().st_size > 1000
    text = run_optimize("monotonicity", str(table_csv), "--devices", "A,C", "--bootstrap", "50")
    assert text.returncode == 0, text.stderr
    assert "0 of 1 pair(s) under SRCC 0.9" in text.stdout


@pytest.mark.parametrize("args, message", [
    (["--devices", "A,gpu"], "no latency column for device 'gpu'"),
    (["--devices", "A"], "needs two devices or more"),
])
def test_cli_errors_are_one_line_exit_2(table_csv, args, message):
    result = run_optimize("monotonicity", str(table_csv), *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_unreadable_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    for path, message in ((bad, "cannot read the latency table"), (tmp_path / "none.csv", "no such file")):
        result = run_optimize("monotonicity", str(path))
        assert result.returncode == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------ cost baselines (our spaces)
def test_macs_and_params_baselines_beside_the_srcc(tmp_path):
    """A table of our space reports every device's SRCC against MACs and params; other tables say n/a (null)."""
    from optimizer.latency.architecture_tables import space_costs
    from optimizer.spaces import get_space

    space = get_space("chamnet-mobile-mini")
    X = space.sobol_pool(120, seed=2)
    macs, params = space.macs_many(X).astype(float), space.params_many(X).astype(float)
    rng = np.random.default_rng(0)
    latency = {"slow": macs * (1 + 0.05 * rng.standard_normal(120)), "fast": params * rng.uniform(0.5, 1.5, 120)}
    encoding = {g: X[:, i] for i, g in enumerate(space.gene_names)}
    table = LatencyTable(np.array([str(i) for i in range(120)], dtype=object), encoding, latency, space=space.name)
    costs = space_costs(table, space)
    np.testing.assert_array_equal(costs["macs"], macs)
    report = monotonicity(table, bootstrap=0, baselines=costs)
    assert report.space == "chamnet-mobile-mini"
    assert report.baseline_srcc("macs", "slow") == pytest.approx(stats.spearmanr(latency["slow"], macs).statistic,
                                                                 abs=1e-12)
    assert report.baseline_srcc("params", "fast") == pytest.approx(stats.spearmanr(latency["fast"], params).statistic,
                                                                   abs=1e-12)
    assert report.baseline_srcc("macs", "slow") > 0.9
    assert monotonicity(table, bootstrap=0).to_json()["baselines"] == {"macs": {"slow": None, "fast": None},
                                                                        "params": {"slow": None, "fast": None}}

    ours = write_latency_table(table, tmp_path / "ours.csv")  # info:space travels with the table
    assert read_latency_table(ours).space == "chamnet-mobile-mini"
    result = run_optimize("monotonicity", str(ours), "--bootstrap", "0", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["space"] == "chamnet-mobile-mini"
    assert document["baselines"]["macs"]["slow"] == pytest.approx(report.baseline_srcc("macs", "slow"), abs=1e-12)
    text = run_optimize("monotonicity", str(ours), "--bootstrap", "0")
    assert "SRCC vs MACs" in text.stdout and "chamnet-mobile-mini" in text.stdout and "n/a" not in text.stdout

    anonymous = write_latency_table(LatencyTable(table.arch_ids, encoding, dict(latency)), tmp_path / "anon.csv")
    named = json.loads(run_optimize("monotonicity", str(anonymous), "--bootstrap", "0", "--space",
                                    "chamnet-mobile-mini", "--json").stdout)
    assert named["baselines"] == document["baselines"]
    theirs = write_latency_table(nb201_table(50), tmp_path / "nb201.csv")
    for args, message in ((["--space", "chamnet-mobile-mini"], "not a table of space chamnet-mobile-mini"),
                          (["--space", "nasbench201"], "unknown search space 'nasbench201'")):
        bad = run_optimize("monotonicity", str(theirs), "--bootstrap", "0", *args)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
