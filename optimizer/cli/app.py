"""`optimize`: the optimizer's command line (reads LUTs; never drives devices).

This module holds the Typer app, its default callback (search the best architecture of a space under
latency/energy budgets on one device) and :func:`main`; the other commands live one module per group
and are added here as top-level commands of the same app, in this order:

* :mod:`optimizer.cli.predictors`: ``build-predictor``, ``estimate``;
* :mod:`optimizer.cli.pipeline`: ``pipeline`` (the main job);
* :mod:`optimizer.cli.crossdevice`: ``latency-table``, ``monotonicity``, ``proxy-reuse``, ``adapt-proxy``;
* :mod:`optimizer.cli.netadapt`: ``netadapt``, ``layer-lut``;
* :mod:`optimizer.cli.spaces`: ``space-plan``;
* :mod:`optimizer.cli.dnas`: ``dnas`` (FBNet's differentiable search).

Command modules import neither this module nor each other.  Every library is imported inside the
command that uses it, so ``optimize --help`` loads no runtime, training library or Parquet reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.options import SEED_MAX
from harness.cli.common import emit_json, run_app, stdout
from harness.errors import ChameleonError
from optimizer.cli import crossdevice, device_prediction, dnas, netadapt, pipeline, predictors, spaces

app = typer.Typer(
    help="Predict and optimise networks from device LUTs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _group in (predictors, pipeline, crossdevice, device_prediction, netadapt, spaces, dnas):
    _group.register(app)


def main() -> None:
    run_app(app, "optimize")


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    lut: Optional[Path] = typer.Option(None, "--lut", help="The target device's LUT (Parquet). Alone, it is enough: the rest is inferred."),
    space_name: Optional[str] = typer.Option(None, "--space", help="Search space: chamnet-mobile, chamnet-mobile-mini or chamnet-res (default: the one whose every operator the LUT holds)."),
    latency: Optional[str] = typer.Option(None, "--latency", help="Latency budget(s): 20ms, or 4,6,10,15,20,30ms for a frontier (default: a frontier across the space's latency range on this LUT)."),
    energy: Optional[str] = typer.Option(None, "--energy", help="Energy budget, e.g. 30mJ (needs --energy-model)."),
    accuracy_file: Optional[Path] = typer.Option(None, "--accuracy", help="Accuracy observations (Parquet/CSV: genes + accuracy) or a saved predictor (.json) (default: the space's predictor beside the LUT, in the cache, or shipped)."),
    energy_file: Optional[Path] = typer.Option(None, "--energy-model", help="Energy observations (genes + energy_mj) or a saved predictor."),
    interpolate: bool = typer.Option(False, "--interpolate", help="Estimate units missing from the LUT (flagged) instead of failing."),
    correction: Optional[Path] = typer.Option(None, "--correction", help="A network correction of this LUT (JSON, fitted on measured networks; default: network_correction.json beside the LUT, as the main job leaves it)."),
    out_dir: Path = typer.Option(Path("optimize_out"), "--out", "-o", help="Folder for result.json, the ONNX export(s) and frontier.png."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed of the search (same seed, same result)."),
    generations: int = typer.Option(100, "--generations", min=1, max=100_000, help="EES generations (ChamNet: 100)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Search the best architecture of a space under latency (and energy) budgets on one device: `optimize --lut LUT`."""
    if ctx.invoked_subcommand is not None:
        return
    if lut is None:  # a bare `optimize` prints its help (no_args_is_help); options without a LUT are a mistake
        raise ChameleonError("a search needs --lut (the device's LUT); see 'optimize --help'")
    from harness.output_paths import prepare_output_folder
    from optimizer.accuracy.builders import load_predictor
    from optimizer.latency.lut_model import LatencyPredictor, LutLatencyModel, NetworkCorrection
    from harness.cli.common import stderr
    from optimizer.search.defaults import default_budgets, find_accuracy_predictor, infer_space, predictor_warnings
    from optimizer.search.frontier import baseline_points, parse_budgets, plot_frontier, search_budgets, write_result
    from optimizer.spaces import get_space

    budgets = parse_budgets(latency, "ms") if latency is not None else None
    energy_budget = None
    if energy is not None:
        if energy_file is None:
            raise ChameleonError("--energy needs --energy-model (energy observations or a saved energy predictor)")
        energy_budget = parse_budgets(energy, "mj")[0]
    out_dir = prepare_output_folder(out_dir, "--out")
    correction_source = None if correction is None else str(correction)
    if correction is None and (lut.parent / "network_correction.json").is_file():
        # The main job leaves the correction it fitted on this LUT beside it: a network is not the plain sum of its units.
        correction = lut.parent / "network_correction.json"
        correction_source = f"{correction} (beside the LUT)"
    lut_model = LutLatencyModel.from_file(lut, None if correction is None else NetworkCorrection.load(correction))  # read once
    space = get_space(space_name if space_name is not None else infer_space(lut_model.median_us, str(lut)))
    latency_model = LatencyPredictor(lut_model, space, interpolate=interpolate)
    if accuracy_file is not None:
        accuracy_model, accuracy_source = load_predictor(accuracy_file, space, target="accuracy", seed=seed), str(accuracy_file)
    else:
        accuracy_model, found = find_accuracy_predictor(space, lut, seed=seed)
        accuracy_source = f"{found.path} ({found.source})"
    warnings = predictor_warnings(accuracy_model, space)
    for warning in warnings:
        stderr.print(f"warning: {warning}", markup=False, soft_wrap=True)
    budget_source = "given"
    if budgets is None:
        budgets = default_budgets(space, latency_model, seed=seed)
        budget_source = "quantiles of the space's predicted latency on this LUT"
    energy_model = load_predictor(energy_file, space, target="energy_mj", seed=seed) if energy_file else None
    choices = search_budgets(space, latency_model, accuracy_model, budgets, energy=energy_model,
                             energy_budget_mj=energy_budget, seed=seed, generations=generations)
    results = []
    for choice in choices:
        record = choice.to_json(space)
        record["onnx"] = str(space.export_onnx(choice.genes, out_dir / f"{space.name}-{choice.budget_ms:g}ms.onnx"))
        results.append(record)
    document = {"space": space.name, "lut": str(lut), "device": latency_model.lut.device, "seed": seed,
                "accuracy_predictor": accuracy_source, "network_correction": correction_source, "warnings": warnings, "budgets_ms": budgets, "budget_source": budget_source,
                "choices": results, "interpolated_signatures": list(latency_model.interpolated_keys)}
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
    """One column per network, one row per gene and figure (a network has more genes than a terminal has columns).

    Budgets that picked the same network share its column, their budgets listed in its header, so the
    table never shows one network twice as if it were two.
    """
    from rich.table import Table

    columns: dict[tuple[int, ...], list] = {}
    for c in choices:
        columns.setdefault(tuple(int(v) for v in c.genes), []).append(c)
    picks = [group[0] for group in columns.values()]
    table = Table(title=f"{space.name} on {document['device']} (predicted)")
    table.add_column("", style="bold")
    for group in columns.values():
        table.add_column("≤ " + ", ".join(f"{c.budget_ms:g}" for c in group) + " ms", justify="right")
    for i, name in enumerate(space.gene_names):
        table.add_row(name, *[str(int(c.genes[i])) for c in picks])
    table.add_row("accuracy", *[f"{c.accuracy:.4f}" for c in picks])
    table.add_row("latency ms", *[f"{c.latency_ms:.3f}{'*' if c.interpolated else ''}" for c in picks])
    if any(c.energy_mj is not None for c in picks):
        table.add_row("energy mJ", *["-" if c.energy_mj is None else f"{c.energy_mj:.2f}" for c in picks])
    table.add_row("MMACs", *[f"{c.macs / 1e6:.1f}" for c in picks])
    table.add_row("best baseline", *[(c.best_baseline or "-").replace("mobilenetv2-", "mbv2-") for c in picks])
    table.add_row("its accuracy", *["-" if c.best_baseline_accuracy is None else f"{c.best_baseline_accuracy:.4f}" for c in picks])
    stdout.print(table)
    if len(picks) < len(choices):
        stdout.print(f"{len(choices)} budgets picked {len(picks)} distinct networks (a budget's pick fits every looser budget; "
                     "a looser one found nothing better)")
    if document["interpolated_signatures"]:
        stdout.print(f"* latency includes {len(document['interpolated_signatures'])} LUT entries interpolated from measured ones (--interpolate)")
    stdout.print(f"budgets: {document['budget_source']}; accuracy predictor: {document['accuracy_predictor']}; "
                 f"network correction: {document['network_correction'] or 'none (the plain LUT sum)'}")
    stdout.print(f"wrote {document['result_json']}, {len(choices)} ONNX export(s), {document.get('frontier_png', '')}")
