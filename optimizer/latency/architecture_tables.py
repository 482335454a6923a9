"""Architecture latency tables: many architectures of a search space, their latency on several devices.

The format (Parquet, or CSV for any other suffix), one row per architecture:

- ``arch_id``: a unique identifier (read as a string).
- ``latency_ms:<device>``: the architecture's latency on ``<device>`` in
  milliseconds, one column per device (e.g. ``latency_ms:pixel3``).  A missing
  or failed measurement is an empty cell / null, NaN, ±inf, zero or a negative
  number: it is counted per device (:attr:`LatencyTable.invalid`) and the
  architecture is left out of every comparison involving that device
  (pairwise), never ranked.  A non-numeric latency column is an error.
- ``accuracy`` (optional; another name can be given): the architecture's
  accuracy, for proxy reuse.
- ``info:<anything>`` (optional): carried along, never used (MACs, notes...).
- ``info:space`` (optional): the name of our search space the architectures
  are points of (written by :func:`table_from_luts`; the same on every row):
  their MACs and parameter counts then serve as baselines
  (:func:`space_costs`).  Read into :attr:`LatencyTable.space`.
- every other column is the architecture's *encoding*: categorical choices as
  strings (``edge0 = nor_conv_3x3``) or numeric genes (``stage2_n = 3``).  Each
  distinct value of an encoding column is one choice (one-hot), numeric or not.

Tables whose device columns are named otherwise are read with an explicit list
of device columns (``devices=["rpi4", "pixel3"]`` / ``--devices rpi4,pixel3``):
each name is taken as ``latency_ms:<name>`` if that column exists, else as the
plain column ``<name>``.

This is the *wide* layout.  :func:`read_latency_table` also reads the *long*
layout of public exports (one row per architecture × device × framework...,
:mod:`optimizer.latency.long_tables`), telling them apart by their columns.

:func:`table_from_luts` produces such a table with the LUT predictor (one
device column per LUT, genes as the encoding); :func:`write_latency_table`
writes one atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from harness.atomic import exclusive_lock, write_atomically
from harness.errors import ChameleonError, OutputNotWritable
from harness.networks.tables import TABLE_WRITER_BUSY, read_table_file
from optimizer.latency import long_tables

ARCH_ID = "arch_id"
LATENCY_PREFIX = "latency_ms:"
INFO_PREFIX = "info:"
SPACE_COLUMN = INFO_PREFIX + "space"
DEFAULT_ACCURACY = "accuracy"


class LatencyTableError(ChameleonError):
    """A latency table that cannot be read or does not follow the format."""


class UnknownTableDevice(ChameleonError):
    """A device that has no latency column in the table."""


@dataclass
class LatencyTable:
    """Architectures (rows) with their encoding and per-device latencies (ms; NaN where missing or failed)."""

    arch_ids: np.ndarray  # [N] str (object)
    encoding: dict[str, np.ndarray]  # column -> [N] values (str objects or numbers)
    latency_ms: dict[str, np.ndarray]  # device -> [N] float64, NaN where invalid
    invalid: dict[str, int] = field(default_factory=dict)  # device -> invalid measurements (NaN, inf, <= 0, missing)
    accuracy: np.ndarray | None = None  # [N] float64
    accuracy_column: str | None = None
    info: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""
    space: str | None = None  # our search space the architectures belong to (the encoding is its genes)

    def __post_init__(self) -> None:
        self.arch_ids = np.asarray(self.arch_ids, dtype=object)
        for device, values in list(self.latency_ms.items()):
            clean, bad = clean_latencies(values)
            self.latency_ms[device] = clean
            self.invalid.setdefault(device, bad)

    def __len__(self) -> int:
        return len(self.arch_ids)

    @property
    def devices(self) -> list[str]:
        return list(self.latency_ms)

    def latency(self, device: str) -> np.ndarray:
        if device not in self.latency_ms:
            raise UnknownTableDevice(f"{self.source or 'table'}: no device {device!r} "
                                     f"(devices: {', '.join(self.devices) or 'none'})")
        return self.latency_ms[device]

    def valid(self, *devices: str) -> np.ndarray:
        """Rows measured successfully on every device named."""
        mask = np.ones(len(self), dtype=bool)
        for device in devices:
            mask &= np.isfinite(self.latency(device))
        return mask

    def select_devices(self, devices: Sequence[str]) -> "LatencyTable":
        for d in devices:
            self.latency(d)
        return LatencyTable(self.arch_ids, self.encoding, {d: self.latency_ms[d] for d in devices},
                            {d: self.invalid[d] for d in devices}, self.accuracy, self.accuracy_column, self.info,
                            self.source, self.space)

    def to_arrow(self) -> pa.Table:
        columns: dict[str, Any] = {ARCH_ID: pa.array([str(a) for a in self.arch_ids], pa.string())}
        for name, values in self.encoding.items():
            columns[name] = pa.array(values.tolist())
        if self.accuracy is not None:
            columns[self.accuracy_column or DEFAULT_ACCURACY] = pa.array(self.accuracy, pa.float64())
        for name, values in self.info.items():
            columns[name if name.startswith(INFO_PREFIX) else INFO_PREFIX + name] = pa.array(values.tolist())
        if self.space is not None:
            columns[SPACE_COLUMN] = pa.array([self.space] * len(self), pa.string())
        for device, values in self.latency_ms.items():
            columns[LATENCY_PREFIX + device] = pa.array(values, pa.float64(), mask=~np.isfinite(values))
        return pa.table(columns)


def clean_latencies(values: Any) -> tuple[np.ndarray, int]:
    """Latencies as float64 with every failed measurement (NaN, ±inf, <= 0) set to NaN, and how many there were."""
    x = np.array(values, dtype=np.float64, copy=True).reshape(-1)
    bad = ~np.isfinite(x) | (x <= 0)
    x[bad] = np.nan
    return x, int(bad.sum())


def read_latency_table(path: str | Path, devices: Sequence[str] | None = None,
                       accuracy: str | None = None, *, layout: str = "auto", unit: str | None = None,
                       where: str | Mapping[str, Any] | None = None, qualifiers: Sequence[str] | None = None,
                       duplicates: str = "error") -> LatencyTable:
    """Read and validate a latency table, wide (see the module docstring) or long (:mod:`.long_tables`).

    ``layout``: ``auto`` (long when the table has a ``device`` column and a
    ``latency_ms``/``latency_us``/``latency_s``/``latency`` column and no
    ``latency_ms:<device>`` column), ``long`` or ``wide``.  ``unit``, ``where``,
    ``qualifiers`` and ``duplicates`` are the long layout's options.
    """
    path = Path(path)
    table = read_table_file(path, LatencyTableError, "latency table", default_format="csv")
    return latency_table_from_arrow(table, devices, accuracy, source=str(path), layout=layout, unit=unit, where=where,
                                    qualifiers=qualifiers, duplicates=duplicates)


def latency_table_from_arrow(table: pa.Table, devices: Sequence[str] | None = None, accuracy: str | None = None,
                             source: str = "table", *, layout: str = "auto", unit: str | None = None,
                             where: str | Mapping[str, Any] | None = None, qualifiers: Sequence[str] | None = None,
                             duplicates: str = "error") -> LatencyTable:
    if layout not in long_tables.LAYOUTS:
        raise LatencyTableError(f"--layout must be one of {', '.join(long_tables.LAYOUTS)}, got {layout!r}")
    if layout == "long" or (layout == "auto" and long_tables.is_long(table.column_names)):
        wide = long_tables.long_to_wide(table, devices, accuracy, unit=unit, where=where, qualifiers=qualifiers,
                                        duplicates=duplicates, source=source, error=LatencyTableError,
                                        unknown_device=UnknownTableDevice)
        result = _wide_table(wide, None, accuracy, source)
    else:
        given = [f"--{name}" for name, value in (("unit", unit), ("where", where), ("qualifiers", qualifiers))
                 if value is not None] + (["--duplicates"] if duplicates != "error" else [])
        if given:
            raise LatencyTableError(f"{source}: {', '.join(given)} read long tables (one row per architecture and "
                                    f"device, with '{long_tables.DEVICE}' and latency columns); this one is wide")
        result = _wide_table(table, devices, accuracy, source)
    return _take_space(result)


def _take_space(table: LatencyTable) -> LatencyTable:
    """Move an ``info:space`` column (one name on every row) into :attr:`LatencyTable.space`."""
    values = table.info.pop(SPACE_COLUMN, None)
    if values is not None:
        names = {str(v) for v in values.tolist() if v is not None}
        if len(names) != 1 or any(v is None for v in values.tolist()):
            raise LatencyTableError(f"{table.source}: {SPACE_COLUMN} must name one search space on every row "
                                    f"(found {', '.join(sorted(names)[:3]) or 'none'})")
        table.space = names.pop()
    return table


def _wide_table(table: pa.Table, devices: Sequence[str] | None, accuracy: str | None, source: str) -> LatencyTable:
    names = table.column_names
    if ARCH_ID not in names:
        raise LatencyTableError(f"{source}: no {ARCH_ID!r} column (columns: {', '.join(names[:12])})")
    if len(set(names)) != len(names):
        raise LatencyTableError(f"{source}: duplicate column names")
    column_of: dict[str, str] = {}
    if devices:
        for device in devices:
            if LATENCY_PREFIX + device in names:
                column_of[device] = LATENCY_PREFIX + device
            elif device in names and device != ARCH_ID:
                column_of[device] = device
            else:
                raise LatencyTableError(f"{source}: no latency column for device {device!r} "
                                        f"(looked for {LATENCY_PREFIX}{device} and {device})")
    else:
        column_of = {n[len(LATENCY_PREFIX):]: n for n in names if n.startswith(LATENCY_PREFIX)}
        if not column_of:
            hint = (" (its device and latency columns make it a long table: --layout auto or long)"
                    if long_tables.is_long(names) else "")
            raise LatencyTableError(f"{source}: no '{LATENCY_PREFIX}<device>' columns; name the device columns "
                                    f"with --devices{hint}")
    if accuracy is not None and accuracy not in names:
        raise LatencyTableError(f"{source}: no accuracy column {accuracy!r}")
    accuracy_column = accuracy if accuracy is not None else (DEFAULT_ACCURACY if DEFAULT_ACCURACY in names else None)
    if accuracy_column in column_of.values():
        raise LatencyTableError(f"{source}: column {accuracy_column!r} cannot be both a device and the accuracy")

    ids = table.column(ARCH_ID)
    if ids.null_count:
        raise LatencyTableError(f"{source}: {ids.null_count} row(s) without an {ARCH_ID}")
    arch_ids = np.array([str(a) for a in ids.to_pylist()], dtype=object)
    unique, counts = np.unique(arch_ids.astype(str), return_counts=True)
    if (counts > 1).any():
        dup = unique[counts > 1]
        raise LatencyTableError(f"{source}: {len(dup)} duplicate {ARCH_ID}(s), e.g. {dup[0]!r}")

    latency: dict[str, np.ndarray] = {}
    for device, column in column_of.items():
        latency[device] = _numeric(table.column(column), source, column, "latency")

    acc = None if accuracy_column is None else _numeric(table.column(accuracy_column), source, accuracy_column,
                                                        "accuracy")
    used = {ARCH_ID, accuracy_column, *column_of.values()}
    encoding: dict[str, np.ndarray] = {}
    info: dict[str, np.ndarray] = {}
    for name in names:
        if name in used or (devices and name.startswith(LATENCY_PREFIX)):
            continue
        col = table.column(name)
        if name.startswith(INFO_PREFIX):
            info[name] = np.array(col.to_pylist(), dtype=object)
            continue
        if col.null_count:
            raise LatencyTableError(f"{source}: encoding column {name!r} has {col.null_count} empty cell(s)")
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
            encoding[name] = col.to_numpy()
        else:
            encoding[name] = np.array([str(v) for v in col.to_pylist()], dtype=object)
    return LatencyTable(arch_ids, encoding, latency, accuracy=acc, accuracy_column=accuracy_column, info=info,
                        source=source)


def _numeric(column: pa.ChunkedArray, source: str, name: str, what: str) -> np.ndarray:
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type)):
        sample = next((v for v in column.to_pylist() if v is not None), None)
        raise LatencyTableError(f"{source}: {what} column {name!r} is not numeric ({column.type}, e.g. {sample!r})")
    return np.array([np.nan if v is None else float(v) for v in column.to_pylist()], dtype=np.float64)


def write_latency_table(table: LatencyTable, path: str | Path) -> Path:
    """Write atomically: Parquet for ``.parquet``/``.pq``, CSV otherwise (failed measurements as empty cells).

    Under the table's lock (``FILE.lock``, the one ``bench measure-networks`` holds while it extends
    a table), so this write never lands in the middle of a measurement run's rewrites.
    """
    path = Path(path)
    arrow = table.to_arrow()
    if path.is_dir():
        raise OutputNotWritable(f"{path}: is a folder; give a table file name such as {path / 'table.parquet'}")
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        def write(tmp: Path) -> None:
            pq.write_table(arrow, tmp)
    else:
        import pyarrow.csv as pacsv

        def write(tmp: Path) -> None:
            pacsv.write_csv(arrow, tmp)
    with exclusive_lock(path, TABLE_WRITER_BUSY):
        write_atomically(path, write)
    return path


def table_from_luts(space: Any, luts: Mapping[str, Any] | Sequence[Any], X: np.ndarray | None = None, *,
                    n: int = 1000, seed: int = 0, interpolate: bool = False,
                    arch_ids: Sequence[str] | None = None) -> LatencyTable:
    """A latency table predicted by the LUT predictor: one device column per LUT, the space's genes as the encoding.

    ``luts`` maps device names to LUT paths or :class:`LutLatencyModel` objects
    (a sequence is named by each LUT's device id, else its file stem).  ``X``
    defaults to ``n`` architectures of a Sobol pool of the space (``seed``).
    """
    from optimizer.latency.lut_model import LatencyPredictor, LutLatencyModel

    if not isinstance(luts, Mapping):
        named: dict[str, Any] = {}
        for lut in luts:
            model = lut if isinstance(lut, LutLatencyModel) else LutLatencyModel.from_file(lut)
            name = model.device or Path(model.source).stem
            if name in named:
                name = Path(model.source).stem
            if name in named:
                raise ChameleonError(f"two LUTs named {name!r}; name the devices explicitly")
            named[name] = model
        luts = named
    if not luts:
        raise ChameleonError("a latency table needs at least one LUT")
    X = space.sobol_pool(n, seed=seed) if X is None else np.atleast_2d(np.asarray(X, dtype=np.int64))
    latency: dict[str, np.ndarray] = {}
    for device, lut in luts.items():
        model = lut if isinstance(lut, LutLatencyModel) else LutLatencyModel.from_file(lut)
        latency[device] = LatencyPredictor(model, space, interpolate=interpolate).predict(X).latency_ms
    ids = np.array([str(i) for i in range(len(X))] if arch_ids is None else [str(a) for a in arch_ids], dtype=object)
    encoding = {name: X[:, i].astype(np.int64) for i, name in enumerate(space.gene_names)}
    return LatencyTable(ids, encoding, latency, info={INFO_PREFIX + "macs": space.macs_many(X)},
                        source=f"{space.name} via LUTs", space=space.name)


def space_costs(table: LatencyTable, space: Any) -> dict[str, np.ndarray]:
    """MACs and parameter counts of the table's architectures as points of ``space`` (its genes: encoding columns).

    The cost baselines a latency ranking is compared with; an error when the
    encoding is not the space's genes (a table of another space).
    """
    missing = [g for g in space.gene_names if g not in table.encoding]
    if missing:
        raise LatencyTableError(f"{table.source or 'table'}: not a table of space {space.name}: no gene column "
                                f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    columns = []
    for gene in space.gene_names:
        values = np.asarray(table.encoding[gene])
        if values.dtype.kind not in "iu" and not (values.dtype.kind == "f" and np.all(values == np.round(values))):
            raise LatencyTableError(f"{table.source or 'table'}: gene column {gene!r} of space {space.name} holds "
                                    f"{values[0]!r}, not an integer")
        columns.append(values.astype(np.int64))
    X = np.column_stack(columns) if columns else np.zeros((len(table), 0), dtype=np.int64)
    return {"macs": space.macs_many(X).astype(np.float64), "params": space.params_many(X).astype(np.float64)}
