"""`bench op-profiles`: per-operator ETDump profiles of a plan's ExecuTorch programs, into a sidecar beside the LUT.

For each signature of the plan (in the dtypes the device takes): its
profile (:mod:`harness.runners.executorch_profiles`), compared with the timed
run (the LUT row's ``median_us`` when ``--lut`` holds it, else a timing taken
here with the device's runner, in a separate run), less the per-call overhead
(the LUT's identity row, or the runner's).  The profiles go to the sidecar
(:mod:`harness.lut.op_profiles`); the table says per signature how many
kernels the runtime ran and whether the profile accounts for the timed run.

Two sources of profiles, by the profile's runtime:

* ``executorch`` (this machine): profiled here, inside the open runner (its
  thread count and pinning);
* ``executor_runner`` (a phone): the ETDumps its sweep kept beside the LUT
  (``<lut>.etdump/<digest>.etdp``, W+N executions, the W warm-ups dropped);
  ``--lut`` is then required, and signatures without a kept dump are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from harness.cli.common import emit_json, stderr, stdout
from harness.cli.options import JsonOption
from harness.errors import ChameleonError
from harness.plans import load_plan
from harness.profiles import load_profile
from harness.progress_lines import track
from harness.signature import IDENTITY, OpSignature, make_signature

out, err = stdout, stderr

_BACKENDS = {"xnnpack": "xnnpack", "none": "portable"}  # profile delegate -> program backend (the LUT's provider)
OVERHEAD_SIGNATURE = make_signature(IDENTITY)  # the sweep's per-call overhead probe


def op_profiles(
    device: str = typer.Option(..., "--device", "-d", help="An ExecuTorch device profile (executorch here, or "
                                                           "executor_runner: its kept ETDumps)."),
    plan: str = typer.Option("smoke", "--plan", "-p", help="Built-in plan name or a plan YAML file."),
    lut: Optional[Path] = typer.Option(None, "--lut", help="The device's LUT: its rows are the timed runs compared with "
                                                          "(default: time here with the runner)."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Sidecar to write (default: beside the LUT, "
                                                                     "LUT-NAME.op-profiles.parquet; without --lut "
                                                                     "luts/DEVICE.op-profiles.parquet)."),
    runs: int = typer.Option(20, "--runs", min=5, max=1000, help="Profiled executions per signature (after 3 warm-ups)."),
    as_json: bool = JsonOption,
) -> None:
    """Profile each op of PLAN with ETDump: kernels per signature, and the profile's sum against the timed run."""
    from harness import __version__
    from harness.lut import op_profiles as sidecar
    from harness.lut import store as lut_store

    profile = load_profile(device)
    runtime = profile.runtime
    if runtime.name not in ("executorch", "executor_runner"):
        raise ChameleonError(f"device {profile.name!r} runs {runtime.name}; op-profiles reads ExecuTorch programs "
                             "(runtime executorch, or executor_runner with its kept ETDumps)")
    if runtime.name == "executor_runner" and lut is None:
        raise ChameleonError(f"device {profile.name!r} profiles on the phone during its sweep: give its LUT "
                             "(--lut), beside which the sweep kept the ETDumps")
    backend = _BACKENDS.get(runtime.delegate)
    if backend is None:
        raise ChameleonError(f"device {profile.name!r}: ExecuTorch delegate {runtime.delegate!r} (known: xnnpack, none)")
    signatures = [s for s in load_plan(plan).signatures if s.dtype in profile.dtypes and s.kind != IDENTITY]
    target = out_path or sidecar.sidecar_path(lut if lut is not None else Path("luts") / f"{profile.name}.parquet")
    lut_store.check_writable(target)
    if target.exists():  # a corrupt sidecar is refused before anything is profiled, not after
        sidecar.read_op_profiles(target)
    timed, overhead = _timed_from_lut(lut, profile.name, backend) if lut is not None else ({}, None)

    profiles, skipped, interrupted = [], [], False
    with track(f"{profile.name} · op profiles", err, describe=_label, bold=True) as on_progress:
        try:
            if runtime.name == "executorch":
                runtime_version = _profile_here(profile, backend, signatures, timed, overhead, runs, profiles,
                                                on_progress)
            else:
                runtime_version = _read_kept(profile, backend, signatures, lut, timed, overhead, profiles, skipped,
                                             on_progress)
        except KeyboardInterrupt:  # keep what was profiled; the same command profiles it all again
            interrupted, runtime_version = True, _lut_runtime_version(lut)
    now = lut_store.now_utc()
    records = [p.to_record(device_id=profile.name, runtime_version=runtime_version, harness_version=__version__,
                           profiled_at=now) for p in profiles]
    if records:
        sidecar.merge_into_sidecar(target, sidecar.rows_to_table(records))
    report = _report(profile.name, plan, lut, target, profiles, skipped, interrupted)
    if as_json:
        emit_json(report)
    else:
        _print(report, profiles)
    if interrupted:
        err.print(f"interrupted: {len(profiles)} profile(s) kept in {target}")
        raise typer.Exit(130)


