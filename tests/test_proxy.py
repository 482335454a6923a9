"""Proxy reuse (Pareto sets kept, accuracy and latency lost) and proxy adaptation (OneProxy's a·f_p + D·δ + b)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.errors import ChameleonError
from optimizer.latency.architecture_tables import write_latency_table
from optimizer.crossdevice.monotonicity import spearman
from optimizer.crossdevice.proxy_adaptation import AdaptedModel, ProxyModel, TooFewSamples, adapt_proxy, best_proxy, fit_adapted, one_hot
from optimizer.crossdevice.proxy_reuse import NoAccuracy, best_under, pareto_mask, proxy_reuse
from test_monotonicity import nb201_table, run_optimize


# ------------------------------------------------------------------ reuse
def test_pareto_mask_and_best_under():
    latency = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 0.5])
    accuracy = np.array([0.5, 0.6, 0.7, 0.65, 0.8, 0.4])
    assert pareto_mask(latency, accuracy).tolist() == [True, False, True, False, True, True]
    assert best_under(latency, accuracy, 3.5) == 2
    assert best_under(latency, accuracy, 0.1) is None
    assert best_under(latency, accuracy, 10.0, among=np.array([1, 1, 0, 1, 0, 1], bool)) == 3


def test_identical_devices_lose_nothing():
    table = nb201_table(300, mixes={"A": 0.0, "A2": 0.0}, noise=0.0, accuracy=True)
    report = proxy_reuse(table, "A", "A2")
    assert report.proxy_pareto == report.target_pareto == report.proxy_pareto_on_target
    assert all(b.accuracy_lost == 0 and b.latency_lost_ms == 0 for b in report.budgets)


def test_weak_pair_loses_some_and_strong_pair_keeps_most():
    table = nb201_table(1500, accuracy=True)
    weak, strong = proxy_reuse(table, "A", "B"), proxy_reuse(table, "A", "C")
    assert len(weak.budgets) == 10 and weak.budgets[-1].quantile == 1.0
    for report in (weak, strong):
        for b in report.budgets:
            if b.accuracy_lost is not None:
                assert b.accuracy_lost >= 0 and b.latency_lost_ms >= 0
                assert b.reused_latency_ms <= b.target_budget_ms
    assert weak.budgets[-1].accuracy_lost == 0  # no budget: the most accurate architecture is on both frontiers
    kept = lambda r: r.proxy_pareto_on_target / r.proxy_pareto  # noqa: E731
    assert kept(strong) > kept(weak)
    assert sum(b.accuracy_lost or 0 for b in strong.budgets) <= sum(b.accuracy_lost or 0 for b in weak.budgets)
    json.dumps(weak.to_json())


def test_reuse_needs_accuracy_and_budgets_in_ms():
    with pytest.raises(NoAccuracy):
        proxy_reuse(nb201_table(50), "A", "B")
    table = nb201_table(300, accuracy=True)
    report = proxy_reuse(table, "A", "B", target_budgets_ms=[2.0, 3.0])
    assert [b.target_budget_ms for b in report.budgets] == [2.0, 3.0]
    assert report.budgets[0].quantile == pytest.approx((table.latency("B") <= 2.0).mean())


# ------------------------------------------------------------------ adaptation maths
def test_one_hot_by_value_for_strings_and_numbers():
    D, names = one_hot({"op": np.array(["b", "a", "b"], dtype=object), "n": np.array([3, 1, 3])})
    assert names == ["op=a", "op=b", "n=1", "n=3"]
    assert D.tolist() == [[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]]


def test_a_measurement_is_not_a_choice():
    with pytest.raises(ChameleonError, match="'gpu' has 40 distinct non-integer values in 40 rows"):
        one_hot({"op": np.array(["a", "b"] * 20, dtype=object), "gpu": np.linspace(1, 2, 40)})
    D, _ = one_hot({"width": np.arange(40) * 8})  # a gene with many values is still a choice per value
    assert D.shape == (40, 40)


def test_models_recover_additive_latencies():
    rng = np.random.default_rng(0)
    table = nb201_table(500, noise=0.0)
    D, _ = one_hot(table.encoding)
    proxy = ProxyModel().fit(D, table.latency("A"))
    np.testing.assert_allclose(proxy.predict(D), table.latency("A"), atol=1e-3)
    fp = proxy.predict(D)
    target = table.latency("B")
    fit = rng.choice(500, 60, replace=False)
    model = AdaptedModel(penalty=1e-6).fit(fp[fit], D[fit], target[fit])
    np.testing.assert_allclose(model.predict(fp, D), target, atol=1e-3)
    # A penalty that forbids δ leaves only a·f_p + b: a scaled proxy.
    only_scale = AdaptedModel(penalty=1e12).fit(fp[fit], D[fit], 2 * fp[fit] + 1)
    assert only_scale.scale_ == pytest.approx(2.0, rel=1e-6)


def test_penalty_chosen_on_validation_rows():
    table = nb201_table(300, noise=0.0)
    D, _ = one_hot(table.encoding)
    fp = ProxyModel().fit(D, table.latency("A")).predict(D)
    fit, val = np.arange(40), np.arange(40, 50)
    model = fit_adapted(fp, D, table.latency("B"), fit, val, grid=(1e3, 1e-4, 10.0))
    assert model.penalty == pytest.approx(1e-4 * 40)  # noiseless and additive: the smallest penalty wins


def test_adaptation_lifts_a_weak_pair_with_50_samples():
    """The weak pair (SRCC ~0.7) lifted to >= 0.9 with 40 fitted + 10 validation target samples."""
    table = nb201_table(1500)
    result = adapt_proxy(table, "A", "B", 40, validation=10, draws=5, seed=0)
    assert 0.6 < result.raw_srcc_mean < 0.8
    assert result.adapted_srcc_mean >= 0.9 and result.adapted_srcc_std < 0.05
    assert result.evaluated == 1500 - 50 and len(result.adapted_srcc) == 5
    again = adapt_proxy(table, "A", "B", 40, validation=10, draws=5, seed=0)
    assert again == result
    rest_raw = spearman(table.latency("A"), table.latency("B"))
    assert result.raw_srcc_mean == pytest.approx(rest_raw, abs=0.03)


def test_best_proxy_and_too_few_samples():
    table = nb201_table(600)
    results, adapted, raw, skipped = best_proxy(table, ["A", "B", "C"], "C", 30, draws=3)
    assert skipped == {}
    assert [r.proxy for r in results] and {r.proxy for r in results} == {"A", "B"}
    assert raw == "A" and adapted == results[0].proxy
    table.latency_ms["B"][100:] = np.nan
    results, _, _, skipped = best_proxy(table, ["A", "B"], "C", 100, draws=1, skip_short=True)
    assert [r.proxy for r in results] == ["A"] and "100 architecture(s) measured on both B and C" in skipped["B"]
    with pytest.raises(TooFewSamples, match="at least 3"):
        adapt_proxy(table, "A", "B", 2)
    with pytest.raises(TooFewSamples, match="needs 613"):
        adapt_proxy(table, "A", "B", 600)


# ------------------------------------------------------------------ the commands
@pytest.fixture(scope="module")
def table_parquet(tmp_path_factory) -> Path:
    return write_latency_table(nb201_table(800, accuracy=True), tmp_path_factory.mktemp("proxy") / "nb201.parquet")


def test_cli_adapt_proxy_json(table_parquet):
    result = run_optimize("adapt-proxy", str(table_parquet), "--proxy", "all", "--target", "B", "--samples", "40",
                          "--draws", "3", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["validation"] == 10 and {r["proxy"] for r in document["results"]} == {"A", "C"}
    assert document["best_proxy_adapted_on_the_rest"] in ("A", "C")
    assert all(r["adapted_srcc_mean"] > r["raw_srcc_mean"] for r in document["results"])
    chosen = document["chosen_on_samples"]  # what the 50 samples alone choose, adapt and keep
    assert sum(chosen["proxies_chosen"].values()) == 3 and set(chosen["proxies_chosen"]) <= {"A", "C"}
    assert 0 <= chosen["fell_back"] <= 3 and len(chosen["srcc"]) == 3 and -1 <= chosen["srcc_mean"] <= 1


def test_cli_proxy_reuse_text_and_json(table_parquet):
    text = run_optimize("proxy-reuse", str(table_parquet), "--proxy", "A", "--target", "C")
    assert text.returncode == 0, text.stderr
    assert "Pareto-optimal architectures on A are Pareto-optimal on C too" in text.stdout
    result = run_optimize("proxy-reuse", str(table_parquet), "--proxy", "A", "--target", "B", "--quantiles",
                          "0.25,0.5", "--json")
    assert result.returncode == 0, result.stderr
    assert [b["quantile"] for b in json.loads(result.stdout)["budgets"]] == [0.25, 0.5]


@pytest.mark.parametrize("args, message", [
    (["adapt-proxy", "--proxy", "A", "--target", "B", "--samples", "1"], "at least 3 target samples"),
    (["adapt-proxy", "--proxy", "gpu", "--target", "B", "--samples", "20"], "no device 'gpu'"),
    (["proxy-reuse", "--proxy", "A", "--target", "B", "--accuracy", "top1"], "no accuracy column 'top1'"),
])
def test_cli_errors_one_line_exit_2(table_parquet, args, message):
    result = run_optimize(args[0], str(table_parquet), *args[1:])
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
