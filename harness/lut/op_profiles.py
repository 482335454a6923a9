"""The op-profiles sidecar: per-operator profiles of a LUT's signatures, in a Parquet file beside it.

``luts/xeon-executorch.parquet`` → ``luts/xeon-executorch.op-profiles.parquet``
(:func:`sidecar_path`): the LUT's stem, so the two sort together, and a
suffix that no LUT reader takes for a LUT (its schema metadata says
``chameleon.file = operator-profiles``; ``read_lut`` refuses it in one line).
The LUT itself is untouched: a profile is a separate, untimed artefact.

One row per signature, the profile's events as parallel list columns
(``event_*``, in the order the runtime logged them), so the sidecar joins the
LUT on ``signature`` row for row.  Times are µs, medians over the profiled
runs; see :mod:`harness.runners.executorch_profiles` for what each means.

Written atomically under ``FILE.lock`` (a run replaces the rows of the
signatures it profiled and keeps the others); read strictly: a NaN, infinite
or negative time, event lists of unequal lengths, or a missing column is
refused with one :class:`OpProfilesFileError` line naming the first bad row.

May import: the harness vocabulary, pyarrow.  Never a runner or a runtime:
rows come in as dicts with these columns (``OpProfile.to_record``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from harness.atomic import exclusive_lock, write_atomically
from harness.errors import LutFileError

SCHEMA_VERSION = 1
SUFFIX = ".op-profiles.parquet"
_META_KIND, _META_KIND_VALUE = b"chameleon.file", b"operator-profiles"
_META_VERSION = b"chameleon.op_profiles_schema_version"
WRITER_BUSY = "another op-profiles run is writing this file"

_FIELDS = [
    pa.field("signature", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("dtype", pa.string(), nullable=False),
    pa.field("device_id", pa.string(), nullable=False),
    pa.field("backend", pa.string(), nullable=False),            # xnnpack | portable
    pa.field("runtime_version", pa.string(), nullable=False),
    pa.field("program", pa.string(), nullable=True),             # the .pte's cache file name
    pa.field("profiled_runs", pa.int32(), nullable=False),
    pa.field("sum_us", pa.float64(), nullable=False),            # median over runs of the calls' sum
    pa.field("method_us", pa.float64(), nullable=False),         # Method::execute, the profiled run's total
    pa.field("wall_us", pa.float64(), nullable=True),            # around execute in the profiled runs
    pa.field("timed_us", pa.float64(), nullable=True),           # the timed run compared with
    pa.field("overhead_us", pa.float64(), nullable=True),        # the per-call overhead subtracted from it
    pa.field("timed_source", pa.string(), nullable=False),       # lut | runner | none
    pa.field("sum_over_timed", pa.float64(), nullable=True),     # sum_us / (timed_us - overhead_us)
    pa.field("sum_within_10pct", pa.bool_(), nullable=False),
    pa.field("kernels", pa.int32(), nullable=False),             # compute kernels
    pa.field("one_kernel", pa.bool_(), nullable=False),
    pa.field("boundary_kernels", pa.int32(), nullable=False),    # layout/format conversions at the program's edges
    pa.field("boundary_us", pa.float64(), nullable=False),
    pa.field("delegate_calls", pa.int32(), nullable=False),
    pa.field("operator_calls", pa.int32(), nullable=False),
    pa.field("units_scale", pa.float64(), nullable=False),       # applied to every time of the dump (1: none)
    pa.field("delegate_units_scale", pa.float64(), nullable=False),  # further, to the delegate operators
    pa.field("units_ok", pa.bool_(), nullable=False),
    pa.field("units_note", pa.string(), nullable=False),
    pa.field("flag", pa.string(), nullable=False),               # "" or a reason code
    pa.field("note", pa.string(), nullable=False),
    pa.field("event_name", pa.list_(pa.string()), nullable=False),
    pa.field("event_op", pa.list_(pa.string()), nullable=False),
    pa.field("event_level", pa.list_(pa.string()), nullable=False),  # delegate_call | operator_call | delegate_op
    pa.field("event_boundary", pa.list_(pa.bool_()), nullable=False),
    pa.field("event_instruction", pa.list_(pa.int32()), nullable=False),
    pa.field("event_median_us", pa.list_(pa.float64()), nullable=False),
    pa.field("harness_version", pa.string(), nullable=False),
    pa.field("profiled_at", pa.timestamp("us", tz="UTC"), nullable=False),
]
SCHEMA = pa.schema(_FIELDS, metadata={_META_KIND: _META_KIND_VALUE, _META_VERSION: str(SCHEMA_VERSION).encode()})
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)
_EVENT_COLUMNS = tuple(name for name in COLUMNS if name.startswith("event_"))
_TIME_COLUMNS = ("sum_us", "method_us", "wall_us", "timed_us", "overhead_us", "boundary_us")


class OpProfilesFileError(LutFileError):
    """An op-profiles sidecar that is missing, unreadable, corrupt or of another schema."""


def sidecar_path(lut: str | Path) -> Path:
    """The sidecar beside a LUT: ``DIR/NAME.parquet`` → ``DIR/NAME.op-profiles.parquet``."""
    lut = Path(lut)
    stem = lut.name[: -len(".parquet")] if lut.name.endswith(".parquet") else lut.name
    return lut.with_name(stem + SUFFIX)


def rows_to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Records with every sidecar column → a checked table of the sidecar schema."""
    missing = sorted({name for row in rows for name in COLUMNS if name not in row})
    if missing:
        raise OpProfilesFileError(f"op-profile records lack column(s) {', '.join(missing)}")
    table = pa.Table.from_pydict({name: [row[name] for row in rows] for name in COLUMNS}, schema=SCHEMA)
    check_values(table, "op-profile records")
    return table