# ------------------------------------------------------------------ sources
def _timed_from_lut(lut: Path, device: str, backend: str) -> tuple[dict[str, float], float | None]:
    """The LUT's medians by signature and its overhead row; a LUT of another device or backend is refused."""
    from harness.lut import store as lut_store

    table = lut_store.read_lut(lut)
    rows = table.select(["signature", "median_us", "device_id", "runtime", "provider"]).to_pylist()
    for row in rows:
        if row["device_id"] != device or not row["runtime"].startswith("executor") or row["provider"] != backend:
            raise ChameleonError(f"{lut}: row {row['signature']} was measured by {row['device_id']} with "
                                 f"{row['runtime']}/{row['provider']}, not {device} with ExecuTorch/{backend}: "
                                 "its times are not this device's timed runs")
    timed = {row["signature"]: row["median_us"] for row in rows}
    return timed, timed.get(OVERHEAD_SIGNATURE.key)


def _profile_here(profile: Any, backend: str, signatures: list[OpSignature], timed: dict[str, float],
                  overhead: float | None, runs: int, profiles: list, on_progress: Any) -> str:
    """Profile each signature in this process, inside the device's runner (threads, pinning); time what the LUT lacks."""
    from harness.runners.executorch_local import from_profile
    from harness.runners.executorch_profiles import check_against_timed, profile_signature

    runner = from_profile(profile)
    try:
        on_progress(0, len(signatures))
        if overhead is None:  # the timed runs compared with are less this, as the optimizer counts them
            overhead = runner.measure(OVERHEAD_SIGNATURE, profile.measurement).stats.median_us
        for done, signature in enumerate(signatures, 1):
            if signature.key in timed:
                timed_us, source = timed[signature.key], "lut"
            else:  # timed first, in its own runs: the profiler's cost never reaches the timed number
                timed_us, source = runner.measure(signature, profile.measurement).stats.median_us, "runner"
            found = profile_signature(signature, backend=backend, seed=runner.seed, cache=runner.cache, runs=runs)
            profiles.append(check_against_timed(found, timed_us, overhead, source))
            on_progress(done, len(signatures), signature)
        return runner.identity.runtime_version
    finally:
        runner.close()


def _read_kept(profile: Any, backend: str, signatures: list[OpSignature], lut: Path, timed: dict[str, float],
               overhead: float | None, profiles: list, skipped: list, on_progress: Any) -> str:
    """A phone's ETDumps, kept beside its LUT by the sweep (W warm-up executions first)."""
    from harness.runners.android_executorch import etdump_file, etdump_folder
    from harness.runners.executorch_profiles import check_against_timed, read_etdump

    folder = etdump_folder(lut)
    for done, signature in enumerate(signatures, 1):
        dump = etdump_file(folder, signature)
        if not dump.is_file():
            skipped.append(f"{signature.key}: no ETDump kept ({dump})")
        else:
            found = read_etdump(dump, signature, backend=backend, warmup_runs=profile.measurement.warmup_runs)
            source = "lut" if signature.key in timed else "none"
            profiles.append(check_against_timed(found, timed.get(signature.key), overhead, source))
        on_progress(done, len(signatures), signature)
    return _lut_runtime_version(lut)


def _lut_runtime_version(lut: Path | None) -> str:
    from harness.models import pte_models

    if lut is None:
        return pte_models.executorch_version()
    from harness.lut import store as lut_store

    versions = lut_store.read_lut(lut).column("runtime_version").to_pylist()
    return versions[0] if versions else pte_models.executorch_version()


