"""`optimize`: the optimizer's command line (reads LUTs; never drives devices)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import emit_json, run_app, sigterm_as_ctrl_c, stdout
from harness.errors import ChameleonError, InvalidSignature, OutputNotWritable
from harness.signature import parse_signature
from optimizer.latency.lut_model import LutLatencyModel

app = typer.Typer(
    help="Predict and optimise networks from device LUTs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = stdout


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    lut: Optional[Path] = typer.Option(None, "--lut", help="The target device's LUT (Parquet)."),
    space_name: str = typer.Option("chamnet-mobile", "--space", help="Search space: chamnet-mobile or chamnet-res."),
    latency: Optional[str] = typer.Option(None, "--latency", help="Latency budget(s): 20ms, or 4,6,10,15,20,30ms for a frontier."),
    energy: Optional[str] = typer.Option(None, "--energy", help="Energy budget, e.g. 30mJ (needs --energy-model)."),
    accuracy_file: Optional[Path] = typer.Option(None, "--accuracy", help="Accuracy observations (Parquet/CSV: genes + accuracy) or a saved predictor (.json)."),
    energy_file: Optional[Path] = typer.Option(None, "--energy-model", help="Energy observations (genes + energy_mj) or a saved predictor."),
    interpolate: bool = typer.Option(False, "--interpolate", help="Estimate units missing from the LUT (flagged) instead of failing."),
    correction: Optional[Path] = typer.Option(None, "--correction", help="A network correction of this LUT (JSON, fitted on measured networks: the main job's network_correction.json)."),
    out_dir: Path = typer.Option(Path("optimize_out"), "--out", "-o", help="Folder for result.json, the ONNX export(s) and frontier.png."),
    seed: int = typer.Option(0, "--seed", help="Seed of the search (same seed, same result)."),
    generations: int = typer.Option(100, "--generations", min=1, help="EES generations (ChamNet: 100)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Search the best architecture of a space under a latency (and energy) budget on one device."""
    if ctx.invoked_subcommand is not None:
        return
    if lut is None or latency is None or accuracy_file is None:
        stdout.print(ctx.get_help())
        if lut is None and latency is None and accuracy_file is None:
            raise typer.Exit(0)
        raise ChameleonError("a search needs --lut, --latency and --accuracy")
    from optimizer.accuracy.builders import load_predictor
    from optimizer.search.frontier import baseline_points, load_latency, parse_budgets, plot_frontier, search_budgets, write_result
    from optimizer.spaces import get_space

    space = get_space(space_name)
    budgets = parse_budgets(latency, "ms")
    energy_budget = None
    if energy is not None:
        if energy_file is None:
            raise ChameleonError("--energy needs --energy-model (energy observations or a saved energy predictor)")
        energy_budget = parse_budgets(energy, "mj")[0]
    latency_model = load_latency(lut, space, interpolate, correction)
    accuracy_model = load_predictor(accuracy_file, space, target="accuracy", seed=seed)
    energy_model = load_predictor(energy_file, space, target="energy_mj", seed=seed) if energy_file else None
    choices = search_budgets(space, latency_model, accuracy_model, budgets, energy=energy_model,
                             energy_budget_mj=energy_budget, seed=seed, generations=generations)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for choice in choices:
        record = choice.to_json(space)
        record["onnx"] = str(space.export_onnx(choice.genes, out_dir / f"{space.name}-{choice.budget_ms:g}ms.onnx"))
        results.append(record)
    document = {"space": space.name, "lut": str(lut), "device": latency_model.lut.device, "seed": seed, "choices": results,
                "interpolated_signatures": list(latency_model.interpolated_keys)}
    points = baseline_points(space, latency_model, accuracy_model)
    document["baselines"] = points
    document["frontier_png"] = str(plot_frontier(choices, points, out_dir / "frontier.png",
                                                 f"{space.name} on {latency_model.lut.device}"))
    document["result_json"] = str(write_result(out_dir / "result.json", document))
    if as_json:
        emit_json(document)
        return
    _print_choices(space, choices, document)


