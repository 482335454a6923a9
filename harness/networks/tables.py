"""Architecture latency tables: whole networks measured on devices, one row per architecture, one column per device.

The format (Parquet, or CSV when the file name ends in ``.csv``):

- ``arch_id`` (string, unique): the architecture's name;
- any *encoding* columns carried over from the manifest (genes, categorical
  choices), as the manifest had them;
- ``latency_ms:<device>`` (float64) for each device measured: the network's
  end-to-end latency in ms, the median of round medians of
  :func:`harness.networks.timing.measure_networks` (the LUT's runner and
  statistics).  A failed measurement is NaN, counted and reported, never
  dropped.

Parquet files carry ``chameleon.file = architecture-latency-table``,
``chameleon.arch_table_schema_version = 1`` and, per device column, the
provenance of the run that filled it (``chameleon.devices``, JSON: device
model, runtime and version, provider, threads, harness version, when). No other
columns are added, so a reader may take every column that is neither
``arch_id`` nor ``latency_ms:*`` as the encoding.

Measuring into a table resumes: cells already holding a latency are kept,
empty or NaN ones are (re)measured, the table is rewritten atomically after
every interleaved group, and measuring another device adds or fills that
device's column in the same table.

A manifest names the networks: a folder of ``*.onnx`` / ``*.tflite`` / ``*.pte`` files (``arch_id`` is the
file stem), a list of such files, or a CSV/Parquet file with ``arch_id``
and ``path`` (or ``model_path``) columns, its other columns being the
encoding; relative paths are taken from the manifest's folder.  A model file
that does not exist is refused up front (a manifest error); one that exists but
ONNX Runtime cannot load or run is measured as failed (NaN) and the others go on.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from harness import __version__
from harness.atomic import exclusive_lock, write_atomically
from harness.contention import ContentionProbe, ContentionReport
from harness.errors import ChameleonError, InvalidModelFile, OutputNotWritable
from harness.measurement import MeasurementSettings
from harness.networks.timing import NetworkRunner, measure_networks
from harness.profiles import DeviceProfile
from harness.runners import make_runner

LATENCY_PREFIX = "latency_ms:"
FILE_KIND = "architecture-latency-table"
SCHEMA_VERSION = "1"
PATH_COLUMNS = ("path", "model_path")

# (networks done so far, networks to measure, arch_id of the last one or None at the start)
TableProgress = Callable[[int, int, "str | None"], None]


class InvalidManifest(ChameleonError):
    """A manifest of networks to measure that cannot be read or names no usable model."""


class InvalidArchTable(ChameleonError):
    """An architecture latency table that cannot be read or does not match what is measured into it."""


def latency_column(device: str) -> str:
    """The column holding ``device``'s latencies (ms)."""
    return f"{LATENCY_PREFIX}{device}"


@dataclass(frozen=True)
class ManifestEntry:
    arch_id: str
    path: Path
    encoding: dict[str, Any] = field(default_factory=dict)


@dataclass
class TableResult:
    """What one ``measure_into_table`` call did."""

    out: Path
    device: str
    column: str
    architectures: int  # rows of the manifest
    measured: int  # cells measured now (failures included)
    already_measured: int  # cells kept from before
    failed: int  # cells measured now that failed (NaN)
    failures: list[dict[str, str]]
    rows_in_table: int
    wall_s: float
    contention: ContentionReport | None = None  # how busy this host was during the timed runs; trust the cells?

    def to_json(self) -> dict[str, Any]:
        return {"out": str(self.out), "device": self.device, "column": self.column, "architectures": self.architectures,
                "measured": self.measured, "already_measured": self.already_measured, "failed": self.failed,
                "failures": self.failures, "rows_in_table": self.rows_in_table, "wall_s": self.wall_s,
                "contention": None if self.contention is None else self.contention.to_json()}


# ------------------------------------------------------------------ manifests
MODEL_SUFFIXES = (".onnx", ".tflite", ".pte")  # what the local runners open (ONNX Runtime, LiteRT, ExecuTorch)


