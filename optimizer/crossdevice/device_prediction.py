"""Predict a new device's latencies from a few of its measurements and every reference device's table.

The target is represented by its latencies on a small set of reference
architectures (as HELP's hardware embedding: :func:`reference_set` chooses
them, spread over the references' latency range, so a user measures just
those), then predicted by candidate models, the one kept being chosen on
those samples alone by leave-one-out error (no target data beyond the
samples is ever looked at):

- ``blend``: a non-negative blend of the reference devices' *denoised*
  latencies plus an intercept.  Denoised: each reference device's per-choice
  additive model (one-hot encoding, least squares on every architecture it
  measured: a network's latency is close to the sum of its layers'), which
  keeps what the encoding explains and drops the reference's own measurement
  noise (phones that time in whole milliseconds);
- ``blend+choices``: the blend plus per-choice corrections (ridge, the penalty
  chosen by leave-one-out among :data:`CORRECTION_GRID`, times the samples),
  for what no reference has;
- ``proxy``: the single reference ranking the samples best, scaled (a·L + b);
- ``adapted proxy``: OneProxy's adaptation of that proxy
  (:mod:`optimizer.crossdevice.proxy_adaptation`), its penalty by
  leave-one-out.

The choice and every candidate's leave-one-out error are reported, so a user
sees when a richer model does not beat the plain proxy on their samples and
the tool falls back to it.  Errors are relative (residual / measured).

numpy/scipy only; pure functions and a scikit-learn-style estimator, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import nnls

from harness.errors import ChameleonError
from optimizer.crossdevice.monotonicity import spearman
from optimizer.crossdevice.proxy_adaptation import PENALTY_GRID, one_hot
from optimizer.latency.architecture_tables import LatencyTable

CORRECTION_GRID = (1e6, 100.0, 30.0, 10.0, 3.0, 1.0, 0.3)
MIN_SAMPLES = 4
METHODS = ("blend", "blend+choices", "proxy", "adapted proxy")


class PredictionError(ChameleonError):
    """A cross-device prediction that cannot be made as asked: one line."""


def denoised_latencies(D: np.ndarray, latencies: np.ndarray) -> np.ndarray:
    """Each column's per-choice additive least-squares fit (on its measured rows), evaluated on every row."""
    X = np.hstack([D, np.ones((len(D), 1))])
    # One-hot blocks are collinear with the intercept: a whisker of ridge makes the normal equations solvable
    # (and fast: choices × choices, not rows × choices) without moving the fit.
    ridge = 1e-8 * len(D) * np.eye(X.shape[1])
    out = np.empty_like(latencies, dtype=np.float64)
    complete = np.isfinite(latencies).all(axis=0)
    if complete.any():  # the devices that measured every row share one Gram matrix: one solve for all of them
        out[:, complete] = X @ np.linalg.solve(X.T @ X + ridge, X.T @ latencies[:, complete])
    for j in np.flatnonzero(~complete):
        ok = np.isfinite(latencies[:, j])
        coef = np.linalg.solve(X[ok].T @ X[ok] + ridge, X[ok].T @ latencies[ok, j])
        out[:, j] = X @ coef
    return out


def reference_set(table: LatencyTable, references: Sequence[str], size: int, seed: int = 0) -> np.ndarray:
    """``size`` row indexes to measure on a new device: one drawn from each of ``size`` equal strata of the
    references' mean log latency, so that the samples span the range the target's ranking is judged on."""
    if size < MIN_SAMPLES:
        raise PredictionError(f"--samples {size}: a prediction needs at least {MIN_SAMPLES} target measurements")
    refs = np.column_stack([table.latency(d) for d in references])
    complete = np.flatnonzero(np.isfinite(refs).all(axis=1) & (refs > 0).all(axis=1))
    if len(complete) < 2 * size:
        raise PredictionError(f"{table.source or 'table'}: {len(complete)} architecture(s) measured on every reference "
                              f"device; --samples {size} needs at least {2 * size}")
    score = np.log(refs[complete]).mean(axis=1)
    order = complete[np.argsort(score, kind="stable")]
    edges = np.linspace(0, len(order), size + 1).astype(int)
    rng = np.random.default_rng(seed)
    return np.array([order[rng.integers(edges[i], edges[i + 1])] for i in range(size)], dtype=np.int64)


def _ridge_loo(U: np.ndarray, Z: np.ndarray, y: np.ndarray, penalty: float) -> tuple[float, np.ndarray]:
    """min |y − U·α − Z·β|² + penalty·|β|²: the coefficients [α, β] and their exact leave-one-out mean squared
    relative error.  Solved in the samples' space (k × k, k samples ≪ choices): with M the projection off U's
    columns and K = M·Z·Zᵀ·M, β = Zᵀ·M·(K + penalty·I)⁻¹·M·y and the hat matrix is Q·Qᵀ + K·(K + penalty·I)⁻¹."""
    k = len(y)
    Q, _ = np.linalg.qr(U)
    M = np.eye(k) - Q @ Q.T
    if Z.shape[1] and penalty > 0:
        MZ = M @ Z
        K = MZ @ MZ.T
        inverse = np.linalg.inv(K + penalty * np.eye(k))
        beta = MZ.T @ (inverse @ (M @ y))
        hat = Q @ Q.T + K @ inverse
    else:
        beta = np.zeros(Z.shape[1])
        hat = Q @ Q.T
    alpha = np.linalg.lstsq(U, y - Z @ beta, rcond=None)[0]
    coef = np.r_[alpha, beta]
    leverage = np.diag(hat)
    if (leverage > 1.0 - 1e-9).any():  # a sample the fit interpolates: its leave-one-out error is unbounded
        return float("inf"), coef
    residual = (y - U @ alpha - Z @ beta) / (1.0 - leverage)
    return float(np.mean((residual / y) ** 2)), coef


