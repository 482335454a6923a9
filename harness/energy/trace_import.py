"""Power traces captured elsewhere: CSV files from a Monsoon's tools, read into a :class:`Trace`.

Three formats, told apart by their header (names compared without case or
spaces, so ``Time (s)`` and ``time(s)`` are one column):

``monsoon-powertool``
    Monsoon PowerTool's CSV export: ``Time (s)``, ``Main Avg Current (mA)``
    (or ``Main Current (mA)``), ``Main Avg Voltage (V)`` (or ``Main Voltage
    (V)``), often ``Main Avg Power (mW)`` and USB/Aux columns, which are
    ignored.  With power and voltage but no current, current = power / voltage.
    The sample rate comes from the time column.
``monsoon-python``
    The CSV the Monsoon Python package's ``sampleEngine`` writes:
    ``Time(ms),Main(mA),Main Voltage(V),`` (every line ends with a comma; USB
    and Aux channels may follow).  Its time column is not a sample clock (one
    host timestamp per USB packet, in seconds despite its name, repeated and
    jittering), so it is ignored: time comes from the sample index and the
    rate, ``sample_rate_hz`` or else the HVPM's 5000 Hz, and the trace's
    metadata says the rate was assumed.  Cells numpy 2 wrote as
    ``np.float64(1.5)`` are read as numbers.
``plain``
    ``time_s,current_mA,voltage_V``; the rate comes from the time column.

With a time column, a gap of more than 1.5 sample intervals is samples the
monitor dropped: they are filled by linear interpolation (so sample index and
time stay aligned) and counted in ``Trace.dropped_samples``.  Any problem is
one :class:`TraceFormatError` line naming the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.energy.trace import Trace
from harness.errors import ChameleonError

HVPM_RATE_HZ = 5000.0  # the Monsoon HVPM's sample rate (200 µs), ChamNet §4.3

EXPECTED_FORMATS = (
    "expected one of: Monsoon PowerTool export (Time (s), Main Avg Current (mA) or Main Avg Power (mW), Main Avg Voltage (V)); "
    "Monsoon Python package CSV (Time(ms),Main(mA),Main Voltage(V),); "
    "plain CSV (time_s,current_mA,voltage_V)"
)

_POWERTOOL_TIME = {"time(s)": 1.0, "time(ms)": 1e-3}
_POWERTOOL_CURRENT = ("mainavgcurrent(ma)", "maincurrent(ma)")
_POWERTOOL_VOLTAGE = ("mainavgvoltage(v)", "mainvoltage(v)")
_POWERTOOL_POWER = ("mainavgpower(mw)", "mainpower(mw)")
_NUMPY_REPR = re.compile(r"(?:np|numpy)\.\w+\(")


class TraceFormatError(ChameleonError):
    """A trace file that cannot be read: unknown header, bad cells, too short, time going backwards."""


@dataclass(frozen=True)
class _Layout:
    """Which columns of the file hold what."""

    format: str
    time_col: int | None
    time_scale: float  # to seconds
    current_col: int | None
    voltage_col: int | None
    power_col: int | None
    names: list[str]


def read_trace(path: str | Path, sample_rate_hz: float | None = None, *, voltage_v: float | None = None) -> Trace:
    """Read a trace file in one of the three formats (see the module's docstring).

    ``sample_rate_hz`` overrides the rate (for the Monsoon package's CSV it is
    the only source; 5000 Hz when not given).  ``voltage_v`` is the supply
    voltage to assume when the file has no voltage column.
    """
    path = Path(path)
    if sample_rate_hz is not None and not (math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
        raise TraceFormatError(f"{path}: sample rate must be a finite number > 0 Hz, got {sample_rate_hz}")
    text = _read_text(path)
    header_index, header = _header_line(text, path)
    names = _header_cells(path, header)
    layout = _detect(path, header, names)
    table = _parse_numbers(path, text, header_index, layout)
    if table.shape[0] < 2:
        raise TraceFormatError(f"{path}: fewer than 2 samples ({table.shape[0]}); a trace needs at least 2")
    first_data_line = header_index + 2  # 1-based line number of the first data row (blank lines aside)

    current, voltage = _current_and_voltage(path, table, layout, voltage_v, first_data_line)
    metadata: dict = {"format": layout.format, "file": str(path),
                      "columns": {k: layout.names[c] for k, c in (("time", layout.time_col), ("current", layout.current_col),
                                                                    ("voltage", layout.voltage_col), ("power", layout.power_col))
                                  if c is not None}}
    dropped = 0
    if layout.format == "monsoon-python":
        rate = float(sample_rate_hz) if sample_rate_hz is not None else HVPM_RATE_HZ
        metadata["time_column_ignored"] = True
        metadata["sample_rate_assumed"] = sample_rate_hz is None
        metadata["sample_rate_source"] = "argument" if sample_rate_hz is not None else "assumed (HVPM default)"
        if layout.time_col is not None:
            raw_time = table[:, layout.time_col]
            metadata["time_column_span"] = float(raw_time[-1] - raw_time[0])  # as written (seconds, despite "ms")
    else:
        times = table[:, layout.time_col] * layout.time_scale
        rate, positions = _rate_and_positions(path, times, sample_rate_hz, first_data_line)
        metadata["sample_rate_assumed"] = False
        metadata["sample_rate_source"] = "argument" if sample_rate_hz is not None else "time column"
        metadata["time_offset_s"] = float(times[0])
        if positions is not None:
            full = np.arange(int(positions[-1]) + 1)
            dropped = int(full.size - positions.size)
            current = np.interp(full, positions, current)
            voltage = np.interp(full, positions, voltage)
            metadata["gaps_filled"] = True
    return Trace(current_ma=current, voltage_v=voltage, sample_rate_hz=rate, start_time_s=None, dropped_samples=dropped,
                 source=f"import:{layout.format}", metadata=metadata)


# ----------------------------------------------------------------- reading
def _read_text(path: Path) -> str:
    if not path.exists():
        raise TraceFormatError(f"{path}: no such file")
    if path.is_dir():
        raise TraceFormatError(f"{path}: is a folder, not a trace file")
    if not path.is_file():  # a pipe or a device: reading it could block for ever
        raise TraceFormatError(f"{path}: not a regular file; a trace is a CSV file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TraceFormatError(f"{path}: cannot read ({err.strerror or err})") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # a CSV saved as "Unicode text" (Windows)
        try:
            data = data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            raise TraceFormatError(f"{path}: starts as UTF-16 text but does not decode as UTF-16; {EXPECTED_FORMATS}") from None
    nul = data.find(b"\x00")
    if nul >= 0:  # no CSV holds NUL bytes; without this, binary reads as a header of control characters
        raise TraceFormatError(f"{path}: binary data (a NUL byte at byte {nul}), not a CSV text file; {EXPECTED_FORMATS}")
    # Other bytes that are not UTF-8 (a Latin-1 export, say) become U+FFFD: the header and the numbers are
    # ASCII in every format, so such bytes can only sit where a number should be, and are named there.
    text = data.decode("utf-8-sig", errors="replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise TraceFormatError(f"{path}: empty file; {EXPECTED_FORMATS}")
    return text


def _header_line(text: str, path: Path) -> tuple[int, str]:
    for index, line in enumerate(io.StringIO(text)):  # stops at the first non-blank line
        if line.strip():
            return index, line.strip()
    raise TraceFormatError(f"{path}: empty file; {EXPECTED_FORMATS}")  # pragma: no cover (text.strip() checked)


def _header_cells(path: Path, header: str) -> list[str]:
    try:
        return next(csv.reader([header]))
    except csv.Error as err:  # a field over the csv module's size limit: not a header at all
        raise TraceFormatError(f"{path}: unrecognised trace header ({err}); {EXPECTED_FORMATS}") from None


def _norm(name: str) -> str:
    return "".join(name.split()).strip('"\'').lower()


def _find(normed: list[str], candidates) -> int | None:
    for candidate in candidates:
        if candidate in normed:
            return normed.index(candidate)
    return None


def _detect(path: Path, header: str, names: list[str]) -> _Layout:
    normed = [_norm(n) for n in names]
    if "main(ma)" in normed:
        time_col = _find(normed, ("time(ms)", "time(s)"))
        return _Layout("monsoon-python", time_col, 1.0, normed.index("main(ma)"), _find(normed, ("mainvoltage(v)",)), None, names)
    time_col = _find(normed, tuple(_POWERTOOL_TIME))
    current_col = _find(normed, _POWERTOOL_CURRENT)
    power_col = _find(normed, _POWERTOOL_POWER)
    if time_col is not None and (current_col is not None or power_col is not None):
        return _Layout("monsoon-powertool", time_col, _POWERTOOL_TIME[normed[time_col]], current_col,
                       _find(normed, _POWERTOOL_VOLTAGE), power_col, names)
    if "time_s" in normed and "current_ma" in normed:
        return _Layout("plain", normed.index("time_s"), 1.0, normed.index("current_ma"), _find(normed, ("voltage_v",)), None, names)
    shown = header if len(header) <= 160 else header[:157] + "..."
    raise TraceFormatError(f"{path}: unrecognised trace header {shown!r}; {EXPECTED_FORMATS}")


def _parse_numbers(path: Path, text: str, header_index: int, layout: _Layout) -> np.ndarray:
    """The file's numeric cells as a (rows, columns) float array; only the columns used are parsed."""
    used = sorted({c for c in (layout.time_col, layout.current_col, layout.voltage_col, layout.power_col) if c is not None})
    body = text.split("\n", header_index + 1)[-1] if text.count("\n") > header_index else ""
    if layout.format == "monsoon-python" and "(" in body[:4096]:  # numpy 2's repr: np.float64(1.5)
        for prefix in set(_NUMPY_REPR.findall(body[:4096])):
            body = body.replace(prefix, "")
        body = body.replace(")", "")
    if not body.strip():
        return np.empty((0, len(layout.names)))
    try:
        values = np.loadtxt(io.StringIO(body), delimiter=",", usecols=used, dtype=np.float64, ndmin=2, comments=None,
                            quotechar='"')
    except ValueError:
        _report_bad_cell(path, body, header_index, layout, used)
        raise TraceFormatError(f"{path}: cannot parse the numbers of this file; {EXPECTED_FORMATS}") from None
    if values.size and not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise TraceFormatError(f"{path}: line {_line_of(body, row, header_index)}: a cell is not a finite number")
    out = np.empty((values.shape[0], len(layout.names)), dtype=np.float64)
    out[:, used] = values
    return out


def _line_of(body: str, row: int, header_index: int) -> int:
    """1-based file line of the ``row``-th non-blank data line."""
    seen = -1
    for offset, line in enumerate(body.splitlines()):
        if line.strip():
            seen += 1
            if seen == row:
                return header_index + 2 + offset
    return header_index + 2 + row


def _report_bad_cell(path: Path, body: str, header_index: int, layout: _Layout, used: list[int]) -> None:
    """Find the first bad line (slow path, only on error) and raise naming it; returns when it cannot tell."""
    try:
        for offset, cells in enumerate(csv.reader(io.StringIO(body))):
            if not cells or not "".join(cells).strip():
                continue
            line = header_index + 2 + offset
            if len(cells) <= max(used):
                raise TraceFormatError(f"{path}: line {line} has {len(cells)} cell(s), but the header has {len(layout.names)}")
            for col in used:
                try:
                    float(cells[col])
                except ValueError:
                    cell = cells[col].strip()
                    shown = cell if len(cell) <= 40 else cell[:37] + "..."  # name the cell, not a megabyte of it
                    raise TraceFormatError(
                        f"{path}: line {line}: {shown!r} in column {layout.names[col].strip()!r} is not a number") from None
    except csv.Error:  # a cell over the csv module's size limit: the caller's general line says enough
        return


def _current_and_voltage(path: Path, table: np.ndarray, layout: _Layout, voltage_v: float | None,
                         first_line: int) -> tuple[np.ndarray, np.ndarray]:
    if layout.voltage_col is not None:
        voltage = table[:, layout.voltage_col]
    elif voltage_v is not None:
        voltage = np.full(table.shape[0], float(voltage_v))
    else:
        raise TraceFormatError(f"{path}: no main voltage column ({', '.join(n.strip() for n in layout.names if n.strip())}); "
                               "give the supply voltage (voltage_v) or export the voltage channel too")
    if layout.current_col is not None:
        return table[:, layout.current_col], voltage
    if (voltage <= 0).any():
        row = int(np.flatnonzero(voltage <= 0)[0])
        raise TraceFormatError(f"{path}: line {first_line + row}: voltage {voltage[row]} V; "
                               "current cannot be derived from power without a positive voltage")
    return table[:, layout.power_col] / voltage, voltage


def _rate_and_positions(path: Path, times: np.ndarray, sample_rate_hz: float | None,
                        first_line: int) -> tuple[float, np.ndarray | None]:
    """The sample rate, and each row's sample index when rows are missing (else None)."""
    steps = np.diff(times)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        row = int(bad[0]) + 1
        raise TraceFormatError(f"{path}: the time column is not increasing at line {first_line + row} "
                               f"({times[row]:.9g} s after {times[row - 1]:.9g} s)")
    dt = 1.0 / sample_rate_hz if sample_rate_hz is not None else float(np.median(steps))
    gaps = steps > 1.5 * dt
    positions = None
    intervals = times.size - 1
    if gaps.any():
        candidate = np.rint((times - times[0]) / dt).astype(np.int64)
        if np.all(np.diff(candidate) > 0):  # a clean sample grid: place each row on it
            positions = candidate
            intervals = int(candidate[-1])
    if sample_rate_hz is not None:
        return float(sample_rate_hz), positions
    rate = intervals / float(times[-1] - times[0])  # finer than 1/median when times are printed rounded
    if abs(rate - round(rate)) < 1e-6 * rate:
        rate = float(round(rate))
    return rate, positions
