"""Rank correlations (Spearman's rho, Kendall's tau-b) and their bootstrap, vectorised across resamples.

Pure functions over float vectors; no table, no device.  The point figures are
scipy's (``spearmanr``, ``kendalltau``).  The bootstrap resamples rows with
replacement; a resample ``x[i], y[i]`` (``i`` one row of an index ``[B, m]``)
is the original points, each taken ``w`` times (``w``: how often it was
drawn).  Both bootstraps work from these multiplicities, with the points sorted
once for every resample:

- **Spearman**: a point's average rank in a resample is the weight of the
  resample's points below it plus half its tie group's weight plus one half
  (``scipy.stats.rankdata``'s average rank): the tie groups' weights (one
  bincount over the groups, numbered by value once) and their cumulative sum;
  rho is the Pearson correlation of the drawn points' ranks.  O(m) per
  resample, no sort.
- **Kendall tau-b** (scipy's formula): ``tau = (tot - xtie - ytie + ntie - 2 dis) /
  sqrt((tot - xtie) (tot - ytie))``, with ``tot`` the pairs of the resample,
  ``xtie``/``ytie``/``ntie`` its pairs tied on x / on y / on both (a group of
  points tied with total weight ``W`` gives ``W (W - 1) / 2``, copies of one
  point included), and ``dis`` its discordant pairs: the sum of ``w_j w_i``
  over the pairs of distinct points with ``x_j < x_i`` and ``y_j > y_i``.  In
  the order sorted by (x, y) with y's ties broken by that order, those pairs are
  exactly the inversions of one fixed permutation, so ``dis`` of every
  resample is a weighted inversion count: one pass over the points with a
  Fenwick tree whose cells hold one count per resample (O(n log n) array
  operations, each over the resamples of a chunk).  The tied pairs come from
  the same bincounts: a resample's groups of weights ``G`` (summing to m) hold
  ``(sum G^2 - m) / 2`` pairs.

Both equal scipy on each resample (Kendall: exactly the same integers, tau to
rounding; Spearman to 1e-12), ties and repeated points included.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


# ------------------------------------------------------------------ point figures
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
    """Kendall's tau-b (scipy's; NaN when either side is constant or n < 2)."""
    if len(x) < 2:
        return float("nan")
    return float(stats.kendalltau(x, y).statistic)


# ------------------------------------------------------------------ resamples
def bootstrap_indices(n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` resamples of ``n`` rows with replacement: an index [draws, n]."""
    return rng.integers(0, n, size=(draws, n))


