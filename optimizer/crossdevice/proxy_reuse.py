"""Proxy reuse: search on one device, deploy on another, and count what that costs (OneProxy §3).

On the architectures measured on both devices and with a finite accuracy:

- the Pareto set (higher accuracy, lower latency) on the proxy and on the
  target, and how many proxy-Pareto architectures are Pareto-optimal on the
  target too;
- per budget: budgets are quantiles ``q`` of the latency (default 0.1 ... 1.0),
  the proxy budget the ``q``-quantile of the proxy's latencies and the target
  budget the ``q``-quantile of the target's (or target budgets in ms given,
  with ``q`` the share of architectures under them on the target).  Searching
  on the proxy picks the most accurate architecture under the proxy budget.
  Reusing it on the target, the choice is re-checked against the target
  budget: the most accurate proxy-Pareto architecture that fits the target
  budget on the target.  Searching on the target picks the most accurate
  architecture under the target budget.  Reported: the accuracy lost
  (target search minus reuse, >= 0) and the latency lost (the reused
  architecture's target latency minus that of the fastest architecture at
  least as accurate, >= 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from harness.errors import ChameleonError
from optimizer.latency.architecture_tables import LatencyTable

DEFAULT_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class NoAccuracy(ChameleonError):
    """Proxy reuse needs an accuracy column."""


def pareto_mask(latency: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Architectures no other beats on both (lower or equal latency and higher or equal accuracy, one strictly)."""
    latency, accuracy = np.asarray(latency, dtype=float), np.asarray(accuracy, dtype=float)
    order = np.lexsort((-accuracy, latency))  # by latency, the most accurate first among equal latencies
    mask = np.zeros(len(latency), dtype=bool)
    best = -np.inf
    for i in order:
        if accuracy[i] > best:
            mask[i] = True
            best = accuracy[i]
    return mask


def best_under(latency: np.ndarray, accuracy: np.ndarray, budget: float, among: np.ndarray | None = None) -> int | None:
    """Index of the most accurate architecture with latency <= budget (the faster on a tie), or None."""
    fits = latency <= budget
    if among is not None:
        fits &= among
    if not fits.any():
        return None
    candidates = np.flatnonzero(fits)
    order = np.lexsort((latency[candidates], -accuracy[candidates]))
    return int(candidates[order[0]])


@dataclass(frozen=True)
class BudgetOutcome:
    quantile: float
    proxy_budget_ms: float
    target_budget_ms: float
    proxy_choice: str | None  # searched on the proxy under its budget
    target_choice: str | None  # searched on the target directly
    target_accuracy: float | None
    target_latency_ms: float | None
    reused_choice: str | None  # the proxy's Pareto architecture that fits the target budget
    reused_accuracy: float | None
    reused_latency_ms: float | None
    accuracy_lost: float | None
    latency_lost_ms: float | None
    proxy_choice_fits_target: bool | None


@dataclass(frozen=True)
class ReuseReport:
    proxy: str
    target: str
    accuracy_column: str
    rows: int
    proxy_pareto: int
    target_pareto: int
    proxy_pareto_on_target: int  # proxy-Pareto architectures also Pareto-optimal on the target
    budgets: list[BudgetOutcome]

    @property
    def max_accuracy_lost(self) -> float:
        lost = [b.accuracy_lost for b in self.budgets if b.accuracy_lost is not None]
        return max(lost) if lost else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "budgets"},
                "budgets": [asdict(b) for b in self.budgets]}


def proxy_reuse(table: LatencyTable, proxy: str, target: str, *, quantiles: Sequence[float] | None = None,
                target_budgets_ms: Sequence[float] | None = None) -> ReuseReport:
    if table.accuracy is None:
        raise NoAccuracy(f"{table.source or 'table'}: no accuracy column (name it with --accuracy)")
    if proxy == target:
        raise ChameleonError(f"--proxy and --target are the same device ({proxy})")
    keep = table.valid(proxy, target) & np.isfinite(table.accuracy)
    if keep.sum() < 2:
        raise ChameleonError(f"{table.source or 'table'}: {int(keep.sum())} architecture(s) measured on both {proxy} "
                             f"and {target} with an accuracy; proxy reuse needs 2 or more")
    ids = table.arch_ids[keep]
    lp, lt, acc = table.latency(proxy)[keep], table.latency(target)[keep], table.accuracy[keep]
    pareto_p, pareto_t = pareto_mask(lp, acc), pareto_mask(lt, acc)
    if target_budgets_ms is not None:
        budgets_t = np.asarray(target_budgets_ms, dtype=float)
        if (budgets_t <= 0).any() or not np.isfinite(budgets_t).all():
            raise ChameleonError("target budgets must be positive numbers of ms")
        qs = np.array([(lt <= b).mean() for b in budgets_t])
        budgets_p = np.quantile(lp, np.clip(qs, 0, 1))
    else:
        qs = np.asarray(quantiles if quantiles is not None else DEFAULT_QUANTILES, dtype=float)
        if ((qs <= 0) | (qs > 1)).any():
            raise ChameleonError("budget quantiles must be in (0, 1]")
        budgets_p, budgets_t = np.quantile(lp, qs), np.quantile(lt, qs)
    outcomes = []
    for q, bp, bt in zip(qs, budgets_p, budgets_t):
        proxy_pick = best_under(lp, acc, bp)
        target_pick = best_under(lt, acc, bt)
        reused = best_under(lt, acc, bt, among=pareto_p)
        acc_lost = lat_lost = None
        if target_pick is not None and reused is not None:
            acc_lost = float(acc[target_pick] - acc[reused])
            as_good = acc >= acc[reused]
            lat_lost = float(lt[reused] - lt[as_good].min())
        outcomes.append(BudgetOutcome(
            float(q), float(bp), float(bt),
            None if proxy_pick is None else str(ids[proxy_pick]),
            None if target_pick is None else str(ids[target_pick]),
            None if target_pick is None else float(acc[target_pick]),
            None if target_pick is None else float(lt[target_pick]),
            None if reused is None else str(ids[reused]),
            None if reused is None else float(acc[reused]),
            None if reused is None else float(lt[reused]),
            acc_lost, lat_lost,
            None if proxy_pick is None else bool(lt[proxy_pick] <= bt)))
    return ReuseReport(proxy, target, table.accuracy_column or "accuracy", int(keep.sum()), int(pareto_p.sum()),
                       int(pareto_t.sum()), int((pareto_p & pareto_t).sum()), outcomes)
