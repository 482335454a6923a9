"""Cross-device latency (OneProxy): `optimize latency-table`, `monotonicity`, `proxy-reuse`, `adapt-proxy`.

Thin commands over :mod:`optimizer.latency.architecture_tables` (architecture latency tables, one
``latency_ms:<device>`` column per device) and :mod:`optimizer.crossdevice` (monotonicity between
devices, reusing a proxy's architectures, adapting a proxy with a few target samples).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.options import SEED_MAX, finite
from harness.cli.common import emit_json, stdout
from harness.errors import ChameleonError


def _split(text: Optional[str]) -> Optional[list[str]]:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ChameleonError(f"empty list {text!r}")
    return items


def _floats(text: Optional[str], what: str) -> Optional[list[float]]:
    items = _split(text)
    if items is None:
        return None
    try:
        return [float(t.lower().removesuffix("ms")) for t in items]
    except ValueError:
        raise ChameleonError(f"{what} {text!r}: not a comma list of numbers") from None


def _read_table(path: Path, devices: Optional[str] = None, accuracy: Optional[str] = None, *, layout: str = "auto",
                unit: Optional[str] = None, where: Optional[str] = None, qualifiers: Optional[str] = None,
                duplicates: str = "error"):
    """A wide or long latency table (long: one row per architecture x device; detected unless ``layout`` says)."""
    from optimizer.latency.architecture_tables import read_latency_table

    return read_latency_table(path, _split(devices), accuracy, layout=layout, unit=unit, where=where,
                              qualifiers=_split(qualifiers), duplicates=duplicates)


def latency_table(
    luts: list[Path] = typer.Option(..., "--lut", help="A device's LUT (Parquet); repeat for more devices (one column each)."),
    out: Path = typer.Option(..., "--out", "-o", help="The architecture latency table to write (.parquet, else CSV)."),
    space_name: str = typer.Option("chamnet-mobile", "--space", help="Search space the architectures are drawn from."),
    n: int = typer.Option(1000, "--n", min=1, max=1_000_000, help="Architectures (a Sobol pool of the space; at most a million)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seeds the Sobol pool."),
    interpolate: bool = typer.Option(False, "--interpolate", help="Estimate units missing from a LUT instead of failing."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Predict an architecture latency table with the LUT predictor: one latency_ms:<device> column per LUT."""
    from optimizer.latency.architecture_tables import table_from_luts, write_latency_table
    from optimizer.spaces import get_space

    table = table_from_luts(get_space(space_name), luts, n=n, seed=seed, interpolate=interpolate)
    write_latency_table(table, out)
    document = {"out": str(out), "space": space_name, "architectures": len(table), "devices": table.devices,
                "luts": [str(p) for p in luts]}
    if as_json:
        emit_json(document)
    else:
        stdout.print(f"{out}: {len(table)} architectures of {space_name} on {', '.join(table.devices)} (LUT-predicted)")


