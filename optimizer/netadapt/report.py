"""What a NetAdapt run's result says: the adapted networks against the width-multiplier frontier
(:func:`compare_with_baselines`) and the frontier plot (:func:`plot_netadapt`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.netadapt.records import Final, NetAdaptResult


def compare_with_baselines(finals: Sequence[Final], baselines: Sequence[Final]) -> list[dict[str, Any]]:
    """Each adapted network against the width-multiplier frontier: accuracy at equal latency, latency at equal accuracy.

    Latency is the measured one where there is one (else the estimate).  The
    baselines' accuracy at the adapted network's latency is interpolated
    linearly between the two baselines around it; the baselines' latency at
    the adapted network's accuracy, between the two around it on their
    best-so-far accuracy curve.  Outside the baselines' range: None.
    """
    def latency(r: Final) -> float:
        return r.measured_ms if r.measured_ms is not None else r.estimate

    points = sorted((latency(b), b.test_accuracy) for b in baselines)
    out = []
    for f in finals:
        lat, acc = latency(f), f.test_accuracy
        row: dict[str, Any] = {"final": f.name, "budget": f.budget, "latency": lat, "accuracy": acc,
                               "baseline_accuracy_at_latency": None, "accuracy_gain": None,
                               "baseline_latency_at_accuracy": None, "speedup": None}
        if len(points) >= 2 and points[0][0] <= lat <= points[-1][0]:
            base_acc = float(np.interp(lat, [p[0] for p in points], [p[1] for p in points]))
            row["baseline_accuracy_at_latency"] = base_acc
            row["accuracy_gain"] = acc - base_acc
        # latency the multipliers need to reach this accuracy (monotone envelope: best accuracy so far)
        envelope = []
        best = -1.0
        for lat_b, acc_b in points:
            if acc_b > best:
                envelope.append((lat_b, acc_b))
                best = acc_b
        if len(envelope) >= 2 and envelope[0][1] <= acc <= envelope[-1][1]:
            base_lat = float(np.interp(acc, [p[1] for p in envelope], [p[0] for p in envelope]))
            row["baseline_latency_at_accuracy"] = base_lat
            row["speedup"] = base_lat / lat
        elif envelope and acc > envelope[-1][1]:
            row["speedup"] = None  # more accurate than every baseline: no equal-accuracy baseline exists
            row["more_accurate_than_all_baselines"] = True
        out.append(row)
    return out


def plot_netadapt(result: NetAdaptResult, path: Path) -> Path:
    """The run's frontier: every iteration (short-term), the long-term fine-tuned finals and the multipliers."""
    from harness.plots import _pyplot, save_figure

    fig, ax = _pyplot().subplots(figsize=(8, 5.2))
    measured = any(i.measured_ms is not None for i in result.iterations)
    label = f"measured latency ({result.unit})" if measured else f"estimated {result.resource} ({result.unit})"

    def x(record: Any) -> float:
        return record.measured_ms if record.measured_ms is not None else record.estimate

    its = result.iterations
    ax.plot([x(i) for i in its], [i.test_accuracy for i in its], "o-", color="tab:blue", alpha=0.45, markersize=3,
            label="NetAdapt iterations (short-term fine-tuned)")
    if result.finals:
        ax.plot([x(f) for f in result.finals], [f.test_accuracy for f in result.finals], "*", color="tab:blue",
                markersize=12, label="NetAdapt, long-term fine-tuned")
    if result.baselines:
        ax.plot([x(b) for b in result.baselines], [b.test_accuracy for b in result.baselines], "s--", color="tab:orange",
                label="width multipliers (trained from scratch)")
        for b in result.baselines:
            ax.annotate(f"{b.multiplier:g}x", (x(b), b.test_accuracy), textcoords="offset points", xytext=(4, -10),
                        fontsize=8, color="tab:orange")
    for budget in result.budgets:
        ax.axvline(budget, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(label)
    ax.set_ylabel("accuracy (held-out split)")
    ax.set_title(f"NetAdapt on {result.device or result.resource}: {len(its) - 1} iterations")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)
