"""`optimize reference-set` and `optimize predict-device`: a new device's latencies from a few of its measurements.

``reference-set`` lists the architectures of a table to measure on a new
device; ``predict-device`` predicts that device on every architecture of the
table from them (:mod:`optimizer.crossdevice.device_prediction`), or, for a
device the table already has, scores the prediction against its column.
Registered on the ``optimize`` app by :mod:`optimizer.cli.app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import emit_json, stdout
from harness.cli.options import SEED_MAX
from harness.errors import ChameleonError


def _references(table, target: Optional[str], references: Optional[str]) -> list[str]:
    if references:
        names = [n.strip() for n in references.split(",") if n.strip()]
        for name in names:
            table.latency(name)  # one line for an unknown device
    else:
        names = [d for d in table.devices if d != target]
    if target in names:
        raise ChameleonError(f"--references includes the target {target}")
    if not names:
        raise ChameleonError("no reference device: the table needs at least one device besides the target")
    return names


def reference_set_command(
    table_path: Path = typer.Argument(..., metavar="TABLE", help="Architecture latency table of the reference devices."),
    samples: int = typer.Option(10, "--samples", min=4, max=100_000, help="Architectures to measure on the new device."),
    references: Optional[str] = typer.Option(None, "--references", help="Comma list of reference devices (default: all)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seeds the draw within each stratum."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the list as CSV (arch_id and the encoding columns)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """The architectures to measure on a new device: spread over the reference devices' latency range."""
    from optimizer.crossdevice.device_prediction import reference_set
    from optimizer.latency.architecture_tables import read_latency_table

    table = read_latency_table(table_path)
    refs = _references(table, None, references)
    rows = reference_set(table, refs, samples, seed=seed)
    records = [{"arch_id": str(table.arch_ids[i]), **{c: _plain(table.encoding[c][i]) for c in table.encoding}} for i in rows]
    if out is not None:
        import csv

        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    if as_json:
        emit_json({"table": str(table_path), "references": refs, "samples": samples, "seed": seed, "architectures": records})
        return
    for record in records:
        stdout.print(" ".join(f"{k}={v}" for k, v in record.items()), markup=False, soft_wrap=True)
    if out is not None:
        stdout.print(f"wrote {out}: measure these on the new device (latency_ms per arch_id), then optimize predict-device",
                     markup=False)


def predict_device(
    table_path: Path = typer.Argument(..., metavar="TABLE", help="Architecture latency table of the reference devices."),
    target: str = typer.Option(..., "--target", help="The new device: a name, or a column of TABLE to score against."),
    samples: int = typer.Option(10, "--samples", min=4, max=100_000, help="Reference-set size (with --measured: ignored)."),
    measured: Optional[Path] = typer.Option(None, "--measured", help="CSV of the target's measurements: arch_id,latency_ms."),
    references: Optional[str] = typer.Option(None, "--references", help="Comma list of reference devices (default: all others)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seeds the reference set."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the predictions as a table (arch_id, encoding, latency_ms:TARGET)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Predict TARGET's latency on every architecture of TABLE from a few of its measurements."""
    import numpy as np

    from optimizer.crossdevice.device_prediction import CrossDevicePredictor, reference_set
    from optimizer.crossdevice.monotonicity import spearman
    from optimizer.latency.architecture_tables import LatencyTable, read_latency_table, write_latency_table

    table = read_latency_table(table_path)
    in_table = target in table.devices
    refs = _references(table, target, references)
    if measured is not None:
        rows, latency = _read_measurements(measured, table)
    elif in_table:
        rows = reference_set(table, refs, samples, seed=seed)
        latency = table.latency(target)[rows]
        if not np.isfinite(latency).all():
            raise ChameleonError(f"{target} lacks some reference architectures; give --measured")
    else:
        raise ChameleonError(f"{target} is not a device of {table_path}: give its measurements with --measured "
                             f"(optimize reference-set lists what to measure)")
    predictor = CrossDevicePredictor(table, refs).fit(rows, latency)
    predicted = predictor.predict()
    report = {"table": str(table_path), "target": target, **predictor.describe()}
    if in_table:
        truth = table.latency(target)
        rest = np.setdiff1d(np.flatnonzero(np.isfinite(truth)), rows)
        report["srcc_on_the_rest"] = spearman(predicted[rest], truth[rest])
        report["raw_proxy_srcc_on_the_rest"] = spearman(table.latency(predictor.proxy_)[rest], truth[rest])
        report["scored_on"] = int(len(rest))
    if out is not None:
        predictions = LatencyTable(arch_ids=table.arch_ids, encoding=table.encoding,
                                   latency_ms={target: predicted}, source=str(out))
        write_latency_table(predictions, out)
        report["out"] = str(out)
    if as_json:
        emit_json(report)
        return
    errors = ", ".join(f"{m} {e:.3f}" for m, e in report["loo_relative_rmse"].items())
    stdout.print(f"{target}: {report['method']} chosen on {report['samples']} samples by leave-one-out relative "
                 f"error ({errors}); best single proxy {report['proxy']}", markup=False, soft_wrap=True)
    if report["fell_back_to_proxy"]:
        stdout.print("the richer models did not beat the single proxy on these samples: the proxy is used", markup=False)
    if in_table:
        stdout.print(f"SRCC on the other {report['scored_on']} architectures: {report['srcc_on_the_rest']:.3f} "
                     f"(the proxy as it is: {report['raw_proxy_srcc_on_the_rest']:.3f})", markup=False)
    if out is not None:
        stdout.print(f"wrote {out}", markup=False)


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _read_measurements(path: Path, table) -> tuple:
    import csv

    import numpy as np

    index = {str(a): i for i, a in enumerate(table.arch_ids)}
    rows, latency = [], []
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"arch_id", "latency_ms"} <= set(reader.fieldnames):
                raise ChameleonError(f"{path}: expected the columns arch_id,latency_ms")
            for n, record in enumerate(reader, start=2):
                if record["arch_id"] not in index:
                    raise ChameleonError(f"{path}: line {n}: architecture {record['arch_id']!r} is not in the table")
                try:
                    value = float(record["latency_ms"])
                except ValueError:
                    raise ChameleonError(f"{path}: line {n}: latency_ms {record['latency_ms']!r} is not a number") from None
                if not (np.isfinite(value) and value > 0):
                    raise ChameleonError(f"{path}: line {n}: latency_ms {value} is not a positive time")
                rows.append(index[record["arch_id"]])
                latency.append(value)
    except UnicodeDecodeError:
        raise ChameleonError(f"{path}: not UTF-8 text") from None
    except FileNotFoundError:
        raise ChameleonError(f"{path}: no such file") from None
    if len(set(rows)) != len(rows):
        raise ChameleonError(f"{path}: an architecture is measured twice")
    return np.array(rows, dtype=np.int64), np.array(latency)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``optimize`` app."""
    app.command("reference-set")(reference_set_command)
    app.command("predict-device")(predict_device)