def monotonicity(
    table_path: Path = typer.Argument(..., metavar="TABLE", help="Architecture latency table (Parquet/CSV; see optimizer/latency/architecture_tables.py)."),
    devices: Optional[str] = typer.Option(None, "--devices", help="Comma list of devices (latency_ms:<name> or plain column names; long tables: device names such as pixel3/tflite); default: every device."),
    threshold: float = typer.Option(0.9, "--threshold", callback=finite, help="Flag pairs whose SRCC is under this (OneProxy: 0.9)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, max=100_000, help="Bootstrap resamples for the 95% intervals (0: none)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seeds the bootstrap."),
    png: Optional[Path] = typer.Option(None, "--png", help="Draw the SRCC matrix as a heatmap PNG here."),
    space_name: Optional[str] = typer.Option(None, "--space", help="Our search space the architectures belong to (default: the table's info:space): adds each device's SRCC against MACs and parameter count."),
    layout: str = typer.Option("auto", "--layout", help="auto, wide (latency_ms:<device> columns) or long (one row per architecture x device)."),
    unit: Optional[str] = typer.Option(None, "--unit", help="Long tables: the unit (ms, us, s) of a plain 'latency' column."),
    where: Optional[str] = typer.Option(None, "--where", help="Long tables: keep rows matching COLUMN=VALUE[,COLUMN=VALUE...], e.g. framework=tflite."),
    qualifiers: Optional[str] = typer.Option(None, "--qualifiers", help="Long tables: comma list of the columns that qualify the device (default: framework, task, batch_size... present)."),
    duplicates: str = typer.Option("error", "--duplicates", help="Long tables: two rows for one architecture and device are an 'error', or their 'median'."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Latency monotonicity: SRCC and Kendall tau between every pair of devices, with bootstrap intervals."""
    from harness.output_paths import check_png_path
    from optimizer.crossdevice.monotonicity import monotonicity as measure, plot_heatmap

    if png is not None:
        check_png_path(png, "--png")  # before the bootstrap, not after it
    table = _read_table(table_path, devices, layout=layout, unit=unit, where=where, qualifiers=qualifiers,
                        duplicates=duplicates)
    space_name = space_name or table.space
    baselines = None
    if space_name:  # our space: every device's SRCC against MACs and parameter count, beside the pairs'
        from optimizer.latency.architecture_tables import space_costs
        from optimizer.spaces import get_space

        baselines = space_costs(table, get_space(space_name))
    report = measure(table, _split(devices), bootstrap=bootstrap, seed=seed, threshold=threshold, baselines=baselines,
                     space=space_name)
    document = report.to_json()
    if png is not None:
        document["png"] = str(plot_heatmap(report, png))
    if as_json:
        emit_json(document)
        return
    from rich.table import Table

    grid = Table(title=f"SRCC (upper) and Kendall tau (lower) of {table_path}: {report.rows} architectures")
    grid.add_column("", style="bold")
    for d in report.devices:
        grid.add_column(d, justify="center")
    cell = {(p.a, p.b): p for p in report.pairs}

    def show(p, what: str) -> str:
        value, low, high = (getattr(p, what), getattr(p, f"{what}_low"), getattr(p, f"{what}_high"))
        if value != value:
            return f"- (n={p.n})"
        text = f"{value:.3f}" + (f"\n[{low:.3f}, {high:.3f}]" if low == low else "")
        return f"[red]{text}[/red]" if what == "srcc" and p.below_threshold else text

    for i, a in enumerate(report.devices):
        row = []
        for j, b in enumerate(report.devices):
            if i == j:
                row.append("1")
            elif i < j:
                row.append(show(cell[(a, b)], "srcc"))
            else:
                row.append(show(cell[(b, a)], "kendall"))
        grid.add_row(a, *row)
    grid.add_section()
    for name, label in (("macs", "SRCC vs MACs"), ("params", "SRCC vs params")):
        values = [report.baseline_srcc(name, d) for d in report.devices]
        grid.add_row(label, *("n/a" if v is None else "-" if v != v else f"{v:.3f}" for v in values))
    stdout.print(grid)
    stdout.print(f"baselines: MACs and parameter count of {report.space}'s architectures" if report.space else
                 "baselines: n/a (not a table of our search spaces; --space NAME when it is)")
    bad = {d: k for d, k in report.invalid.items() if k}
    if bad:
        stdout.print("failed or missing measurements (left out pairwise): "
                     + ", ".join(f"{d} {k}" for d, k in bad.items()))
    flagged = report.flagged
    if report.without_data:
        stdout.print(f"{len(report.without_data)} pair(s) without enough architectures measured on both devices "
                     "(no SRCC, not flagged): " + ", ".join(f"{p.a}/{p.b}" for p in report.without_data))
    stdout.print(f"{len(flagged)} of {len(report.pairs)} pair(s) under SRCC {threshold:g}"
                 + (": " + ", ".join(f"{p.a}/{p.b}" for p in flagged) if flagged else "")
                 + (f"; 95% intervals from {bootstrap} bootstrap resamples (seed {seed})" if bootstrap else ""))
    if png is not None:
        stdout.print(f"wrote {document['png']}")


def proxy_reuse(
    table_path: Path = typer.Argument(..., metavar="TABLE", help="Architecture latency table with an accuracy column."),
    proxy: str = typer.Option(..., "--proxy", help="The device searched on."),
    target: str = typer.Option(..., "--target", help="The device deployed on."),
    accuracy: Optional[str] = typer.Option(None, "--accuracy", help="The accuracy column (default: 'accuracy')."),
    devices: Optional[str] = typer.Option(None, "--devices", help="Comma list of plain device columns, when not named latency_ms:<device>."),
    quantiles: Optional[str] = typer.Option(None, "--quantiles", help="Budgets as latency quantiles (default 0.1,...,1.0)."),
    budgets: Optional[str] = typer.Option(None, "--budgets", help="Target budgets in ms instead, e.g. 2,4,8."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Search on the proxy, deploy on the target: Pareto sets kept, accuracy and latency lost per budget."""
    from optimizer.crossdevice.proxy_reuse import proxy_reuse as evaluate

    table = _read_table(table_path, devices, accuracy)
    table.latency(proxy), table.latency(target)
    report = evaluate(table, proxy, target, quantiles=_floats(quantiles, "--quantiles"),
                      target_budgets_ms=_floats(budgets, "--budgets"))
    if as_json:
        emit_json({"table": str(table_path), **report.to_json()})
        return
    from rich.table import Table

    grid = Table(title=f"reusing {proxy}'s architectures on {target} ({report.rows} architectures)")
    for column in ("q", f"budget ms\n{proxy}", f"budget ms\n{target}", f"searched on\n{target}: acc",
                   f"reused from\n{proxy}: acc", "accuracy\nlost", "latency\nlost ms"):
        grid.add_column(column, justify="right", overflow="fold")
    fmt = lambda v, f="{:.4f}": "-" if v is None else f.format(v)  # noqa: E731
    for b in report.budgets:
        grid.add_row(f"{b.quantile:.2f}", f"{b.proxy_budget_ms:.3f}", f"{b.target_budget_ms:.3f}",
                     f"{b.target_choice or '-'}\n{fmt(b.target_accuracy)}", f"{b.reused_choice or '-'}\n{fmt(b.reused_accuracy)}",
                     fmt(b.accuracy_lost), fmt(b.latency_lost_ms, "{:.3f}"))
    stdout.print(grid)
    stdout.print(f"{report.proxy_pareto_on_target} of {report.proxy_pareto} Pareto-optimal architectures on {proxy} are "
                 f"Pareto-optimal on {target} too ({target} has {report.target_pareto}); "
                 f"largest accuracy lost {report.max_accuracy_lost:.4f}")


def adapt_proxy(
    table_path: Path = typer.Argument(..., metavar="TABLE", help="Architecture latency table (its encoding columns are the choices)."),
    proxy: str = typer.Option(..., "--proxy", help="The proxy device, a comma list of candidates, or 'all'."),
    target: str = typer.Option(..., "--target", help="The target device."),
    samples: int = typer.Option(..., "--samples", min=1, max=1_000_000, help="Target architectures the adaptation is fitted on."),
    validation: int = typer.Option(10, "--validation", min=0, max=1_000_000, help="Further target architectures held back to choose the penalty (OneProxy: 10)."),
    draws: int = typer.Option(10, "--draws", min=1, max=10_000, help="Random draws of the target samples."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seeds the draws."),
    devices: Optional[str] = typer.Option(None, "--devices", help="Comma list of plain device columns, when not named latency_ms:<device>."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """OneProxy's adaptation: proxy model a·f_p + one-hot·δ + b fitted on a few target samples; SRCC before and after."""
    from optimizer.crossdevice.proxy_adaptation import adapt_chosen_proxy, best_proxy

    table = _read_table(table_path, devices)
    table.latency(target)
    candidates = [d for d in table.devices if d != target] if proxy == "all" else _split(proxy)
    for d in candidates:
        table.latency(d)
    results, best_adapted, best_raw, skipped = best_proxy(table, candidates, target, samples, draws=draws, seed=seed,
                                                          validation=validation, skip_short=proxy == "all")
    # What a user gets: the proxy chosen, adapted and kept or not on the samples alone (the table above scores every
    # candidate on the rest, which a user with these samples does not have).
    honest = adapt_chosen_proxy(table, [r.proxy for r in results], target, samples, draws=draws, seed=seed,
                                validation=validation)
    if as_json:
        emit_json({"table": str(table_path), "target": target, "samples": samples, "validation": validation,
                   "draws": draws, "seed": seed, "chosen_on_samples": honest.to_json(),
                   "best_proxy_adapted_on_the_rest": best_adapted, "best_proxy_raw_on_the_rest": best_raw,
                   "results": [r.to_json() for r in results], "skipped": skipped})
        return
    from rich.table import Table

    grid = Table(title=f"adapting to {target}: {samples} target samples + {validation} for validation, {draws} draws, "
                       f"SRCC on the rest (mean ± std)")
    for column in ("proxy", "scored on", "raw SRCC", "proxy model SRCC", "adapted SRCC"):
        grid.add_column(column, justify="right")
    for r in results:
        grid.add_row(r.proxy, str(r.evaluated), f"{r.raw_srcc_mean:.3f} ± {r.raw_srcc_std:.3f}",
                     f"{r.proxy_model_srcc_mean:.3f} ± {r.proxy_model_srcc_std:.3f}",
                     f"{r.adapted_srcc_mean:.3f} ± {r.adapted_srcc_std:.3f}")
    stdout.print(grid)
    for name, why in skipped.items():
        stdout.print(f"skipped {name}: {why}", markup=False)
    chosen = ", ".join(f"{name} ({count})" for name, count in sorted(honest.proxies_chosen.items(), key=lambda kv: -kv[1]))
    stdout.print(f"chosen on the {samples + validation} samples alone (what you get): SRCC {honest.srcc_mean:.3f} ± "
                 f"{honest.srcc_std:.3f}; proxy per draw: {chosen}", markup=False)
    if validation:
        kept = draws - honest.fell_back
        stdout.print(f"the adaptation beat the raw proxy on the {validation} validation samples in {kept} of {draws} "
                     f"draws; in the other {honest.fell_back} the raw proxy is kept", markup=False)
    if len(results) > 1:
        stdout.print(f"scored on the rest (hindsight, not a choice you can make): {best_adapted} adapted, "
                     f"{best_raw} as is", markup=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``optimize`` app (top-level commands, in this order)."""
    app.command("latency-table")(latency_table)
    app.command()(monotonicity)
    app.command("proxy-reuse")(proxy_reuse)
    app.command("adapt-proxy")(adapt_proxy)