def read_op_profiles(path: str | Path) -> pa.Table:
    """Read and validate a sidecar; any problem is one :class:`OpProfilesFileError` line."""
    path = Path(path)
    if not path.is_file():
        raise OpProfilesFileError(f"{path}: no such op-profiles file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise OpProfilesFileError(f"{path}: not a readable Parquet file (truncated or corrupt: {reason})") from None
    metadata = table.schema.metadata or {}
    if metadata.get(_META_KIND) != _META_KIND_VALUE:
        raise OpProfilesFileError(f"{path}: a Parquet file, but not a Chameleon op-profiles sidecar "
                                  f"(no {_META_KIND.decode()}={_META_KIND_VALUE.decode()} metadata)")
    version = metadata.get(_META_VERSION, b"?").decode()
    if version != str(SCHEMA_VERSION):
        raise OpProfilesFileError(f"{path}: op-profiles schema version {version}, this harness reads {SCHEMA_VERSION}")
    missing = [name for name in COLUMNS if name not in table.column_names]
    if missing:
        raise OpProfilesFileError(f"{path}: op-profiles file lacks column(s) {', '.join(missing)}")
    try:
        table = table.select(list(COLUMNS)).cast(SCHEMA)
    except (ValueError, TypeError, pa.ArrowException) as err:
        raise OpProfilesFileError(f"{path}: op-profiles columns have unexpected types or nulls "
                                  f"({str(err).splitlines()[0]})") from None
    check_values(table, str(path))
    return table


def check_values(table: pa.Table, where: str) -> None:
    """Refuse times a device cannot take (NaN, infinite, negative), ragged event lists, repeated signatures."""
    rows = table.select(["signature", *_TIME_COLUMNS, *_EVENT_COLUMNS]).to_pylist()
    seen: set[str] = set()
    for row in rows:
        name = row["signature"]
        for column in _TIME_COLUMNS:
            value = row[column]
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise OpProfilesFileError(f"{where}: row {name}: {column} {value!r} is not a time a device can take")
        for i, value in enumerate(row["event_median_us"]):
            if value is None or not (math.isfinite(value) and value >= 0):
                raise OpProfilesFileError(f"{where}: row {name}: event {i} ({row['event_name'][i]}) time {value!r} "
                                          "is not a time a device can take")
        lengths = {column: len(row[column]) for column in _EVENT_COLUMNS}
        if len(set(lengths.values())) != 1:
            raise OpProfilesFileError(f"{where}: row {name}: event lists of unequal lengths "
                                      f"({', '.join(f'{k} {v}' for k, v in lengths.items())})")
        if name in seen:
            raise OpProfilesFileError(f"{where}: signature {name} appears more than once; one row per signature")
        seen.add(name)


def merge_into_sidecar(path: str | Path, table: pa.Table) -> pa.Table:
    """Write ``table``'s rows into the sidecar at ``path`` (atomically, under its lock), keeping its other rows."""
    path = Path(path)
    with exclusive_lock(path, WRITER_BUSY):
        if path.exists():
            old = read_op_profiles(path)
            replaced = set(table.column("signature").to_pylist())
            kept = old.filter(pa.array([s not in replaced for s in old.column("signature").to_pylist()], pa.bool_()))
            table = pa.concat_tables([kept, table])
        check_values(table, str(path))
        write_atomically(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return table
