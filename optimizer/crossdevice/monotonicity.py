"""Latency monotonicity: how alike devices rank the same architectures (OneProxy, SIGMETRICS '22).

For every pair of devices of a :class:`~optimizer.latency.architecture_tables.LatencyTable`,
on the architectures measured on both (pairwise complete rows): Spearman's rho
(SRCC: Pearson's correlation of average ranks, exactly ``scipy.stats.spearmanr``)
and Kendall's tau-b (``scipy.stats.kendalltau``), each with a percentile
bootstrap confidence interval (architectures resampled with replacement,
seeded per pair; every resample of a pair computed at once,
:mod:`optimizer.crossdevice.rank_correlation`).  Pairs whose SRCC is under a
threshold (OneProxy: 0.9) are flagged: reusing the proxy's architectures as
they are is not advised there.

Beside the device pairs, each device's SRCC against cost *baselines*: when the
table's architectures are points of one of our search spaces, their MACs and
parameter counts (:func:`~optimizer.latency.architecture_tables.space_costs`);
a device pair is worth more than a proxy device only where its SRCC beats
these.  Tables of other spaces (public exports) report them as missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from harness.errors import ChameleonError
from harness.json_documents import strict_json
from optimizer.crossdevice.rank_correlation import (bootstrap_indices, bootstrap_kendall, bootstrap_spearman, kendall,
                                                    percentile_interval, spearman)
from optimizer.latency.architecture_tables import LatencyTable

__all__ = ["DEFAULT_THRESHOLD", "MonotonicityReport", "PairMonotonicity", "TooFewDevices", "bootstrap_kendall",
           "bootstrap_spearman", "kendall", "monotonicity", "pair_monotonicity", "plot_heatmap", "spearman"]

DEFAULT_THRESHOLD = 0.9
MIN_ROWS = 3
# The cost baselines every report names (null where the table's space is not ours).
BASELINES = ("macs", "params")
# Resamples a report may ask for: 1000 give two-digit intervals; more than this only burns memory and minutes.
MAX_BOOTSTRAP = 100_000


class TooFewDevices(ChameleonError):
    """Monotonicity needs two devices or more."""


@dataclass(frozen=True)
class PairMonotonicity:
    a: str
    b: str
    n: int  # architectures measured on both
    srcc: float
    srcc_low: float
    srcc_high: float
    kendall: float
    kendall_low: float
    kendall_high: float
    below_threshold: bool  # measured, and its SRCC is under the threshold (a pair without data is not)

    @property
    def has_data(self) -> bool:
        """Enough architectures measured on both devices for a rank correlation."""
        return self.n >= MIN_ROWS and bool(np.isfinite(self.srcc))


@dataclass(frozen=True)
class MonotonicityReport:
    devices: list[str]
    pairs: list[PairMonotonicity]
    invalid: dict[str, int]
    rows: int
    threshold: float
    bootstrap: int
    confidence: float
    seed: int
    source: str = ""
    space: str | None = None  # our search space the architectures belong to, None for other tables
    # baseline ("macs", "params") -> device -> SRCC of the device's latency with it (NaN: too few rows);
    # empty where the space is not ours
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)

    def baseline_srcc(self, baseline: str, device: str) -> float | None:
        """A device's SRCC against a baseline; None where the table has no such baseline (not our space)."""
        values = self.baselines.get(baseline)
        return None if values is None else values[device]

    def matrix(self, what: str = "srcc") -> np.ndarray:
        """A symmetric [devices x devices] matrix of one figure (1 on the diagonal)."""
        k = len(self.devices)
        M = np.eye(k)
        index = {d: i for i, d in enumerate(self.devices)}
        for p in self.pairs:
            M[index[p.a], index[p.b]] = M[index[p.b], index[p.a]] = getattr(p, what)
        return M

    @property
    def flagged(self) -> list[PairMonotonicity]:
        return [p for p in self.pairs if p.below_threshold]

    @property
    def without_data(self) -> list[PairMonotonicity]:
        """Pairs with too few architectures measured on both devices: neither under nor over the threshold."""
        return [p for p in self.pairs if not p.has_data]

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "devices": self.devices, "rows": self.rows, "invalid": self.invalid,
                "threshold": self.threshold, "bootstrap": self.bootstrap, "confidence": self.confidence,
                "seed": self.seed, "pairs": [strict_json(asdict(p)) for p in self.pairs],
                "srcc_matrix": strict_json(self.matrix("srcc").tolist()),
                "kendall_matrix": strict_json(self.matrix("kendall").tolist()),
                "flagged": [[p.a, p.b] for p in self.flagged],
                "without_data": [[p.a, p.b] for p in self.without_data],
                "space": self.space,
                # every device's SRCC with MACs and with parameter count: null when the space is not ours
                "baselines": {name: {d: strict_json(self.baseline_srcc(name, d)) for d in self.devices}
                              for name in dict.fromkeys([*BASELINES, *self.baselines])}}


