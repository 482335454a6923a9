"""How fast is EES?  A toy problem for the search's own cost, and a user's search with the real predictors.

**Toy problem** (the search alone).  One search (population 96, 100
generations) and a 6-budget frontier on an 18-gene problem standing in for
ChamNet's MobileNetV2 space (Table 1): integer genes on grids, a random linear
latency model (ms) and a smooth, saturating accuracy function.  Both predictors
are cheap and vectorised, so the figures are the search's own cost.  Quality is
reported alongside speed: each budget's best accuracy, its slack, whether any
single gene could still be raised one step within budget, and a random search
with as many evaluations.

**Real predictors** (what a user runs).  The library calls of ``optimize --lut
LUT --space chamnet-mobile --interpolate --accuracy
optimizer/accuracy/shipped/chamnet-mobile.json --latency BUDGETS``: the xeon LUT
of ``benchmarks/lut_fidelity.py`` (it holds 1 % of the space's units, so the
others are interpolated, as ``--interpolate`` does), the shipped Gaussian
process accuracy predictor, :func:`optimizer.search.frontier.search_budgets`.
The six budgets are :func:`optimizer.search.defaults.default_budgets` at six
quantiles of the space's latency on the LUT; the one-budget search uses the
third.  Each search starts from a fresh latency predictor, as a run does.  It
reports the one-budget search's wall time and its shares (latency prediction,
accuracy prediction, the rest: the search), the 6-budget frontier, and the
same with the latency predictor as it was before issue 17
(:class:`LegacyLatencyPredictor`, kept here only), run alternately with the
current one in the same run (the machine's speed drifts ~20 % within minutes),
with ``predict()`` alone at batch 84 (EES's batch) and at 100,000 architectures
(units already looked up).  Both predictors must give identical searches.

Usage:  python benchmarks/ees_speed.py [--repeats 3] [--seed 0] [--json]
Writes benchmarks/results/ees_speed.json.  Goals: < 1 s for one toy budget; the
real one-budget search ≥ 4x faster than with the legacy latency predictor.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.signature import OpSignature, make_signature
from optimizer.latency.lut_model import LatencyPrediction, LatencyPredictor, LutLatencyModel, MissingSignatures
from optimizer.latency.slot_tables import PackedRowTable
from optimizer.search.ees import Constraint, evolutionary_search, search_frontier

GOAL_S = 1.0
GOAL_RATIO = 4.0
ROOT = Path(__file__).resolve().parents[1]
LUT = ROOT / "benchmarks" / "results" / "lut_fidelity-chamnet-mobile-xeon.parquet"
SPACE = "chamnet-mobile"
FRONTIER_QUANTILES = tuple(float(q) for q in np.round(np.linspace(0.1, 0.9, 6), 2))


# ----------------------------------------------------------------------------- the toy problem
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


def toy_report(repeats: int, seed: int) -> dict[str, Any]:
    """The search's own cost and quality on the toy problem (the figures this benchmark always reported)."""
    accuracy, latency, low, high, step, w_lat = make_problem(seed)
    lat_min, lat_max = float(latency(low[None])[0]), float(latency(high[None])[0])
    budgets = list(np.round(np.linspace(lat_min, lat_max, 8)[1:-1], 2))  # 6 budgets strictly inside the range
    single_budget = budgets[2]

    def constraints(budget: float) -> list[Constraint]:
        return [Constraint("latency_ms", latency, budget, alpha=10.0, w=2.0)]

    def one() -> object:
        return evolutionary_search(accuracy, constraints(single_budget), low, high, step, seed=seed)

    one()  # warm-up (imports, first allocations)
    single_s, single = timed(one, repeats)

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
    evolutionary_search(clock(accuracy), [Constraint("latency_ms", clock(latency), single_budget)], low, high, step, seed=seed)
    total = time.perf_counter() - t0
    predictor_share = spent["s"] / total

    frontier_s, frontier = timed(lambda: search_frontier(accuracy, constraints, budgets, low, high, step, seed=seed), max(1, repeats // 2))

    # quality: slack, one-step improvability, random search with as many evaluations
    rng = np.random.default_rng(seed + 1)
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
    return {
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
    }


# ----------------------------------------------------------------------------- the real predictors
class _Timed:
    """A predictor whose ``predict`` calls are timed, and their inputs kept (the search's batches)."""

    def __init__(self, predictor: Any) -> None:
        self.predictor, self.seconds, self.batches = predictor, 0.0, []

    def predict(self, X: np.ndarray) -> Any:
        start = time.perf_counter()
        out = self.predictor.predict(X)
        self.seconds += time.perf_counter() - start
        self.batches.append(np.array(X))
        return out


def _user_search(kind: str, lut: LutLatencyModel, space: Any, accuracy: Any, budgets: list[float],
                 seed: int) -> tuple[dict[str, Any], _Timed]:
    """``optimize --lut LUT --space SPACE --interpolate --accuracy FILE --latency BUDGETS``'s search, timed."""
    from optimizer.search.frontier import search_budgets

    predictor = (LegacyLatencyPredictor if kind == "legacy" else LatencyPredictor)(lut, space, interpolate=True)
    latency, timed_accuracy = _Timed(predictor), _Timed(accuracy)
    start = time.perf_counter()
    choices = search_budgets(space, latency, timed_accuracy, budgets, seed=seed)
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "latency_prediction_s": latency.seconds,
        "accuracy_prediction_s": timed_accuracy.seconds,
        "choices": [{"budget_ms": c.budget_ms, "accuracy": c.accuracy, "latency_ms": c.latency_ms,
                     "genes": [int(v) for v in c.genes], "macs": c.macs, "latency_interpolated": c.interpolated,
                     "best_baseline": c.best_baseline, "best_baseline_accuracy": c.best_baseline_accuracy}
                    for c in choices],
        "interpolated_units": len(latency.predictor.interpolated_keys),
    }, latency


def _shares(run: dict[str, Any]) -> dict[str, float]:
    wall = run["wall_s"]
    latency, accuracy = run["latency_prediction_s"] / wall, run["accuracy_prediction_s"] / wall
    return {"latency_prediction": latency, "accuracy_prediction": accuracy, "search": 1.0 - latency - accuracy}


def _alternately(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each function, run in turn (order reversed every other round, so drift hits both alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def real_report(repeats: int, seed: int) -> dict[str, Any]:
    from optimizer.accuracy.builders import load_predictor
    from optimizer.search.defaults import default_budgets, shipped_predictor_path
    from optimizer.spaces import get_space

    space = get_space(SPACE)
    lut = LutLatencyModel.from_file(LUT)
    accuracy_path = shipped_predictor_path(space.name)
    accuracy = load_predictor(accuracy_path, space, seed=seed)
    budgets = default_budgets(space, LatencyPredictor(lut, space, interpolate=True), seed=seed,
                              quantiles=FRONTIER_QUANTILES)
    budget = budgets[2]

    # One budget: legacy and current alternately, each from a fresh predictor.
    runs: dict[str, list[dict[str, Any]]] = {"legacy": [], "current": []}
    warm: dict[str, _Timed] = {}
    for r in range(repeats):
        for kind in (("legacy", "current") if r % 2 == 0 else ("current", "legacy")):
            run, warm[kind] = _user_search(kind, lut, space, accuracy, [budget], seed)
            runs[kind].append(run)
    wall = {kind: float(np.median([run["wall_s"] for run in rs])) for kind, rs in runs.items()}
    identical = all(run["choices"] == runs["current"][0]["choices"] for rs in runs.values() for run in rs)

    # predict() alone, units already looked up: the search's own batches of 84, and 100,000 of its architectures.
    batches = [b for b in warm["current"].batches if len(b) == 84]
    pool = np.unique(np.vstack(batches), axis=0)
    many = pool[np.random.default_rng(seed).integers(0, len(pool), 100_000)]
    predictors = {kind: timed.predictor for kind, timed in warm.items()}
    for predictor in predictors.values():
        predictor.predict(many)  # any unit of the pool not looked up yet
    same = np.array_equal(predictors["legacy"].predict(many).latency_ms, predictors["current"].predict(many).latency_ms)
    per_batch = _alternately({k: (lambda p=p: [p.predict(b) for b in batches]) for k, p in predictors.items()}, 4)
    per_batch = {k: float(np.median(v)) / len(batches) for k, v in per_batch.items()}
    per_many = _alternately({k: (lambda p=p: p.predict(many)) for k, p in predictors.items()}, 4)
    per_many = {k: float(np.median(v)) for k, v in per_many.items()}

    # The 6-budget frontier, with each predictor (once each: legacy's takes a while).
    frontier = {}
    for kind in ("current", "legacy"):
        frontier[kind], _ = _user_search(kind, lut, space, accuracy, budgets, seed)

    return {
        "space": space.name,
        "lut": str(LUT.relative_to(ROOT)),
        "lut_units": len(lut.median_us),
        "accuracy_predictor": str(accuracy_path.relative_to(ROOT)),
        "interpolate": True,
        "network_correction": None,
        "seed": seed,
        "budgets_ms": budgets,
        "budget_quantiles": list(FRONTIER_QUANTILES),
        "one_budget": {
            "budget_ms": budget,
            "repeats": repeats,
            "wall_s": {kind: [run["wall_s"] for run in rs] for kind, rs in runs.items()},
            "median_wall_s": wall,
            "legacy_over_current": wall["legacy"] / wall["current"],
            "shares": {kind: _shares(rs[0]) for kind, rs in runs.items()},
            "seconds_first_run": {kind: {k: rs[0][k] for k in ("wall_s", "latency_prediction_s", "accuracy_prediction_s")}
                                  for kind, rs in runs.items()},
            "interpolated_units": runs["current"][0]["interpolated_units"],
            "choice": runs["current"][0]["choices"][0],
            "identical_results": identical,
            "goal_ratio": GOAL_RATIO,
            "meets_goal": bool(wall["legacy"] / wall["current"] >= GOAL_RATIO),
        },
        "predict_alone": {
            "batch_84_ms": {k: v * 1000 for k, v in per_batch.items()},
            "batch_84_legacy_over_current": per_batch["legacy"] / per_batch["current"],
            "batches": len(batches),
            "batch_100000_s": per_many,
            "batch_100000_legacy_over_current": per_many["legacy"] / per_many["current"],
            "identical_latencies": bool(same),
        },
        "frontier": {
            "wall_s": {kind: f["wall_s"] for kind, f in frontier.items()},
            "legacy_over_current": frontier["legacy"]["wall_s"] / frontier["current"]["wall_s"],
            "shares": {kind: _shares(f) for kind, f in frontier.items()},
            "identical_results": frontier["legacy"]["choices"] == frontier["current"]["choices"],
            "choices": frontier["current"]["choices"],
        },
    }


def _print(toy: dict[str, Any], real: dict[str, Any], repeats: int) -> None:
    print(f"toy problem: one search (96 × 100 generations, {toy['evaluations_per_search']} evaluations): "
          f"median {toy['single_search_median_s']*1000:.1f} ms over {repeats} (goal < {GOAL_S:.0f} s; "
          f"predictors {toy['predictor_share_of_search']:.0%} of it)")
    print(f"  {toy['frontier_budgets']}-budget frontier: median {toy['frontier_median_s']*1000:.1f} ms")
    for b in toy["frontier"]:
        rand = "none feasible" if b["random_search_best_accuracy"] is None else f"{b['random_search_best_accuracy']:.3f}"
        print(f"  budget {b['budget_ms']:7.2f} ms: accuracy {b['best_accuracy']:.3f} at {b['latency_ms']:.2f} ms "
              f"(slack {b['slack_ms']:.2f} ms, {b['genes_raisable_one_step']} genes raisable; random search {rand})")
    one, alone, front = real["one_budget"], real["predict_alone"], real["frontier"]
    print(f"real predictors: {real['space']}, {real['lut']} ({real['lut_units']} units, --interpolate), {real['accuracy_predictor']}")
    for kind in ("legacy", "current"):
        s = one["shares"][kind]
        print(f"  one budget ({one['budget_ms']:g} ms), {kind:7s} latency predictor: median {one['median_wall_s'][kind]:.3f} s "
              f"(latency {s['latency_prediction']:.0%}, accuracy {s['accuracy_prediction']:.0%}, search {s['search']:.0%})")
    print(f"  legacy / current: {one['legacy_over_current']:.1f}x (goal ≥ {GOAL_RATIO:g}x); identical results: {one['identical_results']}")
    print(f"  predict() alone, units looked up: batch 84 {alone['batch_84_ms']['legacy']:.3f} ms → "
          f"{alone['batch_84_ms']['current']:.3f} ms ({alone['batch_84_legacy_over_current']:.1f}x); "
          f"100,000 {alone['batch_100000_s']['legacy']:.3f} s → {alone['batch_100000_s']['current']:.3f} s "
          f"({alone['batch_100000_legacy_over_current']:.1f}x); identical: {alone['identical_latencies']}")
    print(f"  {len(front['choices'])}-budget frontier: {front['wall_s']['current']:.2f} s (legacy {front['wall_s']['legacy']:.2f} s, "
          f"{front['legacy_over_current']:.1f}x; identical results: {front['identical_results']})")
    for c in front["choices"]:
        print(f"    budget {c['budget_ms']:5.3g} ms: accuracy {c['accuracy']:.4f} at {c['latency_ms']:.3f} ms, "
              f"{c['macs'] / 1e6:.0f} MMACs (best baseline {c['best_baseline']}: {c['best_baseline_accuracy']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="toy searches timed; real one-budget searches per predictor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    toy = toy_report(args.repeats, args.seed)
    real = real_report(args.repeats, args.seed)
    report = {
        **toy,
        "real_predictors": real,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "processor": platform.processor() or platform.machine()},
    }
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"  # strict JSON
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "ees_speed.json").write_text(text)
    if args.json:
        sys.stdout.write(text)
    else:
        _print(toy, real, args.repeats)
    return 0


# ----------------------------------------------------------------------------- the predictor before issue 17
class LegacyLatencyPredictor:
    """The latency predictor as it was before issue 17 (slot arithmetic and packed keys per batch), verbatim,
    for the before/after figures of one run (never for results: optimizer.latency.lut_model is the library)."""

    def __init__(self, lut: LutLatencyModel, space: Any, interpolate: bool = False) -> None:
        self.lut, self.space, self.interpolate = lut, space, interpolate
        # One lookup table per slot of the space: a unit's LUT entry is found once, then by array indexing.
        # The packed-key lookup of before issue 17 (moved, unchanged, into the library), one unit at a time.
        self._tables = [PackedRowTable(_legacy_slot(slot), lambda signatures: [self._unit_entry(s) for s in signatures])
                        for slot in space.slots]
        self._neighbours: dict[tuple, list[tuple[float, float]]] | None = None
        self.interpolated_keys: set[str] = set()

    def _unit_entry(self, signature: OpSignature) -> tuple[float, bool, int]:
        """A unit's median (µs, NaN when missing), whether it was interpolated, and its output elements."""
        return (*self._unit_us(signature), math.prod(signature.output_shape))

    def _unit_us(self, signature: OpSignature) -> tuple[float, bool]:
        value = self.lut.median_us.get(signature.key)
        if value is not None:
            return value, False
        if not self.interpolate:
            return float("nan"), False
        return self._interpolated_us(signature), True

    def _interpolated_us(self, signature: OpSignature) -> float:
        if self._neighbours is None:
            from harness.signature import IDENTITY, parse_signature

            self._neighbours = {}
            for key, median in self.lut.median_us.items():
                other = parse_signature(key)
                if other.kind == IDENTITY:
                    continue
                for family in _legacy_families(other):
                    self._neighbours.setdefault(family, []).append((float(max(other.macs, 1)), median))
        # The closest family that has entries: same kind and shape rules, then same kind, then same dtype.
        candidates = next((self._neighbours[f] for f in _legacy_families(signature) if f in self._neighbours), None)
        if not candidates:
            raise MissingSignatures(f"{self.lut.source}: nothing to interpolate {signature.key} from (no {signature.dtype} entries)")
        macs = float(max(signature.macs, 1))
        nearest_macs, nearest_us = min(candidates, key=lambda c: abs(np.log(c[0]) - np.log(macs)))
        self.interpolated_keys.add(signature.key)
        return nearest_us * macs / nearest_macs

    def predict(self, X: np.ndarray) -> LatencyPrediction:
        X = np.atleast_2d(np.asarray(X))
        overhead = self.lut.overhead_us
        correction = self.lut.correction
        total = np.full(X.shape[0], overhead, dtype=np.float64)
        if correction is not None:  # unit count, boundary elements, and the last unit's output (not a boundary)
            units, elements, last = (np.zeros(X.shape[0]) for _ in range(3))
        flagged = np.zeros(X.shape[0], dtype=bool)
        missing: set[str] = set()
        for slot, table in zip(self.space.slots, self._tables):
            counts = np.asarray(slot.count(X))
            present = counts > 0
            if not present.any():
                continue
            params = np.asarray(slot.params(X))
            index = table.lookup(params)
            unit = table.values[index]
            absent_in_lut = np.isnan(unit) & present
            if absent_in_lut.any():
                for i in np.unique(index[absent_in_lut]):
                    missing.add(table.slot.signature(tuple(int(v) for v in table.rows[i])).key)
                continue
            total += np.where(present, counts * (unit - overhead), 0.0)
            flagged |= table.guessed[index] & present
            if correction is not None:
                output = table.outputs[index]
                units += np.where(present, counts, 0)
                elements += np.where(present, counts * output, 0.0)
                last = np.where(present, output, last)
        if missing:
            keys = sorted(missing)
            device = self.lut.device or "DEVICE"
            raise MissingSignatures(
                f"{self.lut.source}: {len(keys)} signature(s) of {self.space.name} are not in the LUT, e.g. {keys[0]}; "
                f"measure them with: bench sweep --device {device} --plan {self.space.name} --out {self.lut.source} "
                f"(or pass --interpolate to estimate them, flagged)"
            )
        if correction is not None:
            total = correction.apply(total, np.maximum(units - 1, 0), elements - last)
        return LatencyPrediction(total / 1000.0, flagged, tuple(sorted(self.interpolated_keys)))


def _legacy_slot(slot: Any) -> Any:
    """The slot with its signatures built by make_signature for every unit, as before issue 17 (not by
    :class:`optimizer.spaces.stages._Signatures`' faster path), so that the legacy figures are the old ones."""
    make = slot.signature
    if not all(hasattr(make, name) for name in ("kind", "fixed", "fields")):
        return slot
    return dataclasses.replace(slot, signature=lambda row: make_signature(make.kind, **make.fixed, **make.fields(row)))


def _legacy_families(signature: OpSignature) -> tuple[tuple, ...]:
    """Interpolation neighbourhoods, closest first: same kind, dtype, kernel, stride and activation; same kind and dtype; same dtype."""
    return (
        (signature.kind, signature.dtype, signature.kernel, signature.stride, signature.activation),
        (signature.kind, signature.dtype),
        (signature.dtype,),
    )


if __name__ == "__main__":
    sys.exit(main())