def _print_choices(space, choices, document) -> None:
    """One column per budget, one row per gene and figure (a network has more genes than a terminal has columns)."""
    from rich.table import Table

    table = Table(title=f"{space.name} on {document['device']} (predicted)")
    table.add_column("", style="bold")
    for c in choices:
        table.add_column(f"≤ {c.budget_ms:g} ms", justify="right")
    for i, name in enumerate(space.gene_names):
        table.add_row(name, *[str(int(c.genes[i])) for c in choices])
    table.add_row("accuracy", *[f"{c.accuracy:.4f}" for c in choices])
    table.add_row("latency ms", *[f"{c.latency_ms:.2f}{'*' if c.interpolated else ''}" for c in choices])
    if any(c.energy_mj is not None for c in choices):
        table.add_row("energy mJ", *["-" if c.energy_mj is None else f"{c.energy_mj:.2f}" for c in choices])
    table.add_row("MMACs", *[f"{c.macs / 1e6:.0f}" for c in choices])
    table.add_row("best baseline", *[(c.best_baseline or "-").replace("mobilenetv2-", "mbv2-") for c in choices])
    table.add_row("its accuracy", *["-" if c.best_baseline_accuracy is None else f"{c.best_baseline_accuracy:.4f}" for c in choices])
    stdout.print(table)
    if document["interpolated_signatures"]:
        stdout.print(f"* latency includes {len(document['interpolated_signatures'])} LUT entries interpolated from measured ones (--interpolate)")
    stdout.print(f"wrote {document['result_json']}, {len(choices)} ONNX export(s), {document.get('frontier_png', '')}")


