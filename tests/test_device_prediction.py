"""Cross-device prediction from a few target measurements, and choices made on those samples alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_optimize
from optimizer.crossdevice.device_prediction import CrossDevicePredictor, PredictionError, _ridge_loo, reference_set
from optimizer.crossdevice.monotonicity import spearman
from optimizer.crossdevice.proxy_adaptation import adapt_chosen_proxy
from optimizer.latency.architecture_tables import LatencyTable, read_latency_table

FBNET = Path(__file__).resolve().parents[2] / "shared" / "data" / "latency-tables" / "fbnet-5000.csv"


def synthetic_table(n: int = 400, seed: int = 0) -> LatencyTable:
    """Three layers of four choices; devices are per-choice cost vectors; the target mixes two of them and adds
    a cost of its own on one choice, with noise."""
    rng = np.random.default_rng(seed)
    genes = rng.integers(0, 4, size=(n, 3))
    costs = {name: rng.uniform(1, 5, size=(3, 4)) for name in ("a", "b", "c", "d")}

    def latency(cost: np.ndarray) -> np.ndarray:
        return cost[np.arange(3), genes].sum(axis=1)

    lat = {name: latency(cost) * (1 + 0.01 * rng.standard_normal(n)) for name, cost in costs.items()}
    own = 0.6 * costs["a"] + 0.4 * costs["b"]
    own[2, 1] += 3.0  # what no reference has
    lat["target"] = latency(own) * (1 + 0.01 * rng.standard_normal(n))
    encoding = {f"layer{i}": np.array([f"op{v}" for v in genes[:, i]], dtype=object) for i in range(3)}
    return LatencyTable(arch_ids=np.array([f"n{i}" for i in range(n)], dtype=object), encoding=encoding, latency_ms=lat)


def test_ridge_leave_one_out_is_exact() -> None:
    rng = np.random.default_rng(1)
    U = np.column_stack([rng.uniform(1, 2, 12), np.ones(12)])
    Z = rng.integers(0, 2, size=(12, 7)).astype(float)
    y = rng.uniform(1, 3, 12)
    error, coef = _ridge_loo(U, Z, y, 0.7)
    loo = []
    for i in range(12):
        keep = np.arange(12) != i
        # the same problem without sample i, solved directly: [U Z] with the penalty on Z's coefficients only
        F = np.hstack([U[keep], Z[keep]])
        P = np.diag(np.r_[0.0, 0.0, np.full(7, 0.7)])
        theta = np.linalg.solve(F.T @ F + P, F.T @ y[keep])
        loo.append(np.hstack([U[i], Z[i]]) @ theta)
    assert error == pytest.approx(np.mean(((y - np.array(loo)) / y) ** 2), rel=1e-9)
    F = np.hstack([U, Z])
    direct = np.linalg.solve(F.T @ F + np.diag(np.r_[0.0, 0.0, np.full(7, 0.7)]), F.T @ y)
    assert np.allclose(coef, direct)


def test_reference_set_spans_the_range_and_is_seeded() -> None:
    table = synthetic_table()
    refs = ["a", "b", "c", "d"]
    rows = reference_set(table, refs, 8, seed=3)
    assert len(rows) == len(set(rows)) == 8
    assert np.array_equal(rows, reference_set(table, refs, 8, seed=3))
    assert not np.array_equal(rows, reference_set(table, refs, 8, seed=4))
    score = np.log(np.column_stack([table.latency_ms[d] for d in refs])).mean(axis=1)
    ranks = np.argsort(np.argsort(score))[rows]
    assert ranks.min() < len(score) / 8 and ranks.max() >= len(score) * 7 / 8  # one per stratum: both ends
    with pytest.raises(PredictionError, match="at least 4"):
        reference_set(table, refs, 3)


def test_the_predictor_beats_the_best_single_proxy_where_no_reference_matches() -> None:
    table = synthetic_table()
    refs = ["a", "b", "c", "d"]
    rows = reference_set(table, refs, 20, seed=0)
    y = table.latency_ms["target"]
    predictor = CrossDevicePredictor(table, refs).fit(rows, y[rows])
    rest = np.setdiff1d(np.arange(len(y)), rows)
    ours = spearman(predictor.predict()[rest], y[rest])
    proxy = max(spearman(table.latency_ms[r][rest], y[rest]) for r in refs)  # even chosen in hindsight
    assert ours > proxy + 0.05 and ours > 0.95
    assert predictor.method_ in ("blend+choices", "adapted proxy")
    assert set(predictor.errors_) == {"blend", "blend+choices", "proxy", "adapted proxy"}


def test_a_target_that_is_a_scaled_reference_keeps_it() -> None:
    table = synthetic_table()
    table.latency_ms["target"] = 2.0 * table.latency_ms["c"] + 1.0
    refs = ["a", "b", "c", "d"]
    rows = reference_set(table, refs, 10, seed=0)
    predictor = CrossDevicePredictor(table, refs).fit(rows, table.latency_ms["target"][rows])
    assert predictor.proxy_ == "c"
    assert predictor.errors_["proxy"] < 1e-20  # exact: nothing can beat it
    assert predictor.method_ == "proxy" and predictor.describe()["fell_back_to_proxy"]


def test_bad_measurements_are_refused() -> None:
    table = synthetic_table()
    predictor = CrossDevicePredictor(table, ["a", "b"])
    with pytest.raises(PredictionError, match="at least"):
        predictor.fit([0, 1, 2], [1.0, 2.0, 3.0])
    with pytest.raises(PredictionError, match="finite and positive"):
        predictor.fit([0, 1, 2, 3], [1.0, -2.0, 3.0, 4.0])


def test_adapt_proxy_chooses_and_falls_back_on_the_samples_alone() -> None:
    table = synthetic_table()
    table.latency_ms["target"] = 2.0 * table.latency_ms["c"] + 1.0  # a scaled copy of c: adapting cannot help
    result = adapt_chosen_proxy(table, ["a", "b", "c", "d"], "target", 20, draws=5, validation=10)
    assert result.proxies_chosen == {"c": 5}
    assert result.fell_back == 5 and result.srcc_mean == pytest.approx(1.0)


@pytest.mark.skipif(not FBNET.is_file(), reason="the shared latency tables are not beside the repository")
def test_on_public_fbnet_data_pixel3_from_ten_samples() -> None:
    table = read_latency_table(FBNET)
    refs = [d for d in table.devices if d != "pixel3"]
    y = table.latency("pixel3")
    predictor, oneproxy = CrossDevicePredictor(table, refs), CrossDevicePredictor(table, refs, methods=("adapted proxy",))
    ours, theirs = [], []
    for seed in range(3):
        rows = reference_set(table, refs, 10, seed=seed)
        rest = np.setdiff1d(np.arange(len(y)), rows)
        ours.append(spearman(predictor.fit(rows, y[rows]).predict()[rest], y[rest]))
        theirs.append(spearman(oneproxy.fit(rows, y[rows]).predict()[rest], y[rest]))
    assert np.mean(ours) > np.mean(theirs) and np.mean(ours) > 0.9


def test_commands(tmp_path: Path) -> None:
    table = synthetic_table(n=200)
    path = tmp_path / "table.csv"
    lines = ["arch_id,layer0,layer1,layer2," + ",".join(f"latency_ms:{d}" for d in table.latency_ms)]
    for i in range(len(table.arch_ids)):
        lines.append(",".join([table.arch_ids[i]] + [table.encoding[c][i] for c in table.encoding]
                              + [repr(float(table.latency_ms[d][i])) for d in table.latency_ms]))
    path.write_text("\n".join(lines) + "\n")
    scored = run_optimize("predict-device", str(path), "--target", "target", "--samples", "12", "--json")
    assert scored.returncode == 0, scored.stderr
    report = json.loads(scored.stdout)
    assert report["srcc_on_the_rest"] > report["raw_proxy_srcc_on_the_rest"] and report["scored_on"] == 188
    listed = run_optimize("reference-set", str(path), "--samples", "6", "--references", "a,b,c,d",
                          "--out", str(tmp_path / "ref.csv"), "--json")
    assert listed.returncode == 0, listed.stderr
    ids = [a["arch_id"] for a in json.loads(listed.stdout)["architectures"]]
    index = {a: i for i, a in enumerate(table.arch_ids)}
    (tmp_path / "measured.csv").write_text("arch_id,latency_ms\n" + "".join(
        f"{a},{table.latency_ms['target'][index[a]]}\n" for a in ids))
    new = run_optimize("predict-device", str(path), "--target", "newdevice", "--references", "a,b,c,d",
                       "--measured", str(tmp_path / "measured.csv"), "--out", str(tmp_path / "pred.csv"), "--json")
    assert new.returncode == 0, new.stderr
    predicted = read_latency_table(tmp_path / "pred.csv").latency("newdevice")
    assert np.isfinite(predicted).all() and len(predicted) == 200
    (tmp_path / "bad.csv").write_text("arch_id,latency_ms\nn0,-1\n")
    bad = run_optimize("predict-device", str(path), "--target", "x", "--measured", str(tmp_path / "bad.csv"))
    assert bad.returncode == 2 and "not a positive time" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    unknown = run_optimize("predict-device", str(path), "--target", "x")
    assert unknown.returncode == 2 and "--measured" in unknown.stderr
