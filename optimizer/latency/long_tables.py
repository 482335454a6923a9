"""Long-format architecture latency tables: one row per architecture × device (× framework, task, batch size...).

Public benchmark exports list one measurement per row.  Such a table is read
as it is: :func:`long_to_wide` turns it into the wide format of
:mod:`optimizer.latency.architecture_tables` (one ``latency_ms:<device>``
column per device), which :func:`~optimizer.latency.architecture_tables.read_latency_table`
then reads as any other.  The long format:

- ``arch_id``: the architecture (read as a string); its rows need not be adjacent.
- ``device``: the device measured on.
- the latency, one column named for its unit: ``latency_ms``, ``latency_us`` or
  ``latency_s``; a plain ``latency`` column needs its unit stated (``unit="ms"`` /
  ``--unit ms``).  Failed measurements as in the wide format (empty, NaN, ±inf,
  0, negative); an architecture without a row for a device is a missing
  measurement of that device.  Both are counted per device.
- *qualifiers* (optional): columns that say how or on what the device ran,
  ``framework``, ``runtime``, ``backend``, ``delegate``, ``precision``,
  ``dtype``, ``task``, ``dataset``, ``batch_size``, ``batch`` (others named with
  ``qualifiers=[...]`` / ``--qualifiers``).  Each combination is one device
  column, named ``<device>/<value>/...`` in column order: text values as they
  are (``pixel3/tflite``), numbers with their column's name
  (``1080ti/batch_size=32``).  A qualifier with a single value in the table
  (after ``where``) is left out of the names, so a TFLite-only export names its
  devices ``pixel3``, not ``pixel3/tflite``.  ``where={"framework": "tflite"}``
  / ``--where framework=tflite,batch_size=1`` keeps only matching rows (a
  column named twice keeps either value) before anything else.
- ``accuracy`` (optional): per architecture; every row of an architecture that
  has one must have the same.
- ``info:<anything>`` (optional): carried along from an architecture's first row.
- every other column is the architecture's encoding, as in the wide format,
  repeated on each of its rows: rows that disagree are an error naming the
  architecture and the column.

Duplicates (two rows for one architecture on one device and qualifiers) are an
error naming the first, unless ``duplicates="median"`` (``--duplicates median``):
then each is the median of its valid measurements (NaN when none is).

A table is long when it has a ``device`` column and one of the latency columns
above, and no ``latency_ms:<device>`` column; ``layout="long"`` or ``"wide"``
overrides the detection.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The wide format's names (as optimizer.latency.architecture_tables, which imports this module, spells them).
ARCH_ID = "arch_id"
WIDE_PREFIX = "latency_ms:"
INFO_PREFIX = "info:"
DEFAULT_ACCURACY = "accuracy"

DEVICE = "device"
# A latency column named for its unit, and the factor to milliseconds.
LATENCY_COLUMNS = {"latency_ms": 1.0, "latency_us": 1e-3, "latency_s": 1e3}
PLAIN_LATENCY = "latency"
UNITS = {"ms": 1.0, "us": 1e-3, "s": 1e3}
QUALIFIERS = ("framework", "runtime", "backend", "delegate", "precision", "dtype", "task", "dataset", "batch_size",
              "batch")
DUPLICATES = ("error", "median")
LAYOUTS = ("auto", "long", "wide")


def latency_columns(names: Sequence[str]) -> list[str]:
    """The long-format latency columns a table has."""
    return [n for n in (*LATENCY_COLUMNS, PLAIN_LATENCY) if n in names]


def is_long(names: Sequence[str]) -> bool:
    """Whether a table's columns are a long table's: a device column and a latency column, no per-device column."""
    return DEVICE in names and bool(latency_columns(names)) and not any(n.startswith(WIDE_PREFIX) for n in names)


def parse_where(where: str | Mapping[str, Any] | None, error: type[Exception] = ValueError) -> dict[str, list[str]]:
    """``"framework=tflite,batch_size=1"`` (or a mapping of column to a value or a list of values) as column -> values."""
    if where is None:
        return {}
    if isinstance(where, Mapping):
        return {str(k): [str(v) for v in (vs if isinstance(vs, (list, tuple, set)) else [vs])] for k, vs in where.items()}
    out: dict[str, list[str]] = {}
    for item in (t.strip() for t in str(where).split(",")):
        if not item:
            continue
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            raise error(f"--where {where!r}: expected COLUMN=VALUE[,COLUMN=VALUE...], got {item!r}")
        out.setdefault(column.strip(), []).append(value.strip())
    if not out:
        raise error(f"--where {where!r}: no COLUMN=VALUE in it")
    return out


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[Any]]:
    """Each row's value as a code (0, 1, ... in order of first appearance) and the values the codes stand for."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    encoded = pc.dictionary_encode(array, null_encoding="encode")
    return np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64), encoded.dictionary.to_pylist()


