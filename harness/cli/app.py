"""`bench`: the harness's command line, a thin layer over the library.

Every command that reports figures takes ``--json`` and then prints exactly one
JSON document on stdout (progress and messages go to stderr).  A problem the
user can fix is one line on stderr and exit code 2.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from harness import __version__
from harness.lut import store as lut_store
from harness.cli.common import emit_json, run_app, sigterm_as_ctrl_c, stderr, stdout
from harness.errors import ChameleonError
from harness.lut.summary import summarize_lut
from harness.plans import available_plans, count_by_kind, load_plan
from harness.profiles import load_all_profiles, load_profile
from harness.signature import parse_signature

app = typer.Typer(
    help="Measure single-operator latency on a device and keep it in a per-device LUT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
lut_app = typer.Typer(help="Inspect, query and merge LUT files.", no_args_is_help=True)
app.add_typer(lut_app, name="lut")
energy_app = typer.Typer(help="Energy: counters (RAPL, NVML), power-monitor traces, lab sessions.", no_args_is_help=True)
app.add_typer(energy_app, name="energy")

out, err = stdout, stderr

JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout instead of tables.")


# ----------------------------------------------------------------- sweep
@app.command()
def sweep(
    device: str = typer.Option(..., "--device", "-d", help="Device profile name (see `bench devices`) or a profile file."),
    plan: str = typer.Option("smoke", "--plan", "-p", help="Built-in plan name (see `bench plans`) or a plan YAML file."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="LUT file to write (default: luts/DEVICE.parquet)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Measure at most this many missing signatures, then stop."),
    adb: Optional[str] = typer.Option(None, "--adb", help="ADB device to use instead of the profile's: HOST:PORT or a USB serial."),
    as_json: bool = JsonOption,
) -> None:
    """Measure every signature of PLAN on DEVICE that the LUT does not hold yet (resumable)."""
    from harness.sweep import run_sweep

    profile = load_profile(device)
    if adb:
        profile = with_adb_device(profile, adb)
    sweep_plan = load_plan(plan)
    target = out_path or Path("luts") / f"{profile.name}.parquet"

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[op]}", style="dim"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
    )
    task = progress.add_task(f"{profile.name} · {sweep_plan.name}", total=None, op="")

    def on_progress(done: int, total: int, signature: Any) -> None:
        # The bar appears once the sweep has validated its inputs and found what is missing.
        if not progress.live.is_started:
            progress.start()
        label = "" if signature is None else f"{signature.kind} {signature.c_in}x{signature.h}x{signature.w}→{signature.c_out} {signature.dtype}"
        progress.update(task, completed=done, total=total, op=label)

    try:
        with sigterm_as_ctrl_c():  # the sweep keeps everything measured, and says so
            result = run_sweep(profile, sweep_plan, target, on_progress=on_progress, limit=limit)
    finally:
        if progress.live.is_started:
            progress.stop()

    table = lut_store.read_lut(result.out)
    summary = summarize_lut(table)
    if as_json:
        emit_json({"sweep": result.to_json(), "lut": summary})
    else:
        out.print(
            f"[bold]{result.out}[/]: measured {result.measured} new, {result.already_measured} already there, "
            f"{result.remaining} remaining of {result.planned} ({result.skipped_dtype} skipped: dtype not taken by {profile.name}); "
            f"{result.wall_s:.1f} s wall, {result.timed_s:.1f} s in timed runs"
        )
        _print_summary(result.out, summary)
    if result.interrupted:
        err.print(f"interrupted: {result.rows_in_lut} rows kept in {result.out}; run the same command again to measure the remaining {result.remaining}")
        raise typer.Exit(130)


def with_adb_device(profile: Any, adb: str) -> Any:
    """The profile with its ADB device replaced: ``host:port`` is a TCP address, anything else a USB serial."""
    if profile.transport.type != "adb":
        raise ChameleonError(f"--adb applies to Android devices; {profile.name!r} uses the {profile.transport.type} transport")
    is_address = ":" in adb
    transport = dataclasses.replace(profile.transport, address=adb if is_address else None, serial=None if is_address else adb)
    return dataclasses.replace(profile, transport=transport)


# ------------------------------------------------------- measure-networks
@app.command("measure-networks")
def measure_networks_command(
    sources: list[Path] = typer.Argument(..., help="A folder of .onnx files, a manifest CSV/Parquet (arch_id, path, encoding columns), or .onnx files."),
    device: str = typer.Option(..., "--device", "-d", help="Device profile name (see `bench devices`) or a profile file."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Architecture latency table to write or extend (.parquet or .csv)."),
    as_json: bool = JsonOption,
) -> None:
    """Time whole networks end to end on DEVICE into an architecture latency table (one row per arch_id, resumable).

    The device's column is latency_ms:DEVICE (ms); cells already measured are
    kept, empty or failed (NaN) ones are measured. A missing model file is
    refused up front; one that cannot be loaded is recorded as NaN and counted.
    """
    from harness.networks.tables import measure_into_table, read_manifest

    profile = load_profile(device)
    entries = read_manifest(sources)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[arch]}", style="dim"), TimeElapsedColumn(), console=err)
    task = progress.add_task(f"{profile.name} · {len(entries)} networks", total=None, arch="")

    def on_progress(done: int, total: int, arch_id: Optional[str]) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done, total=total, arch=arch_id or "")

    try:
        with sigterm_as_ctrl_c(f"interrupted: {out_path} keeps what was measured; run the same command again to "
                               f"measure the rest"):
            result = measure_into_table(profile, entries, out_path, progress=on_progress)
    finally:
        if progress.live.is_started:
            progress.stop()
    if as_json:
        emit_json(result.to_json())
        return
    out.print(f"[bold]{result.out}[/] · {result.column}: measured {result.measured - result.failed} new, "
              f"{result.already_measured} already there, {result.failed} failed (NaN) of {result.architectures}; "
              f"{result.rows_in_table} rows in the table; {result.wall_s:.1f} s")
    for failure in result.failures:
        err.print(f"failed: {failure['arch_id']}: {failure['error']}", markup=False, soft_wrap=True)


# ----------------------------------------------------------------- parse
@app.command()
def parse(
    file: Path = typer.Argument(..., help="A saved output of the tool ('-' for standard input)."),
    fmt: str = typer.Option(..., "--format", "-f", help="tflite (benchmark_model), ort (onnxruntime_perf_test), ort-csv (its result file)"),
) -> None:
    """Parse a benchmark tool's output and print its figures as one JSON document (times in µs)."""
    from harness.parsers import parse_ort_result_csv, parse_tool_output

    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8", errors="replace")
    except OSError as problem:
        raise ChameleonError(f"{file}: cannot read ({problem.strerror})") from None
    if fmt == "ort-csv":
        per_run_us = [ms * 1000.0 for ms in parse_ort_result_csv(text)]
        emit_json({"format": "ort-result-csv", "runs": len(per_run_us), "per_run_us": per_run_us})
    else:
        emit_json(parse_tool_output(fmt, text))


