"""LUT rows for the LUT store's tests (test_lut_store.py and test_lut_store_writer.py): one identity, five
signatures, a measurement and the row the sweep would write for it."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from harness.lut.store import rows_to_table, write_lut_atomic
from harness.measurement import Measurement, TimingStats
from harness.runners import DeviceIdentity
from harness.signature import OpSignature, make_signature
from harness.sweep import make_row

IDENTITY = DeviceIdentity(model="Test CPU @ 2.40GHz", runtime="onnxruntime", runtime_version="1.20.1",
                          provider="CPUExecutionProvider")
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)

SIGS = [
    make_signature("identity"),
    make_signature("conv2d", c_in=3, h=224, w=224, c_out=32, kernel=3, stride=2, activation="relu6"),
    make_signature("depthwise_conv", c_in=32, h=112, w=112, kernel=3, activation="relu6"),
    make_signature("inverted_residual", c_in=16, h=112, w=112, c_out=24, kernel=3, stride=2, mid_channels=96),
    make_signature("fc", c_in=1280, c_out=1000, dtype="int8"),
]


def measurement(median: float = 100.0, mad: float = 1.0, runs: int = 33, throttled: bool | None = None) -> Measurement:
    stats = TimingStats(median_us=median, p10_us=median * 0.95, p90_us=median * 1.2, mean_us=median * 1.03,
                        std_us=median * 0.07, min_us=median * 0.9, runs=runs, mad_us=mad)
    return Measurement(stats=stats, warmup_runs=7, attempts=2, timed_total_us=median * runs, throttled=throttled,
                       temperature_c=None if throttled is None else 41.5, cpu_freq_khz=None if throttled is None else 1900800)


def row(sig: OpSignature = SIGS[1], median: float = 100.0, mad: float = 1.0, device: str = "xeon",
        at: datetime | None = T0, session: str = "sess-a", throttled: bool | None = None) -> dict:
    r = make_row(sig, measurement(median, mad, throttled=throttled), IDENTITY, device, threads=1, session_id=session)
    if at is not None:
        r["measured_at"] = at
    return r


def rows_for(sigs=SIGS, **kw) -> list[dict]:
    return [row(sig, median=10.0 * (i + 1), **kw) for i, sig in enumerate(sigs)]


def one_line(err: BaseException) -> str:
    message = str(err)
    assert message and "\n" not in message
    return message


def write_lut(path: Path, rows: list[dict]) -> Path:
    write_lut_atomic(rows_to_table(rows), path)
    return path
