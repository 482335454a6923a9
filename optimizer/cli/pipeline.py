"""`optimize pipeline`: the main job on one device (:func:`optimizer.pipeline.run_pipeline`).

Sweep the device, build the accuracy predictor from real trainings, search under the budget,
export the winners and measure them again; this module maps the flags to a
:class:`optimizer.pipeline.PipelineConfig` and prints the outcome.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.options import SEED_MAX
from harness.cli.common import emit_json, sigterm_as_ctrl_c, stderr, stdout
from harness.errors import ChameleonError


def pipeline(
    out: Path = typer.Option(Path("chameleon-run"), "--out", "-o", help="Output folder (every step is cached there; re-run to resume)."),
    device: str = typer.Option("xeon", "--device", "-d", help="Device profile to measure on (a local one: the exports are timed end to end)."),
    space_name: str = typer.Option("chamnet-mobile-mini", "--space", help="Search space (the reduced chamnet-mobile-mini by default)."),
    data: str = typer.Option("digits", "--data", help="Data set: 'digits', 'mnist-5k', 'glyphs' (built in, offline) or an ImageFolder-style folder."),
    latency: Optional[str] = typer.Option(None, "--latency", help="Latency budget, e.g. 0.2ms (default: the predicted latency of the uniform half-width 48 px baseline)."),
    trainings: int = typer.Option(48, "--trainings", min=2, max=100_000, help="Networks Algorithm 1 trains for the accuracy predictor."),
    initial: int = typer.Option(16, "--initial", min=2, max=100_000, help="Networks trained before the first GP fit."),
    per_round: int = typer.Option(8, "--per-round", min=1, max=10_000, help="Exploration and exploitation samples per round (p = q)."),
    pool: int = typer.Option(2048, "--pool", min=2, max=1_000_000, help="Sobol pool of candidate architectures (ChamNet: 2048)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, max=10_000, help="Training epochs per network (default: the trainer's)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, max=1024, help="Parallel training processes (default: one per core)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", metavar="ADDRESS", help="Train on a Ray cluster instead of local processes: 'local' (an embedded Ray on this machine) or the head's HOST:PORT (run this on a host of the cluster; trainings go to hosts with training slots, measurements stay here)."),
    calibration: int = typer.Option(20, "--calibration", min=0, max=10_000, help="Random networks measured end to end to calibrate the LUT sum (0: plain sum)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seeds the pool, Algorithm 1's first subset, the GP and the search."),
    generations: int = typer.Option(100, "--generations", min=1, max=100_000, help="EES generations (ChamNet: 100)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """The main job: sweep this device, build the accuracy predictor from real trainings, search, export, measure again."""

    from optimizer.pipeline import PipelineConfig, run_pipeline
    from optimizer.search.frontier import parse_budgets

    budget = None if latency is None else parse_budgets(latency, "ms")
    if budget is not None and len(budget) != 1:
        raise ChameleonError(f"--latency {latency}: the main job takes one budget (it searches a few around it itself)")
    if cluster is not None and workers is not None:
        raise ChameleonError("--workers and --cluster: give one (a cluster's training slots say how many train at once)")
    config = PipelineConfig(out=out, device=device, space=space_name, data=data,
                            latency_ms=None if budget is None else budget[0], trainings=trainings,
                            initial=min(initial, trainings), per_round=per_round, pool=pool, epochs=epochs,
                            workers=workers, cluster=cluster, calibration=calibration, seed=seed, generations=generations)

    with sigterm_as_ctrl_c(f"interrupted: what finished is kept in {out}; run the same command again to go on"):
        result = run_pipeline(config, console=stderr)
    if as_json:
        emit_json(result.to_json())
    else:
        _print_pipeline(result)
    if result.contention and not result.contention["trusted"]:  # in --json too, under "contention"
        from rich.markup import escape

        stderr.print(f"[yellow]warning: latencies measured on a contended host: {escape(result.contention['reason'])}[/]",
                     soft_wrap=True, highlight=False)


def _print_pipeline(result) -> None:
    from rich.table import Table

    # Budgets that picked the same network share one row (a pick that fits a tight budget fits the looser ones).
    rows: dict[tuple[int, ...], list] = {}
    for o in sorted(result.outcomes, key=lambda o: o.budget_ms):
        rows.setdefault(tuple(o.genes), []).append(o)
    table = Table(title=f"{result.config['space']} on {result.device} ({result.device_model}): predicted against measured")
    for column in ("budget ms", "LUT ms", "measured ms", "LUT error", "in budget", "acc pred", "acc trained", "MMACs"):
        table.add_column(column, justify="right")
    for group in rows.values():
        o = group[0]  # the tightest budget of the group: the one the network must meet
        main = any(g.budget_ms == result.budget_ms for g in group)
        table.add_row(f"{'▶ ' if main else ''}" + ", ".join(f"{g.budget_ms:.3f}" for g in group), f"{o.predicted_latency_ms:.3f}",
                      f"{o.measured_latency_ms:.3f}", f"{o.latency_error:+.1%}", _within(group),
                      f"{o.predicted_accuracy:.3f}", f"{o.trained_accuracy:.3f}", f"{o.macs / 1e6:.2f}")
    stdout.print(table)
    stdout.print("LUT error = LUT latency / measured latency − 1: + the LUT (with its network correction) predicted slower "
                 "than measured, − faster" + (f"; {len(result.outcomes)} budgets picked {len(rows)} networks" if len(rows) < len(result.outcomes) else ""))
    w, ref = result.winner, result.reference
    verdict = ("within its budget" if w.over_budget <= 0
               else f"OVER its budget by {w.measured_latency_ms - w.budget_ms:.3f} ms ({w.over_budget:.1%})")
    stdout.print(f"winner (≤ {w.budget_ms:.3f} ms, {result.budget_source}): latency predicted {w.predicted_latency_ms:.3f} ms, "
                 f"measured {w.measured_latency_ms:.3f} ms ({w.latency_error:+.1%}) — {verdict}")
    stdout.print(f"winner accuracy: predicted {w.predicted_accuracy:.3f}, trained {w.trained_accuracy:.3f} "
                 f"(GP from {result.trained_samples} trainings, leave-one-out RMSE {result.predictor_loo_rmse:.3f})")
    if ref:
        stdout.print(f"reference {ref['name']}: measured {ref['measured_latency_ms']:.3f} ms, trained accuracy {ref['trained_accuracy']:.3f}")
    for warning in result.predictor_warnings:
        stderr.print(f"warning: {warning}", markup=False, soft_wrap=True)
    stdout.print(f"wrote {result.config['out']}/result.json, {w.onnx}, {result.frontier_png}")


def _within(group) -> str:
    """Which budgets of a row the measured network meets: yes, the ones it meets, or how far over the loosest it is."""
    met = [g for g in group if g.over_budget <= 0]
    if len(met) == len(group):
        return "yes"
    if not met:
        return f"no, +{group[-1].over_budget:.1%}"
    return "≤ " + ", ".join(f"{g.budget_ms:.3f}" for g in met) + f" only (+{group[0].over_budget:.1%} over {group[0].budget_ms:.3f})"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``optimize`` app (top-level commands, in this order)."""
    app.command()(pipeline)