# ----------------------------------------------------------- fake device
@app.command("fake-device")
def fake_device(
    port: int = typer.Option(5555, "--port", help="TCP port on 127.0.0.1 (0: any free port)."),
    sandbox: Optional[Path] = typer.Option(None, "--sandbox", help="Folder standing for the device's filesystem (default: a new temp folder)."),
    install_tools: bool = typer.Option(
        True, "--install-tools/--no-install-tools",
        help="Put the stand-in benchmark_model and onnxruntime_perf_test where the profiles look for them (/data/local/tmp/chameleon/).",
    ),
) -> None:
    """Run a loopback ADB device (the real ADB protocol on 127.0.0.1) for demos and tests, until Ctrl-C.

    It runs commands on this machine in a sandbox, answers getprop with its own
    identity (never a phone's), and its stand-in benchmark_model runs .tflite
    models with LiteRT on this CPU: figures measured through it are this
    machine's, and every LUT row says so.
    """
    from harness.fake_device import serve_forever

    try:
        serve_forever(port=port, sandbox=sandbox, install_tools=install_tools)
    except OSError as problem:
        raise ChameleonError(f"cannot listen on 127.0.0.1:{port} ({problem.strerror or problem})") from None


# --------------------------------------------------------------- devices
@app.command()
def devices(as_json: bool = JsonOption) -> None:
    """List the device profiles (device_profiles/*.yaml), validated."""
    profiles = load_all_profiles()
    records = [
        {
            "name": p.name,
            "transport": p.transport.type,
            "runtime": p.runtime.name,
            "provider": p.runtime.provider if p.runtime.name == "onnxruntime" else p.runtime.delegate,
            "threads": p.runtime.threads,
            "affinity": p.runtime.core_mask or ("auto" if p.runtime.cores is None else ",".join(map(str, p.runtime.cores))),
            "dtypes": list(p.dtypes),
            "energy": p.energy.source,
            "description": p.description,
            "file": str(p.source),
        }
        for p in profiles
    ]
    if as_json:
        emit_json({"devices": records})
        return
    table = Table(title="Device profiles")
    for column in ("name", "transport", "runtime", "provider", "threads", "affinity", "dtypes", "energy", "description"):
        table.add_column(column)
    for r in records:
        table.add_row(r["name"], r["transport"], r["runtime"], r["provider"], str(r["threads"]), r["affinity"],
                      ",".join(r["dtypes"]), r["energy"], r["description"])
    out.print(table)


