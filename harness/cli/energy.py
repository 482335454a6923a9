"""`bench energy`: energy per run from a counter, from an imported trace, recomputed, or in a guided lab session.

The group's own Typer app, added to ``bench`` by :mod:`harness.cli.app`.
``measure`` reads a local energy counter (RAPL, NVML); ``import`` analyses a
power-monitor trace captured elsewhere; ``recompute`` redoes a results file
from its stored traces; ``session`` drives a Monsoon and a phone through the
ChamNet protocol, with prompts and a live current readout on stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from harness.cli.common import emit_json, sigterm_as_ctrl_c, stderr, stdout
from harness.cli.options import JsonOption
from harness.energy.bounds import MAX_IDLE_S, MAX_ITEMS, MAX_MEASURE_S, MAX_RATE_HZ, MAX_RUNS, check_count, check_number
from harness.errors import ChameleonError
from harness.plans import load_plan
from harness.profiles import load_profile
from harness.signature import parse_signature

app = typer.Typer(help="Energy: counters (RAPL, NVML), power-monitor traces, lab sessions.", no_args_is_help=True)

out, err = stdout, stderr


# ---------------------------------------------------------------- energy
DEFAULT_ENERGY_SIGNATURE = "conv2d(n=1,c_in=32,h=56,w=56,c_out=32,kernel=3,stride=1,padding=1,groups=1,mid_channels=0,activation=relu,dtype=fp32)"


@app.command("measure")
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

    # typer's min= lets NaN through (every comparison with NaN is false) and has no upper bound.
    check_number("--seconds", seconds, 0.01, MAX_MEASURE_S, unit=" s")
    check_number("--idle-seconds", idle_seconds, 0.0, MAX_MEASURE_S, unit=" s")
    profile = load_profile(device)
    if profile.transport.type != "local":
        raise ChameleonError(f"device {profile.name!r} is measured with a power monitor: use bench energy session")
    sig = parse_signature(signature)
    counter = counter_for(profile.energy.source)  # fails here, before any work, when the counter is unreadable
    from harness.contention import ContentionProbe

    runner = make_runner(profile)
    probe = ContentionProbe.for_profile(profile)  # was the core ours while the op ran? (not while idling)
    try:
        op = runner.prepare(sig)
        result = measure_with_counter(counter, op.run_once, min_seconds=seconds, idle_seconds=idle_seconds,
                                      around_runs=probe.timed)
    finally:
        runner.close()
    contention = probe.report()
    report = {"device": profile.name, "device_model": runner.identity.model, "signature": sig.key, **result.to_json(),
              "contention": contention.to_json()}
    if not contention.trusted:
        err.print(f"warning: measured on a contended host: {contention.reason}", markup=False, soft_wrap=True)
    if as_json:
        emit_json(report)
    else:
        idle = "" if result.idle_power_mw is None else f", idle {result.idle_power_mw:.0f} mW subtracted"
        out.print(f"{sig.key}: {result.energy_per_run_mj:.4f} mJ per run ({result.counter}, {result.runs} runs in "
                  f"{result.seconds:.2f} s, {result.energy_mj:.1f} mJ in all{idle})")


@app.command("import")
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

    _check_runs_and_idle(runs, idle_s)
    check_number("--rate", rate, 0.0, MAX_RATE_HZ, above_low=True, unit=" Hz")
    trace = read_trace(trace_file, sample_rate_hz=rate)
    try:
        result = analyze(trace, runs, idle_s=idle_s)
    except ChameleonError as problem:  # name the file, as the reader's own errors do
        raise type(problem)(f"{trace_file}: {problem}") from None
    if as_json:
        emit_json({"trace": str(trace_file), **result.to_json()})
        return
    out.print(f"{trace_file}: {result.energy_per_run_mj:.4f} ± {result.uncertainty_mj:.4f} mJ per run over a "
              f"{result.window_s:.3f} s window ({result.latency_per_run_ms:.3f} ms per run), baseline {result.baseline_ma:.1f} mA, "
              f"mean power {result.mean_power_mw:.0f} mW")
    for warning in result.warnings:
        err.print(f"warning: {warning}")


@app.command("recompute")
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


@app.command("session")
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
    """Guide an energy measurement session: monitor + phone checks, then the ChamNet protocol item by item.

    Exit 0 when every item is measured; 1 when any failed (the measured ones are kept, and the same command
    measures the rest); 130 on Ctrl-C or SIGTERM (what was measured is kept).
    """
    from harness.energy import session as lab

    # Everything the user typed is checked before the set-up, which takes a minute (phone, monitor).
    _check_runs_and_idle(runs, idle_s)
    check_count("--limit", limit, MAX_ITEMS)
    if out_dir is not None:
        lab.check_session_folder(out_dir)
    profile = load_profile(device)
    if profile.transport.type != "adb" or profile.runtime.name != "tflite":
        raise ChameleonError(f"an energy session measures a phone through benchmark_model; {profile.name!r} is not one")
    if (plan is None) == (models is None):
        raise ChameleonError("give either --plan or --models")
    settings = lab.SessionSettings(voltage_v=profile.energy.voltage_v, idle_s=idle_s if idle_s is not None else profile.energy.idle_s,
                                   runs=runs or profile.energy.runs)
    items = lab.plan_items(load_plan(plan), profile) if plan else lab.model_items(models)
    items = items[:limit] if limit else items
    folder = lab.check_session_folder(out_dir or Path("energy_sessions") / f"{profile.name}-{(plan or models.name).replace('/', '_')}")
    ui = _RichSessionUI(ask=not yes and sys.stdin.isatty())
    # SIGTERM stops the session as Ctrl-C does, so the set-up (the demo phone's folder) is released either way.
    with sigterm_as_ctrl_c(f"interrupted: {folder} keeps every item measured so far; run the same command again "
                           "to measure the rest"):
        with lab.lab_setup(profile, adb=adb, monsoon_serial=monsoon or profile.energy.monsoon_serial, demo=demo,
                           voltage_v=settings.voltage_v, ui=ui) as (runner, monitor, monitor_label):
            manifest = lab.EnergySession(folder, runner, monitor, monitor_label, items, settings, ui=ui,
                                         operator=operator, demo=demo).run()
    done = sum(item.status == "done" for item in manifest.items)
    failed = [item for item in manifest.items if item.status == "failed"]
    if as_json:
        emit_json({"folder": str(folder), "manifest": manifest.to_json()})
    else:
        kept = "; the measured ones are kept, run the same command again to retry the rest" if failed and done else ""
        out.print(f"{folder}: {done} of {len(manifest.items)} items measured ({len(failed)} failed{kept}); "
                  "manifest.json, results.parquet, traces/", markup=False, soft_wrap=True)
        for item in failed:
            err.print(f"failed: {item.key}: {item.error}", markup=False, soft_wrap=True)
    if failed:  # a script must not take a session with failed items for a complete one (as a sweep)
        raise typer.Exit(1)


def _check_runs_and_idle(runs: int | None, idle_s: float | None) -> None:
    check_count("--runs", runs, MAX_RUNS, hint="ChamNet runs 1000")
    check_number("--idle-s", idle_s, 0.0, MAX_IDLE_S, unit=" s", hint="ChamNet idles 18 s")


class _RichSessionUI:
    """Prompts and a live current readout on stderr.

    The readout rewrites one line (``\\r``) on a terminal; into a log file it
    would be one endless line, so there it is a plain line per item at most
    every ``LOG_EVERY_S``.
    """

    LIVE_EVERY_S = 0.5  # a readable live view, not a flood
    LOG_EVERY_S = 30.0

    def __init__(self, ask: bool, terminal: bool | None = None) -> None:
        self.ask = ask
        self.terminal = err.is_terminal if terminal is None else terminal
        self._last: dict[str, float] = {}

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
        last = self._last.get(item)
        if self.terminal:
            if last is None or now - last >= self.LIVE_EVERY_S:
                self._last[item] = now
                err.print(f"  {latest_ma:8.1f} mA", end="\r")
        elif last is None or now - last >= self.LOG_EVERY_S:
            self._last[item] = now
            err.print(f"  {item[:80]}: {latest_ma:.1f} mA", markup=False, soft_wrap=True)

    def item_done(self, item: Any, done: int, total: int) -> None:
        figure = f"{item.result['energy_per_run_mj']:.4f} mJ/run" if item.result else item.error
        err.print(f"[{done}/{total}] {item.status}: {item.key[:80]} {figure}", markup=False, soft_wrap=True)
