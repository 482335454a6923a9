"""Efficient evolutionary search (EES), ChamNet §3.1: an adaptive genetic algorithm over architecture genes.

The search maximises the fitness of ChamNet Eq. 3,

    R(x) = A(x) − Σ_c [α_c · H(F_c(x) − thres_c)]^w_c ,

with the accuracy ``A`` and every resource ``F_c`` (latency in ms, energy in mJ,
…) given by cheap vectorised predictors.

Reading of Eq. 3's ``H``
------------------------
The paper calls ``H`` "the Heaviside step function".  Taken literally the
penalty would be the constant ``α^w`` (= 100 with α = 10, w = 2) for *any*
violation, however small or large: it would carry no pull back toward the
budget and would not depend on α's unit ("10 per ms"), which the paper states.
We read ``H(z)`` as the ramp ``H(z)·z = max(0, z)``, so the penalty is

    [α · max(0, F(x) − thres)]^w

— zero within budget, growing quadratically (w = 2) with the overshoot, and
α = 10/ms (or 10/mJ) sets the scale: 0.1 ms over costs 1 unit of accuracy.
Because a slight overshoot costs little, an infeasible point can out-score
every feasible one; the search therefore tracks the best *feasible* individual
it has ever evaluated separately from the population's fittest and returns it.

The genetic algorithm
---------------------
* Genes are points of per-gene grids ``low, low+step, …, ≤ high``; internally
  each gene is its grid index, so every child lies on the grid by construction
  (``initial`` individuals are snapped to the nearest grid point and clipped).
* ``generations`` populations are evaluated in all (the initial one included),
  each with a single call of ``accuracy`` and of every constraint's
  ``predict`` on the new individuals (the kept parents are not re-evaluated).
* Truncation selection with elitism: the ``parents`` fittest individuals of a
  population survive unchanged into the next one, so the population's best
  fitness never decreases; the other ``population − parents`` places are
  filled with children of those parents.
* Each child comes from a pair of distinct parents drawn uniformly from the
  pool.  With probability ``pc`` it is the pair's crossover (uniform: each gene
  from either parent with probability ½; or one-point), otherwise a copy of its
  first parent.  Then every gene mutates independently with probability
  ``pm``: a random walk of ``±s`` grid steps, ``s`` geometric with mean 2
  (1 step half the time), reflected at the grid's ends
  (``mutation="resample"`` draws the gene uniformly from its grid instead).
* ``pc`` and ``pm`` adapt to each pair / individual after Srinivas & Patnaik
  (1994), see :func:`adaptive_rates`: ``f'`` is the larger fitness of the pair,
  ``f`` the fitness of the child's first parent (the individual it is a copy
  of, before crossover — the child's own fitness is not known yet).
  ``f_max`` and ``f_avg`` are taken over the breeding pool (the selected
  parents; ``adapt_over="population"`` uses the whole evaluated population
  instead).  With truncation selection only the pool breeds, and a population
  containing far-infeasible individuals has an ``f_avg`` dominated by their
  penalties, which would drive every pool member's pc and pm to ~0.
  When ``f_max = f_avg`` (a converged pool) the formulas are 0/0; we then use
  ``k3`` and ``k4``, the rates for below-average individuals, to disrupt it.
* Deduplication: a child identical to a survivor or an earlier child gets
  one forced random-walk mutation (repeated a few times if needed).  This is
  also what keeps the pool's best from being wasted as a clone, since its rates
  are pc = pm = 0 (Srinivas & Patnaik protect it that way; here elitism
  already does).
* Everything random comes from ``numpy.random.default_rng(seed)``: the same
  seed (and deterministic predictors) gives an identical result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Constraint",
    "SearchResult",
    "adaptive_rates",
    "evolutionary_search",
    "fitness",
    "penalty",
    "search_frontier",
]

_DEDUP_ROUNDS = 4


@dataclass(frozen=True)
class Constraint:
    """A resource budget: ``predict(X [N, g]) -> [N]`` (ms, mJ, …) must stay ≤ ``threshold``."""

    name: str
    predict: Callable[[np.ndarray], np.ndarray]
    threshold: float
    alpha: float = 10.0  # per unit of the resource (10/ms, 10/mJ in ChamNet)
    w: float = 2.0


@dataclass(frozen=True, eq=False)
class SearchResult:
    best_x: np.ndarray  # gene values [g]
    best_fitness: float
    best_accuracy: float
    resources: dict[str, float]  # the best's predicted resources, by constraint name
    feasible: bool  # every constraint met; False: no feasible individual was ever seen
    history: list[dict] = field(repr=False)  # one dict per generation, see evolutionary_search
    generations: int
    evaluations: int  # individuals evaluated (predictor rows)


# --------------------------------------------------------------------------- fitness


def penalty(resource: np.ndarray, constraint: Constraint) -> np.ndarray:
    """``[α · max(0, F − thres)]^w`` per individual (the ramp reading of Eq. 3's H)."""
    over = np.maximum(np.asarray(resource, dtype=float) - constraint.threshold, 0.0)
    return (constraint.alpha * over) ** constraint.w


def fitness(accuracy: np.ndarray, resources: dict[str, np.ndarray], constraints: Sequence[Constraint]) -> np.ndarray:
    """Eq. 3: ``R = A − Σ_c [α_c · max(0, F_c − thres_c)]^w_c`` (vectorised over individuals)."""
    r = np.array(accuracy, dtype=float, copy=True)
    for c in constraints:
        r -= penalty(resources[c.name], c)
    return r


# --------------------------------------------------------------------------- adaptation


def adaptive_rates(
    f_pair: np.ndarray | float,
    f: np.ndarray | float,
    f_max: float,
    f_avg: float,
    k1: float = 1.0,
    k2: float = 0.5,
    k3: float = 1.0,
    k4: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Srinivas & Patnaik's adaptive crossover and mutation probabilities.

    ``pc = k1 (f_max − f') / (f_max − f_avg)`` if ``f' ≥ f_avg`` else ``k3``;
    ``pm = k2 (f_max − f) / (f_max − f_avg)`` if ``f ≥ f_avg`` else ``k4``.
    ``f'`` (``f_pair``) is the larger fitness of the pair to be crossed, ``f``
    that of the individual to be mutated.  Non-finite ``f``/``f'`` count as
    below average; ``f_max = f_avg`` (0/0) gives ``k3``/``k4``.  Results are
    clipped to [0, 1].
    """
    f_pair = np.asarray(f_pair, dtype=float)
    f = np.asarray(f, dtype=float)
    spread = float(f_max) - float(f_avg)
    if not (math.isfinite(spread) and spread > 1e-12 * max(1.0, abs(float(f_max)))):
        return np.full(f_pair.shape, float(k3)).clip(0.0, 1.0), np.full(f.shape, float(k4)).clip(0.0, 1.0)
    with np.errstate(invalid="ignore"):
        above_pair = np.isfinite(f_pair) & (f_pair >= f_avg)
        above = np.isfinite(f) & (f >= f_avg)
        pc = np.where(above_pair, k1 * (f_max - np.where(above_pair, f_pair, f_max)) / spread, k3)
        pm = np.where(above, k2 * (f_max - np.where(above, f, f_max)) / spread, k4)
    return pc.clip(0.0, 1.0), pm.clip(0.0, 1.0)


# --------------------------------------------------------------------------- search


class _Grid:
    """Per-gene grids ``low + step·i``, ``i = 0 … n−1`` with ``low + step·(n−1) ≤ high``."""

    def __init__(self, low, high, step) -> None:
        low, high, step = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a)) for a in (low, high, step)))
        if low.ndim != 1:
            raise ValueError("low, high and step must be scalars or 1-D arrays (one entry per gene)")
        if np.any(step <= 0):
            raise ValueError("step must be positive")
        if np.any(high < low):
            raise ValueError("high must be ≥ low")
        integral = all(np.issubdtype(a.dtype, np.integer) or np.all(a == np.round(a)) for a in (low, step))
        self.dtype = np.int64 if integral else np.float64
        self.low = low.astype(self.dtype)
        self.step = step.astype(self.dtype)
        # the small tolerance keeps float grids whose last point is `high` from losing it to rounding
        self.n = (np.floor((high - low) / step + 1e-9).astype(np.int64) + 1)
        self.genes = int(low.size)

    def values(self, idx: np.ndarray) -> np.ndarray:
        return self.low + idx * self.step

    def snap(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.genes:
            raise ValueError(f"initial must have shape [k, {self.genes}]")
        idx = np.rint((x - self.low) / self.step).astype(np.int64)
        return np.clip(idx, 0, self.n - 1)


def _walk(idx: np.ndarray, mask: np.ndarray, n: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random walk of ±s grid steps (s ~ Geometric(½), mean 2) on the masked genes, reflected at the ends."""
    rows, cols = np.nonzero(mask)
    out = idx.copy()
    if rows.size == 0:
        return out
    steps = rng.geometric(0.5, size=rows.size) * (2 * rng.integers(0, 2, size=rows.size) - 1)
    here, top = idx[rows, cols], n[cols] - 1
    moved = here + steps
    moved = np.where((moved < 0) | (moved > top), here - steps, moved)  # reflect: go the other way
    out[rows, cols] = np.clip(moved, 0, top)
    return out


def _resample(idx: np.ndarray, mask: np.ndarray, n: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws the masked genes uniformly from their grids."""
    rows, cols = np.nonzero(mask)
    out = idx.copy()
    out[rows, cols] = rng.integers(0, n[cols])
    return out


def _dedup(idx: np.ndarray, fixed: int, n: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> int:
    """Forces one random-walk mutation on rows ≥ ``fixed`` that repeat an earlier row; in place; returns how many."""
    mutable = np.flatnonzero(n > 1)
    if mutable.size == 0:
        return 0
    forced = 0
    for _ in range(_DEDUP_ROUNDS):
        # a hash of each row; a collision only costs an unneeded mutation
        keys = idx.astype(np.uint64) @ weights
        _, first = np.unique(keys, return_index=True)
        dup = np.ones(len(idx), dtype=bool)
        dup[first] = False
        dup[:fixed] = False
        rows = np.flatnonzero(dup)
        if rows.size == 0:
            break
        forced += rows.size
        genes = mutable[rng.integers(0, mutable.size, size=rows.size)]
        mask = np.zeros((rows.size, idx.shape[1]), dtype=bool)
        mask[np.arange(rows.size), genes] = True
        idx[rows] = _walk(idx[rows], mask, n, rng)
    return forced


def evolutionary_search(
    accuracy: Callable[[np.ndarray], np.ndarray],
    constraints: Sequence[Constraint],
    low,
    high,
    step,
    *,
    population: int = 96,
    parents: int = 12,
    generations: int = 100,
    seed: int | np.random.SeedSequence = 0,
    initial: np.ndarray | None = None,
    k1: float = 1.0,
    k2: float = 0.5,
    k3: float = 1.0,
    k4: float = 0.5,
    crossover: str = "uniform",
    mutation: str = "walk",
    adapt_over: str = "parents",
) -> SearchResult:
    """Maximise Eq. 3's fitness over the gene grids; returns the best feasible individual ever evaluated.

    ``accuracy(X)`` and each ``constraint.predict(X)`` take gene values
    ``X [N, g]`` and return ``[N]``.  ``history[t]`` describes generation ``t``
    (``t = 0`` is the initial population): ``best_fitness`` / ``mean_fitness``
    of its population (non-finite fitness left out of the mean),
    ``feasible_share``, ``best_feasible_accuracy`` (best so far, None before
    any), and ``pc`` / ``pm``: the mean crossover and per-gene mutation
    probabilities used to breed it (None for generation 0), with ``forced``:
    the children mutated by deduplication.  If no feasible individual is ever
    seen, the result is the fittest one with ``feasible=False``.
    """
    constraints = list(constraints)
    names = [c.name for c in constraints]
    if len(set(names)) != len(names):
        raise ValueError(f"constraint names must be unique: {names}")
    if not 2 <= parents < population:
        raise ValueError("need 2 ≤ parents < population")
    if generations < 1:
        raise ValueError("generations must be ≥ 1")
    if crossover not in ("uniform", "one_point"):
        raise ValueError("crossover must be 'uniform' or 'one_point'")
    if mutation not in ("walk", "resample"):
        raise ValueError("mutation must be 'walk' or 'resample'")
    if adapt_over not in ("parents", "population"):
        raise ValueError("adapt_over must be 'parents' or 'population'")
    mutate = _walk if mutation == "walk" else _resample

    grid = _Grid(low, high, step)
    g, n = grid.genes, grid.n
    rng = np.random.default_rng(seed)
    weights = rng.integers(1, np.iinfo(np.int64).max, size=g, dtype=np.int64).astype(np.uint64) | np.uint64(1)
    thresholds = np.array([c.threshold for c in constraints], dtype=float)

    def evaluate(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x = grid.values(idx)
        m = len(idx)
        acc = np.asarray(accuracy(x), dtype=float).reshape(-1)
        if acc.shape != (m,):
            raise ValueError(f"accuracy returned {acc.size} values for {m} individuals")
        res = np.empty((len(constraints), m))
        for i, c in enumerate(constraints):
            r = np.asarray(c.predict(x), dtype=float).reshape(-1)
            if r.shape != (m,):
                raise ValueError(f"constraint {c.name!r} returned {r.size} values for {m} individuals")
            res[i] = r
        fit = fitness(acc, dict(zip(names, res)), constraints)
        fit[np.isnan(fit)] = -np.inf
        feasible = np.all(res <= thresholds[:, None], axis=0) & np.isfinite(fit)
        return fit, acc, res, feasible

    # initial population: given individuals first, the rest uniform on the grid
    pop = rng.integers(0, n, size=(population, g))
    given = 0
    if initial is not None:
        snapped = grid.snap(initial)
        if len(snapped) > population:
            raise ValueError(f"initial has {len(snapped)} individuals, more than the population ({population})")
        given = len(snapped)
        pop[:given] = snapped
    forced0 = _dedup(pop, given, n, weights, rng)

    fit, acc, res, feas = evaluate(pop)
    evaluations = population
    best = {"fit": -np.inf, "idx": None, "acc": np.nan, "res": None}  # fittest overall
    best_feas = {"fit": -np.inf, "idx": None, "acc": np.nan, "res": None}

    def track(idx, fit, acc, res, feas) -> None:
        i = int(np.argmax(fit))
        if best["idx"] is None or fit[i] > best["fit"]:
            best.update(fit=float(fit[i]), idx=idx[i].copy(), acc=float(acc[i]), res=res[:, i].copy())
        if feas.any():
            j = int(np.argmax(np.where(feas, fit, -np.inf)))
            if best_feas["idx"] is None or fit[j] > best_feas["fit"]:
                best_feas.update(fit=float(fit[j]), idx=idx[j].copy(), acc=float(acc[j]), res=res[:, j].copy())

    history: list[dict] = []

    def record(t: int, fit, feas, pc, pm, forced) -> None:
        finite = fit[np.isfinite(fit)]
        history.append(
            {
                "generation": t,
                "best_fitness": float(fit.max()),
                "mean_fitness": float(finite.mean()) if finite.size else float("-inf"),
                "feasible_share": float(feas.mean()),
                "best_feasible_accuracy": None if best_feas["idx"] is None else best_feas["acc"],
                "pc": pc,
                "pm": pm,
                "forced": forced,
            }
        )

    track(pop, fit, acc, res, feas)
    record(0, fit, feas, None, None, forced0)

    children = population - parents
    genes = np.arange(g)
    for t in range(1, generations):
        # truncation selection (stable: ties keep their order, so runs are reproducible)
        order = np.argsort(-fit, kind="stable")[:parents]
        pool, pool_fit = pop[order], fit[order]
        basis = pool_fit if adapt_over == "parents" else fit
        finite = basis[np.isfinite(basis)]
        f_max = float(finite.max()) if finite.size else 0.0
        f_avg = float(finite.mean()) if finite.size else 0.0

        a = rng.integers(0, parents, size=children)
        b = (a + rng.integers(1, parents, size=children)) % parents  # a distinct partner
        pc, pm = adaptive_rates(np.maximum(pool_fit[a], pool_fit[b]), pool_fit[a], f_max, f_avg, k1, k2, k3, k4)

        kids = pool[a].copy()
        cross = rng.random(children) < pc
        if crossover == "uniform":
            take_b = rng.random((children, g)) < 0.5
        else:
            cut = rng.integers(1, g, size=children) if g > 1 else np.ones(children, dtype=np.int64)
            take_b = genes[None, :] >= cut[:, None]
        take_b &= cross[:, None]
        kids = np.where(take_b, pool[b], kids)
        kids = mutate(kids, rng.random((children, g)) < pm[:, None], n, rng)

        pop = np.concatenate([pool, kids])
        forced = _dedup(pop, parents, n, weights, rng)
        kfit, kacc, kres, kfeas = evaluate(pop[parents:])
        evaluations += children
        track(pop[parents:], kfit, kacc, kres, kfeas)
        fit = np.concatenate([pool_fit, kfit])
        feas = np.concatenate([feas[order], kfeas])
        record(t, fit, feas, float(pc.mean()), float(pm.mean()), forced)

    winner, ok = (best_feas, True) if best_feas["idx"] is not None else (best, False)
    return SearchResult(
        best_x=grid.values(winner["idx"]),
        best_fitness=winner["fit"],
        best_accuracy=winner["acc"],
        resources={name: float(v) for name, v in zip(names, winner["res"])},
        feasible=ok,
        history=history,
        generations=generations,
        evaluations=evaluations,
    )


def search_frontier(
    accuracy: Callable[[np.ndarray], np.ndarray],
    make_constraints: Callable[[float], list[Constraint]],
    budgets: Sequence[float],
    low,
    high,
    step,
    *,
    seed: int = 0,
    **kwargs,
) -> list[SearchResult]:
    """One :func:`evolutionary_search` per budget, in order; budget ``i`` is seeded with
    ``SeedSequence(seed).spawn(len(budgets))[i]``, so the frontier is reproducible
    and its searches independent.  Other keywords go to every search."""
    seeds = np.random.SeedSequence(seed).spawn(len(budgets))
    return [
        evolutionary_search(accuracy, make_constraints(float(budget)), low, high, step, seed=s, **kwargs)
        for budget, s in zip(budgets, seeds)
    ]