# ----------------------------------------------------------------- plans
@app.command()
def plans(as_json: bool = JsonOption) -> None:
    """List the built-in sweep plans with their signature counts."""
    records = []
    for name in available_plans():
        plan = load_plan(name)
        records.append({"name": name, "signatures": len(plan.signatures), "by_kind": count_by_kind(plan),
                        "description": plan.description, "file": str(plan.source)})
    if as_json:
        emit_json({"plans": records})
        return
    table = Table(title="Sweep plans")
    for column in ("name", "signatures", "by kind", "description"):
        table.add_column(column)
    for r in records:
        table.add_row(r["name"], str(r["signatures"]), ", ".join(f"{k} {v}" for k, v in r["by_kind"].items()), r["description"])
    out.print(table)


# ------------------------------------------------------------------- lut
@lut_app.command("show")
def lut_show(
    file: Path = typer.Argument(..., help="LUT Parquet file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw latency against MACs to this PNG."),
    as_json: bool = JsonOption,
) -> None:
    """Summarize a LUT: provenance, per-kind latencies, noisy rows, pending parts."""
    table = lut_store.read_lut(file)
    summary = summarize_lut(table)
    parts = lut_store.read_parts(file)
    summary["pending_part_rows"] = parts.rows
    summary["unreadable_parts"] = [str(p) for p in parts.unreadable]
    if plot is not None:
        from harness.plots import plot_latency_vs_macs

        summary["plot"] = str(plot_latency_vs_macs(table, plot, title=f"{file.name}: {', '.join(summary['devices'])}"))
    if as_json:
        emit_json(summary)
    else:
        _print_summary(file, summary)


