"""EES (optimizer/search/ees.py): Eq. 3's fitness, Srinivas & Patnaik's adaptive rates, and the search itself on
toy problems whose optimum is known by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.search.ees import Constraint, SearchResult, adaptive_rates, evolutionary_search, fitness, penalty, search_frontier

# --------------------------------------------------------------------------- a toy problem

# 6 genes on mixed grids (≈ 10 values each, 10^6 points): accuracy increasing and concave in every gene,
# latency and energy linear, so the constrained optimum lies on a budget's boundary.
LOW = np.array([8, 1, 16, 0, 2, 3])
HIGH = np.array([80, 10, 160, 27, 20, 30])  # 20 and 30 are off their grids (last points 18 and 27)
STEP = np.array([8, 1, 16, 3, 2, 3])
_rng = np.random.default_rng(1)
COEF = _rng.uniform(0.5, 1.5, 6)
W_LAT = _rng.uniform(0.2, 1.0, 6) * 10 / (HIGH - LOW)
W_EN = _rng.uniform(0.2, 1.0, 6)[::-1] * 10 / (HIGH - LOW)


def toy_accuracy(x: np.ndarray) -> np.ndarray:
    return np.log1p((x - LOW) / STEP) @ COEF


def toy_latency(x: np.ndarray) -> np.ndarray:
    return 1.0 + (x - LOW) @ W_LAT


def toy_energy(x: np.ndarray) -> np.ndarray:
    return 2.0 + (x - LOW) @ W_EN


def latency(budget: float) -> list[Constraint]:
    return [Constraint("latency_ms", toy_latency, budget)]


ALL_X = np.array(list(itertools.product(*[np.arange(lo, hi + 1, s) for lo, hi, s in zip(LOW, HIGH, STEP)])))
ALL_ACC, ALL_LAT, ALL_EN = toy_accuracy(ALL_X), toy_latency(ALL_X), toy_energy(ALL_X)


def brute_force(lat_budget: float | None = None, en_budget: float | None = None) -> float:
    ok = np.ones(len(ALL_X), dtype=bool)
    if lat_budget is not None:
        ok &= ALL_LAT <= lat_budget
    if en_budget is not None:
        ok &= ALL_EN <= en_budget
    return float(ALL_ACC[ok].max())


def on_grid(x: np.ndarray) -> bool:
    x = np.atleast_2d(x)
    return bool(np.all((x - LOW) % STEP == 0) and np.all(x >= LOW) and np.all(x <= HIGH))


# --------------------------------------------------------------------------- fitness (Eq. 3)


def test_no_penalty_within_budget_and_quadratic_over_it():
    c = Constraint("latency_ms", toy_latency, threshold=20.0)  # α = 10 per ms, w = 2
    acc = np.array([0.7, 0.7, 0.7, 0.7, 0.7])
    lat = np.array([5.0, 20.0, 20.1, 20.2, 21.0])
    r = fitness(acc, {"latency_ms": lat}, [c])
    np.testing.assert_allclose(r, [0.7, 0.7, 0.7 - 1.0, 0.7 - 4.0, 0.7 - 100.0])
    # twice the overshoot, four times the penalty
    assert penalty(np.array([20.2]), c)[0] == pytest.approx(4 * penalty(np.array([20.1]), c)[0])


def test_penalties_of_several_constraints_add_up_with_their_own_alpha_and_w():
    cs = [Constraint("latency_ms", toy_latency, 10.0), Constraint("energy_mj", toy_energy, 5.0, alpha=2.0, w=3.0)]
    r = fitness(np.array([1.0, 1.0]), {"latency_ms": np.array([10.5, 9.0]), "energy_mj": np.array([6.0, 5.5])}, cs)
    np.testing.assert_allclose(r, [1.0 - 25.0 - 8.0, 1.0 - 1.0])


@settings(max_examples=60, deadline=None)
@given(
    acc=st.floats(0, 100),
    res=st.floats(0, 1000),
    thres=st.floats(0, 1000),
    more=st.floats(0, 100),
)
def test_fitness_is_accuracy_within_budget_and_falls_with_the_overshoot(acc, res, thres, more):
    c = Constraint("r", toy_latency, thres)
    r1 = fitness(np.array([acc]), {"r": np.array([res])}, [c])[0]
    r2 = fitness(np.array([acc]), {"r": np.array([res + more])}, [c])[0]
    assert r2 <= r1 <= acc
    if res <= thres:
        assert r1 == acc
    else:
        assert r1 == pytest.approx(acc - (10.0 * (res - thres)) ** 2)


# --------------------------------------------------------------------------- adaptive rates


def test_adaptive_rates_follow_srinivas_and_patnaik():
    f_max, f_avg = 10.0, 6.0
    f_pair = np.array([10.0, 8.0, 6.0, 4.0])
    f = np.array([10.0, 7.0, 6.0, 5.0])
    pc, pm = adaptive_rates(f_pair, f, f_max, f_avg)  # k1 = k3 = 1, k2 = k4 = 0.5
    np.testing.assert_allclose(pc, [0.0, 0.5, 1.0, 1.0])  # k1 (f_max − f') / (f_max − f_avg); below average: k3
    np.testing.assert_allclose(pm, [0.0, 0.375, 0.5, 0.5])  # k2 (f_max − f) / (f_max − f_avg); below average: k4
    pc, pm = adaptive_rates(f_pair, f, f_max, f_avg, k1=0.8, k2=0.2, k3=0.9, k4=0.3)
    np.testing.assert_allclose(pc, [0.0, 0.4, 0.8, 0.9])
    np.testing.assert_allclose(pm, [0.0, 0.15, 0.2, 0.3])


def test_adaptive_rates_degenerate_cases():
    # a converged pool (f_max = f_avg): 0/0, disrupted with the below-average rates
    pc, pm = adaptive_rates(np.array([3.0, 3.0]), np.array([3.0, 3.0]), 3.0, 3.0, k3=0.9, k4=0.4)
    np.testing.assert_allclose(pc, [0.9, 0.9])
    np.testing.assert_allclose(pm, [0.4, 0.4])
    # non-finite fitness counts as below average
    pc, pm = adaptive_rates(np.array([-np.inf, np.nan]), np.array([np.nan, -np.inf]), 1.0, 0.0)
    np.testing.assert_allclose(pc, [1.0, 1.0])
    np.testing.assert_allclose(pm, [0.5, 0.5])


def test_history_reports_the_rates_used():
    r = evolutionary_search(toy_accuracy, latency(8.0), LOW, HIGH, STEP, generations=10)
    assert r.history[0]["pc"] is None and r.history[0]["pm"] is None
    for h in r.history[1:]:
        assert 0.0 <= h["pc"] <= 1.0 and 0.0 <= h["pm"] <= 0.5


# --------------------------------------------------------------------------- the search


@pytest.mark.parametrize("budget", [5.0, 12.0, 25.0])
def test_finds_the_brute_force_optimum_on_the_budget_boundary(budget):
    best = brute_force(lat_budget=budget)
    for seed in (0, 1):
        r = evolutionary_search(toy_accuracy, latency(budget), LOW, HIGH, STEP, seed=seed)
        assert r.feasible
        assert r.best_accuracy == pytest.approx(best, abs=1e-12)
        assert r.best_fitness == pytest.approx(r.best_accuracy)  # no penalty
        assert r.resources["latency_ms"] <= budget
        assert r.resources["latency_ms"] == pytest.approx(toy_latency(r.best_x[None])[0])
        assert on_grid(r.best_x) and r.best_x.dtype.kind == "i"
        # on the boundary: no gene can be raised one step within budget
        for i in range(6):
            if r.best_x[i] + STEP[i] <= HIGH[i]:
                assert r.resources["latency_ms"] + STEP[i] * W_LAT[i] > budget


def test_same_seed_identical_different_seed_differs_but_feasible():
    a = evolutionary_search(toy_accuracy, latency(10.0), LOW, HIGH, STEP, seed=3, generations=30)
    b = evolutionary_search(toy_accuracy, latency(10.0), LOW, HIGH, STEP, seed=3, generations=30)
    c = evolutionary_search(toy_accuracy, latency(10.0), LOW, HIGH, STEP, seed=4, generations=30)
    assert np.array_equal(a.best_x, b.best_x)
    assert a.best_fitness == b.best_fitness and a.resources == b.resources and a.history == b.history
    assert a.history != c.history
    assert a.feasible and c.feasible
    assert c.resources["latency_ms"] <= 10.0


def test_any_seed_finds_the_single_feasible_point_of_a_tight_budget():
    budget = float(toy_latency(LOW[None])[0])  # only the all-low point fits
    for seed in (11, 12, 13):
        r = evolutionary_search(toy_accuracy, latency(budget), LOW, HIGH, STEP, seed=seed)
        assert r.feasible and np.array_equal(r.best_x, LOW)


def test_best_is_monotone_over_generations():
    r = evolutionary_search(toy_accuracy, latency(6.0), LOW, HIGH, STEP, seed=5, generations=60)
    best = [h["best_fitness"] for h in r.history]
    assert all(b2 >= b1 for b1, b2 in itertools.pairwise(best))
    feasible_best = [h["best_feasible_accuracy"] for h in r.history if h["best_feasible_accuracy"] is not None]
    assert all(b2 >= b1 for b1, b2 in itertools.pairwise(feasible_best))
    assert feasible_best[-1] == r.best_accuracy
    assert len(r.history) == r.generations == 60


def test_each_generation_is_one_vectorised_call_of_each_predictor_and_stays_on_the_grid():
    calls: list[np.ndarray] = []

    def acc(x):
        calls.append(x.copy())
        return toy_accuracy(x)

    lat_calls = []

    def lat(x):
        lat_calls.append(len(x))
        return toy_latency(x)

    r = evolutionary_search(acc, [Constraint("latency_ms", lat, 8.0)], LOW, HIGH, STEP, generations=20)
    assert [len(x) for x in calls] == [96] + [84] * 19 == lat_calls
    assert r.evaluations == 96 + 19 * 84
    assert all(on_grid(x) for x in calls)
    # children are deduplicated against the survivors and each other
    survivors_and_children = np.concatenate(calls[-2:])
    assert len(np.unique(calls[-1], axis=0)) == 84
    assert len(np.unique(survivors_and_children, axis=0)) > 84


def test_two_constraints_latency_and_energy():
    lat_b, en_b = 12.0, 12.0
    best = brute_force(lat_budget=lat_b, en_budget=en_b)
    assert best < brute_force(lat_budget=lat_b) and best < brute_force(en_budget=en_b)  # both bind
    cs = [Constraint("latency_ms", toy_latency, lat_b), Constraint("energy_mj", toy_energy, en_b)]
    r = evolutionary_search(toy_accuracy, cs, LOW, HIGH, STEP, seed=0)
    assert r.feasible
    assert r.resources["latency_ms"] <= lat_b and r.resources["energy_mj"] <= en_b
    assert r.best_accuracy == pytest.approx(best, abs=1e-12)


def test_nothing_feasible_returns_the_fittest_flagged_infeasible():
    budget = 0.5  # below the cheapest point's 1 ms
    r = evolutionary_search(toy_accuracy, latency(budget), LOW, HIGH, STEP, generations=30)
    assert not r.feasible
    assert r.resources["latency_ms"] > budget
    assert r.best_fitness < r.best_accuracy
    all_fit = fitness(ALL_ACC, {"latency_ms": ALL_LAT}, latency(budget))
    assert r.best_fitness == pytest.approx(all_fit.max())


def test_initial_individuals_are_snapped_and_kept():
    budget = 12.0
    ok = ALL_LAT <= budget
    optimum = ALL_X[ok][np.argmax(ALL_ACC[ok])]
    off_grid = optimum + 0.3 * STEP  # rounds back to the optimum
    r = evolutionary_search(toy_accuracy, latency(budget), LOW, HIGH, STEP, generations=1, initial=off_grid)
    assert np.array_equal(r.best_x, optimum)
    with pytest.raises(ValueError):
        evolutionary_search(toy_accuracy, latency(budget), LOW, HIGH, STEP, initial=np.zeros((97, 6)))


def test_frontier_one_reproducible_search_per_budget():
    budgets = [4.0, 8.0, 16.0]
    kw = {"generations": 40, "seed": 7}
    a = search_frontier(toy_accuracy, latency, budgets, LOW, HIGH, STEP, **kw)
    b = search_frontier(toy_accuracy, latency, budgets, LOW, HIGH, STEP, **kw)
    assert len(a) == 3 and all(isinstance(r, SearchResult) for r in a)
    for budget, ra, rb in zip(budgets, a, b):
        assert ra.feasible and ra.resources["latency_ms"] <= budget
        assert np.array_equal(ra.best_x, rb.best_x) and ra.history == rb.history
    accs = [r.best_accuracy for r in a]
    assert accs == sorted(accs)


def test_one_point_crossover_and_resample_mutation_also_work():
    best = brute_force(lat_budget=12.0)
    for kw in ({"crossover": "one_point"}, {"mutation": "resample"}, {"adapt_over": "population"}):
        r = evolutionary_search(toy_accuracy, latency(12.0), LOW, HIGH, STEP, seed=0, **kw)
        assert r.feasible and r.best_accuracy >= best - 0.05


def test_bad_arguments():
    with pytest.raises(ValueError):
        evolutionary_search(toy_accuracy, latency(8.0), LOW, HIGH, STEP, parents=96)
    with pytest.raises(ValueError):
        evolutionary_search(toy_accuracy, latency(8.0) * 2, LOW, HIGH, STEP)  # duplicate names
    with pytest.raises(ValueError):
        evolutionary_search(lambda x: np.zeros(3), latency(8.0), LOW, HIGH, STEP)  # wrong length
    with pytest.raises(ValueError):
        evolutionary_search(toy_accuracy, latency(8.0), LOW, HIGH, -STEP)