def _is_number(column: pa.ChunkedArray) -> bool:
    return pa.types.is_integer(column.type) or pa.types.is_floating(column.type)


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _matches(column: pa.ChunkedArray, name: str, values: list[str], source: str, error: type[Exception]) -> np.ndarray:
    codes, distinct = _codes(column)
    if _is_number(column):
        try:
            wanted = {float(v) for v in values}
        except ValueError:
            raise error(f"{source}: --where {name}={values[0]}: {name!r} is a number column") from None
        hit = np.array([v is not None and float(v) in wanted for v in distinct], dtype=bool)
    else:
        hit = np.array([v is not None and str(v) in set(values) for v in distinct], dtype=bool)
    return hit[codes] if len(distinct) else np.zeros(len(codes), dtype=bool)


def long_to_wide(table: pa.Table, devices: Sequence[str] | None = None, accuracy: str | None = None, *,
                 unit: str | None = None, where: str | Mapping[str, Any] | None = None,
                 qualifiers: Sequence[str] | None = None, duplicates: str = "error", source: str = "table",
                 error: type[Exception] = ValueError, unknown_device: type[Exception] | None = None) -> pa.Table:
    """A long table (see the module docstring) as a wide one: ``arch_id``, the encoding, ``accuracy``,
    ``info:*``, one ``latency_ms:<device>`` column per device (null where missing; ``devices``: only those).

    Architectures and devices in order of first row.  A table that breaks the
    format raises one line of ``error``; a device in ``devices`` that the table
    lacks, one of ``unknown_device`` (default: ``error``).
    """
    names = table.column_names
    if len(set(names)) != len(names):
        raise error(f"{source}: duplicate column names")
    missing = [c for c in (ARCH_ID, DEVICE) if c not in names]
    if missing:
        raise error(f"{source}: a long table needs {' and '.join(repr(c) for c in missing)} column(s) "
                                f"(columns: {', '.join(names[:12])})")
    if any(n.startswith(WIDE_PREFIX) for n in names):
        raise error(f"{source}: has '{WIDE_PREFIX}<device>' columns: a wide table, not a long one")
    if duplicates not in DUPLICATES:
        raise error(f"--duplicates must be one of {', '.join(DUPLICATES)}, got {duplicates!r}")
    found = latency_columns(names)
    if not found:
        raise error(f"{source}: no latency column (a long table names it "
                                f"{', '.join([*LATENCY_COLUMNS, PLAIN_LATENCY])})")
    if len(found) > 1:
        raise error(f"{source}: several latency columns ({', '.join(found)}); keep one")
    value_column = found[0]
    if unit is not None and unit not in UNITS:
        raise error(f"--unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if value_column == PLAIN_LATENCY:
        if unit is None:
            raise error(f"{source}: the unit of column {PLAIN_LATENCY!r} is not stated: give --unit "
                                    f"{'|'.join(UNITS)} (or name the column latency_ms, latency_us or latency_s)")
        scale = UNITS[unit]
    else:
        scale = LATENCY_COLUMNS[value_column]
        if unit is not None and UNITS[unit] != scale:
            raise error(f"{source}: --unit {unit} contradicts the column name {value_column!r}")

    if qualifiers is None:
        qualifier_columns = [q for q in QUALIFIERS if q in names]
    else:
        qualifier_columns = list(dict.fromkeys(qualifiers))
        reserved = {ARCH_ID, DEVICE, value_column}
        for q in qualifier_columns:
            if q not in names:
                raise error(f"{source}: no qualifier column {q!r} (columns: {', '.join(names[:12])})")
            if q in reserved or q.startswith(INFO_PREFIX):
                raise error(f"{source}: {q!r} cannot qualify the device")

    conditions = parse_where(where, error)
    if conditions:
        keep = np.ones(table.num_rows, dtype=bool)
        for column, values in conditions.items():
            if column not in names:
                raise error(f"{source}: --where names no column of the table: {column!r}")
            keep &= _matches(table.column(column), column, values, source, error)
        if not keep.any():
            raise error(f"{source}: no row matches --where "
                                    + ",".join(f"{c}={v}" for c, vs in conditions.items() for v in vs))
        table = table.filter(pa.array(keep))

    accuracy_column = accuracy if accuracy is not None else (DEFAULT_ACCURACY if DEFAULT_ACCURACY in names else None)
    if accuracy_column is not None and accuracy_column not in names:
        raise error(f"{source}: no accuracy column {accuracy_column!r}")
    if accuracy_column in (ARCH_ID, DEVICE, value_column, *qualifier_columns):
        raise error(f"{source}: column {accuracy_column!r} cannot be the accuracy")
    for column in (ARCH_ID, DEVICE, *qualifier_columns):
        col = table.column(column)
        empty = col.null_count
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            empty += int(pc.sum(pc.equal(col, "")).as_py() or 0)  # CSV writes a missing text as ""
        if empty:
            raise error(f"{source}: {empty} row(s) without a {column!r}")

    # architectures, in order of first row
    arch, arch_values = _codes(table.column(ARCH_ID))
    arch_ids = np.array([str(a) for a in arch_values], dtype=object)
    if len(set(arch_ids.tolist())) != len(arch_ids):
        raise error(f"{source}: {ARCH_ID} values that read as the same text")
    first_row = np.full(len(arch_ids), len(arch), dtype=np.int64)
    np.minimum.at(first_row, arch, np.arange(len(arch)))

    # devices: the device column and the qualifiers that take more than one value
    key = np.zeros(table.num_rows, dtype=np.int64)
    parts: list[tuple[str, list[Any], bool]] = []
    for column in (DEVICE, *qualifier_columns):
        codes, values = _codes(table.column(column))
        if column != DEVICE and len(values) < 2:
            continue
        key = key * len(values) + codes
        parts.append((column, values, column != DEVICE and _is_number(table.column(column))))
    unique_keys, first, device = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    device = rank[device.reshape(-1)]
    device_names = []
    for row in first[order]:
        words = []
        for column, values, numeric in parts:
            value = table.column(column)[int(row)].as_py()
            words.append(f"{column}={_label(value)}" if numeric else _label(value))
        device_names.append("/".join(words))
    if len(set(device_names)) != len(device_names):
        raise error(f"{source}: two devices read as one name (device or qualifier values with '/')")

    # latencies into [architectures, devices]
    column = table.column(value_column)
    if not (_is_number(column) or pa.types.is_null(column.type)):
        sample = next((v for v in column.to_pylist() if v is not None), None)
        raise error(f"{source}: latency column {value_column!r} is not numeric ({column.type}, "
                                f"e.g. {sample!r})")
    raw = pc.fill_null(column.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    values_ms = np.array(raw, dtype=np.float64) * scale  # a copy (exact for ms: the factor is 1)
    values_ms[~np.isfinite(values_ms) | (values_ms <= 0)] = np.nan  # a failed measurement, counted by the reader
    k = len(device_names)
    cell = arch * k + device
    counts = np.bincount(cell, minlength=len(arch_ids) * k)
    grid = np.full(len(arch_ids) * k, np.nan)
    if (counts > 1).any():
        repeated = int((counts > 1).sum())
        if duplicates == "error":
            row = int(np.flatnonzero(counts[cell] > 1)[0])
            raise error(f"{source}: {repeated} architecture/device pair(s) with more than one row, e.g. "
                                    f"{arch_ids[arch[row]]!r} on {device_names[device[row]]!r} "
                                    f"({counts[cell[row]]} rows); keep one, or give --duplicates median")
        grid[:] = _median_per_cell(cell, values_ms, len(grid))
    else:
        grid[cell] = values_ms
    grid = grid.reshape(len(arch_ids), k)
    wanted = list(range(k))
    if devices:
        index = {name: j for j, name in enumerate(device_names)}
        for d in devices:
            if d not in index:
                raise (unknown_device or error)(f"{source}: no device {d!r} (devices: {', '.join(device_names)})")
        wanted = [index[d] for d in devices]

    # per architecture: accuracy, info:*, the encoding (checked the same on all of an architecture's rows)
    take = pa.array(first_row)
    columns: dict[str, Any] = {ARCH_ID: pa.array(arch_ids.tolist(), pa.string())}
    used = {ARCH_ID, DEVICE, value_column, *qualifier_columns, accuracy_column}
    for name in names:
        if name in used:
            continue
        col = table.column(name)
        if not name.startswith(INFO_PREFIX):
            if col.null_count:
                raise error(f"{source}: encoding column {name!r} has {col.null_count} empty cell(s)")
            codes, values = _codes(col)
            differ = codes != codes[first_row[arch]]
            if differ.any():
                row = int(np.flatnonzero(differ)[0])
                raise error(
                    f"{source}: architecture {arch_ids[arch[row]]!r} has two values of {name!r} "
                    f"({values[codes[first_row[arch[row]]]]!r} and {values[codes[row]]!r}); an encoding column is "
                    f"the same on all of an architecture's rows (a column that qualifies the device goes in "
                    f"--qualifiers)")
        columns[name] = col.take(take)
    if accuracy_column is not None:
        columns[accuracy_column] = pa.array(
            _per_architecture_number(table.column(accuracy_column), accuracy_column, arch, arch_ids, source, error),
            pa.float64())
    for j in wanted:
        columns[WIDE_PREFIX + device_names[j]] = pa.array(grid[:, j], pa.float64(), mask=np.isnan(grid[:, j]))
    return pa.table(columns)


def _median_per_cell(cell: np.ndarray, values: np.ndarray, cells: int) -> np.ndarray:
    """The median of each cell's finite values (NaN where it has none): sorted by (cell, value), NaNs last."""
    order = np.lexsort((values, cell))
    c, v = cell[order], values[order]
    start = np.searchsorted(c, np.arange(cells), side="left")
    valid = np.bincount(c, weights=np.isfinite(v), minlength=cells).astype(np.int64)
    out = np.full(cells, np.nan)
    has = valid > 0
    low = start[has] + (valid[has] - 1) // 2
    high = start[has] + valid[has] // 2
    out[has] = (v[low] + v[high]) / 2.0
    return out


def _per_architecture_number(column: pa.ChunkedArray, name: str, arch: np.ndarray, arch_ids: np.ndarray,
                             source: str, error: type[Exception]) -> np.ndarray:
    """One number per architecture from its rows' non-empty cells (NaN where none); rows that disagree: an error."""
    if not (_is_number(column) or pa.types.is_null(column.type)):
        raise error(f"{source}: accuracy column {name!r} is not numeric ({column.type})")
    x = np.array(pc.fill_null(column.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
    out = np.full(len(arch_ids), np.nan)
    known = ~np.isnan(x)
    out[arch[known]] = x[known]  # the last of its rows; checked against every other below
    differ = known & (x != out[arch])
    if differ.any():
        row = int(np.flatnonzero(differ)[0])
        raise error(f"{source}: architecture {arch_ids[arch[row]]!r} has two values of {name!r} "
                                f"({x[row]!r} and {out[arch[row]]!r}); it is one figure per architecture")
    return out