@lut_app.command("query")
def lut_query(
    file: Path = typer.Argument(..., help="LUT Parquet file."),
    signature: str = typer.Argument(..., help="Signature string, e.g. 'conv2d(n=1,c_in=3,...,dtype=fp32)'."),
    as_json: bool = JsonOption,
) -> None:
    """Print the entry of one signature (exit 1 when the LUT has no such entry)."""
    key = parse_signature(signature).key
    table = lut_store.read_lut(file)
    row = lut_store.find_row(table, key)
    if row is None:
        if as_json:
            emit_json({"signature": key, "found": False})
        else:
            err.print(f"{file}: no entry for {key}")
        raise typer.Exit(1)
    if as_json:
        emit_json({"found": True, **row})
        return
    table_view = Table(title=key, show_header=False)
    table_view.add_column("field", style="bold")
    table_view.add_column("value")
    for name, value in row.items():
        table_view.add_row(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    out.print(table_view)


@lut_app.command("import")
def lut_import(
    source: Path = typer.Argument(..., help="Caffe2 / FAI-PEP operator table: CSV or JSON (columns in harness/lut/caffe_import.py)."),
    device: str = typer.Option(..., "--device", "-d", help="Device id the rows belong to (a profile name such as s835)."),
    out_path: Path = typer.Option(..., "--out", "-o", help="LUT to write; existing rows of the same device are kept."),
    on_duplicate: str = typer.Option("newest", "--on-duplicate", help="newest | lowest-cv | error"),
    as_json: bool = JsonOption,
) -> None:
    """Import per-operator timings measured with Caffe2 (discontinued) so they are not lost."""
    from harness.lut.caffe_import import import_caffe2_lut

    lut_store.check_writable(out_path)
    result = import_caffe2_lut(source, device_id=device)
    imported = lut_store.rows_to_table(result.rows)
    existing = [lut_store.read_lut(out_path)] if out_path.exists() else []
    merged = lut_store.merge_tables(existing + [imported], on_duplicate=on_duplicate)
    lut_store.write_lut_atomic(merged, out_path)
    report = {"source": str(source), "out": str(out_path), "records": result.records, "imported": len(result.rows),
              "skipped": sum(result.skipped.values()), "skipped_by_reason": dict(result.skipped),
              "rows_in_lut": merged.num_rows}
    if as_json:
        emit_json(report)
        return
    out.print(f"{out_path}: imported {len(result.rows)} of {result.records} records from {source} "
              f"({merged.num_rows} rows in the LUT)")
    for reason, count in sorted(result.skipped.items()):
        out.print(f"  skipped {count}: {reason}")


@lut_app.command("merge")
def lut_merge(
    target: Path = typer.Argument(..., help="LUT to write (its existing rows and pending parts are included)."),
    inputs: list[Path] = typer.Argument(None, help="LUT files to fold in."),
    on_duplicate: str = typer.Option("newest", "--on-duplicate", help="newest | lowest-cv | error"),
    as_json: bool = JsonOption,
) -> None:
    """Combine LUT files of one device (several sessions) into TARGET, one row per signature."""
    others = [p for p in inputs or [] if p.resolve() != target.resolve()]
    sources = ([target] if target.exists() else []) + others
    target_parts = lut_store.read_parts(target)
    if not sources and not target_parts.tables:
        raise ChameleonError(f"{target}: nothing to merge (no such file and no inputs given)")
    tables = [lut_store.read_lut(source) for source in sources] + target_parts.tables
    for source in others:
        tables.extend(lut_store.read_parts(source).tables)  # what an input's interrupted sweep left
    rows_in = sum(t.num_rows for t in tables)
    merged = lut_store.merge_tables(tables, on_duplicate=on_duplicate)
    lut_store.check_writable(target)
    lut_store.write_lut_atomic(merged, target)
    for part in target_parts.read:  # folded into the target now
        part.unlink()
    result = {"out": str(target), "inputs": [str(s) for s in sources], "rows_in": rows_in, "rows_out": merged.num_rows,
              "duplicates_dropped": rows_in - merged.num_rows, "on_duplicate": on_duplicate}
    if as_json:
        emit_json(result)
    else:
        out.print(f"{target}: {merged.num_rows} rows from {rows_in} in {len(sources)} file(s); "
                  f"{rows_in - merged.num_rows} duplicate(s) dropped ({on_duplicate})")


# ---------------------------------------------------------------- energy
DEFAULT_ENERGY_SIGNATURE = "conv2d(n=1,c_in=32,h=56,w=56,c_out=32,kernel=3,stride=1,padding=1,groups=1,mid_channels=0,activation=relu,dtype=fp32)"


@energy_app.command("measure")
def energy_measure(
    device: str = typer.Option(..., "--device", "-d", help="A local device whose profile names a counter (xeon: rapl, cuda: nvml)."),
    signature: str = typer.Option(DEFAULT_ENERGY_SIGNATURE, "--signature", help="The op to run."),
    seconds: float = typer.Option(2.0, "--seconds", min=0.01, help="Run the op at least this long between counter readings."),
    idle_seconds: float = typer.Option(1.0, "--idle-seconds", min=0.0, help="Measure idle power first over this time and subtract it."),
    as_json: bool = JsonOption,
) -> None:
    """Energy per run of one op from the device's energy counter (RAPL on the Xeon, NVML on a GPU)."""
    from harness.energy.counters import counter_for, measure_with_counter
    from harness.runners import make_runner

    profile = load_profile(device)
    if profile.transport.type != "local":
        raise ChameleonError(f"device {profile.name!r} is measured with a power monitor: use bench energy session")
    sig = parse_signature(signature)
    counter = counter_for(profile.energy.source)  # fails here, before any work, when the counter is unreadable
    runner = make_runner(profile)
    try:
        op = runner.prepare(sig)
        result = measure_with_counter(counter, op.run_once, min_seconds=seconds, idle_seconds=idle_seconds)
    finally:
        runner.close()
    report = {"device": profile.name, "device_model": runner.identity.model, "signature": sig.key, **result.to_json()}
    if as_json:
        emit_json(report)
    else:
        idle = "" if result.idle_power_mw is None else f", idle {result.idle_power_mw:.0f} mW subtracted"
        out.print(f"{sig.key}: {result.energy_per_run_mj:.4f} mJ per run ({result.counter}, {result.runs} runs in "
                  f"{result.seconds:.2f} s, {result.energy_mj:.1f} mJ in all{idle})")


@energy_app.command("import")
def energy_import(
    trace_file: Path = typer.Argument(..., help="A trace: Monsoon PowerTool CSV, the Monsoon package's CSV, or time_s,current_mA,voltage_V."),
    runs: int = typer.Option(..., "--runs", min=1, help="Inferences the workload ran back to back."),
    idle_s: Optional[float] = typer.Option(None, "--idle-s", help="Idle time before the workload (ChamNet: 18 s)."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Sample rate in Hz when the file's time column is not reliable (default 5000)."),
    as_json: bool = JsonOption,
) -> None:
    """Energy per inference from a trace captured elsewhere (baseline subtracted, window found in the trace)."""
    from harness.energy.analysis import analyze
    from harness.energy.trace_import import read_trace

    result = analyze(read_trace(trace_file, sample_rate_hz=rate), runs, idle_s=idle_s)
    if as_json:
        emit_json({"trace": str(trace_file), **result.to_json()})
        return
    out.print(f"{trace_file}: {result.energy_per_run_mj:.4f} ± {result.uncertainty_mj:.4f} mJ per run over a "
              f"{result.window_s:.3f} s window ({result.latency_per_run_ms:.3f} ms per run), baseline {result.baseline_ma:.1f} mA, "
              f"mean power {result.mean_power_mw:.0f} mW")
    for warning in result.warnings:
        err.print(f"warning: {warning}")


@energy_app.command("recompute")
def energy_recompute(
    results: Path = typer.Argument(..., help="An energy results Parquet file (its traces/ beside it)."),
    as_json: bool = JsonOption,
) -> None:
    """Recompute every figure of an energy results file from its stored raw traces."""
    from harness.energy.store import recompute

    rows = recompute(results)
    if as_json:
        emit_json({"results": str(results), "rows": rows})
        return
    out.print(f"{results}: recomputed {len(rows)} row(s) from their traces")


@energy_app.command("session")
def energy_session(
    device: str = typer.Option(..., "--device", "-d", help="An Android profile (s835, pixel, hexagon-v62)."),
    monsoon: Optional[str] = typer.Option(None, "--monsoon", help="The monitor's serial number (default: the profile's)."),
    demo: bool = typer.Option(False, "--demo", help="A simulated Monsoon (and a loopback phone unless --adb is given)."),
    adb: Optional[str] = typer.Option(None, "--adb", help="The phone over Wi-Fi ADB, HOST:PORT (USB would charge it)."),
    plan: Optional[str] = typer.Option(None, "--plan", "-p", help="Measure every signature of a plan..."),
    models: Optional[Path] = typer.Option(None, "--models", help="...or every .tflite file of a folder."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Session folder (resumed when it exists)."),
    operator: Optional[str] = typer.Option(None, "--operator", help="Who runs the session (recorded in the manifest)."),
    idle_s: Optional[float] = typer.Option(None, "--idle-s", help="Idle seconds before each workload (default: the profile's, 18)."),
    runs: Optional[int] = typer.Option(None, "--runs", min=1, help="Runs per item (default: the profile's, 1000)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N items."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for the manual set-up steps (already done)."),
    as_json: bool = JsonOption,
) -> None:
    """Guide an energy measurement session: monitor + phone checks, then the ChamNet protocol item by item."""
    from harness.energy import session as lab

    profile = load_profile(device)
    if profile.transport.type != "adb" or profile.runtime.name != "tflite":
        raise ChameleonError(f"an energy session measures a phone through benchmark_model; {profile.name!r} is not one")
    if (plan is None) == (models is None):
        raise ChameleonError("give either --plan or --models")
    settings = lab.SessionSettings(voltage_v=profile.energy.voltage_v, idle_s=idle_s if idle_s is not None else profile.energy.idle_s,
                                   runs=runs or profile.energy.runs)
    items = lab.plan_items(load_plan(plan), profile) if plan else lab.model_items(models)
    items = items[:limit] if limit else items
    folder = out_dir or Path("energy_sessions") / f"{profile.name}-{(plan or models.name).replace('/', '_')}"
    ui = _RichSessionUI(ask=not yes and sys.stdin.isatty())
    with lab.lab_setup(profile, adb=adb, monsoon_serial=monsoon or profile.energy.monsoon_serial, demo=demo,
                       voltage_v=settings.voltage_v, ui=ui) as (runner, monitor, monitor_label):
        manifest = lab.EnergySession(folder, runner, monitor, monitor_label, items, settings, ui=ui,
                                     operator=operator, demo=demo).run()
    done = sum(item.status == "done" for item in manifest.items)
    failed = [item for item in manifest.items if item.status == "failed"]
    if as_json:
        emit_json({"folder": str(folder), "manifest": manifest.to_json()})
    else:
        out.print(f"{folder}: {done} of {len(manifest.items)} items measured ({len(failed)} failed); manifest.json, results.parquet, traces/")
        for item in failed:
            err.print(f"failed: {item.key}: {item.error}")


class _RichSessionUI:
    """Prompts and a live current readout on the terminal (stderr)."""

    def __init__(self, ask: bool) -> None:
        self.ask = ask
        self._last = 0.0

    def confirm(self, question: str) -> bool:
        if not self.ask:
            err.print(f"[dim]{question} (assumed yes: --yes or no terminal)[/]")
            return True
        from rich.prompt import Confirm

        return Confirm.ask(question, console=err, default=True)

    def status(self, message: str) -> None:
        err.print(message)

    def current(self, item: str, latest_ma: float) -> None:
        now = time.monotonic()
        if now - self._last >= 0.5:  # a readable live view, not a flood
            self._last = now
            err.print(f"  {latest_ma:8.1f} mA", end="\r")

    def item_done(self, item: Any, done: int, total: int) -> None:
        figure = f"{item.result['energy_per_run_mj']:.4f} mJ/run" if item.result else item.error
        err.print(f"[{done}/{total}] {item.status}: {item.key[:80]} {figure}")


def _print_summary(file: Path, summary: dict[str, Any]) -> None:
    out.print(
        f"[bold]{file}[/] · LUT schema v{summary['lut_schema_version']} · {summary['rows']} rows · "
        f"device {', '.join(summary['devices']) or '-'} ({'; '.join(summary['device_models']) or '-'})"
    )
    out.print(
        f"runtime {', '.join(summary['runtimes']) or '-'} · {', '.join(summary['providers']) or '-'} · "
        f"threads {', '.join(map(str, summary['threads'])) or '-'} · harness {', '.join(summary['harness_versions']) or '-'} · "
        f"{summary['sessions']} session(s)"
    )
    if summary["overhead_us"] is not None:
        out.print(f"per-invocation overhead (identity model): {summary['overhead_us']:.2f} µs")
    table = Table()
    table.add_column("kind", no_wrap=True, min_width=17)
    table.add_column("dtype", no_wrap=True)
    for column in ("rows", "median µs (median)", "min µs", "max µs", "sum µs"):
        table.add_column(column, justify="right")
    for r in summary["by_kind"]:
        table.add_row(r["kind"], r["dtype"], str(r["rows"]), f"{r['median_of_median_us']:.1f}",
                      f"{r['min_median_us']:.1f}", f"{r['max_median_us']:.1f}", f"{r['sum_median_us']:.1f}")
    out.print(table)
    out.print(f"rows with CV > {summary['noisy_cv_threshold']:.2f}: {summary['noisy_rows']}")
    if summary.get("pending_part_rows"):
        out.print(f"[yellow]{summary['pending_part_rows']} measured rows wait in {file}.parts/ (an interrupted sweep): "
                  f"re-run the sweep or `bench lut merge {file}` to fold them in[/]")
    if summary.get("plot"):
        out.print(f"plot: {summary['plot']}")


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the harness version.")) -> None:
    if version:
        out.print(f"chameleon harness {__version__}")
        raise typer.Exit()


def main() -> None:
    run_app(app)
