"""The LUT: one Parquet file per device, keyed by operator signature.

This module owns the file format (documented in README.md, "The LUT schema"),
its validation, atomic writes, and the incremental writer that makes sweeps
resumable: measured rows go to small Parquet part files (each written to a
temporary name and renamed, so none is ever half-written) in ``FILE.parts/``,
and are merged into ``FILE`` (again by an atomic rename) periodically and when
the sweep ends.  A process killed at any moment leaves ``FILE`` readable and
its finished measurements in the parts, which the next sweep or
``bench lut merge`` folds in.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.atomic import exclusive_lock, write_atomically
from harness.errors import LutFileError, OutputNotWritable
from harness.signature import OpSignature

LUT_SCHEMA_VERSION = 3
# Version 1 lacks version 2's host columns (confidence interval, descheduled runs, CPU share, reference kernel), and
# versions 1-2 lack version 3's ``unit`` (which device unit measured a row): read as version 3 with them null, which
# is what they mean ("not recorded").
READABLE_VERSIONS = ("1", "2", "3")
_META_VERSION = b"chameleon.lut_schema_version"
_META_KIND = b"chameleon.file"
_META_KIND_VALUE = b"operator-latency-lut"

_SIGNATURE_FIELDS = [
    pa.field("signature", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("n", pa.int32(), nullable=False),
    pa.field("c_in", pa.int32(), nullable=False),
    pa.field("h", pa.int32(), nullable=False),
    pa.field("w", pa.int32(), nullable=False),
    pa.field("c_out", pa.int32(), nullable=False),
    pa.field("kernel", pa.int32(), nullable=False),
    pa.field("stride", pa.int32(), nullable=False),
    pa.field("padding", pa.int32(), nullable=False),
    pa.field("groups", pa.int32(), nullable=False),
    pa.field("mid_channels", pa.int32(), nullable=False),
    pa.field("activation", pa.string(), nullable=False),
    pa.field("dtype", pa.string(), nullable=False),
]
_STAT_FIELDS = [
    pa.field("median_us", pa.float64(), nullable=False),
    pa.field("p10_us", pa.float64(), nullable=True),  # null: the tool reported no per-run times
    pa.field("p90_us", pa.float64(), nullable=True),
    pa.field("mean_us", pa.float64(), nullable=True),  # null: imported from a source with percentiles only
    pa.field("std_us", pa.float64(), nullable=True),
    pa.field("min_us", pa.float64(), nullable=False),
    pa.field("runs", pa.int32(), nullable=False),
    pa.field("warmup_runs", pa.int32(), nullable=False),
    pa.field("cv", pa.float64(), nullable=False),
    pa.field("attempts", pa.int32(), nullable=False),
    pa.field("timed_total_us", pa.float64(), nullable=False),
    pa.field("throttled", pa.bool_(), nullable=True),
    pa.field("temperature_c", pa.float64(), nullable=True),
    pa.field("cpu_freq_khz", pa.int64(), nullable=True),
]
# Schema version 2: how precise each median is and how quiet and steady the host was while it was measured.
_HOST_FIELDS = [
    pa.field("ci_low_us", pa.float64(), nullable=True),  # 95% confidence interval of median_us
    pa.field("ci_high_us", pa.float64(), nullable=True),
    pa.field("descheduled_runs", pa.int32(), nullable=True),  # runs dropped: the thread was off its CPU
    pa.field("cpu_share", pa.float64(), nullable=True),  # thread CPU time / wall time of the timed runs
    pa.field("reference_us", pa.float64(), nullable=True),  # the reference kernel's median around the batches kept
    pa.field("reference_baseline_us", pa.float64(), nullable=True),  # its time in the host's fast state
    pa.field("off_baseline_rounds", pa.int32(), nullable=True),  # rounds dropped: the host was off that speed
    pa.field("at_baseline", pa.bool_(), nullable=True),  # false: no round was at it, the caps were reached
]
HOST_COLUMNS: tuple[str, ...] = tuple(f.name for f in _HOST_FIELDS)
# Columns a row may leave out (null): what older schema versions and imports do not record.
OPTIONAL_COLUMNS: tuple[str, ...] = HOST_COLUMNS + ("unit",)
_CONTEXT_FIELDS = [
    pa.field("device_id", pa.string(), nullable=False),
    pa.field("device_model", pa.string(), nullable=False),
    # Version 3: the unit that measured the row (a phone's serial, as the device reports it; null: a local device,
    # an import): rows of several units of one model share a LUT in a sharded farm sweep.
    pa.field("unit", pa.string(), nullable=True),
    pa.field("runtime", pa.string(), nullable=False),
    pa.field("runtime_version", pa.string(), nullable=False),
    pa.field("provider", pa.string(), nullable=False),
    pa.field("threads", pa.int32(), nullable=False),
    pa.field("harness_version", pa.string(), nullable=False),
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("measured_at", pa.timestamp("us", tz="UTC"), nullable=False),
]
LUT_SCHEMA = pa.schema(
    _SIGNATURE_FIELDS + _STAT_FIELDS + _HOST_FIELDS + _CONTEXT_FIELDS,
    metadata={_META_VERSION: str(LUT_SCHEMA_VERSION).encode(), _META_KIND: _META_KIND_VALUE},
)
LUT_COLUMNS: tuple[str, ...] = tuple(LUT_SCHEMA.names)

# The columns that say which device and software measured a row: a sweep only
# resumes into a file whose rows agree with it on these.
PROVENANCE_COLUMNS = ("device_id", "device_model", "runtime", "runtime_version", "provider", "threads")


def empty_table() -> pa.Table:
    return LUT_SCHEMA.empty_table()


def rows_to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows as dicts with every LUT column → a table of the LUT schema."""
    if not rows:
        return empty_table()
    # The host columns and the unit are optional in a row (an import, a row of an older schema version): null.
    columns = {name: [row.get(name) if name in OPTIONAL_COLUMNS else row[name] for row in rows] for name in LUT_COLUMNS}
    return pa.Table.from_pydict(columns, schema=LUT_SCHEMA)


