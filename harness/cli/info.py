"""`bench devices`, `bench plans`, `bench parse` and `bench fake-device`: what the harness has and its tools.

``devices`` and ``plans`` list the validated device profiles and the built-in
sweep plans; ``parse`` reads a benchmark tool's saved output; ``fake-device``
serves a loopback ADB device for demos and tests.  The functions are
registered on the ``bench`` app by :mod:`harness.cli.app`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from harness.cli.common import emit_json, stdout
from harness.cli.options import JsonOption
from harness.errors import ChameleonError
from harness.plans import available_plans, summarize_plan
from harness.profiles import load_all_profiles

out = stdout


# ----------------------------------------------------------------- parse
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
def fake_device(
    port: int = typer.Option(5555, "--port", help="TCP port on 127.0.0.1 (0: any free port). It never listens on another address."),
    sandbox: Optional[Path] = typer.Option(
        None, "--sandbox",
        help="Folder standing for the device's filesystem: new, empty or an earlier sandbox (default: a new temp folder).",
    ),
    authorized_keys: Optional[list[Path]] = typer.Option(
        None, "--authorized-keys", metavar="FILE",
        help="ADB public keys let in (adb_keys format, e.g. someone's adbkey.pub); repeatable. "
             "Default: this user's Chameleon key (CONFIG/adbkey.pub) and adb's key (~/.android/adbkey.pub).",
    ),
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

    Exposure: a client it lets in runs shell commands on this machine as the
    user who started it (as root when started as root: it warns). So it
    listens on 127.0.0.1 only, and lets in only the authorized keys (listed on
    stderr at start; any other key is refused at AUTH). Push, pull, stat and
    ls stay inside the sandbox (no '..', no symlink out), as do the device
    paths (/data, /sdcard, /sys...) in shell commands; but a shell command is
    a real command here and can read what you can (cat /etc/passwd).
    """
    from harness.fake_device import serve_forever

    serve_forever(port=port, sandbox=sandbox, install_tools=install_tools, authorized_keys=authorized_keys or None)


# --------------------------------------------------------------- devices
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
            "memory_limit_mb": p.memory_limit_mb,
            "description": p.description,
            "file": str(p.source),
        }
        for p in profiles
    ]
    if as_json:
        emit_json({"devices": records})
        return
    # Fits 80 columns: the figures in a table, each description on its own line below it.
    table = Table(title="Device profiles")
    short = {"onnxruntime": "ort", "onnxruntime_perf_test": "ort perf"}
    for column in ("name", "via", "runtime", "threads@cores", "dtypes", "energy", "MB"):
        table.add_column(column, no_wrap=column not in ("dtypes", "runtime"))
    for r in records:
        runtime = short.get(r["runtime"], r["runtime"]) + ("" if r["provider"] in ("cpu", "none") else f" {r['provider']}")
        table.add_row(r["name"], r["transport"], runtime, f"{r['threads']}@{r['affinity']}", " ".join(r["dtypes"]),
                      r["energy"], f"{r['memory_limit_mb']:g}")
    out.print(table)
    for r in records:
        out.print(f"[bold]{r['name']}[/]: {r['description']}", soft_wrap=False)


# ----------------------------------------------------------------- plans
def plans(as_json: bool = JsonOption) -> None:
    """List the built-in sweep plans with their signature counts."""
    records = []
    for name in available_plans():
        plan = summarize_plan(name)  # cached by the file's content: listing never expands 82,954 signatures twice
        records.append({"name": name, "signatures": plan.signatures, "by_kind": plan.by_kind,
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