# ------------------------------------------------------------------ statistics (pure)
def pair_monotonicity(x: np.ndarray, y: np.ndarray, a: str = "a", b: str = "b", *, bootstrap: int = 1000,
                      seed: int | np.random.SeedSequence = 0, threshold: float = DEFAULT_THRESHOLD,
                      confidence: float = 0.95) -> PairMonotonicity:
    """SRCC and Kendall's tau of two latency vectors on their pairwise complete rows, with bootstrap CIs."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    if n < MIN_ROWS:
        nan = float("nan")
        return PairMonotonicity(a, b, n, nan, nan, nan, nan, nan, nan, False)
    rho, tau = spearman(x, y), kendall(x, y)
    lo = hi = klo = khi = float("nan")
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        lo, hi = percentile_interval(bootstrap_spearman(x, y, bootstrap, rng), confidence)
        klo, khi = percentile_interval(bootstrap_kendall(x, y, bootstrap_indices(n, bootstrap, rng)), confidence)
    below = bool(np.isfinite(rho) and rho < threshold)  # a constant column gives no rank: not flagged, reported without data
    return PairMonotonicity(a, b, n, rho, lo, hi, tau, klo, khi, below)


def baseline_srcc(table: LatencyTable, devices: list[str], baselines: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Each device's SRCC with each baseline (one value per architecture), on the rows measured on the device."""
    out: dict[str, dict[str, float]] = {}
    for name, values in baselines.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(table),):
            raise ChameleonError(f"baseline {name!r}: {values.shape[0] if values.ndim else 0} values for "
                                 f"{len(table)} architectures")
        out[name] = {}
        for d in devices:
            keep = np.isfinite(table.latency(d)) & np.isfinite(values)
            out[name][d] = spearman(table.latency(d)[keep], values[keep]) if keep.sum() >= MIN_ROWS else float("nan")
    return out


def monotonicity(table: LatencyTable, devices: list[str] | None = None, *, bootstrap: int = 1000, seed: int = 0,
                 threshold: float = DEFAULT_THRESHOLD, confidence: float = 0.95,
                 baselines: Mapping[str, Any] | None = None, space: str | None = None) -> MonotonicityReport:
    """Every pair of devices of the table (or of ``devices``), in the order given.

    ``baselines`` (e.g. :func:`~optimizer.latency.architecture_tables.space_costs`: ``macs``, ``params``, one
    value per architecture) adds each device's SRCC against each; ``space`` names the space they come from
    (default: the table's).
    """
    devices = list(devices or table.devices)
    for d in devices:
        table.latency(d)
    if len(devices) < 2:
        raise TooFewDevices(f"{table.source or 'table'}: monotonicity needs two devices or more "
                            f"(got {', '.join(devices) or 'none'})")
    if len(set(devices)) != len(devices):
        raise ChameleonError(f"devices named twice: {', '.join(devices)}")
    if not (isinstance(threshold, (int, float)) and np.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise ChameleonError(f"--threshold must be an SRCC between -1 and 1, got {threshold}")
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise ChameleonError(f"--bootstrap must be between 0 (no intervals) and {MAX_BOOTSTRAP}, got {bootstrap}")
    if not 0 < confidence < 1:
        raise ChameleonError("the confidence level must be between 0 and 1")
    pairs = []
    for i in range(len(devices)):
        for j in range(i + 1, len(devices)):
            pairs.append(pair_monotonicity(table.latency(devices[i]), table.latency(devices[j]), devices[i], devices[j],
                                           bootstrap=bootstrap, seed=np.random.SeedSequence([seed, i, j]),
                                           threshold=threshold, confidence=confidence))
    return MonotonicityReport(devices, pairs, {d: table.invalid.get(d, 0) for d in devices}, len(table), threshold,
                              bootstrap, confidence, seed, table.source,
                              space=(space or table.space) if baselines else None,
                              baselines=baseline_srcc(table, devices, baselines) if baselines else {})


# ------------------------------------------------------------------ figure (edge)
def plot_heatmap(report: MonotonicityReport, path: str | Path, title: str = "") -> Path:
    """The SRCC matrix as a heatmap, each cell annotated; pairs under the threshold outlined in red."""
    from harness.plots import _pyplot, save_figure

    plt = _pyplot()
    M = report.matrix("srcc")
    k = len(report.devices)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * k, 0.9 + 0.8 * k))
    image = ax.imshow(np.ma.masked_invalid(M), vmin=min(0.0, float(np.nanmin(M))) if np.isfinite(M).any() else 0.0,
                      vmax=1.0, cmap="viridis")
    index = {d: i for i, d in enumerate(report.devices)}
    for i in range(k):
        for j in range(k):
            value = M[i, j]
            ax.text(j, i, "-" if not np.isfinite(value) else f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(value) and value < 0.75 else "black")
    for p in report.flagged:
        for i, j in ((index[p.a], index[p.b]), (index[p.b], index[p.a])):
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(k), report.devices, rotation=45, ha="right")
    ax.set_yticks(range(k), report.devices)
    fig.colorbar(image, ax=ax, label="Spearman rho (SRCC)")
    ax.set_title(title or f"latency monotonicity (red: SRCC < {report.threshold:g})")
    return save_figure(fig, path)