def imported_row(signature: OpSignature, *, median_us: float, mean_us: float | None, std_us: float | None, runs: int,
                 device_id: str, device_model: str, runtime: str, provider: str, provenance: str, session_id: str,
                 measured_at: datetime) -> dict[str, Any]:
    """A LUT row for a latency measured elsewhere (an imported table): what the source does not keep is null or 0."""
    row = signature.to_record()
    row.update(
        signature=signature.key,
        median_us=median_us,
        p10_us=None,
        p90_us=None,
        mean_us=mean_us,
        std_us=std_us,
        min_us=median_us,  # unknown: the source keeps no per-run times
        runs=runs,
        warmup_runs=0,
        cv=(std_us / median_us) if std_us is not None and median_us > 0 else 0.0,
        attempts=0,
        timed_total_us=median_us * runs,
        throttled=None,
        temperature_c=None,
        cpu_freq_khz=None,
        device_id=device_id,
        device_model=device_model,
        runtime=runtime,
        runtime_version="unknown (imported)",
        provider=provider,
        threads=0,  # unknown
        harness_version=provenance,
        session_id=session_id,
        measured_at=measured_at,
    )
    return row


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


# ----------------------------------------------------------------- reading
def read_lut(path: str | Path) -> pa.Table:
    """Read and validate a LUT file; any problem is one LutFileError line."""
    path = Path(path)
    if not path.exists():
        raise LutFileError(f"{path}: no such file")
    if path.is_dir():
        raise LutFileError(f"{path}: is a folder, not a LUT file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LutFileError(f"{path}: not a readable Parquet file (truncated or corrupt: {reason})") from None
    return validate_table(table, str(path))


def validate_table(table: pa.Table, where: str) -> pa.Table:
    metadata = table.schema.metadata or {}
    if metadata.get(_META_KIND) != _META_KIND_VALUE or _META_VERSION not in metadata:
        raise LutFileError(f"{where}: a Parquet file, but not a Chameleon LUT (no {_META_KIND.decode()} metadata)")
    version = metadata[_META_VERSION].decode()
    if version not in READABLE_VERSIONS:
        raise LutFileError(f"{where}: LUT schema version {version}, but this harness reads versions "
                           f"{', '.join(READABLE_VERSIONS)}")
    if version in ("1", "2"):
        for name in OPTIONAL_COLUMNS:
            if name not in table.column_names:
                table = table.append_column(LUT_SCHEMA.field(name), pa.nulls(table.num_rows, LUT_SCHEMA.field(name).type))
    missing = [name for name in LUT_COLUMNS if name not in table.column_names]
    if missing:
        raise LutFileError(f"{where}: LUT lacks column(s) {', '.join(missing)}")
    try:
        table = table.select(list(LUT_COLUMNS)).cast(LUT_SCHEMA)
    except (ValueError, TypeError, pa.ArrowException) as err:  # ArrowInvalid is a ValueError; nulls in required columns too
        raise LutFileError(f"{where}: LUT columns have unexpected types or nulls ({str(err).splitlines()[0]})") from None
    check_values(table, where)
    return table


def check_values(table: pa.Table, where: str) -> None:
    """Refuse a LUT that would lie when summed: one row per signature, and times a device can take.

    ``median_us`` and ``min_us`` must be finite and not negative.  Zero is
    kept: ``benchmark_model`` times in whole microseconds, so a tiny op on a
    phone reads 0 µs, a measurement below the clock, not a lie.  The first
    bad row is named, with how many there are.
    """
    signatures = table.column("signature").to_numpy(zero_copy_only=False)
    median = table.column("median_us").to_numpy(zero_copy_only=False).astype(float)
    minimum = table.column("min_us").to_numpy(zero_copy_only=False).astype(float)
    with np.errstate(invalid="ignore"):
        bad_median = ~np.isfinite(median) | (median < 0)
        bad_minimum = ~np.isfinite(minimum) | (minimum < 0)
    for column, bad, values in (("median_us", bad_median, median), ("min_us", bad_minimum, minimum)):
        if bad.any():
            first = int(np.argmax(bad))
            raise LutFileError(f"{where}: row {signatures[first]}: {column} {float(values[first])!r} is not a time a device can "
                               f"take ({int(bad.sum())} such row(s))")
    unique, counts = np.unique(signatures, return_counts=True)
    if (counts > 1).any():
        repeated = unique[counts > 1]
        raise LutFileError(f"{where}: signature {repeated[0]} appears {int(counts[counts > 1][0])} times "
                           f"({len(repeated)} repeated signature(s)); a LUT holds one row per signature")


def check_row(row: dict[str, Any], where: str) -> None:
    """:func:`check_values` for one measured row, before it is written: a lying row never reaches a part file.

    A part that failed validation would be set aside when the sweep folds its
    parts, its good rows with it, while the sweep had counted them measured.
    """
    check_values(rows_to_table([row]), where)


def signatures_of(table: pa.Table) -> list[str]:
    return table.column("signature").to_pylist()


def find_row(table: pa.Table, signature: OpSignature | str) -> dict[str, Any] | None:
    key = signature if isinstance(signature, str) else signature.key
    matches = table.filter(pc.equal(table.column("signature"), key))
    if matches.num_rows == 0:
        return None
    return matches.slice(0, 1).to_pylist()[0]


def row_signature(row: dict[str, Any]) -> OpSignature:
    """The signature of a row, rebuilt from its field columns and checked against its string."""
    signature = OpSignature.from_record(row)
    if signature.key != row["signature"]:
        raise LutFileError(f"row {row['signature']!r} disagrees with its own field columns ({signature.key})")
    return signature


# ----------------------------------------------------------------- writing
def write_lut_atomic(table: pa.Table, path: str | Path) -> None:
    """Write a LUT so that readers see either the old file or the new one, never a partial one."""
    table = validate_table(table, str(path))
    write_atomically(Path(path), lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def check_writable(path: str | Path) -> Path:
    """Fail early, before measuring anything, when the output cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise OutputNotWritable(f"{path}: is a folder; give a file name such as {path / 'lut.parquet'}")
    blocking = next((p for p in path.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise OutputNotWritable(f"{path}: {blocking} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputNotWritable(f"{path}: cannot create folder {path.parent} ({err.strerror})") from None
    probe = path.with_name(f".{path.name}.probe-{os.getpid()}")
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OutputNotWritable(f"{path}: cannot write in {path.parent} ({err.strerror})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputNotWritable(f"{path}: file is not writable")
    return path


# ----------------------------------------------------------------- merging
DUPLICATE_POLICIES = ("newest", "lowest-cv", "error")


def merge_tables(tables: Iterable[pa.Table], on_duplicate: str = "newest", *, mixed_devices_ok: bool = False) -> pa.Table:
    """Concatenate LUT tables, keeping one row per signature.

    ``newest`` keeps the latest measurement, ``lowest-cv`` the steadiest, and
    ``error`` refuses duplicates.  Rows of different devices are refused unless
    ``mixed_devices_ok``: a LUT describes one device.
    """
    if on_duplicate not in DUPLICATE_POLICIES:
        raise LutFileError(f"unknown duplicate policy {on_duplicate!r} (known: {', '.join(DUPLICATE_POLICIES)})")
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return empty_table()
    table = pa.concat_tables(tables)
    if not mixed_devices_ok:
        devices = sorted(set(table.column("device_id").to_pylist()))
        if len(devices) > 1:
            raise LutFileError(f"refusing to merge rows of different devices ({', '.join(devices)}): a LUT holds one device")
    if on_duplicate == "lowest-cv":
        order = [("signature", "ascending"), ("cv", "ascending"), ("measured_at", "descending")]
    else:
        order = [("signature", "ascending"), ("measured_at", "descending")]
    table = table.take(pc.sort_indices(table, sort_keys=order))
    keys = table.column("signature").to_numpy(zero_copy_only=False)
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    if on_duplicate == "error" and not first.all():
        duplicates = sorted(set(keys[~first]))
        raise LutFileError(f"{len(duplicates)} signature(s) measured more than once, e.g. {duplicates[0]} (use --on-duplicate newest or lowest-cv)")
    return table.filter(pa.array(first))


# One message for every writer refused by a LUT's lock: a sweep, a merge or an import may hold it.
WRITER_BUSY = "another writer (a sweep, merge or import) is writing this LUT"


@dataclass(frozen=True)
class MergeOutcome:
    table: pa.Table  # what the LUT now holds
    rows_in: int  # rows read: the LUT's, its pending parts' and the new tables'


def merge_into_lut(path: Path, tables: Sequence[pa.Table], on_duplicate: str = "newest") -> MergeOutcome:
    """Fold ``tables`` into the LUT at ``path`` (with the parts a sweep left), under the LUT's lock.

    The LUT is read inside the lock, so rows a sweep folds in cannot be
    overwritten by a merge that read the file before; while a sweep runs, the
    lock is taken and this refuses (:class:`~harness.errors.SweepLocked`).
    """
    path = Path(path)
    check_writable(path)
    with exclusive_lock(path, WRITER_BUSY):
        return _fold(path, read_parts(path), tables, on_duplicate)


def _fold(path: Path, parts: Parts, tables: Sequence[pa.Table] = (), on_duplicate: str = "newest") -> MergeOutcome:
    """Write the LUT, its parts and ``tables`` merged into ``path`` (atomically), then delete the parts folded in.

    The caller holds the LUT's lock.  A crash between the write and the
    deletions leaves parts whose rows the LUT already holds; the next fold
    merges them again without duplicates.
    """
    everything = ([read_lut(path)] if path.exists() else []) + parts.tables + list(tables)
    merged = merge_tables(everything, on_duplicate=on_duplicate)
    write_lut_atomic(merged, path)
    for part in parts.read:
        part.unlink()
    return MergeOutcome(merged, sum(t.num_rows for t in everything))


# ------------------------------------------------------- incremental writer
def parts_dir(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


@dataclass(frozen=True)
class Parts:
    """The part files an interrupted (or running) sweep left beside a LUT."""

    tables: list[pa.Table]
    read: list[Path]  # the files behind ``tables``: safe to delete once folded in
    unreadable: list[Path]  # kept on disk, reported, never deleted

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.tables)


def read_parts(path: Path) -> Parts:
    """The finished part files beside ``path``; the unreadable ones are listed, not fatal."""
    folder = parts_dir(path)
    parts = Parts([], [], [])
    if folder.is_dir():
        for part in sorted(folder.glob("part-*.parquet")):
            try:
                parts.tables.append(validate_table(pq.read_table(part), str(part)))
                parts.read.append(part)
            except (pa.ArrowException, OSError, ValueError, LutFileError):
                parts.unreadable.append(part)
    return parts


def read_with_parts(path: Path) -> pa.Table:
    """The LUT as it would be after merging: the file plus any pending parts."""
    base = [read_lut(path)] if path.exists() else []
    return merge_tables(base + read_parts(path).tables)


def fold_parts(path: Path) -> int:
    """Merge readable part files into the LUT (atomically), then delete them; returns rows folded in."""
    parts = read_parts(path)
    if not parts.tables:
        return 0
    _fold(Path(path), parts)
    return parts.rows


@dataclass
class LutWriter:
    """Appends measured rows durably while a sweep runs; use as a context manager.

    Rows are written as a part file when the caller flushes (the sweep does
    after each group) or at the first ``add`` more than ``flush_every_s`` after
    the last flush, and the parts are folded into the LUT every
    ``merge_every_s`` and on exit.  The LUT file exists, valid, from the moment
    the writer opens.  An exclusive lock
    on ``FILE.lock`` keeps two sweeps from writing the same LUT.
    """

    path: Path
    flush_every_s: float = 1.0
    merge_every_s: float = 120.0
    _pending: list[dict[str, Any]] = field(default_factory=list, init=False)
    _last_flush: float = field(default=0.0, init=False)
    _last_merge: float = field(default=0.0, init=False)
    _lock: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, init=False)
    _sequence: int = field(default=0, init=False)
    _token: str = field(default_factory=lambda: uuid.uuid4().hex[:8], init=False)

    def __enter__(self) -> "LutWriter":
        self._lock.enter_context(exclusive_lock(self.path, WRITER_BUSY))
        self._last_flush = self._last_merge = time.monotonic()
        if not self.path.exists():  # readable from the first moment, even if the sweep is killed
            write_lut_atomic(empty_table(), self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.flush()
            fold_parts(self.path)
        finally:
            self._lock.close()

    def add(self, row: dict[str, Any]) -> None:
        """Queue one row; a row :func:`check_values` refuses raises :class:`LutFileError` and is not kept."""
        check_row(row, str(self.path))
        self._pending.append(row)
        now = time.monotonic()
        if now - self._last_flush >= self.flush_every_s:
            self.flush()
        if now - self._last_merge >= self.merge_every_s:
            fold_parts(self.path)
            self._last_merge = time.monotonic()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        folder = parts_dir(self.path)
        folder.mkdir(exist_ok=True)
        self._sequence += 1
        part = folder / f"part-{self._token}-{self._sequence:06d}.parquet"
        tmp = folder / f".{part.name}.tmp"
        pq.write_table(rows_to_table(self._pending), tmp)
        os.replace(tmp, part)
        self._pending.clear()
