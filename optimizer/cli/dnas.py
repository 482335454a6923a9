"""`optimize dnas`: FBNet's differentiable search on a device's LUT (:mod:`optimizer.dnas`), beside `optimize`'s EES.

The command maps its flags to a :class:`optimizer.dnas.DnasJob`, runs it and prints the searches and
each budget's network, predicted against measured latency.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import emit_json, sigterm_as_ctrl_c, stdout
from harness.cli.options import SEED_MAX, finite


def dnas(
    lut: Path = typer.Option(..., "--lut", help="The device's LUT (Parquet), holding every operator of the space (optimize space-plan)."),
    budget: str = typer.Option(..., "--budget", help="Latency budget(s): 0.05ms, or 0.04,0.05,0.06ms."),
    space_name: str = typer.Option("fbnet-mini", "--space", help="A layer-wise space: fbnet-mini (trainable here) or fbnet."),
    alpha: float = typer.Option(0.2, "--alpha", callback=finite, help="FBNet's α (the loss is CE · α · log(LAT µs)^β)."),
    beta: Optional[str] = typer.Option(None, "--beta", help="FBNet's β, or several (0.6,2,5): one search each, the best per budget on the searches' own validation split (default: 0.6,2,5)."),
    data: str = typer.Option("digits", "--data", help="Data set: 'digits', 'mnist-5k', 'glyphs' or an ImageFolder-style folder."),
    epochs: int = typer.Option(12, "--epochs", min=1, max=10_000, help="Epochs of each supernet search."),
    warmup_epochs: int = typer.Option(2, "--warmup-epochs", min=0, max=10_000, help="First epochs that train the weights only."),
    samples: int = typer.Option(8, "--samples", min=0, max=10_000, help="Architectures drawn from each trained distribution, beside its argmax."),
    train_epochs: int = typer.Option(5, "--train-epochs", min=1, max=10_000, help="Epochs of the final networks' training from scratch (the trainer's)."),
    correction: Optional[Path] = typer.Option(None, "--correction", help="A network correction of this LUT (default: network_correction.json beside the LUT)."),
    interpolate: bool = typer.Option(False, "--interpolate", help="Estimate units missing from the LUT (flagged) instead of failing."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Device profile that measures the networks (default: the LUT's)."),
    no_measure: bool = typer.Option(False, "--no-measure", help="Measure nothing: picks by the LUT alone, no end-to-end check."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, max=1024, help="Parallel searches and trainings (default: one per core)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seeds the searches, the sampling and the trainings."),
    out: Path = typer.Option(Path("dnas-run"), "--out", "-o", help="Run folder (re-run the same command to resume)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """FBNet: a supernet trained once, latency from the LUT in its loss; each budget's network trained and measured."""
    from harness.cli.common import stderr
    from optimizer.dnas import DEFAULT_BETAS, DnasError, DnasJob, DnasSettings, run_dnas
    from optimizer.search.frontier import parse_budgets
    from optimizer.training.settings import TrainingSettings

    budgets = parse_budgets(budget, "ms")
    betas = DEFAULT_BETAS if beta is None else _floats(beta, "--beta")
    if alpha <= 0:
        raise DnasError(f"--alpha must be > 0, got {alpha:g}")
    if warmup_epochs >= epochs:
        raise DnasError(f"--warmup-epochs {warmup_epochs} leaves no epoch of the {epochs} to train θ")
    if not lut.is_file():
        raise DnasError(f"{lut}: no such LUT")
    job = DnasJob(lut=lut, out=out, budgets_ms=tuple(budgets), space=space_name, data=data, betas=betas, alpha=alpha,
                  search=DnasSettings(epochs=epochs, warmup_epochs=warmup_epochs), samples=samples,
                  training=TrainingSettings(epochs=train_epochs, seed=seed), correction=correction,
                  interpolate=interpolate, device=device, measure=not no_measure, workers=workers, seed=seed)
    with sigterm_as_ctrl_c(f"interrupted: finished epochs, trainings and measurements are kept in {out}; "
                           f"run the same command again to go on"):
        result = run_dnas(job, console=stderr)
    if as_json:
        emit_json(result.to_json())
        return
    _print(result)


def _floats(text: str, option: str) -> tuple[float, ...]:
    from optimizer.dnas import DnasError

    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DnasError(f"{option} {text!r}: expected numbers such as 0.6 or 0,0.6,2,5") from None
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise DnasError(f"{option} {text!r}: expected numbers >= 0")
    return tuple(dict.fromkeys(values))


def _print(result) -> None:
    from rich.table import Table

    searches = Table(title=f"supernet searches of {result.space} on {result.device} ({result.data})")
    for column in ("α", "β", "epochs", "CPU s", "E[LAT] µs", "argmax µs", "θ-split acc", "entropy"):
        searches.add_column(column, justify="right")
    for s in result.searches:
        searches.add_row(f"{s['alpha']:g}", f"{s['beta']:g}", str(s["epochs"]), f"{s['cpu_seconds']:.0f}",
                         f"{s['expected_latency_us']:.1f}", f"{s['argmax_latency_us']:.1f}",
                         "-" if s["theta_accuracy"] is None else f"{s['theta_accuracy']:.3f}", f"{s['entropy']:.2f}")
    stdout.print(searches)
    finals = Table(title="each budget's network, trained from scratch")
    for column in ("budget ms", "β", "blocks", "val acc", "predicted ms", "measured ms", "error", "in budget",
                   "test acc"):
        finals.add_column(column, justify="right" if column != "blocks" else "left")
    for f in result.finals:
        error = f.to_json()["latency_error"]
        finals.add_row(f"{f.budget_ms:g}", f"{f.beta:g}", " ".join(b.replace("_", "") for b in f.blocks),
                       "-" if f.validation_accuracy is None else f"{f.validation_accuracy:.3f}",
                       f"{f.predicted_latency_ms:.4f}", "-" if f.measured_latency_ms is None else f"{f.measured_latency_ms:.4f}",
                       "-" if error is None else f"{error:+.1%}",
                       "" if f.within_budget is None else ("yes" if f.within_budget else "NO"),
                       "-" if f.trained_accuracy is None else f"{f.trained_accuracy:.3f}")
    stdout.print(finals)
    for unmet in result.unmet_budgets:
        stdout.print(f"budget {unmet['budget_ms']:g} ms: no network ({unmet['reason']})")
    stdout.print(f"search cost {result.search_cpu_seconds:.0f} CPU-s ({len(result.candidates)} candidates scored); "
                 f"network correction: {result.network_correction or 'none (the plain LUT sum)'}; wrote "
                 f"{Path(result.searches[0]['folder']).parent.parent}/result.json")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``optimize`` app."""
    app.command()(dnas)
