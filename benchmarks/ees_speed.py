"""How fast is EES?  One search (population 96, 100 generations) and a 6-budget frontier on an 18-gene problem.

The problem stands in for ChamNet's MobileNetV2 space (Table 1): 18 integer
genes on grids (channel counts in steps of 8, block repeats 1–4, expansion
factors 1–6), a random linear latency model (ms; an operator LUT's sum is
linear in this sense) and a smooth, saturating accuracy function.  Both
predictors are cheap and vectorised, so the figures are the search's own cost
(the predictors' share is reported separately).  Quality is reported alongside
speed: each budget's best accuracy, its slack to the budget, whether any single
gene could still be raised one step within budget, and a random search with as
many evaluations.

Usage:  python benchmarks/ees_speed.py [--repeats 5] [--seed 0] [--json]
Writes benchmarks/results/ees_speed.json.  Goal: < 1 s for one budget.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optimizer.search.ees import Constraint, evolutionary_search, search_frontier

GOAL_S = 1.0


def make_problem(seed: int):
    """18 genes: 6 stages × (channels, repeats, expansion)."""
    rng = np.random.default_rng(seed)
    ch_low = np.array([8, 16, 24, 48, 64, 96])
    ch_high = ch_low * 3
    low = np.concatenate([[c, 1, 1] for c in ch_low])
    high = np.concatenate([[c, 4, 6] for c in ch_high])
    step = np.tile([8, 1, 1], 6)
    span = (high - low).astype(float)
    # latency (ms): a base cost plus per-gene linear costs, deeper stages dearer
    w = rng.uniform(0.5, 1.5, size=18) * np.repeat(np.linspace(1.0, 2.0, 6), 3)
    w_lat = w * 8.0 / span  # each gene over its whole range adds ≈ 8–24 ms
    base_ms = 5.0

    def latency(x: np.ndarray) -> np.ndarray:
        return base_ms + (x - low) @ w_lat

    # accuracy (%): saturating in a weighted sum of concave per-gene gains, with a mild interaction
    c = rng.uniform(0.5, 1.5, size=18)

    def accuracy(x: np.ndarray) -> np.ndarray:
        u = (x - low) / span  # 0 … 1 per gene
        capacity = np.sqrt(u + 0.05) @ c
        mix = u[:, 0::3] * u[:, 1::3]  # channels × repeats within a stage
        return 55.0 + 25.0 * (1.0 - np.exp(-capacity / 6.0)) + 0.5 * mix.mean(axis=1)

    return accuracy, latency, low, high, step, w_lat


def timed(fn, repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    accuracy, latency, low, high, step, w_lat = make_problem(args.seed)
    lat_min, lat_max = float(latency(low[None])[0]), float(latency(high[None])[0])
    budgets = list(np.round(np.linspace(lat_min, lat_max, 8)[1:-1], 2))  # 6 budgets strictly inside the range
    single_budget = budgets[2]

    def constraints(budget: float) -> list[Constraint]:
        return [Constraint("latency_ms", latency, budget, alpha=10.0, w=2.0)]

    def one() -> object:
        return evolutionary_search(accuracy, constraints(single_budget), low, high, step, seed=args.seed)

    one()  # warm-up (imports, first allocations)
    single_s, single = timed(one, args.repeats)

    # the predictors' share of one search
    spent = {"s": 0.0}

    def clock(fn):
        def wrapped(x):
            t0 = time.perf_counter()
            out = fn(x)
            spent["s"] += time.perf_counter() - t0
            return out
        return wrapped

    t0 = time.perf_counter()
    evolutionary_search(clock(accuracy), [Constraint("latency_ms", clock(latency), single_budget)], low, high, step, seed=args.seed)
    total = time.perf_counter() - t0
    predictor_share = spent["s"] / total

    frontier_s, frontier = timed(lambda: search_frontier(accuracy, constraints, budgets, low, high, step, seed=args.seed), max(1, args.repeats // 2))

    # quality: slack, one-step improvability, random search with as many evaluations
    rng = np.random.default_rng(args.seed + 1)
    n = (high - low) // step + 1
    per_budget = []
    for budget, r in zip(budgets, frontier):
        lat = r.resources["latency_ms"]
        can_raise = [(r.best_x[i] + step[i] <= high[i]) and (lat + step[i] * w_lat[i] <= budget) for i in range(18)]
        xs = low + rng.integers(0, n, size=(r.evaluations, 18)) * step
        ok = latency(xs) <= budget
        rand_best = float(accuracy(xs)[ok].max()) if ok.any() else None
        per_budget.append(
            {
                "budget_ms": float(budget),
                "feasible": r.feasible,
                "best_accuracy": r.best_accuracy,
                "latency_ms": lat,
                "slack_ms": float(budget - lat),
                "genes_raisable_one_step": int(sum(can_raise)),
                "random_search_best_accuracy": rand_best,
                "evaluations": r.evaluations,
            }
        )

    report = {
        "problem": "18 genes (6 stages × channels/repeats/expansion), random linear latency (ms), smooth saturating accuracy (%)",
        "population": 96,
        "parents": 12,
        "generations": 100,
        "evaluations_per_search": single.evaluations,
        "single_budget_ms": float(single_budget),
        "single_search_s": single_s,
        "single_search_median_s": float(np.median(single_s)),
        "predictor_share_of_search": predictor_share,
        "frontier_budgets": len(budgets),
        "frontier_s": frontier_s,
        "frontier_median_s": float(np.median(frontier_s)),
        "frontier": per_budget,
        "goal_single_search_s": GOAL_S,
        "meets_goal": bool(np.median(single_s) < GOAL_S),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__, "processor": platform.processor() or platform.machine()},
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "ees_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"one search (96 × 100 generations, {single.evaluations} evaluations): median {report['single_search_median_s']*1000:.1f} ms "
              f"over {args.repeats} (goal < {GOAL_S:.0f} s; predictors {predictor_share:.0%} of it)")
        print(f"{len(budgets)}-budget frontier: median {report['frontier_median_s']*1000:.1f} ms")
        for b in per_budget:
            rand = "none feasible" if b["random_search_best_accuracy"] is None else f"{b['random_search_best_accuracy']:.3f}"
            print(f"  budget {b['budget_ms']:7.2f} ms: accuracy {b['best_accuracy']:.3f} at {b['latency_ms']:.2f} ms "
                  f"(slack {b['slack_ms']:.2f} ms, {b['genes_raisable_one_step']} genes raisable; random search {rand})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
