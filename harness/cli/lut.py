"""`bench lut`: show, query, import and merge LUT files (the group's own Typer app, added by :mod:`harness.cli.app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from harness.cli.common import emit_json, stderr, stdout
from harness.cli.options import JsonOption
from harness.errors import ChameleonError
from harness.lut import store as lut_store
from harness.lut.summary import summarize_lut
from harness.signature import parse_signature

app = typer.Typer(help="Inspect, query and merge LUT files.", no_args_is_help=True)

out, err = stdout, stderr


# ------------------------------------------------------------------- lut
@app.command("show")
def lut_show(
    file: Path = typer.Argument(..., help="LUT Parquet file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw latency against MACs to this PNG."),
    as_json: bool = JsonOption,
) -> None:
    """Summarize a LUT: provenance, per-kind latencies, noisy rows, pending parts."""
    if plot is not None:
        from harness.output_paths import check_png_path

        check_png_path(plot, "--plot")
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
        print_lut_summary(file, summary)


@app.command("query")
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


IMPORT_FORMATS = ("caffe2", "ofa-yaml", "csv")


@app.command("import")
def lut_import(
    sources: list[Path] = typer.Argument(..., help="The table(s): a Caffe2 / FAI-PEP CSV or JSON; OFA lookup-table "
                                                  "YAML files (one per resolution); or a generic latency CSV."),
    device: str = typer.Option(..., "--device", "-d", help="Device id the rows belong to (a profile name such as s835)."),
    out_path: Path = typer.Option(..., "--out", "-o", help="LUT to write; existing rows of the same device are kept."),
    source_format: str = typer.Option("caffe2", "--format", "-f",
                                      help="caffe2 (FAI-PEP records) | ofa-yaml (Once-for-All LUTs, ms) | "
                                           "csv (signature fields + latency_us or latency_ms)"),
    device_model: Optional[str] = typer.Option(None, "--device-model",
                                               help="ofa-yaml, csv: the hardware the table was measured on "
                                                    "(default: unknown)."),
    runtime: str = typer.Option("unknown", "--runtime", help="ofa-yaml, csv: the runtime that measured the table."),
    on_duplicate: str = typer.Option("newest", "--on-duplicate", help="newest | lowest-cv | error"),
    as_json: bool = JsonOption,
) -> None:
    """Import per-operator timings measured elsewhere: Caffe2 (discontinued), Once-for-All's YAML LUTs, a generic CSV."""
    if source_format not in IMPORT_FORMATS:
        raise ChameleonError(f"--format {source_format}: unknown (known: {', '.join(IMPORT_FORMATS)})")
    if source_format != "ofa-yaml" and len(sources) > 1:
        raise ChameleonError(f"--format {source_format} reads one file, got {len(sources)} "
                             "(several files: only ofa-yaml, one per resolution)")
    lut_store.check_writable(out_path)
    extra: dict[str, Any] = {}
    if source_format == "caffe2":
        from harness.lut.caffe_import import import_caffe2_lut

        result = import_caffe2_lut(sources[0], device_id=device)
        rows, records, skipped = result.rows, result.records, dict(result.skipped)
    elif source_format == "ofa-yaml":
        from harness.lut.ofa_import import import_ofa_luts

        result = import_ofa_luts(sources, device, runtime=runtime,
                                 **({"device_model": device_model} if device_model else {}))
        rows, records, skipped = result.rows, result.records, dict(result.skipped)
        extra = {"skipped_examples": dict(result.examples), "pooled": result.pooled, "grammars": result.grammars}
    else:
        from harness.lut.csv_import import import_latency_csv

        result = import_latency_csv(sources[0], device, runtime=runtime,
                                    **({"device_model": device_model} if device_model else {}))
        rows, records, skipped = result.rows, result.records, {}
    imported = lut_store.rows_to_table(rows)
    merged = lut_store.merge_into_lut(out_path, [imported], on_duplicate=on_duplicate).table
    source_text = ", ".join(str(s) for s in sources)
    report = {"source": source_text, "sources": [str(s) for s in sources], "format": source_format,
              "out": str(out_path), "records": records, "imported": len(rows), "skipped": sum(skipped.values()),
              "skipped_by_reason": skipped, **extra, "rows_in_lut": merged.num_rows}
    if as_json:
        emit_json(report)
        return
    out.print(f"{out_path}: imported {len(rows)} of {records} records from {source_text} "
              f"({merged.num_rows} rows in the LUT)", markup=False)
    if extra.get("pooled"):
        out.print(f"  {extra['pooled']} signature(s) given by several keys or files: their runs pooled")
    examples = extra.get("skipped_examples", {})
    for reason, count in sorted(skipped.items()):
        example = f" (e.g. {examples[reason]})" if reason in examples else ""
        out.print(f"  skipped {count}: {reason}{example}", markup=False)


@app.command("merge")
def lut_merge(
    target: Path = typer.Argument(..., help="LUT to write (its existing rows and pending parts are included)."),
    inputs: list[Path] = typer.Argument(None, help="LUT files to fold in."),
    on_duplicate: str = typer.Option("newest", "--on-duplicate", help="newest | lowest-cv | error"),
    as_json: bool = JsonOption,
) -> None:
    """Combine LUT files of one device (several sessions) into TARGET, one row per signature."""
    others = [p for p in inputs or [] if p.resolve() != target.resolve()]
    sources = ([target] if target.exists() else []) + others
    if not sources and not lut_store.read_parts(target).tables:
        raise ChameleonError(f"{target}: nothing to merge (no such file and no inputs given)")
    tables = [lut_store.read_lut(source) for source in others]
    for source in others:
        tables.extend(lut_store.read_parts(source).tables)  # what an input's interrupted sweep left
    outcome = lut_store.merge_into_lut(target, tables, on_duplicate=on_duplicate)  # reads the target under its lock
    merged, rows_in = outcome.table, outcome.rows_in
    result = {"out": str(target), "inputs": [str(s) for s in sources], "rows_in": rows_in, "rows_out": merged.num_rows,
              "duplicates_dropped": rows_in - merged.num_rows, "on_duplicate": on_duplicate}
    if as_json:
        emit_json(result)
    else:
        out.print(f"{target}: {merged.num_rows} rows from {rows_in} in {len(sources)} file(s); "
                  f"{rows_in - merged.num_rows} duplicate(s) dropped ({on_duplicate})")


def print_lut_summary(file: Path, summary: dict[str, Any]) -> None:
    """A LUT summary (:func:`harness.lut.summary.summarize_lut`) as tables on stdout; `bench sweep` prints it too."""
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
    if summary.get("host"):
        out.print(f"host: {summary['host']['line']}", markup=False, soft_wrap=True)
    if summary.get("pending_part_rows"):
        out.print(f"[yellow]{summary['pending_part_rows']} measured rows wait in {file}.parts/ (an interrupted sweep): "
                  f"re-run the sweep or `bench lut merge {file}` to fold them in[/]")
    if summary.get("plot"):
        out.print(f"plot: {summary['plot']}")
