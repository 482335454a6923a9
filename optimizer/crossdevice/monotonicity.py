"""Latency monotonicity: how alike devices rank the same architectures (OneProxy, SIGMETRICS '22).

For every pair of devices of a :class:`~optimizer.latency.architecture_tables.LatencyTable`,
on the architectures measured on both (pairwise complete rows): Spearman's rho
(SRCC: Pearson's correlation of average ranks, exactly ``scipy.stats.spearmanr``)
and Kendall's tau-b (``scipy.stats.kendalltau``), each with a percentile
bootstrap confidence interval (architectures resampled with replacement,
seeded per pair; the SRCC resamples are ranked and correlated as one array).
Pairs whose SRCC is under a threshold (OneProxy: 0.9) are flagged: reusing the
proxy's architectures as they are is not advised there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from harness.errors import ChameleonError
from harness.json_documents import strict_json
from optimizer.latency.architecture_tables import LatencyTable

DEFAULT_THRESHOLD = 0.9
MIN_ROWS = 3
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
                "without_data": [[p.a, p.b] for p in self.without_data]}


# ------------------------------------------------------------------ statistics (pure)
def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """SRCC: Pearson's correlation of average ranks (NaN when either side is constant or n < 2)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    return float(_pearson_rows(stats.rankdata(x)[None, :], stats.rankdata(y)[None, :])[0])


def _pearson_rows(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of two [B, n] arrays (NaN for a constant row)."""
    Xc = X - X.mean(axis=1, keepdims=True)
    Yc = Y - Y.mean(axis=1, keepdims=True)
    den = np.sqrt((Xc * Xc).sum(axis=1) * (Yc * Yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (Xc * Yc).sum(axis=1) / den
    r = np.where(den > 0, r, np.nan)
    return np.clip(r, -1.0, 1.0)


def kendall(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return float("nan")
    return float(stats.kendalltau(x, y).statistic)


def bootstrap_indices(n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, n, size=(draws, n))


def bootstrap_spearman(x: np.ndarray, y: np.ndarray, draws: int, rng: np.random.Generator,
                       chunk_elements: int = 4_000_000) -> np.ndarray:
    """SRCC of ``draws`` resamples of the rows (ranked and correlated in chunks of resamples)."""
    n = len(x)
    out = np.empty(draws)
    per_chunk = max(1, chunk_elements // max(n, 1))
    index = bootstrap_indices(n, draws, rng)
    for start in range(0, draws, per_chunk):
        idx = index[start:start + per_chunk]
        out[start:start + len(idx)] = _pearson_rows(stats.rankdata(x[idx], axis=1), stats.rankdata(y[idx], axis=1))
    return out


def bootstrap_kendall(x: np.ndarray, y: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each resample (one scipy call per resample: O(n log n) each)."""
    return np.array([stats.kendalltau(x[i], y[i]).statistic for i in index], dtype=np.float64)


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


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


def monotonicity(table: LatencyTable, devices: list[str] | None = None, *, bootstrap: int = 1000, seed: int = 0,
                 threshold: float = DEFAULT_THRESHOLD, confidence: float = 0.95) -> MonotonicityReport:
    """Every pair of devices of the table (or of ``devices``), in the order given."""
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
                              bootstrap, confidence, seed, table.source)


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