def _nnls_blend(F: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative weights on the columns of F, and a free intercept (as +1/−1 columns)."""
    A = np.hstack([F, np.ones((len(F), 1)), -np.ones((len(F), 1))])
    weights, _ = nnls(A, y)
    return weights


def _blend_predict(F: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return F @ weights[:-2] + weights[-2] - weights[-1]


@dataclass
class CrossDevicePredictor:
    """A new device's latencies on every architecture of ``table``, from its latencies on a few of them.

    ``fit(rows, latency_ms)``: the rows of ``table`` measured on the target and
    their latencies; ``predict()`` the target's latency on every row; ``method_``
    the model kept, ``errors_`` every candidate's leave-one-out error.
    """

    table: LatencyTable
    references: Sequence[str]
    methods: Sequence[str] = METHODS
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def _features(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._cache:
            D, _ = one_hot(self.table.encoding)
            raw = np.column_stack([self.table.latency(d) for d in self.references])
            denoised = denoised_latencies(D, raw)
            self._cache.update(D=D, raw=raw, scale=np.nanmean(denoised, axis=0), denoised=denoised)
        return self._cache["D"], self._cache["raw"], self._cache["denoised"] / self._cache["scale"]

    def fit(self, rows: Sequence[int], latency_ms: Sequence[float]) -> "CrossDevicePredictor":
        rows, y = np.asarray(rows, dtype=np.int64), np.asarray(latency_ms, dtype=np.float64)
        if len(rows) != len(y) or len(rows) < MIN_SAMPLES:
            raise PredictionError(f"{len(rows)} target measurement(s): at least {MIN_SAMPLES} are needed")
        if not (np.isfinite(y).all() and (y > 0).all()):
            raise PredictionError("target latencies must be finite and positive")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise PredictionError(f"unknown method {unknown[0]!r} (known: {', '.join(METHODS)})")
        D, raw, blend_features = self._features()
        k = len(rows)
        candidates: dict[str, tuple[float, Any]] = {}
        if "blend" in self.methods or "blend+choices" in self.methods:
            weights = _nnls_blend(blend_features[rows], y)
            loo = np.empty(k)
            for i in range(k):  # the blend is not linear in y: refitted k times (k <= a few hundred, 12 columns)
                keep = np.arange(k) != i
                loo[i] = _blend_predict(blend_features[rows[i]][None, :], _nnls_blend(blend_features[rows[keep]], y[keep]))[0]
            base = _blend_predict(blend_features, weights)
            # A blend of no reference (the samples fit an intercept best) predicts one latency for all: it cannot rank.
            if "blend" in self.methods and weights[:-2].any():
                candidates["blend"] = (float(np.mean(((y - loo) / y) ** 2)), ("blend", weights))
            if "blend+choices" in self.methods and k > 2:
                U = np.column_stack([base[rows], np.ones(k)])
                best = None
                for g in CORRECTION_GRID:
                    err, coef = _ridge_loo(U, D[rows], y, g * k)
                    if best is None or err < best[0] - 1e-15:
                        best = (err, g, coef)
                candidates["blend+choices"] = (best[0], ("blend+choices", weights, best[2], best[1]))
        proxy = int(np.nanargmax([spearman(raw[rows, j], y) if np.isfinite(raw[rows, j]).all() else -2
                                  for j in range(raw.shape[1])]))
        lp = raw[:, proxy]
        if "proxy" in self.methods:
            err, coef = _ridge_loo(np.column_stack([lp[rows], np.ones(k)]), D[rows][:, :0], y, 0.0)
            candidates["proxy"] = (err, ("proxy", proxy, coef))
        if "adapted proxy" in self.methods:
            U = np.column_stack([lp[rows], np.ones(k)])
            best = None
            for g in PENALTY_GRID:
                if g == 0:
                    continue  # unpenalised per-choice terms interpolate the samples: no leave-one-out to speak of
                err, coef = _ridge_loo(U, D[rows], y, g * k)
                if best is None or err < best[0] - 1e-15:
                    best = (err, g, coef)
            candidates["adapted proxy"] = (best[0], ("adapted proxy", proxy, best[2], best[1]))
        self.errors_ = {name: err for name, (err, _) in candidates.items()}
        self.method_ = min(candidates, key=lambda name: candidates[name][0])
        self._model = candidates[self.method_][1]
        self.proxy_ = self.references[proxy]
        self.rows_ = rows
        return self

    def predict(self) -> np.ndarray:
        """The target's predicted latency (ms) on every row of the table."""
        D, raw, blend_features = self._features()
        kind = self._model[0]
        if kind == "blend":
            return _blend_predict(blend_features, self._model[1])
        if kind == "blend+choices":
            base = _blend_predict(blend_features, self._model[1])
            coef = self._model[2]
            return base * coef[0] + coef[1] + D @ coef[2:]
        lp = raw[:, self._model[1]]
        coef = self._model[2]
        if kind == "proxy":
            return lp * coef[0] + coef[1]
        return lp * coef[0] + coef[1] + D @ coef[2:]

    def describe(self) -> dict[str, Any]:
        """What was chosen and why, for reports."""
        fell_back = self.method_ in ("proxy",) and any(m in self.errors_ for m in ("blend", "blend+choices", "adapted proxy"))
        return {"method": self.method_, "proxy": self.proxy_, "loo_relative_rmse": {m: float(np.sqrt(e)) for m, e in self.errors_.items()},
                "fell_back_to_proxy": bool(fell_back), "samples": int(len(self.rows_))}