# ------------------------------------------------------------------ output
def _report(device: str, plan: str, lut: Path | None, target: Path, profiles: list, skipped: list[str],
            interrupted: bool) -> dict[str, Any]:
    flags: dict[str, int] = {}
    for p in profiles:
        if p.flagged:
            flags[p.flag] = flags.get(p.flag, 0) + 1
    return {
        "device": device, "plan": plan, "lut": None if lut is None else str(lut), "out": str(target),
        "signatures": len(profiles), "within_10pct": sum(p.sum_within_10pct for p in profiles),
        "flagged": sum(p.flagged for p in profiles), "flags": flags,
        "one_kernel": sum(p.one_kernel for p in profiles), "units_rescaled": sum(
            p.units_scale != 1 or p.delegate_units_scale != 1 for p in profiles),
        "skipped": skipped, "interrupted": interrupted,
        "profiles": [_summary(p) for p in profiles],
    }


def _summary(p: Any) -> dict[str, Any]:
    return {
        "signature": p.signature, "backend": p.backend, "runs": p.runs, "kernels": p.kernels,
        "one_kernel": p.one_kernel, "boundary_kernels": p.boundary_kernels, "delegate_calls": p.delegate_calls,
        "operator_calls": p.operator_calls, "sum_us": p.sum_us, "method_us": p.method_us, "wall_us": p.wall_us,
        "boundary_us": p.boundary_us, "sum_over_method": p.sum_us / p.method_us if p.method_us > 0 else None,
        "outside_method_us": None if p.wall_us is None else p.wall_us - p.method_us, "timed_us": p.timed_us, "overhead_us": p.overhead_us,
        "timed_source": p.timed_source, "sum_over_timed": p.sum_over_timed, "sum_within_10pct": p.sum_within_10pct,
        "flag": p.flag, "note": p.note, "units_ok": p.units_ok, "units_scale": p.units_scale,
        "delegate_units_scale": p.delegate_units_scale, "units_note": p.units_note,
        "events": [{"name": e.name, "op": e.op, "level": e.level, "boundary": e.boundary,
                    "instruction": e.instruction, "median_us": e.median_us} for e in p.events],
    }


def _print(report: dict[str, Any], profiles: list) -> None:
    view = Table(title=f"{report['device']} · {report['plan']}: ETDump profiles against the timed runs")
    for name, justify in (("signature", "left"), ("kernels", "right"), ("one kernel?", "center"),
                          ("kernels µs", "right"), ("timed − overhead µs", "right"), ("profile/timed", "right"),
                          ("flagged", "left")):
        view.add_column(name, justify=justify)
    for p in profiles:
        ratio = p.sum_over_timed
        net = p.timed_net_us
        boundary = f" +{p.boundary_kernels}b" if p.boundary_kernels else ""
        view.add_row(_label(p.signature), f"{p.kernels}{boundary}", "yes" if p.one_kernel else "no", f"{p.sum_us:.1f}",
                     "—" if net is None else f"{net:.1f}", "—" if ratio is None else f"{ratio:.0%}",
                     p.flag or "", style=None if not p.flagged else "yellow")
    out.print(view)
    flags = ", ".join(f"{name} {count}" for name, count in sorted(report["flags"].items())) or "none"
    out.print(f"{report['signatures']} signature(s): {report['within_10pct']} within 10% of the timed run, "
              f"{report['flagged']} flagged ({flags}), {report['one_kernel']} ran as one kernel "
              f"(+Nb: N boundary kernels, layout/format conversions at the program's edges); "
              f"profiles in {report['out']}", markup=False, highlight=False)
    for line in report["skipped"]:
        err.print(f"skipped: {line}", markup=False, soft_wrap=True)


def _label(signature: Any) -> str:
    from harness.signature import parse_signature

    s = parse_signature(signature) if isinstance(signature, str) else signature
    extra = f" k{s.kernel}s{s.stride}" if s.kind not in ("fc", "add", "activation", "global_avgpool") else ""
    act = f" {s.activation}" if s.activation != "none" else ""
    return f"{s.kind} {s.c_in}x{s.h}x{s.w}→{s.c_out}{extra}{act} {s.dtype}"
