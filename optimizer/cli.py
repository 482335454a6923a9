"""`optimize`: the optimizer's command line (reads LUTs; never drives devices)."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli_common import emit_json, run_app, stdout
from harness.errors import ChameleonError, InvalidSignature
from harness.signature import parse_signature
from optimizer.latency_lut import LutLatencyModel

app = typer.Typer(
    help="Predict and optimise networks from device LUTs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = stdout


@app.callback()
def _root() -> None:
    """Predict and optimise networks from device LUTs."""


@app.command()
def estimate(
    lut: Path = typer.Option(..., "--lut", help="The device's LUT (Parquet)."),
    signatures: Path = typer.Argument(..., help="Text file: one operator signature per line (# comments allowed)."),
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
    result = LutLatencyModel.from_file(lut).estimate(ops)
    if as_json:
        emit_json({"lut": str(lut), **result.__dict__})
    else:
        out.print(f"{result.operators} operators: {result.latency_us / 1000:.3f} ms "
                  f"(sum of entries {result.operator_sum_us / 1000:.3f} ms, overhead {result.overhead_us:.1f} µs counted once)")


def main() -> None:
    run_app(app)
