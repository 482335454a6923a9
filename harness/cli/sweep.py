"""`bench sweep` and `bench measure-networks`: the two commands that measure, with their progress on stderr.

``sweep`` fills a per-device LUT with single-operator latencies
(:func:`harness.sweep.run_sweep`); ``measure-networks`` times whole networks
into an architecture latency table (:mod:`harness.networks.tables`).  Both are
resumable and keep what they measured when interrupted (Ctrl-C or SIGTERM).
The functions are registered on the ``bench`` app by :mod:`harness.cli.app`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import typer

from harness.cli.common import emit_json, sigterm_as_ctrl_c, stderr, stdout
from harness.cli.lut import print_lut_summary
from harness.cli.options import JsonOption
from harness.errors import ChameleonError
from harness.lut import store as lut_store
from harness.lut.summary import summarize_lut
from harness.plans import load_plan
from harness.profiles import load_profile
from harness.progress_lines import track

out, err = stdout, stderr


# ----------------------------------------------------------------- sweep
def sweep(
    devices: list[str] = typer.Option(..., "--device", "-d", help="Device profile name (see `bench devices`) or a profile file; "
                                      "several with --farm."),
    plan: str = typer.Option("smoke", "--plan", "-p", help="Built-in plan name (see `bench plans`) or a plan YAML file."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="LUT file to write (default: luts/DEVICE.parquet)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Measure at most this many missing signatures, then stop."),
    adb: Optional[str] = typer.Option(None, "--adb", help="ADB device to use instead of the profile's: HOST:PORT or a USB serial."),
    farm: Optional[str] = typer.Option(None, "--farm", metavar="[ADDRESS]",
                                       help="Measure on the device farm at ADDRESS (HOST:PORT), every unit of each --device at "
                                            "once; bare --farm: a farm on this machine, its devices given by --attach."),
    attach: Optional[list[str]] = typer.Option(None, "--attach", metavar="PROFILE=UNIT",
                                               help="With a bare --farm: a device of this machine's farm; repeatable."),
    shard: bool = typer.Option(False, "--shard", help="With --farm: the units of one device share the plan, into one LUT "
                                                     "(after a calibration set shows they agree)."),
    out_dir: Path = typer.Option(Path("luts"), "--out-dir", help="With --farm: the folder of the LUTs (one per device, or per unit)."),
    as_json: bool = JsonOption,
) -> None:
    """Measure every signature of PLAN on DEVICE that the LUT does not hold yet (resumable); --farm: on many devices at once."""
    from harness.sweep import run_sweep

    if farm is not None:
        from harness.cli.farm import sweep_on_farm

        for given, name in ((out_path, "--out"), (limit, "--limit"), (adb, "--adb")):
            if given is not None:
                raise ChameleonError(f"{name} applies to a one-device sweep; with --farm each LUT goes to --out-dir")
        sweep_on_farm(farm, devices, plan, out_dir, shard=shard, attach=attach or [], as_json=as_json)
        return
    if attach or shard:
        raise ChameleonError("--attach and --shard apply to a farm sweep (--farm)")
    if len(devices) != 1:
        raise ChameleonError(f"one --device for a sweep on this machine (given {len(devices)}); several need --farm")
    profile = load_profile(devices[0])
    if adb:
        profile = with_adb_device(profile, adb)
    sweep_plan = load_plan(plan)
    target = out_path or Path("luts") / f"{profile.name}.parquet"

    with track(f"{profile.name} · {sweep_plan.name}", err, describe=_signature_label, bold=True) as on_progress:
        with sigterm_as_ctrl_c():  # the sweep keeps everything measured, and says so
            result = run_sweep(profile, sweep_plan, target, on_progress=on_progress, limit=limit)

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
        print_lut_summary(result.out, summary)
    warn_if_contended(result.contention)
    for failure in result.failures:
        err.print(f"not kept: {failure}", markup=False, soft_wrap=True)
    for part in result.unreadable_parts:
        err.print(f"warning: {part}: an unreadable part file of an earlier run, set aside (its rows are not in the LUT)",
                  markup=False, soft_wrap=True)
    if result.interrupted:
        err.print(f"interrupted: {result.rows_in_lut} rows kept in {result.out}; run the same command again to measure the remaining {result.remaining}")
        raise typer.Exit(130)
    if result.failures:  # the LUT lacks what was asked: a script must not take this run for a complete one
        raise typer.Exit(1)


def _signature_label(signature: Any) -> str:
    return f"{signature.kind} {signature.c_in}x{signature.h}x{signature.w}→{signature.c_out} {signature.dtype}"


def warn_if_contended(report: Any) -> None:
    """A yellow line on stderr when the host was too busy for the figures to be trusted (they are in --json too)."""
    if report is not None and not report.trusted:
        from rich.markup import escape

        err.print(f"[yellow]warning: {escape(report.reason)}[/]", soft_wrap=True, highlight=False)


def with_adb_device(profile: Any, adb: str) -> Any:
    """The profile with its ADB device replaced: ``host:port`` is a TCP address, anything else a USB serial."""
    if profile.transport.type != "adb":
        raise ChameleonError(f"--adb applies to Android devices; {profile.name!r} uses the {profile.transport.type} transport")
    is_address = ":" in adb
    transport = dataclasses.replace(profile.transport, address=adb if is_address else None, serial=None if is_address else adb)
    return dataclasses.replace(profile, transport=transport)


# ------------------------------------------------------- measure-networks
def measure_networks_command(
    sources: list[Path] = typer.Argument(..., help="A folder of model files (.onnx, .tflite, .pte), a manifest CSV/Parquet (arch_id, path, encoding columns), or model files."),
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
    with track(f"{profile.name} · {len(entries)} networks", err, describe=str, bold=True) as on_progress:
        with sigterm_as_ctrl_c(f"interrupted: {out_path} keeps what was measured; run the same command again to "
                               f"measure the rest"):
            result = measure_into_table(profile, entries, out_path, progress=on_progress)
    warn_if_contended(result.contention)
    if as_json:
        emit_json(result.to_json())
        return
    out.print(f"[bold]{result.out}[/] · {result.column}: measured {result.measured - result.failed} new, "
              f"{result.already_measured} already there, {result.failed} failed (NaN) of {result.architectures}; "
              f"{result.rows_in_table} rows in the table; {result.wall_s:.1f} s")
    for failure in result.failures:
        err.print(f"failed: {failure['arch_id']}: {failure['error']}", markup=False, soft_wrap=True)
