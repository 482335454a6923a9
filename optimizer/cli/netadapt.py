"""NetAdapt: `optimize netadapt` (prune a trained network to a budget) and `optimize layer-lut`.

``netadapt`` maps its flags to a resource table (:mod:`optimizer.netadapt.layer_tables`), a
:class:`optimizer.netadapt.NetAdaptSettings` and a :class:`optimizer.netadapt.NetAdaptRun`, runs it
and prints the iterations, the long-term fine-tuned networks and the width-multiplier baselines;
``layer-lut`` measures NetAdapt's layer-wise LUT ahead of time with the harness's sweep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.options import SEED_MAX, finite
from harness.cli.common import emit_json, sigterm_as_ctrl_c, stdout


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
    calibration: int = typer.Option(16, "--calibration", min=0, max=10_000, help="Prunings of the model measured end to end to fit the correction (0: plain LUT sum)."),
    initial_reduction: Optional[str] = typer.Option(None, "--initial-reduction", help="ΔR_0, e.g. 0.01ms or 4% of the start (default 4%, about NetAdapt's 0.5 ms for the small MobileNetV1)."),
    decay: float = typer.Option(0.96, "--decay", min=0.0, max=1.0, callback=finite, help="ΔR decay per iteration (NetAdapt: 0.96)."),
    channel_step: Optional[int] = typer.Option(None, "--channel-step", min=1, max=4096, help="Channel counts are multiples of this (default: the device profile's, else 8)."),
    short_term_steps: int = typer.Option(40, "--short-term-steps", min=1, max=1_000_000, help="Mini-batches of each proposal's short-term fine-tune."),
    long_term_epochs: int = typer.Option(5, "--long-term-epochs", min=1, max=10_000, help="Epochs of the final long-term fine-tune."),
    baselines: str = typer.Option("0.25,0.5,0.75,1", "--baselines", help="Width multipliers trained from scratch for comparison ('none' to skip)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, max=1024, help="Parallel fine-tuning processes (default: one per core)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", metavar="ADDRESS", help="Fine-tune on a Ray cluster instead of local processes: 'local' (an embedded Ray on this machine) or the head's HOST:PORT (run this on a host of the cluster; trainings go to hosts with training slots, measurements stay here)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seeds the fine-tunes and the calibration networks."),
    max_iterations: int = typer.Option(200, "--max-iterations", min=1, max=100_000, help="Stop after this many iterations."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """NetAdapt: prune a trained network to a budget, layer by layer, guided by the device's layer-wise LUT."""

    from harness.cli.common import stderr
    from optimizer.training.datasets import load_dataset
    from optimizer.netadapt.layer_tables import EnergyTable, LatencyTable, MacsCount
    from optimizer.latency.lut_model import NetworkCorrection
    from optimizer.netadapt import NetAdaptError, NetAdaptRun, NetAdaptSettings, parse_budget
    from optimizer.training.workers import available_cores

    if resource not in ("latency", "energy", "macs"):
        raise NetAdaptError(f"--resource {resource!r}: expected latency, energy or macs")
    if cluster is not None:
        from optimizer.training.cluster import check_cluster

        if workers is not None:
            raise NetAdaptError("--workers and --cluster: give one (a cluster's training slots say how many train at once)")
        cluster = check_cluster(cluster)  # a wrong address fails before anything is measured
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
                      workers=workers or available_cores(), cluster=cluster, console=stderr)

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


def layer_lut(
    model: Path = typer.Option(..., "--model", help="The trained network (a trainer or NetAdapt checkpoint)."),
    lut: Path = typer.Option(..., "--lut", help="The device's LUT to extend (created if missing)."),
    device: str = typer.Option(..., "--device", "-d", help="Device profile to measure on."),
    channel_step: Optional[int] = typer.Option(None, "--channel-step", min=1, max=4096, help="Channel counts are multiples of this (default: the profile's)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """NetAdapt's layer-wise LUT ahead of time: every layer of the model at every channel count on the device's step."""
    from harness.cli.common import stderr
    from harness.plans import Plan
    from harness.profiles import load_profile
    from harness.sweep import OVERHEAD_SIGNATURE, run_sweep
    from optimizer.netadapt.layer_tables import layer_grid
    from optimizer.netadapt import load_network
    from optimizer.progress import ProgressContext

    profile = load_profile(device)
    net, _ = load_network(model)
    step = channel_step or profile.channel_step
    signatures = layer_grid(net.signatures, step)
    plan = Plan(name=f"layer-lut-{model.stem}", description=f"layer-wise LUT of {model}", source=model,
                signatures=tuple(dict.fromkeys([*signatures, OVERHEAD_SIGNATURE])))
    with ProgressContext(stderr, "layer entries") as on_progress:  # a bar on a terminal, plain lines in a log
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
    stdout.print(f"{model}: {len(net.signatures)} units → {len(plan.signatures)} layer entries at channel step {step}; "
              f"{result.measured} measured, {result.already_measured} already in {lut} ({result.wall_s:.0f} s)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``optimize`` app (top-level commands, in this order)."""
    app.command()(netadapt)
    app.command("layer-lut")(layer_lut)
