"""The optimizer's main job: the best architecture of a space under latency (and energy) budgets.

Predictors in, architectures out, no device in between (ChamNet §3, Fig. 1):
the latency predictor sums a device's LUT, the accuracy (and energy)
predictors are Gaussian processes, and EES searches the genes with Eq. 3's
penalised fitness.  The search starts from the space's baselines that meet the
budget (ChamNet adapts a base network), so a chosen architecture is never
predicted worse than the best baseline under the same budget.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.atomic import write_text_atomically
from harness.errors import ChameleonError
from optimizer.search.ees import Constraint, SearchResult, evolutionary_search
from optimizer.latency.lut_model import LatencyPredictor, LutLatencyModel


class InfeasibleBudget(ChameleonError):
    """No architecture of the space meets the budget by the predictors."""


class InvalidBudget(ChameleonError):
    """A budget that does not parse."""


_UNITS = {"ms": 1.0, "s": 1000.0, "us": 0.001, "mj": 1.0, "j": 1000.0}


def parse_budgets(text: str, unit: str) -> list[float]:
    """``"20ms"``, ``"4,6,10,15,20,30ms"`` (latency, in ms) or ``"30mJ"`` (energy, in mJ)."""
    match = re.fullmatch(r"\s*([\d.,\s]+?)\s*([a-zA-Z]*)\s*", text)
    if not match:
        raise InvalidBudget(f"budget {text!r}: expected numbers with a unit, e.g. 20{unit} or 4,6,10{unit}")
    numbers, given = match.groups()
    given = (given or unit).lower()
    allowed = ("ms", "s", "us") if unit == "ms" else ("mj", "j")
    if given not in allowed:
        raise InvalidBudget(f"budget {text!r}: unit must be one of {', '.join(allowed)}")
    try:
        values = [float(v) * _UNITS[given] for v in numbers.split(",") if v.strip()]
    except ValueError:
        raise InvalidBudget(f"budget {text!r}: {numbers!r} is not a list of numbers") from None
    if not values or any(v <= 0 for v in values):
        raise InvalidBudget(f"budget {text!r}: budgets must be positive")
    return sorted(values)


@dataclass(frozen=True)
class Choice:
    budget_ms: float
    energy_budget_mj: float | None
    genes: np.ndarray
    accuracy: float
    latency_ms: float
    energy_mj: float | None
    macs: int
    interpolated: bool
    best_baseline: str | None
    best_baseline_accuracy: float | None
    search: SearchResult

    def to_json(self, space: Any) -> dict[str, Any]:
        return {
            "latency_budget_ms": self.budget_ms,
            "energy_budget_mj": self.energy_budget_mj,
            "genes": dict(zip(space.gene_names, map(int, self.genes))),
            "architecture": space.describe(self.genes),
            "predicted_accuracy": self.accuracy,
            "predicted_latency_ms": self.latency_ms,
            "predicted_energy_mj": self.energy_mj,
            "macs": self.macs,
            "latency_interpolated": self.interpolated,
            "best_baseline_within_budget": self.best_baseline,
            "best_baseline_accuracy": self.best_baseline_accuracy,
            "generations": self.search.generations,
            "evaluations": self.search.evaluations,
        }


def search_budgets(space: Any, latency: LatencyPredictor, accuracy: Any, budgets_ms: Sequence[float],
                   energy: Any = None, energy_budget_mj: float | None = None, seed: int = 0,
                   population: int = 96, parents: int = 12, generations: int = 100) -> list[Choice]:
    """One EES run per latency budget (Eq. 3 with α = 10 per ms / per mJ, w = 2)."""
    baselines = space.baselines()
    names = list(baselines)
    base_x = np.array([baselines[n] for n in names])
    base_latency = latency.predict(base_x).latency_ms
    base_accuracy = np.asarray(accuracy.predict(base_x))
    base_energy = np.asarray(energy.predict(base_x)) if energy is not None else None

    def accuracy_fn(X: np.ndarray) -> np.ndarray:
        return np.asarray(accuracy.predict(X), dtype=np.float64)

    def latency_fn(X: np.ndarray) -> np.ndarray:
        return latency.predict(X).latency_ms

    choices: list[Choice] = []
    for index, budget in enumerate(sorted(budgets_ms)):
        constraints = [Constraint("latency_ms", latency_fn, budget)]
        feasible = base_latency <= budget
        if energy is not None and energy_budget_mj is not None:
            constraints.append(Constraint("energy_mj", lambda X: np.asarray(energy.predict(X), dtype=np.float64), energy_budget_mj))
            feasible &= base_energy <= energy_budget_mj
        # Start from the baselines within budget and the choices of the tighter budgets, which fit this one too.
        seeds = [base_x[feasible]] + [c.genes[None] for c in choices]
        initial = np.vstack(seeds) if sum(len(s) for s in seeds) else None
        result = evolutionary_search(accuracy_fn, constraints, space.low, space.high, space.steps, population=population,
                                     parents=parents, generations=generations, seed=seed + index, initial=initial)
        if not result.feasible:
            raise InfeasibleBudget(
                f"no architecture of {space.name} meets {budget:g} ms"
                + (f" and {energy_budget_mj:g} mJ" if energy_budget_mj is not None else "")
                + f" by the predictors (the fastest baseline takes {base_latency.min():.2f} ms)"
            )
        x = result.best_x
        prediction = latency.predict(x[None])
        best = int(np.argmax(np.where(feasible, base_accuracy, -np.inf))) if feasible.any() else None
        choices.append(Choice(
            budget_ms=budget, energy_budget_mj=energy_budget_mj, genes=x, accuracy=float(accuracy_fn(x[None])[0]),
            latency_ms=float(prediction.latency_ms[0]),
            energy_mj=None if energy is None else float(np.asarray(energy.predict(x[None]))[0]),
            macs=int(space.macs(x)), interpolated=bool(prediction.interpolated[0]),
            best_baseline=None if best is None else names[best],
            best_baseline_accuracy=None if best is None else float(base_accuracy[best]), search=result,
        ))
    return choices


def baseline_points(space: Any, latency: LatencyPredictor, accuracy: Any) -> list[dict[str, Any]]:
    baselines = space.baselines()
    X = np.array(list(baselines.values()))
    lat = latency.predict(X).latency_ms
    acc = np.asarray(accuracy.predict(X))
    return [{"name": n, "latency_ms": float(l), "accuracy": float(a)} for n, l, a in zip(baselines, lat, acc)]


def plot_frontier(choices: Sequence[Choice], baselines: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Predicted accuracy against latency: the chosen architectures and the width/resolution baselines (as Fig. 7)."""
    from harness.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    families: dict[str, list[dict[str, Any]]] = {}
    for point in baselines:
        family = point["name"].rsplit("-", 1)[0] if point["name"].count("-") >= 2 else point["name"]
        families.setdefault(family, []).append(point)
    for family, points in sorted(families.items()):
        points = sorted(points, key=lambda p: p["latency_ms"])
        ax.plot([p["latency_ms"] for p in points], [p["accuracy"] for p in points], marker="o", ms=3, lw=0.8, alpha=0.7, label=family)
    ax.plot([c.latency_ms for c in choices], [c.accuracy for c in choices], marker="*", ms=12, lw=2, color="black", label="Chameleon (EES)")
    for c in choices:
        ax.axvline(c.budget_ms, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("predicted latency (ms, from the LUT)")
    ax.set_ylabel("predicted accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def write_result(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(document, indent=2, default=float) + "\n")
    return path


def load_latency(lut_path: Path, space: Any, interpolate: bool, correction: Path | None = None) -> LatencyPredictor:
    """The LUT's latency predictor for ``space``, with a saved :class:`NetworkCorrection` if one is given."""
    from optimizer.latency.lut_model import NetworkCorrection

    fitted = None if correction is None else NetworkCorrection.load(correction)
    return LatencyPredictor(LutLatencyModel.from_file(lut_path, fitted), space, interpolate=interpolate)
