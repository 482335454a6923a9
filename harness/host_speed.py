"""The host's speed and quiet, as a LUT records them: the reference kernel, the baseline, and a LUT's host report.

This machine's host changes speed under it: for seconds at a time a tenant on
the same physical core slows it, and slows operators unequally (a
memory-bound elementwise op about 2×, a convolution about 10%; see
``../shared/measurement-notes.md`` and docs/measurement.md).  No one factor
corrects that, so the harness measures in the fast state only: a fixed
reference kernel (:data:`REFERENCE_SIGNATURE`, an ordinary convolution the
runner builds like any other op) is timed around the operators' batches, and
a batch is kept only when the readings around it are within the profile's
``reference_tolerance`` of the LUT's ``reference_baseline_us``, the
reference's time in the fast state (see
:func:`harness.measurement.measure_interleaved`).  The baseline is fixed by
the first group a LUT's first sweep measures; every later sweep, resume and
network timing of that LUT holds its batches to it, so rows measured at
different moments, and networks measured later, meet the same host.

:func:`host_report` reads back, from a LUT's rows, how quiet (CPU share,
descheduled runs) and how steady (rounds dropped off the baseline, rows that
never reached it) its host was and how precise its medians are;
``bench lut show`` and ``optimize estimate`` print it.

May import: :mod:`harness.signature`, pyarrow, numpy.  Never a runner or the optimizer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from harness.signature import make_signature

# About 7 M multiply-adds: ~0.5-1 ms on one Xeon core, long enough for a median to a percent from five runs,
# short enough to time in every round (a round of 24 ops takes ~0.1-1 s).  Compute-bound, like most of a LUT.
REFERENCE_SIGNATURE = make_signature("conv2d", c_in=32, h=28, w=28, c_out=32, kernel=3, stride=1, activation="relu")


def lut_baseline(table: pa.Table) -> float | None:
    """The reference speed a LUT's rows are expressed at (``reference_baseline_us``), or None where none was kept.

    The first non-null value: every row a sweep writes into a LUT with a
    baseline carries the same one (sweeps resume with the LUT's own).
    """
    if "reference_baseline_us" not in table.column_names or table.num_rows == 0:
        return None
    values = [v for v in table.column("reference_baseline_us").to_pylist() if v is not None]
    return float(values[0]) if values else None


@dataclass(frozen=True)
class HostReport:
    """How quiet and steady the host was while a LUT's rows were measured, and how precise their medians are."""

    rows: int
    rows_with_reference: int  # rows held to the baseline (0: a LUT of schema version 1, a phone, an import)
    reference_baseline_us: float | None
    rows_off_baseline: int  # rows never measured at the baseline (the caps were reached): kept all their batches
    rows_retaken_share: float | None  # rows with rounds taken again because the host was off its fast state
    cpu_share_median: float | None  # the measuring thread's CPU share over its timed runs, median and lowest row
    cpu_share_lowest: float | None
    descheduled_share: float | None  # runs dropped as descheduled over runs kept plus dropped
    precision_median: float | None  # half-width of the median's 95% interval over the median, median over rows
    precision_p90: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for a person; says "not tracked" where the LUT kept nothing of it."""
        parts = []
        if self.rows_with_reference:
            parts.append(f"host held to its fast state (reference {self.reference_baseline_us:.0f} µs) in "
                         f"{self.rows_with_reference - self.rows_off_baseline} of {self.rows_with_reference} rows "
                         f"({self.rows_retaken_share:.0%} of rows took rounds again)")
        else:
            parts.append("host speed not tracked (no reference kernel in this LUT)")
        if self.cpu_share_median is not None:
            parts.append(f"CPU share {self.cpu_share_median:.0%} (lowest row {self.cpu_share_lowest:.0%})")
        if self.descheduled_share is not None:
            parts.append(f"{self.descheduled_share:.1%} of runs dropped as descheduled")
        if self.precision_median is not None:
            parts.append(f"medians known to ±{self.precision_median:.1%} (90% of rows within "
                         f"±{self.precision_p90:.1%}, 95% confidence)")
        return "; ".join(parts)


def host_report(table: pa.Table) -> HostReport:
    """Summarise a LUT's host columns (schema version 2; a version-1 LUT reads as all not recorded)."""
    def column(name: str) -> np.ndarray:
        if name not in table.column_names:
            return np.full(table.num_rows, np.nan)
        return np.asarray([np.nan if v is None else float(v) for v in table.column(name).to_pylist()], dtype=float)

    median = column("median_us")
    reference, baseline = column("reference_us"), column("reference_baseline_us")
    held = np.isfinite(reference) & np.isfinite(baseline)
    off = column("off_baseline_rounds")
    share = column("cpu_share")
    share = share[np.isfinite(share)]
    dropped, runs = column("descheduled_runs"), column("runs")
    known = np.isfinite(dropped)
    low, high = column("ci_low_us"), column("ci_high_us")
    with np.errstate(invalid="ignore", divide="ignore"):
        half = (high - low) / 2 / median
    half = half[np.isfinite(half)]

    def maybe(values: np.ndarray, q: float) -> float | None:
        return float(np.quantile(values, q)) if values.size else None

    total_runs = float(runs[known].sum() + dropped[known].sum()) if known.any() else 0.0
    at_baseline = column("at_baseline")
    return HostReport(
        rows=table.num_rows,
        rows_with_reference=int(held.sum()),
        reference_baseline_us=float(baseline[held][0]) if held.any() else None,
        rows_off_baseline=int(np.sum(at_baseline[held] == 0)),
        rows_retaken_share=float(np.mean(off[held] > 0)) if held.any() else None,
        cpu_share_median=maybe(share, 0.5),
        cpu_share_lowest=float(share.min()) if share.size else None,
        descheduled_share=float(dropped[known].sum() / total_runs) if total_runs > 0 else None,
        precision_median=maybe(half, 0.5),
        precision_p90=maybe(half, 0.9),
    )
