"""Import a generic per-operator latency table (CSV) into a LUT.

For tables measured elsewhere (another tool, a paper's supplement): one row per
operator, its signature and its latency.  The header names the columns:

====================== ============================================================
column                 meaning
====================== ============================================================
``kind`` and the        the signature, one field a column: ``kind`` (required), ``n``,
signature fields        ``c_in``, ``h``, ``w``, ``c_out``, ``kernel``, ``stride``,
                        ``padding``, ``groups``, ``mid_channels``, ``activation``,
                        ``dtype``; a missing column or an empty cell takes
                        ``make_signature``'s default (``n`` 1, padding kernel // 2,
                        ``c_out`` = ``c_in`` for shape-preserving kinds, fp32...)
``signature``           instead of those: the stable signature string
``latency_us`` or       the operator's latency, in the unit the name says (exactly
``latency_ms``          one of the two): stored as ``median_us``, what the optimizer sums
``std_us`` / ``std_ms`` optional: the spread of the runs (``std_us``, and cv = std / latency)
``runs``                optional: how many timed runs the latency summarises (else 0: unknown)
====================== ============================================================

Any other column is refused (a misspelt ``kernal`` must not silently become the
default kernel).  Every problem (an unknown column, a row whose signature is not
valid, a latency that is not a non-negative number, a signature given twice) is
one :class:`CsvLutError` line naming the file and the line.  Imported rows say
what is not known: ``mean_us``, percentiles and the host columns null,
``min_us`` the latency, ``threads`` 0, ``runtime_version`` "unknown (imported)".
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__ as harness_version
from harness.errors import ChameleonError, InvalidSignature
from harness.lut import store as lut_store
from harness.signature import SIGNATURE_COLUMNS, OpSignature, make_signature, parse_signature
from harness.textfiles import UnreadableText, read_utf8


class CsvLutError(ChameleonError):
    """A file that is not a readable generic latency CSV."""


FIELD_COLUMNS: tuple[str, ...] = SIGNATURE_COLUMNS  # kind, n, c_in, ..., dtype
LATENCY_COLUMNS = {"latency_us": 1.0, "latency_ms": 1000.0}
STD_COLUMNS = {"std_us": 1.0, "std_ms": 1000.0}
OPTIONAL_COLUMNS = ("runs",)
KNOWN_COLUMNS: tuple[str, ...] = ("signature", *FIELD_COLUMNS, *LATENCY_COLUMNS, *STD_COLUMNS, *OPTIONAL_COLUMNS)


@dataclass
class CsvImportResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    records: int = 0


def _header(path: Path, names: list[str]) -> tuple[str, str | None]:
    """Check the header; return the latency column and the std column (or None)."""
    if not names:
        raise CsvLutError(f"{path}: empty file (expected a header: kind and the signature fields, or signature; "
                          f"and latency_us or latency_ms)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CsvLutError(f"{path}: column(s) {', '.join(repeated)} given twice")
    unknown = [n for n in names if n not in KNOWN_COLUMNS]
    if unknown:
        raise CsvLutError(f"{path}: unknown column(s) {', '.join(unknown)} (known: {', '.join(KNOWN_COLUMNS)})")
    latency = [n for n in names if n in LATENCY_COLUMNS]
    if len(latency) != 1:
        raise CsvLutError(f"{path}: needs exactly one latency column, latency_us or latency_ms "
                          f"(got {', '.join(latency) or 'none'})")
    std = [n for n in names if n in STD_COLUMNS]
    if len(std) > 1:
        raise CsvLutError(f"{path}: give std_us or std_ms, not both")
    fields = [n for n in names if n in FIELD_COLUMNS]
    if "signature" in names and fields:
        raise CsvLutError(f"{path}: give the signature column or the field columns ({', '.join(fields)}), not both")
    if "signature" not in names and "kind" not in names:
        raise CsvLutError(f"{path}: needs a kind column (with the signature fields) or a signature column")
    return latency[0], (std[0] if std else None)


def _signature(row: dict[str, str]) -> OpSignature:
    if "signature" in row:
        return parse_signature(row["signature"] or "")
    values = {name: row[name].strip() for name in FIELD_COLUMNS if name in row and row[name] is not None
              and row[name].strip() != ""}
    kind = values.pop("kind", "")
    if not kind:
        raise InvalidSignature("kind is empty")
    return make_signature(kind, **values)


def _number(text: str | None, what: str) -> float:
    try:
        value = float((text or "").strip())
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} {text!r} is not a time a device can take")
    return value


def import_latency_csv(path: Path, device_id: str, *, device_model: str = "unknown (imported table)",
                       runtime: str = "unknown", provider: str = "cpu") -> CsvImportResult:
    """Read a generic latency CSV into LUT rows for ``device_id`` (one row per signature)."""
    path = Path(path)
    try:
        text = read_utf8(path)
    except UnreadableText as err:
        raise CsvLutError(f"{path}: cannot read ({err.reason})") from None
    reader = csv.DictReader(text.splitlines())
    names = [n.strip() for n in (reader.fieldnames or [])]
    reader.fieldnames = names
    latency_column, std_column = _header(path, names)
    result = CsvImportResult()
    session, imported_at = lut_store.new_session_id(), lut_store.now_utc()
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        result.records += 1
        if None in row:
            raise CsvLutError(f"{path}: line {line}: more cells than the header has columns")
        try:
            sig = _signature(row)
        except InvalidSignature as err:
            raise CsvLutError(f"{path}: line {line}: {err}") from None
        if sig.key in seen:
            raise CsvLutError(f"{path}: line {line}: {sig.key} is already given on line {seen[sig.key]}")
        seen[sig.key] = line
        try:
            latency_us = _number(row[latency_column], latency_column) * LATENCY_COLUMNS[latency_column]
            std_us = None
            if std_column is not None and (row[std_column] or "").strip():
                std_us = _number(row[std_column], std_column) * STD_COLUMNS[std_column]
            runs_text = (row.get("runs") or "").strip()
            if runs_text and not runs_text.isdigit():
                raise ValueError(f"runs {runs_text!r} is not a number of runs")
            runs = int(runs_text) if runs_text else 0
        except ValueError as err:
            raise CsvLutError(f"{path}: line {line}: {err}") from None
        # the table gives one latency; which statistic it is, the table's maker knows: no mean
        record = lut_store.imported_row(sig, median_us=latency_us, mean_us=None, std_us=std_us, runs=runs,
                                        device_id=device_id, device_model=device_model, runtime=runtime,
                                        provider=provider, provenance=f"{harness_version} import of {path.name}",
                                        session_id=session, measured_at=imported_at)
        result.rows.append(record)
    if not result.rows:
        raise CsvLutError(f"{path}: a header but no rows")
    return result