@app.command("build-predictor")
def build_predictor(
    observations: Optional[Path] = typer.Option(None, "--observations", help="Parquet/CSV: one column per gene + the target. With --data: where trainings are appended (default: next to --out)."),
    data: Optional[str] = typer.Option(None, "--data", help="Train for real on this data set: 'digits', 'mnist-5k', 'glyphs' (built in) or an ImageFolder-style folder (one sub-folder per class)."),
    space_name: str = typer.Option("chamnet-mobile", "--space"),
    target: str = typer.Option("accuracy", "--target", help="accuracy (Algorithm 1) or energy_mj (exploration only; not with --data)."),
    out: Path = typer.Option(..., "--out", help="Where to save the predictor (JSON)."),
    budget: int = typer.Option(240, "--budget", min=2, help="Samples Algorithm 1 may train (ChamNet: 240)."),
    initial: int = typer.Option(40, "--initial", min=2, help="Architectures trained before the first GP fit."),
    p: int = typer.Option(20, "--p", min=0, help="Exploration samples per round (largest predictive std)."),
    q: int = typer.Option(20, "--q", min=0, help="Exploitation samples per round (largest predicted accuracy / MACs)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Training epochs per architecture (with --data; default: TrainingSettings')."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Parallel training processes (with --data; default: the cores)."),
    pool_size: int = typer.Option(2048, "--pool", min=2, help="Sobol pool of candidate architectures (with --data; ChamNet: 2048)."),
    checkpoints: Optional[Path] = typer.Option(None, "--checkpoints", help="Folder keeping every trained network's weights (with --data)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the pool, the initial subset and the GP fits."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Algorithm 1 over an observations file, or (--data) over trainings it runs; saves the fitted GP (not a pickle)."""
    from optimizer.spaces import get_space

    space = get_space(space_name)
    if data is None:
        from optimizer.accuracy.builders import build_from_observations

        if observations is None:
            raise ChameleonError("build-predictor needs --observations (a file of results) or --data (train for real)")
        predictor, history = build_from_observations(observations, space, target=target, budget=budget, seed=seed,
                                                     initial=initial, p=p, q=q)
        predictor.save(out)
        report = {"out": str(out), "space": space.name, "target": target, "samples": int(len(predictor.y_train_)),
                  "loo_mse": float(predictor.loo_mse()), "rounds": len(history.rounds), "stop_reason": history.stop_reason}
        if as_json:
            emit_json(report)
        else:
            stdout.print(f"{out}: GP {target} predictor from {report['samples']} samples in {report['rounds']} rounds, "
                         f"LOO MSE {report['loo_mse']:.3g}")
        return
    _build_predictor_by_training(space, data, observations, out, target, budget, initial, p, q, epochs, workers,
                                 pool_size, checkpoints, seed, as_json)


def _build_predictor_by_training(space, data, observations, out, target, budget, initial, p, q, epochs, workers,
                                 pool_size, checkpoints, seed, as_json) -> None:
    from dataclasses import asdict, replace

    from harness.cli.common import stderr
    from optimizer.accuracy.builders import build_predictor_by_training
    from optimizer.training.settings import TrainingSettings

    if target != "accuracy":
        raise ChameleonError(f"--data trains networks for accuracy; --target {target} needs --observations")
    if p + q < 1:
        raise ChameleonError("--p and --q: a round needs at least one sample (p + q >= 1)")
    observations = observations or out.with_name(f"{out.stem}-observations.parquet")
    try:  # hours of training must not end in an unwritable --out
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise OutputNotWritable(f"{out.parent}: cannot create the output folder ({problem.strerror or problem})") from None
    settings = TrainingSettings() if epochs is None else replace(TrainingSettings(), epochs=epochs)

    def on_round(record, predictor) -> None:
        stderr.print(f"round {record.round}: {record.n_samples} trained, LOO MSE {record.loo_mse:.3g}", soft_wrap=True)

    # Ctrl-C or SIGTERM: the workers are stopped, finished trainings kept.
    with sigterm_as_ctrl_c(f"interrupted: finished trainings are kept in {observations}; run the same command again "
                           f"to go on"):
        predictor, history, trainer = build_predictor_by_training(
            space, data, observations, settings=settings, pool_size=pool_size, initial=initial, p=p, q=q,
            budget=budget, seed=seed, workers=workers, checkpoints=checkpoints, on_round=on_round)
    predictor.save(out)
    best = int(predictor.y_train_.argmax())
    report = {
        "out": str(out), "space": space.name, "target": "accuracy", "data": str(data),
        "dataset_id": trainer.dataset.dataset_id, "observations": str(observations),
        "checkpoints": None if checkpoints is None else str(checkpoints),
        "settings": asdict(settings), "settings_id": settings.settings_id, "code_version": trainer.code_version,
        "pool": pool_size, "samples": int(len(predictor.y_train_)), "trained": trainer.n_trained,
        "reused": trainer.n_reused, "train_seconds": float(sum(r.train_seconds for r in trainer.results)),
        "loo_mse": float(predictor.loo_mse()), "stop_reason": history.stop_reason,
        "rounds": [{"round": r.round, "samples": r.n_samples, "loo_mse": r.loo_mse} for r in history.rounds],
        "best_observed": {"genes": dict(zip(space.gene_names, map(int, predictor.X_train_[best]))),
                          "accuracy": float(predictor.y_train_[best])},
    }
    if as_json:
        emit_json(report)
    else:
        stdout.print(f"{out}: GP accuracy predictor from {report['samples']} networks trained on {report['dataset_id']} "
                     f"({report['trained']} trained now, {report['reused']} reused from {observations}) in "
                     f"{len(history.rounds)} rounds, LOO MSE {report['loo_mse']:.3g}; best observed accuracy "
                     f"{report['best_observed']['accuracy']:.4f}")


@app.command()
def estimate(
    lut: Path = typer.Option(..., "--lut", help="The device's LUT (Parquet)."),
    signatures: Path = typer.Argument(..., help="Text file: one operator signature per line (# comments allowed)."),
    correction: Optional[Path] = typer.Option(None, "--correction", help="A network correction of this LUT (JSON)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Estimate a network's latency as the sum of its operators' LUT entries (overhead counted once)."""
    try:
        lines = signatures.read_text().splitlines()
    except OSError as problem:
        raise ChameleonError(f"{signatures}: cannot read ({problem.strerror})") from None
    ops = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            try:
                ops.append(parse_signature(text))
            except InvalidSignature as problem:
                raise InvalidSignature(f"{signatures}:{number}: {problem}") from None
    if not ops:
        raise ChameleonError(f"{signatures}: no signatures")
    from optimizer.latency.lut_model import NetworkCorrection

    result = LutLatencyModel.from_file(lut, None if correction is None else NetworkCorrection.load(correction)).estimate(ops)
    if as_json:
        emit_json({"lut": str(lut), **result.__dict__})
    else:
        corrected = "" if correction is None else f", {result.plain_us / 1000:.3f} ms before the network correction"
        out.print(f"{result.operators} operators: {result.latency_us / 1000:.3f} ms "
                  f"(sum of entries {result.operator_sum_us / 1000:.3f} ms, overhead {result.overhead_us:.1f} µs counted once"
                  f"{corrected})")


@app.command()
def pipeline(
    out: Path = typer.Option(Path("chameleon-run"), "--out", "-o", help="Output folder (every step is cached there; re-run to resume)."),
    device: str = typer.Option("xeon", "--device", "-d", help="Device profile to measure on (a local one: the exports are timed end to end)."),
    space_name: str = typer.Option("chamnet-mobile-mini", "--space", help="Search space (the reduced chamnet-mobile-mini by default)."),
    data: str = typer.Option("digits", "--data", help="Data set: 'digits', 'mnist-5k', 'glyphs' (built in, offline) or an ImageFolder-style folder."),
    latency: Optional[str] = typer.Option(None, "--latency", help="Latency budget, e.g. 0.2ms (default: the predicted latency of the uniform half-width 48 px baseline)."),
    trainings: int = typer.Option(48, "--trainings", min=2, help="Networks Algorithm 1 trains for the accuracy predictor."),
    initial: int = typer.Option(16, "--initial", min=2, help="Networks trained before the first GP fit."),
    per_round: int = typer.Option(8, "--per-round", min=1, help="Exploration and exploitation samples per round (p = q)."),
    pool: int = typer.Option(2048, "--pool", min=2, help="Sobol pool of candidate architectures (ChamNet: 2048)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Training epochs per network (default: the trainer's)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Parallel training processes (default: one per core)."),
    calibration: int = typer.Option(20, "--calibration", min=0, help="Random networks measured end to end to calibrate the LUT sum (0: plain sum)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the pool, Algorithm 1's first subset, the GP and the search."),
    generations: int = typer.Option(100, "--generations", min=1, help="EES generations (ChamNet: 100)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """The main job: sweep this device, build the accuracy predictor from real trainings, search, export, measure again."""

    from harness.cli.common import stderr
    from optimizer.pipeline import PipelineConfig, run_pipeline
    from optimizer.search.frontier import parse_budgets

    budget = None if latency is None else parse_budgets(latency, "ms")
    if budget is not None and len(budget) != 1:
        raise ChameleonError(f"--latency {latency}: the main job takes one budget (it searches a few around it itself)")
    config = PipelineConfig(out=out, device=device, space=space_name, data=data,
                            latency_ms=None if budget is None else budget[0], trainings=trainings,
                            initial=min(initial, trainings), per_round=per_round, pool=pool, epochs=epochs,
                            workers=workers, calibration=calibration, seed=seed, generations=generations)

    with sigterm_as_ctrl_c(f"interrupted: what finished is kept in {out}; run the same command again to go on"):
        result = run_pipeline(config, console=stderr)
    if as_json:
        emit_json(result.to_json())
        return
    _print_pipeline(result)


def _print_pipeline(result) -> None:
    from rich.table import Table

    table = Table(title=f"{result.config['space']} on {result.device} ({result.device_model}): predicted against measured")
    for column in ("budget ms", "LUT ms", "measured ms", "error", "in budget", "acc pred", "acc trained", "MMACs"):
        table.add_column(column, justify="right")
    for o in sorted(result.outcomes, key=lambda o: o.budget_ms):
        main = o.budget_ms == result.budget_ms
        table.add_row(f"{'▶ ' if main else ''}{o.budget_ms:.3f}", f"{o.predicted_latency_ms:.3f}", f"{o.measured_latency_ms:.3f}",
                      f"{o.latency_error:+.1%}", "yes" if o.over_budget <= 0 else f"no, +{o.over_budget:.1%}",
                      f"{o.predicted_accuracy:.3f}", f"{o.trained_accuracy:.3f}", f"{o.macs / 1e6:.2f}")
    stdout.print(table)
    w, ref = result.winner, result.reference
    verdict = ("within its budget" if w.over_budget <= 0
               else f"OVER its budget by {w.measured_latency_ms - w.budget_ms:.3f} ms ({w.over_budget:.1%})")
    stdout.print(f"winner (≤ {w.budget_ms:.3f} ms, {result.budget_source}): latency predicted {w.predicted_latency_ms:.3f} ms, "
                 f"measured {w.measured_latency_ms:.3f} ms ({w.latency_error:+.1%}) — {verdict}")
    stdout.print(f"winner accuracy: predicted {w.predicted_accuracy:.3f}, trained {w.trained_accuracy:.3f} "
                 f"(GP from {result.trained_samples} trainings, leave-one-out RMSE {result.predictor_loo_rmse:.3f})")
    if ref:
        stdout.print(f"reference {ref['name']}: measured {ref['measured_latency_ms']:.3f} ms, trained accuracy {ref['trained_accuracy']:.3f}")
    stdout.print(f"wrote {result.config['out']}/result.json, {w.onnx}, {result.frontier_png}")


# ------------------------------------------------------------------ cross-device latency (OneProxy)
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


def _read_table(path: Path, devices: Optional[str] = None, accuracy: Optional[str] = None):
    from optimizer.latency.architecture_tables import read_latency_table

    return read_latency_table(path, _split(devices), accuracy)


@app.command("latency-table")
def latency_table(
    luts: list[Path] = typer.Option(..., "--lut", help="A device's LUT (Parquet); repeat for more devices (one column each)."),
    out: Path = typer.Option(..., "--out", "-o", help="The architecture latency table to write (.parquet, else CSV)."),
    space_name: str = typer.Option("chamnet-mobile", "--space", help="Search space the architectures are drawn from."),
    n: int = typer.Option(1000, "--n", min=1, help="Architectures (a Sobol pool of the space)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the Sobol pool."),
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


@app.command()
def monotonicity(
    table_path: Path = typer.Argument(..., metavar="TABLE", help="Architecture latency table (Parquet/CSV; see optimizer/latency/architecture_tables.py)."),
    devices: Optional[str] = typer.Option(None, "--devices", help="Comma list of devices (latency_ms:<name> or plain column names); default: every latency_ms:* column."),
    threshold: float = typer.Option(0.9, "--threshold", help="Flag pairs whose SRCC is under this (OneProxy: 0.9)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for the 95% intervals (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the bootstrap."),
    png: Optional[Path] = typer.Option(None, "--png", help="Draw the SRCC matrix as a heatmap PNG here."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Latency monotonicity: SRCC and Kendall tau between every pair of devices, with bootstrap intervals."""
    from optimizer.crossdevice.monotonicity import monotonicity as measure, plot_heatmap

    table = _read_table(table_path, devices)
    report = measure(table, _split(devices), bootstrap=bootstrap, seed=seed, threshold=threshold)
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
    stdout.print(grid)
    bad = {d: k for d, k in report.invalid.items() if k}
    if bad:
        stdout.print("failed or missing measurements (left out pairwise): "
                     + ", ".join(f"{d} {k}" for d, k in bad.items()))
    flagged = report.flagged
    stdout.print(f"{len(flagged)} of {len(report.pairs)} pair(s) under SRCC {threshold:g}"
                 + (": " + ", ".join(f"{p.a}/{p.b}" for p in flagged) if flagged else "")
                 + (f"; 95% intervals from {bootstrap} bootstrap resamples (seed {seed})" if bootstrap else ""))
    if png is not None:
        stdout.print(f"wrote {document['png']}")


@app.command("proxy-reuse")
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


@app.command("adapt-proxy")
def adapt_proxy(
    table_path: Path = typer.Argument(..., metavar="TABLE", help="Architecture latency table (its encoding columns are the choices)."),
    proxy: str = typer.Option(..., "--proxy", help="The proxy device, a comma list of candidates, or 'all'."),
    target: str = typer.Option(..., "--target", help="The target device."),
    samples: int = typer.Option(..., "--samples", help="Target architectures the adaptation is fitted on."),
    validation: int = typer.Option(10, "--validation", min=0, help="Further target architectures held back to choose the penalty (OneProxy: 10)."),
    draws: int = typer.Option(10, "--draws", min=1, help="Random draws of the target samples."),
    seed: int = typer.Option(0, "--seed", help="Seeds the draws."),
    devices: Optional[str] = typer.Option(None, "--devices", help="Comma list of plain device columns, when not named latency_ms:<device>."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """OneProxy's adaptation: proxy model a·f_p + one-hot·δ + b fitted on a few target samples; SRCC before and after."""
    from optimizer.crossdevice.proxy_adaptation import best_proxy

    table = _read_table(table_path, devices)
    table.latency(target)
    candidates = [d for d in table.devices if d != target] if proxy == "all" else _split(proxy)
    for d in candidates:
        table.latency(d)
    results, best_adapted, best_raw, skipped = best_proxy(table, candidates, target, samples, draws=draws, seed=seed,
                                                          validation=validation, skip_short=proxy == "all")
    if as_json:
        emit_json({"table": str(table_path), "target": target, "samples": samples, "validation": validation,
                   "draws": draws, "seed": seed, "best_proxy_adapted": best_adapted, "best_proxy_raw": best_raw,
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
    if len(results) > 1:
        stdout.print(f"best proxy for {target}: {best_adapted} adapted, {best_raw} as is")


def main() -> None:
    run_app(app)


# ------------------------------------------------------------------ NetAdapt
@app.command()
def netadapt(
    model: Path = typer.Option(..., "--model", help="The trained network: a trainer checkpoint (pipeline's checkpoints/*.pt) or a NetAdapt one."),
    lut: Optional[Path] = typer.Option(None, "--lut", help="The device's LUT (layer-wise table; missing channel counts are measured into it). Needed for latency."),
    budget: list[str] = typer.Option(..., "--budget", help="Budget: 0.15ms, 30mJ, 2MMACs or 60% of the start; repeat for several (the run goes to the tightest)."),
    data: str = typer.Option("digits", "--data", help="Data set the model was trained on: 'digits', 'mnist-5k', 'glyphs' or an ImageFolder-style folder."),
    out: Path = typer.Option(Path("netadapt-run"), "--out", "-o", help="Run folder (every iteration is saved there; re-run to resume)."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Device profile that measures missing entries and whole networks (default: the LUT's device)."),
    no_measure: bool = typer.Option(False, "--no-measure", help="Measure nothing: interpolate missing channel counts from the LUT (flagged), no end-to-end check."),
    resource: str = typer.Option("latency", "--resource", help="latency (LUT), energy (--energy-table) or macs (NetAdapt's ablation)."),
    energy_table: Optional[Path] = typer.Option(None, "--energy-table", help="Per-operator energy results (bench energy) for --resource energy."),
    correction: Optional[Path] = typer.Option(None, "--correction", help="A fitted network correction for the LUT sum (default: fitted on prunings of the model, measured)."),
    calibration: int = typer.Option(16, "--calibration", min=0, help="Prunings of the model measured end to end to fit the correction (0: plain LUT sum)."),
    initial_reduction: Optional[str] = typer.Option(None, "--initial-reduction", help="ΔR_0, e.g. 0.01ms or 4% of the start (default 4%, about NetAdapt's 0.5 ms for the small MobileNetV1)."),
    decay: float = typer.Option(0.96, "--decay", help="ΔR decay per iteration (NetAdapt: 0.96)."),
    channel_step: Optional[int] = typer.Option(None, "--channel-step", min=1, help="Channel counts are multiples of this (default: the device profile's, else 8)."),
    short_term_steps: int = typer.Option(40, "--short-term-steps", min=1, help="Mini-batches of each proposal's short-term fine-tune."),
    long_term_epochs: int = typer.Option(5, "--long-term-epochs", min=1, help="Epochs of the final long-term fine-tune."),
    baselines: str = typer.Option("0.25,0.5,0.75,1", "--baselines", help="Width multipliers trained from scratch for comparison ('none' to skip)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Parallel fine-tuning processes (default: one per core)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the fine-tunes and the calibration networks."),
    max_iterations: int = typer.Option(200, "--max-iterations", min=1, help="Stop after this many iterations."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """NetAdapt: prune a trained network to a budget, layer by layer, guided by the device's layer-wise LUT."""

    from harness.cli.common import stderr
    from optimizer.training.datasets import load_dataset
    from optimizer.latency.layer_tables import EnergyTable, LatencyTable, MacsCount
    from optimizer.latency.lut_model import NetworkCorrection
    from optimizer.netadapt import NetAdaptError, NetAdaptRun, NetAdaptSettings, parse_budget
    from optimizer.training.workers import available_cores

    if resource not in ("latency", "energy", "macs"):
        raise NetAdaptError(f"--resource {resource!r}: expected latency, energy or macs")
    for text in budget:
        parse_budget(text, resource)  # a bad budget fails before anything is loaded
    multipliers: list[float] = []
    if baselines.strip().lower() != "none":
        try:
            multipliers = [float(v) for v in baselines.split(",") if v.strip()]
        except ValueError:
            raise NetAdaptError(f"--baselines {baselines!r}: expected numbers such as 0.25,0.5,0.75,1 or 'none'") from None
        bad = [m for m in multipliers if not 0 < m <= 1]
        if bad:
            raise NetAdaptError(f"--baselines: width multipliers must be in (0, 1], got {bad[0]:g}")
    profile = None
    if resource == "latency":
        if lut is None:
            raise NetAdaptError("--resource latency needs --lut (the device's LUT)")
        fitted = NetworkCorrection.load(correction) if correction else None
        table = LatencyTable(lut, fitted)
        if not no_measure:
            from harness.profiles import load_profile

            name = device or table.device
            if not name or "," in name:
                raise NetAdaptError(f"{lut}: cannot tell which device to measure on (device_id {name!r}); give --device or --no-measure")
            profile = load_profile(name)
            if profile.transport.type != "local":
                raise NetAdaptError(f"device {name} is reached over {profile.transport.type}; NetAdapt measures whole networks "
                                    f"on local devices only: use --no-measure with its LUT")
            table.profile = profile
    elif resource == "energy":
        if energy_table is None:
            raise NetAdaptError("--resource energy needs --energy-table (per-operator energy results)")
        table = EnergyTable(energy_table)
    else:
        table = MacsCount()
    step = channel_step or (profile.channel_step if profile is not None else 8)
    reduction_value, reduction_fraction = None, 0.04
    if initial_reduction is not None:
        value, relative = parse_budget(initial_reduction, resource)
        if relative:
            reduction_fraction = value
        else:
            reduction_value = value
    settings = NetAdaptSettings(resource=resource, initial_reduction=reduction_value, initial_fraction=reduction_fraction,
                                decay=decay, channel_step=step, short_term_steps=short_term_steps,
                                long_term_epochs=long_term_epochs, max_iterations=max_iterations, seed=seed)
    run = NetAdaptRun(model=model, out=out, budgets=list(budget), table=table, data=load_dataset(data), settings=settings,
                      profile=profile, baselines=multipliers, calibration=calibration,
                      workers=workers or available_cores(), console=stderr)

    with sigterm_as_ctrl_c(f"interrupted: finished iterations are kept in {out}; run the same command again to go on"):
        result = run.run()
    if as_json:
        emit_json(result.to_json())
        return
    _print_netadapt(result)


def _print_netadapt(result) -> None:
    from rich.table import Table

    unit = result.unit
    measured = any(i.measured_ms is not None for i in result.iterations)
    table = Table(title=f"NetAdapt iterations ({result.resource}, {result.device or 'no device'})")
    columns = ["#", "pruned", "channels", f"estimate {unit}"] + (["measured ms", "error"] if measured else []) + ["hold-out acc", "test acc", "MMACs"]
    for column in columns:
        table.add_column(column, justify="right" if column not in ("pruned",) else "left")
    for it in result.iterations:
        flag = "*" if it.interpolated else ""
        row = [str(it.index), it.group or "(start)", "" if it.group is None else f"{it.from_channels}→{it.to_channels}",
               f"{it.estimate:.4g}{flag}"]
        if measured:
            row += ["-" if it.measured_ms is None else f"{it.measured_ms:.4g}",
                    "-" if it.latency_error is None else f"{it.latency_error:+.1%}"]
        row += ["-" if it.selection_accuracy is None else f"{it.selection_accuracy:.3f}", f"{it.test_accuracy:.3f}",
                f"{it.macs / 1e6:.2f}"]
        table.add_row(*row)
    stdout.print(table)
    if any(it.interpolated for it in result.iterations):
        stdout.print("* some units' entries were interpolated between measured channel counts, not measured")
    final = Table(title="long-term fine-tuned, and the width-multiplier baselines")
    for column in ("network", "budget", f"estimate {unit}", "measured ms", "error", "in budget", "test acc"):
        final.add_column(column, justify="right")
    for f in result.finals + result.baselines:
        final.add_row(f.name, "-" if f.budget is None else f"{f.budget:.4g}", f"{f.estimate:.4g}",
                      "-" if f.measured_ms is None else f"{f.measured_ms:.4g}",
                      "-" if f.latency_error is None else f"{f.latency_error:+.1%}",
                      "" if f.within_budget is None else ("yes" if f.within_budget else "NO"), f"{f.test_accuracy:.3f}")
    stdout.print(final)
    for c in result.comparisons:
        parts = [f"{c['final']}: {c['accuracy']:.3f} at {c['latency']:.4g} {unit}"]
        if c["baseline_accuracy_at_latency"] is not None:
            parts.append(f"multipliers at that latency {c['baseline_accuracy_at_latency']:.3f} ({c['accuracy_gain']:+.3f})")
        if c["speedup"] is not None:
            parts.append(f"multipliers need {c['baseline_latency_at_accuracy']:.4g} {unit} for that accuracy ({c['speedup']:.2f}x)")
        elif c.get("more_accurate_than_all_baselines"):
            parts.append("more accurate than every multiplier")
        stdout.print("; ".join(parts))
    stdout.print(f"{result.stopped}; wrote {result.out}/result.json and {result.frontier_png}")


@app.command("layer-lut")
def layer_lut(
    model: Path = typer.Option(..., "--model", help="The trained network (a trainer or NetAdapt checkpoint)."),
    lut: Path = typer.Option(..., "--lut", help="The device's LUT to extend (created if missing)."),
    device: str = typer.Option(..., "--device", "-d", help="Device profile to measure on."),
    channel_step: Optional[int] = typer.Option(None, "--channel-step", min=1, help="Channel counts are multiples of this (default: the profile's)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """NetAdapt's layer-wise LUT ahead of time: every layer of the model at every channel count on the device's step."""
    from harness.cli.common import stderr
    from harness.plans import Plan
    from harness.profiles import load_profile
    from harness.sweep import OVERHEAD_SIGNATURE, run_sweep
    from optimizer.latency.layer_tables import layer_grid
    from optimizer.netadapt import load_network
    from optimizer.progress import ProgressContext

    profile = load_profile(device)
    net, _ = load_network(model)
    step = channel_step or profile.channel_step
    signatures = layer_grid(net.signatures, step)
    plan = Plan(name=f"layer-lut-{model.stem}", description=f"layer-wise LUT of {model}", source=model,
                signatures=tuple(dict.fromkeys([*signatures, OVERHEAD_SIGNATURE])))
    with ProgressContext(stderr if stderr.is_terminal else None, "layer entries") as on_progress:
        result = run_sweep(profile, plan, lut, on_progress=on_progress)
    if result.interrupted:
        stderr.print(f"interrupted: what was measured is kept in {lut}; run the same command again to go on")
        raise typer.Exit(130)
    document = {"lut": str(lut), "device": profile.name, "channel_step": step, "units": len(net.signatures),
                "entries": len(plan.signatures), "measured": result.measured, "already_measured": result.already_measured,
                "rows_in_lut": result.rows_in_lut, "wall_s": result.wall_s}
    if as_json:
        emit_json(document)
        return
    out.print(f"{model}: {len(net.signatures)} units → {len(plan.signatures)} layer entries at channel step {step}; "
              f"{result.measured} measured, {result.already_measured} already in {lut} ({result.wall_s:.0f} s)")
