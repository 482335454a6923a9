"""Energy results in Parquet, and the raw traces they came from, kept beside them.

The results file holds one row per measured thing: an operator (keyed, like
the LUT, by its signature string, with the signature's field columns) or a
whole network (``arch_id``, its ``genes`` as a JSON list of numbers and the
search ``space``).  A row carries the :class:`EnergyResult` figures (warnings
joined by newlines into one string), how the analysis was run (``runs``,
``idle_s``, the host's window and the analysis settings as JSON) and where
(device, monitor, voltage, rate, session, time), and the trace file's path
relative to the results file, so :func:`recompute` can redo the analysis.

Writes follow the LUT's discipline (:mod:`harness.lut.store`): every writer
takes the file's lock (``FILE.lock``, :func:`harness.atomic.exclusive_lock`,
the helper every LUT writer takes), reads the file *inside* the lock, and
writes a temporary file renamed over the old one, fsync'ed; readers see the
old file or the new one, never half of one, and two writers never lose each
other's rows.  A writer here holds the lock for one read-merge-write (well
under a second), so a second one waits its turn, up to ``LOCK_WAIT_S``, then
refuses in one line (:class:`~harness.errors.SweepLocked`).  A row is unique
per (device, operator or network); on append the newest measurement wins.

Raw traces are ``.npz`` files (``np.savez_compressed``): the current and
voltage arrays, the rate, the start time, dropped samples, source and
metadata (JSON), read back exactly by :func:`load_trace`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.energy.analysis import ANALYSIS_DEFAULTS, RESULT_FIELDS, EnergyResult, analyze
from harness.energy.trace import Trace
from harness.atomic import exclusive_lock, write_atomically
from harness.errors import ChameleonError, OutputNotWritable, SweepLocked
from harness.signature import SIGNATURE_COLUMNS, OpSignature, parse_signature

ENERGY_SCHEMA_VERSION = 1
TRACE_FILE_VERSION = 1
_META_KIND = b"chameleon.file"
_META_KIND_VALUE = b"energy-results"
_META_VERSION = b"chameleon.energy_schema_version"
WARNING_SEPARATOR = "\n"

OPERATOR, NETWORK = "operator", "network"

# One message for every writer refused by a results file's lock.
WRITER_BUSY = "another writer (a lab session or a recompute) is writing these energy results"
LOCK_WAIT_S = 60.0  # how long a writer waits for the lock before it refuses (each holder needs well under a second)
_LOCK_POLL_S = 0.05


class EnergyFileError(ChameleonError):
    """An energy results or trace file that is missing, unreadable, corrupt or of another kind."""


_INT_SIGNATURE = {"n", "c_in", "h", "w", "c_out", "kernel", "stride", "padding", "groups", "mid_channels"}
_KEY_FIELDS = (
    [pa.field("entry", pa.string(), nullable=False),  # operator | network
     pa.field("signature", pa.string(), nullable=True)]
    + [pa.field(name, pa.int32() if name in _INT_SIGNATURE else pa.string(), nullable=True) for name in SIGNATURE_COLUMNS]
    + [pa.field("arch_id", pa.string(), nullable=True),
       pa.field("space", pa.string(), nullable=True),
       pa.field("genes", pa.string(), nullable=True)]  # JSON list of numbers
)
_RESULT_TYPES = {"runs": pa.int32(), "samples": pa.int64(), "dropped_samples": pa.int64(), "warnings": pa.string()}
_RESULT_FIELDS = [pa.field(name, _RESULT_TYPES.get(name, pa.float64()), nullable=False) for name in RESULT_FIELDS]
_ANALYSIS_FIELDS = [
    pa.field("idle_s", pa.float64(), nullable=True),
    pa.field("host_start_s", pa.float64(), nullable=True),  # the host's window, in trace time, when it was given
    pa.field("host_end_s", pa.float64(), nullable=True),
    pa.field("analysis", pa.string(), nullable=False),  # analyze()'s settings, JSON
]
_CONTEXT_FIELDS = [
    pa.field("device_id", pa.string(), nullable=False),
    pa.field("device_model", pa.string(), nullable=False),
    pa.field("monitor", pa.string(), nullable=False),  # "monsoon HVPM serial 12345", "import", "simulated"
    pa.field("voltage_v", pa.float64(), nullable=False),
    pa.field("sample_rate_hz", pa.float64(), nullable=False),
    pa.field("trace_file", pa.string(), nullable=True),  # relative to the results file's folder
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("measured_at", pa.timestamp("us", tz="UTC"), nullable=False),
]
ENERGY_SCHEMA = pa.schema(
    _KEY_FIELDS + _RESULT_FIELDS + _ANALYSIS_FIELDS + _CONTEXT_FIELDS,
    metadata={_META_KIND: _META_KIND_VALUE, _META_VERSION: str(ENERGY_SCHEMA_VERSION).encode()},
)
ENERGY_COLUMNS: tuple[str, ...] = tuple(ENERGY_SCHEMA.names)
_OPTIONAL = {f.name for f in ENERGY_SCHEMA if f.nullable}


# ----------------------------------------------------------------- rows
def result_row(result: EnergyResult, *, device_id: str, device_model: str, monitor: str, session_id: str,
               sample_rate_hz: float, voltage_v: float, signature: OpSignature | str | None = None,
               arch_id: str | None = None, genes: Sequence[float] | None = None, space: str | None = None,
               idle_s: float | None = None, host_window: tuple[float, float] | None = None,
               analysis: dict[str, Any] | None = None, trace_file: str | None = None,
               measured_at: datetime | None = None) -> dict[str, Any]:
    """A results row for one analysed trace: give ``signature`` for an operator, or ``arch_id`` (+ genes, space) for a network.

    ``analysis`` is the settings passed to :func:`analyze` beyond its defaults
    (stored whole, defaults filled in, so a recompute reproduces the figures).
    """
    row: dict[str, Any] = {name: getattr(result, name) for name in RESULT_FIELDS}
    row["warnings"] = WARNING_SEPARATOR.join(result.warnings)
    row.update(signature=signature, arch_id=arch_id, genes=genes, space=space, idle_s=idle_s,
               host_start_s=None if host_window is None else float(host_window[0]),
               host_end_s=None if host_window is None else float(host_window[1]),
               analysis={**ANALYSIS_DEFAULTS, **(analysis or {})}, device_id=device_id, device_model=device_model,
               monitor=monitor, voltage_v=float(voltage_v), sample_rate_hz=float(sample_rate_hz),
               trace_file=trace_file, session_id=session_id, measured_at=measured_at or datetime.now(timezone.utc))
    return normalise_row(row)


def normalise_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row with every column: the key spelled out (signature fields, genes as JSON), settings as JSON.

    A row names exactly one of ``signature`` (an :class:`OpSignature` or its
    string) and ``arch_id``.  Raises ValueError for a row the code built wrong,
    InvalidSignature for a signature that does not parse.
    """
    out = {name: row.get(name) for name in ENERGY_COLUMNS}
    signature, arch_id = row.get("signature"), row.get("arch_id")
    if (signature is None) == (arch_id is None):
        raise ValueError("an energy row names exactly one of signature (an operator) and arch_id (a network)")
    if signature is not None:
        sig = signature if isinstance(signature, OpSignature) else parse_signature(str(signature))
        out.update(sig.to_record())
        out["signature"], out["entry"] = sig.key, OPERATOR
        out["arch_id"] = out["space"] = out["genes"] = None
    else:
        out["entry"], out["arch_id"] = NETWORK, str(arch_id)
        for name in SIGNATURE_COLUMNS:
            out[name] = None
        out["genes"] = _genes_json(row.get("genes"))
    if isinstance(out["analysis"], dict):
        out["analysis"] = json.dumps(out["analysis"], sort_keys=True)
    elif out["analysis"] is None:
        out["analysis"] = json.dumps(ANALYSIS_DEFAULTS, sort_keys=True)
    if isinstance(out["warnings"], (list, tuple)):
        out["warnings"] = WARNING_SEPARATOR.join(out["warnings"])
    if out["measured_at"] is None:
        out["measured_at"] = datetime.now(timezone.utc)
    missing = [name for name in ENERGY_COLUMNS if out[name] is None and name not in _OPTIONAL]
    if missing:
        raise ValueError(f"energy row lacks {', '.join(missing)}")
    return out


