"""The host's speed and quiet, as a LUT records them: the reference kernel, the baseline, and a LUT's host report.

A virtual machine's speed drifts with its neighbours: the same operator read
20-40% faster minutes later, every operator alike (see
``../shared/measurement-notes.md``).  A fixed reference kernel
(:data:`REFERENCE_SIGNATURE`, an ordinary convolution the runner builds like
any other op) is timed at the start of every interleaved round, and every row
is scaled to the speed at which the reference takes the LUT's
``reference_baseline_us`` (see :func:`harness.measurement.measure_interleaved`):
rows measured at different moments, and networks measured later, compare as if
measured at one speed.  The baseline is fixed by the first group a LUT's
first sweep measures, and every later sweep, resume and network timing of
that LUT uses it.

:func:`host_report` reads back, from a LUT's rows, how quiet (CPU share,
descheduled runs) and how steady (the reference's range) its host was and how
precise its medians are; ``bench lut show`` and ``optimize estimate`` print it.

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
    rows_with_reference: int  # rows scaled to the baseline (0: a LUT of schema version 1, a phone, an import)
    reference_baseline_us: float | None
    speed_low: float | None  # the host's speed against the baseline, 5th and 95th percentile over rows (1 = baseline)
    speed_high: float | None
    cpu_share_median: float | None  # the measuring thread's CPU share over its timed runs, median and lowest row
    cpu_share_lowest: float | None
    descheduled_share: float | None  # runs dropped as descheduled over runs kept plus dropped
    precision_median: float | None  # half-width of the median's 95% interval over the median, median over rows
    precision_p90: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for a person; says "not recorded" where the LUT kept nothing of it."""
        parts = []
        if self.rows_with_reference:
            parts.append(f"host speed {self.speed_low:.2f}-{self.speed_high:.2f}× the reference "
                         f"({self.reference_baseline_us:.0f} µs) over {self.rows_with_reference} rows, all scaled to it")
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
    scaled = np.isfinite(reference) & np.isfinite(baseline) & (reference > 0)
    speed = baseline[scaled] / reference[scaled]
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
    return HostReport(
        rows=table.num_rows,
        rows_with_reference=int(scaled.sum()),
        reference_baseline_us=float(baseline[scaled][0]) if scaled.any() else None,
        speed_low=maybe(speed, 0.05),
        speed_high=maybe(speed, 0.95),
        cpu_share_median=maybe(share, 0.5),
        cpu_share_lowest=float(share.min()) if share.size else None,
        descheduled_share=float(dropped[known].sum() / total_runs) if total_runs > 0 else None,
        precision_median=maybe(half, 0.5),
        precision_p90=maybe(half, 0.9),
    )


def rescaled(table: pa.Table, baseline_us: float) -> pa.Table:
    """A LUT's rows expressed at another reference speed: every time × ``baseline_us`` / the LUT's baseline.

    Two LUTs of one host, each scaled to the baseline of its own first sweep,
    compare only once expressed at one baseline (``raw_median_us`` and
    ``reference_us``, what was read on the clock, are unchanged).  A LUT
    without a baseline is returned as it is.
    """
    own = lut_baseline(table)
    if own is None:
        return table
    factor = baseline_us / own
    for name in ("median_us", "p10_us", "p90_us", "mean_us", "std_us", "min_us", "ci_low_us", "ci_high_us"):
        index = table.schema.get_field_index(name)
        column = table.column(name)
        values = [None if v is None else v * factor for v in column.to_pylist()]
        table = table.set_column(index, table.schema.field(index), pa.array(values, type=column.type))
    index = table.schema.get_field_index("reference_baseline_us")
    return table.set_column(index, table.schema.field(index),
                            pa.array([baseline_us] * table.num_rows, type=table.column(index).type))