def read_manifest(sources: Sequence[str | Path]) -> list[ManifestEntry]:
    """The networks named by a folder, a manifest file (CSV or Parquet), or a list of model files (.onnx, .tflite, .pte)."""
    sources = [Path(s) for s in sources]
    if not sources:
        raise InvalidManifest("no networks given: pass a folder of model files, a manifest CSV/Parquet or .onnx/.tflite/.pte files")
    if len(sources) == 1 and sources[0].is_dir():
        files = sorted(p for p in sources[0].iterdir() if p.suffix.lower() in MODEL_SUFFIXES)
        if not files:
            raise InvalidManifest(f"{sources[0]}: no .onnx, .tflite or .pte files in this folder")
        entries = [ManifestEntry(p.stem, p) for p in files]
    elif len(sources) == 1 and sources[0].suffix.lower() in (".csv", ".parquet"):
        entries = _read_manifest_file(sources[0])
    else:
        not_models = [s for s in sources if s.suffix.lower() not in MODEL_SUFFIXES]
        if not_models:
            raise InvalidManifest(f"{not_models[0]}: expected one folder, one manifest (.csv/.parquet) or .onnx/.tflite/.pte files")
        entries = [ManifestEntry(p.stem, p) for p in sources]
    seen: set[str] = set()
    for entry in entries:
        if entry.arch_id in seen:
            raise InvalidManifest(f"arch_id {entry.arch_id!r} appears twice")
        seen.add(entry.arch_id)
    missing = [e for e in entries if not e.path.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InvalidModelFile(f"{missing[0].path}: no such model file (arch_id {missing[0].arch_id}){more}")
    return entries


def _read_manifest_file(path: Path) -> list[ManifestEntry]:
    table = read_table_file(path, InvalidManifest, "manifest")
    if "arch_id" not in table.column_names:
        raise InvalidManifest(f"{path}: the manifest has no arch_id column (columns: {', '.join(table.column_names)})")
    path_column = next((c for c in PATH_COLUMNS if c in table.column_names), None)
    if path_column is None:
        raise InvalidManifest(f"{path}: the manifest has no path or model_path column")
    latency = [c for c in table.column_names if c.startswith(LATENCY_PREFIX)]
    encoding_columns = [c for c in table.column_names if c not in ("arch_id", path_column) and c not in latency]
    rows = table.to_pylist()
    entries = []
    for i, row in enumerate(rows):
        if row["arch_id"] is None or row[path_column] is None or str(row[path_column]).strip() == "":
            raise InvalidManifest(f"{path}: row {i + 1} has no arch_id or no model path")
        model = Path(str(row[path_column]))
        entries.append(ManifestEntry(str(row["arch_id"]), model if model.is_absolute() else path.parent / model,
                                     {c: row[c] for c in encoding_columns}))
    if not entries:
        raise InvalidManifest(f"{path}: the manifest has no rows")
    return entries


def read_table_file(path: Path, error: type[ChameleonError], what: str, default_format: str = "parquet") -> pa.Table:
    """A CSV (``.csv``) or Parquet (``.parquet``/``.pq``) file as an Arrow table; other suffixes are read as
    ``default_format``.  A missing or unreadable file is one line of ``error`` naming ``what`` it should be."""
    suffix = path.suffix.lower()
    as_csv = suffix == ".csv" or (suffix not in (".parquet", ".pq") and default_format == "csv")
    try:
        table = pacsv.read_csv(path) if as_csv else pq.read_table(path)
        table.column_names  # noqa: B018 -- decoded here: a header that is not UTF-8 fails now, in one line
        return table
    except FileNotFoundError:
        raise error(f"{path}: no such file (expected the {what})") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text (expected the {what})") from None
    except (OSError, pa.ArrowException) as problem:
        first = str(problem).strip().splitlines()[0] if str(problem).strip() else type(problem).__name__
        raise error(f"{path}: cannot read the {what} ({first[:200]})") from None


# --------------------------------------------------------------------- tables
def read_arch_table(path: str | Path) -> pa.Table:
    """An architecture latency table (Parquet or CSV), checked: a unique ``arch_id`` and float latency columns."""
    path = Path(path)
    table = read_table_file(path, InvalidArchTable, "architecture latency table")
    metadata = table.schema.metadata or {}
    kind = metadata.get(b"chameleon.file")
    if kind is not None and kind.decode() != FILE_KIND:
        raise InvalidArchTable(f"{path}: a {kind.decode()} file, not an architecture latency table")
    version = metadata.get(b"chameleon.arch_table_schema_version")
    if version is not None and version.decode() != SCHEMA_VERSION:
        raise InvalidArchTable(f"{path}: architecture table schema version {version.decode()}, this harness reads {SCHEMA_VERSION}")
    if "arch_id" not in table.column_names:
        raise InvalidArchTable(f"{path}: no arch_id column: not an architecture latency table")
    ids = table.column("arch_id").to_pylist()
    if len(set(ids)) != len(ids):
        raise InvalidArchTable(f"{path}: arch_id is not unique")
    return table


def table_devices(table: pa.Table) -> list[str]:
    """The devices a table has latency columns for."""
    return [c[len(LATENCY_PREFIX):] for c in table.column_names if c.startswith(LATENCY_PREFIX)]


def _provenance(table: pa.Table) -> dict[str, Any]:
    raw = (table.schema.metadata or {}).get(b"chameleon.devices")
    return json.loads(raw) if raw else {}


def write_arch_table(columns: dict[str, list[Any]], provenance: dict[str, Any], path: Path) -> None:
    """Write the table atomically: ``arch_id`` first, encodings, then latency columns sorted by device."""
    latency = sorted(c for c in columns if c.startswith(LATENCY_PREFIX))
    order = ["arch_id"] + [c for c in columns if c != "arch_id" and c not in latency] + latency
    arrays = {}
    for name in order:
        if name in latency:
            arrays[name] = pa.array([math.nan if v is None else float(v) for v in columns[name]], pa.float64())
        else:
            arrays[name] = pa.array([None if _is_nan(v) else v for v in columns[name]]) if name != "arch_id" \
                else pa.array([str(v) for v in columns[name]], pa.string())
    table = pa.table(arrays)
    if path.suffix.lower() == ".csv":
        write_atomically(path, lambda tmp: pacsv.write_csv(table, tmp))
        return
    table = table.replace_schema_metadata({
        "chameleon.file": FILE_KIND,
        "chameleon.arch_table_schema_version": SCHEMA_VERSION,
        "chameleon.devices": json.dumps(provenance, sort_keys=True),
    })
    write_atomically(path, lambda tmp: pq.write_table(table, tmp))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


#: Why a table's writer is refused while another holds its lock (measure-networks, optimize latency-table).
TABLE_WRITER_BUSY = "another run is writing this table"


def _check_writable(path: Path) -> None:
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise OutputNotWritable(f"{path}: the table must be a .parquet or .csv file")
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputNotWritable(f"{path}: is a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise OutputNotWritable(f"{folder}: cannot create the output folder ({problem.strerror or problem})") from None


# ------------------------------------------------------------------ measuring
def measure_into_table(
    profile: DeviceProfile,
    entries: Sequence[ManifestEntry],
    out: str | Path,
    *,
    device: str | None = None,
    settings: MeasurementSettings | None = None,
    runner: NetworkRunner | None = None,
    progress: TableProgress | None = None,
) -> TableResult:
    """Measure every network of ``entries`` whose ``latency_ms:<device>`` cell in ``out`` is empty, and write them there.

    ``device`` names the column (default: the profile's name); a ``runner``
    replaces the profile's (a diagnostic configuration, say), and ``settings``
    its measurement settings.  The table is rewritten after every interleaved
    group, so an interrupted run keeps what it measured.  Raises
    :class:`InvalidArchTable` when the table's column for this device was
    measured on other hardware, runtime version, provider or thread count.
    """
    out = Path(out)
    _check_writable(out)
    # The table is read once and rewritten per group: one writer at a time.
    with exclusive_lock(out, TABLE_WRITER_BUSY):
        return _measure_into_table(profile, entries, out, device, settings, runner, progress)


def _measure_into_table(profile: DeviceProfile, entries: Sequence[ManifestEntry], out: Path, device: str | None,
                        settings: MeasurementSettings | None, runner: NetworkRunner | None,
                        progress: TableProgress | None) -> TableResult:
    started = time.monotonic()
    device = device or profile.name
    column = latency_column(device)
    settings = settings or profile.measurement

    if out.exists():
        existing = read_arch_table(out)
        columns = {name: existing.column(name).to_pylist() for name in existing.column_names}
        provenance = _provenance(existing)
    else:
        columns, provenance = {"arch_id": []}, {}
    index = {arch_id: i for i, arch_id in enumerate(columns["arch_id"])}

    # Rows for new architectures; encodings filled where empty, refused where they disagree.
    for entry in entries:
        row = index.get(entry.arch_id)
        if row is None:
            row = index[entry.arch_id] = len(columns["arch_id"])
            for values in columns.values():
                values.append(None)
            columns["arch_id"][row] = entry.arch_id
        for name, value in entry.encoding.items():
            if name not in columns:
                columns[name] = [None] * len(columns["arch_id"])
            old = columns[name][row]
            if old is None or _is_nan(old):
                columns[name][row] = value
            elif value is not None and not _is_nan(value) and old != value:
                raise InvalidArchTable(f"{out}: arch_id {entry.arch_id!r} has {name}={old!r} there but {value!r} in the manifest")
    columns.setdefault(column, [None] * len(columns["arch_id"]))

    def empty(entry: ManifestEntry) -> bool:
        value = columns[column][index[entry.arch_id]]
        return value is None or _is_nan(value)

    todo = [e for e in entries if empty(e)]
    kept = len(entries) - len(todo)
    failures: list[dict[str, str]] = []
    measured = 0
    own_runner = runner is None
    probe = ContentionProbe.for_profile(profile)
    if todo:
        runner = runner or make_runner(profile)
    try:
        if todo:
            identity = runner.identity
            this_run = {"device_id": profile.name, "device_model": identity.model, "runtime": identity.runtime,
                        "runtime_version": identity.runtime_version, "provider": identity.provider,
                        "threads": profile.runtime.threads}
            before = provenance.get(device)
            if before and any(before.get(k) != v for k, v in this_run.items()):
                diff = next(k for k, v in this_run.items() if before.get(k) != v)
                raise InvalidArchTable(f"{out}: column {column} was measured with {diff}={before.get(diff)!r}, "
                                       f"this run has {this_run[diff]!r}; use another device name or output")
            provenance[device] = {**this_run, "harness_version": __version__,
                                  "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if progress:
            progress(0, len(todo), None)
        for start in range(0, len(todo), settings.interleave_group):
            group = todo[start:start + settings.interleave_group]
            for entry, latency_ms, error in _measure_group(profile, group, settings, runner, probe):
                columns[column][index[entry.arch_id]] = latency_ms
                measured += 1
                if error is not None:
                    failures.append({"arch_id": entry.arch_id, "path": str(entry.path), "error": error})
            provenance[device]["missing"] = sum(1 for v in columns[column] if v is None or _is_nan(v))
            write_arch_table(columns, provenance, out)
            if progress:
                progress(measured, len(todo), group[-1].arch_id)
        if not todo:  # new rows, encodings or an empty column may still be new to the file
            write_arch_table(columns, provenance, out)
    finally:
        if own_runner and runner is not None:
            runner.close()
    return TableResult(out=out, device=device, column=column, architectures=len(entries), measured=measured,
                       already_measured=kept, failed=len(failures), failures=failures,
                       rows_in_table=len(columns["arch_id"]), wall_s=time.monotonic() - started,
                       contention=probe.report())


def _measure_group(profile: DeviceProfile, group: Sequence[ManifestEntry], settings: MeasurementSettings,
                   runner: NetworkRunner, probe: ContentionProbe) -> list[tuple[ManifestEntry, float, str | None]]:
    """Latencies (ms) of a group timed in interleaved rounds; a group with a broken model is timed one by one."""
    try:
        timings = measure_networks(profile, [e.path for e in group], settings, runner=runner, probe=probe)
        return [(e, t.median_us / 1000.0, None) for e, t in zip(group, timings)]
    except InvalidModelFile:
        pass
    results = []
    for entry in group:
        try:
            results.append((entry, measure_networks(profile, [entry.path], settings, runner=runner, probe=probe)[0].median_us / 1000.0, None))
        except InvalidModelFile as problem:
            results.append((entry, math.nan, str(problem)))
    return results
