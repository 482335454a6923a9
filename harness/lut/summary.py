"""What a LUT holds, in figures: pure functions over a LUT table."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa

from harness.host_speed import host_report
from harness.lut.store import LUT_SCHEMA_VERSION
from harness.signature import IDENTITY, SIGNATURE_COLUMNS, OpSignature


def summarize_lut(table: pa.Table, noisy_cv: float = 0.10) -> dict[str, Any]:
    """Provenance, per-kind latency figures and quality flags of a LUT, as a JSON-ready dict."""
    rows = table.num_rows

    def distinct(column: str) -> list[Any]:
        return sorted({str(v) for v in table.column(column).to_pylist()})

    kinds = table.column("kind").to_pylist()
    dtypes = table.column("dtype").to_pylist()
    medians = table.column("median_us").to_numpy()
    cvs = table.column("cv").to_numpy()
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for kind, dtype, median in zip(kinds, dtypes, medians):
        if kind != IDENTITY:
            groups[(kind, dtype)].append(float(median))
    by_kind = [
        {
            "kind": kind,
            "dtype": dtype,
            "rows": len(values),
            "median_of_median_us": float(np.median(values)),
            "min_median_us": float(np.min(values)),
            "max_median_us": float(np.max(values)),
            "sum_median_us": float(np.sum(values)),
        }
        for (kind, dtype), values in sorted(groups.items())
    ]
    overhead = [float(m) for k, m in zip(kinds, medians) if k == IDENTITY]
    times = table.column("measured_at").to_pylist()
    host = host_report(table)
    return {
        "lut_schema_version": LUT_SCHEMA_VERSION,
        "rows": rows,
        "devices": distinct("device_id"),
        "device_models": distinct("device_model"),
        "runtimes": sorted({f"{r} {v}" for r, v in zip(table.column("runtime").to_pylist(), table.column("runtime_version").to_pylist())}),
        "providers": distinct("provider"),
        "threads": sorted(set(table.column("threads").to_pylist())),
        "harness_versions": distinct("harness_version"),
        "sessions": len(set(table.column("session_id").to_pylist())),
        "first_measured_at": min(times).isoformat() if times else None,
        "last_measured_at": max(times).isoformat() if times else None,
        "overhead_us": overhead[0] if overhead else None,
        "all_medians_positive": bool(np.all(medians > 0)) if rows else None,
        "noisy_rows": int(np.sum(cvs > noisy_cv)),
        "noisy_cv_threshold": noisy_cv,
        "by_kind": by_kind,
        "host": host.to_json() | {"line": host.line()},
    }


def macs_of(table: pa.Table) -> np.ndarray:
    """MACs of each row's signature (for plots: latency against work)."""
    records = table.select(list(SIGNATURE_COLUMNS)).to_pylist()
    return np.array([OpSignature.from_record(record).macs for record in records], dtype=np.float64)