def _per_chunk(n: int, chunk_elements: int) -> int:
    """Resamples handled at once: about ``chunk_elements`` cells of [n, resamples], at least 16."""
    return max(16, chunk_elements // max(n, 1))


# ------------------------------------------------------------------ Spearman
def bootstrap_spearman(x: np.ndarray, y: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """SRCC of ``draws`` resamples of the rows (drawn here from ``rng``: one index [draws, n])."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return spearman_of_resamples(x, y, bootstrap_indices(len(x), draws, rng))


def spearman_of_resamples(x: np.ndarray, y: np.ndarray, index: np.ndarray) -> np.ndarray:
    """SRCC of ``x[i], y[i]`` for every row ``i`` of ``index`` ([B, m]): no sort per resample.

    Per resample, O(m) array operations: its tie groups' weights (a bincount),
    their average ranks (a cumulative sum), the correlation.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    index = np.asarray(index)
    n, draws = len(x), len(index)
    out = np.full(draws, np.nan)
    m = index.shape[1] if index.ndim == 2 else 0
    if n == 0 or m < 2:
        return out
    gx, gy = _dense_groups(x), _dense_groups(y)
    mean = (m + 1) / 2.0
    for r, rows in enumerate(index):
        # each tie group's weight in the resample, then its average rank (weight below + (weight + 1) / 2), centred
        cx, cy = np.bincount(gx[rows]), np.bincount(gy[rows])
        rank_x = np.cumsum(cx) - (cx - 1) / 2.0 - mean
        rank_y = np.cumsum(cy) - (cy - 1) / 2.0 - mean
        # einsum, not np.dot: a BLAS dot of this length wakes OpenBLAS's threads, thousands of times on busy cores
        spread = _dot(cx * rank_x, rank_x) * _dot(cy * rank_y, rank_y)
        if spread > 0:
            out[r] = min(1.0, max(-1.0, _dot(rank_x[gx[rows]], rank_y[gy[rows]]) / np.sqrt(spread)))
    return out


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.einsum("i,i->", a, b))


def _dense_groups(values: np.ndarray) -> np.ndarray:
    """Each point's tie group, numbered 0, 1, ... by increasing value."""
    return np.unique(values, return_inverse=True)[1].reshape(-1)


# ------------------------------------------------------------------ Kendall
def bootstrap_kendall(x: np.ndarray, y: np.ndarray, index: np.ndarray,
                      chunk_elements: int = 16_000_000) -> np.ndarray:
    """Kendall's tau-b of ``x[i], y[i]`` for every row ``i`` of ``index`` ([B, m]), vectorised across resamples.

    Equal to ``scipy.stats.kendalltau(x[i], y[i]).statistic`` on each resample
    (NaN where the resample is constant on either side).  Memory: 8 bytes × n
    × the resamples of a chunk (``chunk_elements // n``, at least 16; 16 bytes
    when resamples have over 46,340 rows and counts need 64 bits).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    index = np.asarray(index)
    n, draws = len(x), len(index)
    out = np.full(draws, np.nan)
    m = index.shape[1] if index.ndim == 2 else 0
    if n == 0 or m < 2:
        return out
    xy_order = np.lexsort((y, x))  # by x, then y: the order the inversions are counted in
    position = np.empty(n, dtype=np.int64)
    position[xy_order] = np.arange(n)  # each point's place in that order
    y_order = np.argsort(y[xy_order], kind="stable")  # the (x, y) order's points by y, ties kept in that order
    permutation = np.empty(n, dtype=np.int64)
    permutation[y_order] = np.arange(n)  # y position of the k-th point of the (x, y) order
    queries, updates = _fenwick_paths(permutation + 1, n)
    # tie groups on x, on y, on both; None where every group is one point (then its tied pairs are the copies')
    gx, gy = _dense_groups(x), _dense_groups(y)
    groups = [g if g.max() < n - 1 else None
              for g in (gx, gy, _dense_groups(gx.astype(np.int64) * (int(gy.max()) + 1) + gy))]
    tot = m * (m - 1) // 2
    dtype = np.int32 if m * m < 2**31 else np.int64  # counts and their products fit 32 bits: half the traffic
    per_chunk = _per_chunk(n, chunk_elements)
    for start in range(0, draws, per_chunk):
        idx = index[start:start + per_chunk]
        b = len(idx)
        W = np.empty((n, b), dtype=dtype)  # each point's count in each resample, points in (x, y) order
        tied = np.zeros((3, b), dtype=np.int64)  # pairs tied on x, on y, on both
        for r, rows in enumerate(idx):
            counts = np.bincount(position[rows], minlength=n)
            W[:, r] = counts
            own = int(np.dot(counts, counts))  # integer dot: numpy's own loop, no BLAS
            for k, g in enumerate(groups):
                weight = None if g is None else np.bincount(g[rows])  # each tie group's weight
                tied[k, r] = ((own if weight is None else int(np.dot(weight, weight))) - m) // 2
        xtie, ytie, ntie = tied
        dis = _weighted_inversions(W, queries, updates, dtype)
        constant = (xtie == tot) | (ytie == tot)
        cmd = (tot - xtie - ytie + ntie - 2 * dis).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = cmd / np.sqrt((tot - xtie).astype(np.float64)) / np.sqrt((tot - ytie).astype(np.float64))
        out[start:start + b] = np.where(constant, np.nan, np.clip(tau, -1.0, 1.0))
    return out


def _fenwick_paths(ranks: np.ndarray, size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """For each 1-based rank, the Fenwick cells a prefix sum reads and the cells an update adds to."""
    queries, updates = [], []
    for r in ranks.tolist():
        k, q = r, []
        while k > 0:
            q.append(k)
            k -= k & -k
        k, u = r, []
        while k <= size:
            u.append(k)
            k += k & -k
        queries.append(np.array(q, dtype=np.intp))
        updates.append(np.array(u, dtype=np.intp))
    return queries, updates


def _weighted_inversions(W: np.ndarray, queries: list[np.ndarray], updates: list[np.ndarray],
                         dtype: type = np.int64) -> np.ndarray:
    """Sum of ``w_j w_i`` over j < i (rows of ``W``) whose ranks are inverted, per resample (columns): [b] int64.

    A Fenwick tree over the ranks, each cell a vector of counts (one per
    resample); the points are added in row order, each first asking how much
    weight already added sits above its rank.
    """
    n, b = W.shape
    tree = np.zeros((n + 1, b), dtype=dtype)
    seen = np.zeros(b, dtype=dtype)
    above = np.empty(b, dtype=dtype)
    dis = np.zeros(b, dtype=np.int64)
    for i in range(n):
        w = W[i]
        np.subtract(seen, tree[queries[i]].sum(axis=0, dtype=dtype), out=above)
        above *= w
        dis += above
        tree[updates[i]] += w
        seen += w
    return dis


def kendall_of_resamples_scipy(x: np.ndarray, y: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The reference: one ``scipy.stats.kendalltau`` call per resample (O(n log n) each, ~0.2 s at n = 15,625)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return np.array([stats.kendalltau(x[i], y[i]).statistic for i in np.asarray(index)], dtype=np.float64)


def spearman_of_resamples_ranked(x: np.ndarray, y: np.ndarray, index: np.ndarray,
                                 chunk_elements: int = 4_000_000) -> np.ndarray:
    """The reference: every resample ranked (``scipy.stats.rankdata`` per row) and correlated."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    index = np.asarray(index)
    out = np.empty(len(index))
    per_chunk = max(1, chunk_elements // max(index.shape[1], 1))
    for start in range(0, len(index), per_chunk):
        idx = index[start:start + per_chunk]
        out[start:start + len(idx)] = _pearson_rows(stats.rankdata(x[idx], axis=1), stats.rankdata(y[idx], axis=1))
    return out


# ------------------------------------------------------------------ intervals
def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