def _genes_json(genes: Any) -> str | None:
    if genes is None:
        return None
    values = json.loads(genes) if isinstance(genes, str) else list(genes)
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"genes must be a list of numbers, got {genes!r}")
    return json.dumps([v if isinstance(v, int) else float(v) for v in values])


def rows_to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    rows = [normalise_row(r) for r in rows]
    return pa.Table.from_pydict({name: [r[name] for r in rows] for name in ENERGY_COLUMNS}, schema=ENERGY_SCHEMA)


def row_key(row: dict[str, Any]) -> tuple[str, str, str]:
    """What makes a row unique: (device, entry, signature or space/arch_id)."""
    if row["entry"] == OPERATOR:
        return (row["device_id"], OPERATOR, row["signature"])
    return (row["device_id"], NETWORK, f"{row.get('space') or ''}/{row['arch_id']}")


def result_of(row: dict[str, Any]) -> EnergyResult:
    """The EnergyResult a row holds."""
    values = {name: row[name] for name in RESULT_FIELDS}
    values["warnings"] = tuple(w for w in (row["warnings"] or "").split(WARNING_SEPARATOR) if w)
    return EnergyResult(**values)


# ----------------------------------------------------------------- reading
def read_results(path: str | Path) -> pa.Table:
    """Read and validate an energy results file; any problem is one EnergyFileError line."""
    path = Path(path)
    if not path.exists():
        raise EnergyFileError(f"{path}: no such file")
    if path.is_dir():
        raise EnergyFileError(f"{path}: is a folder, not an energy results file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise EnergyFileError(f"{path}: not a readable Parquet file (truncated or corrupt: {reason})") from None
    return validate_table(table, str(path))


def validate_table(table: pa.Table, where: str) -> pa.Table:
    metadata = table.schema.metadata or {}
    if metadata.get(_META_KIND) != _META_KIND_VALUE or _META_VERSION not in metadata:
        kind = metadata.get(_META_KIND, b"").decode(errors="replace")
        what = f"a {kind} file" if kind else f"no {_META_KIND.decode()} metadata"
        raise EnergyFileError(f"{where}: a Parquet file, but not Chameleon energy results ({what})")
    version = metadata[_META_VERSION].decode(errors="replace")
    if version != str(ENERGY_SCHEMA_VERSION):
        raise EnergyFileError(f"{where}: energy schema version {version}, but this harness reads version {ENERGY_SCHEMA_VERSION}")
    missing = [name for name in ENERGY_COLUMNS if name not in table.column_names]
    if missing:
        raise EnergyFileError(f"{where}: energy results lack column(s) {', '.join(missing)}")
    try:
        table = table.select(list(ENERGY_COLUMNS)).cast(ENERGY_SCHEMA)
    except (ValueError, TypeError, pa.ArrowException) as err:
        raise EnergyFileError(f"{where}: energy columns have unexpected types or nulls ({str(err).splitlines()[0]})") from None
    entries = set(table.column("entry").to_pylist())
    if not entries <= {OPERATOR, NETWORK}:
        raise EnergyFileError(f"{where}: unknown entry kind(s) {', '.join(sorted(map(str, entries - {OPERATOR, NETWORK})))}")
    for entry, column in ((OPERATOR, "signature"), (NETWORK, "arch_id")):
        values = [v for e, v in zip(table.column("entry").to_pylist(), table.column(column).to_pylist()) if e == entry]
        if any(v is None for v in values):
            raise EnergyFileError(f"{where}: a {entry} row has no {column}")
    return table


# ----------------------------------------------------------------- writing
def write_results_atomic(table: pa.Table, path: str | Path) -> None:
    """Write the results so that readers see either the old file or the new one (the caller holds the lock)."""
    path = Path(path)
    table = validate_table(table.replace_schema_metadata(ENERGY_SCHEMA.metadata), str(path))
    _atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def append_results(path: str | Path, rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Merge ``rows`` into the results file (created when missing): one row per key, the newest measurement wins."""
    path = Path(path)
    new = rows_to_table(list(rows))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputNotWritable(f"{path}: cannot create folder {path.parent} ({err.strerror})") from None
    with writer_lock(path):
        old = read_results(path) if path.exists() else ENERGY_SCHEMA.empty_table()  # read inside the lock: no row lost
        merged = merge_rows(old.to_pylist() + new.to_pylist())
        table = pa.Table.from_pylist(merged, schema=ENERGY_SCHEMA)
        write_results_atomic(table, path)
    return table


def merge_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key, the latest ``measured_at`` (later in the list on a tie); in first-seen key order."""
    best: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = row_key(row)
        if key not in best or row["measured_at"] >= best[key]["measured_at"]:
            best[key] = row
    return list(best.values())


def _atomic(path: Path, write) -> None:
    write_atomically(path, write)


@contextlib.contextmanager
def writer_lock(path: str | Path) -> Iterator[None]:
    """Hold the results file's ``FILE.lock`` for a read-modify-write, waiting up to ``LOCK_WAIT_S`` for it.

    The lock is :func:`harness.atomic.exclusive_lock`'s, which refuses at once
    when another holds it: the LUT's writers run for minutes, so a second one
    must not queue behind them.  Energy writers hold it for one short
    read-merge-write, and a session that is refused would lose an item it
    just spent a minute measuring, so here the refusal is retried until the
    deadline; a holder that keeps it longer is stuck, and the writer refuses.
    """
    path = Path(path)
    deadline = time.monotonic() + LOCK_WAIT_S
    with contextlib.ExitStack() as held:
        while True:
            try:
                held.enter_context(exclusive_lock(path, WRITER_BUSY))
                break
            except SweepLocked as busy:
                if time.monotonic() >= deadline:
                    raise SweepLocked(f"{busy}; still held after {LOCK_WAIT_S:g} s") from None
                time.sleep(_LOCK_POLL_S)
            except OSError as err:  # the lock file cannot be created: a read-only folder, say
                raise OutputNotWritable(f"{path}: cannot take the lock {path.name}.lock ({err.strerror or err})") from None
        yield


# ----------------------------------------------------------------- traces
def save_trace(trace: Trace, path: str | Path) -> Path:
    """Write a trace as a compressed ``.npz`` (atomically); :func:`load_trace` reads it back exactly."""
    path = Path(path)
    try:
        metadata = json.dumps(trace.metadata, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as err:
        raise ValueError(f"trace metadata is not JSON-serialisable ({err})") from None
    arrays = {
        "version": np.array(TRACE_FILE_VERSION, dtype=np.int64),
        "current_ma": trace.current_ma,
        "voltage_v": trace.voltage_v,
        "sample_rate_hz": np.array(trace.sample_rate_hz, dtype=np.float64),
        "start_time_s": np.array([] if trace.start_time_s is None else [trace.start_time_s], dtype=np.float64),
        "dropped_samples": np.array(trace.dropped_samples, dtype=np.int64),
        "source": np.array(trace.source),
        "metadata": np.array(metadata),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputNotWritable(f"{path}: cannot create folder {path.parent} ({err.strerror})") from None

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file object: numpy would append .npz to a name
            np.savez_compressed(handle, **arrays)

    _atomic(path, write)
    return path


def load_trace(path: str | Path) -> Trace:
    """Read a trace saved by :func:`save_trace`; any problem is one EnergyFileError line."""
    path = Path(path)
    if not path.exists():
        raise EnergyFileError(f"{path}: no such trace file")
    if path.is_dir():
        raise EnergyFileError(f"{path}: is a folder, not a trace file")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "version" not in data.files or "current_ma" not in data.files:
                raise EnergyFileError(f"{path}: an .npz file, but not a Chameleon trace (no version/current_ma arrays)")
            version = int(data["version"])
            if version != TRACE_FILE_VERSION:
                raise EnergyFileError(f"{path}: trace file version {version}, but this harness reads version {TRACE_FILE_VERSION}")
            start = data["start_time_s"]
            return Trace(current_ma=data["current_ma"], voltage_v=data["voltage_v"],
                         sample_rate_hz=float(data["sample_rate_hz"]),
                         start_time_s=float(start[0]) if start.size else None,
                         dropped_samples=int(data["dropped_samples"]), source=str(data["source"]),
                         metadata=json.loads(str(data["metadata"])))
    except EnergyFileError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise EnergyFileError(f"{path}: not a readable trace file (truncated or corrupt: {reason})") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# ----------------------------------------------------------------- recompute
def recompute(results_path: str | Path, *, write: bool = True, **analysis_overrides: Any) -> list[dict[str, Any]]:
    """Re-run :func:`analyze` on every row's stored trace and (``write``) rewrite the file atomically.

    Each row is analysed with its own ``runs``, ``idle_s``, host window and
    stored settings, with ``analysis_overrides`` on top (``idle_s`` and
    ``host_window`` among them replace the row's).  Rows without a trace file
    are kept as they are and not returned.  Returns the recomputed rows, each
    with ``previous_energy_per_run_mj`` added.

    The analyses run outside the file's lock (they take seconds per row, and
    a lab session appending meanwhile must not wait that long); the file is
    then read again inside the lock and each recomputed row replaces its row
    only when that row is still the one analysed.  A row appended or measured
    again meanwhile keeps its newer figures, and is not returned.
    """
    results_path = Path(results_path)
    overrides = dict(analysis_overrides)
    idle_override = overrides.pop("idle_s", _UNSET)
    host_override = overrides.pop("host_window", _UNSET)
    unknown = set(overrides) - set(ANALYSIS_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown analysis setting(s) {', '.join(sorted(unknown))} (known: {', '.join(ANALYSIS_DEFAULTS)})")
    computed: dict[tuple, tuple[tuple, dict[str, Any]]] = {}
    for row in read_results(results_path).to_pylist():
        if row["trace_file"]:
            new = _recomputed(results_path, row, overrides, idle_override, host_override)
            computed[row_key(row)] = (_analysed_as(row), {**new, "previous_energy_per_run_mj": row["energy_per_run_mj"]})
    if not write:
        return [new for _, new in computed.values()]
    with writer_lock(results_path):
        updated, changed = [], []
        for row in read_results(results_path).to_pylist():  # inside the lock: what the file holds now
            basis, new = computed.get(row_key(row), (None, None))
            if basis is not None and basis == _analysed_as(row):
                updated.append({name: new[name] for name in ENERGY_COLUMNS})
                changed.append(new)
            else:
                updated.append(row)
        write_results_atomic(pa.Table.from_pylist(updated, schema=ENERGY_SCHEMA), results_path)
    return changed


def _analysed_as(row: dict[str, Any]) -> tuple:
    """What a recomputed figure depends on: the same measurement, trace and settings."""
    return tuple(row[name] for name in ("measured_at", "session_id", "trace_file", "runs", "idle_s", "host_start_s",
                                        "host_end_s", "analysis"))


def _recomputed(results_path: Path, row: dict[str, Any], overrides: dict[str, Any], idle_override: Any,
                host_override: Any) -> dict[str, Any]:
    """``row`` with the figures of a fresh analysis of its trace."""
    where = f"{results_path} row {row_key(row)[2]}"
    trace = load_trace(results_path.parent / row["trace_file"])
    try:
        stored = json.loads(row["analysis"])
    except ValueError:
        stored = None
    if not isinstance(stored, dict) or set(stored) - set(ANALYSIS_DEFAULTS):
        raise EnergyFileError(f"{where}: its analysis settings are not a JSON object of known settings "
                              f"({', '.join(ANALYSIS_DEFAULTS)})")
    settings = {**ANALYSIS_DEFAULTS, **stored, **overrides}
    idle_s = row["idle_s"] if idle_override is _UNSET else idle_override
    if host_override is _UNSET:
        host = None if row["host_start_s"] is None else (row["host_start_s"], row["host_end_s"])
    else:
        host = host_override
    try:
        result = analyze(trace, row["runs"], idle_s=idle_s, host_window=host, **settings)
    except ChameleonError as err:
        raise type(err)(f"{where}: {err}") from None
    new = dict(row)
    new.update({name: getattr(result, name) for name in RESULT_FIELDS})
    new["warnings"] = WARNING_SEPARATOR.join(result.warnings)
    new.update(idle_s=idle_s, host_start_s=None if host is None else float(host[0]),
               host_end_s=None if host is None else float(host[1]),
               analysis=json.dumps(settings, sort_keys=True), sample_rate_hz=float(trace.sample_rate_hz))
    return new


class _Unset:
    pass


_UNSET = _Unset()


def relative_trace_path(results_path: str | Path, trace_path: str | Path) -> str:
    """The ``trace_file`` column's value: the trace's path relative to the results file's folder."""
    return os.path.relpath(Path(trace_path).resolve(), Path(results_path).resolve().parent)
