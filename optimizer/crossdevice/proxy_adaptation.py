"""Proxy adaptation: lift a weakly monotone proxy to a target with a few target measurements (OneProxy §4).

Encoding: every encoding column of the table is one-hot by value (each
distinct string or number is one choice), so an architecture is ``D(x)``, a
0/1 row with one 1 per column.

1. Proxy model: ``f_p(x) = D(x)·w + c`` fitted by ridge (closed form,
   penalty :data:`PROXY_PENALTY` on ``w``, ``c`` unpenalised) to the proxy's
   latencies on every architecture measured on the proxy.
2. Target model: ``f_t(x) = a·f_p(x) + D(x)·δ + b`` fitted on ``N`` target
   samples by least squares with an L2 penalty ``λ·|δ|²`` (``a`` and ``b``
   unpenalised), solved in closed form as an augmented least-squares system.
   ``λ`` is chosen from :data:`PENALTY_GRID` (times ``N``) by the mean squared
   error on ``V`` held-back target samples (OneProxy: 60 fit + 10 validation;
   here ``N`` given and ``V = 10`` by default); the model kept is the one fitted
   on the ``N`` samples with the chosen ``λ``.
3. Evaluation: SRCC against the target's latencies on every architecture
   measured on both devices and used neither for fitting nor for validation,
   of (i) the proxy's raw latencies, (ii) the proxy model alone and (iii) the
   adapted model; over several random draws of the samples, mean and std.

numpy only; pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from harness.errors import ChameleonError
from optimizer.latency.architecture_tables import LatencyTable
from optimizer.crossdevice.monotonicity import spearman

PROXY_PENALTY = 1e-3
PENALTY_GRID = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1e3, 1e4)
DEFAULT_VALIDATION = 10
MIN_SAMPLES = 3


class TooFewSamples(ChameleonError):
    """Not enough target architectures for the samples asked."""


def one_hot(encoding: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """[N, choices] 0/1 matrix, one block per column, one column per distinct value; and the choices' names."""
    blocks, names = [], []
    for column, values in encoding.items():
        values = np.asarray(values)
        keys = values.astype(str) if values.dtype == object else values
        levels, inverse = np.unique(keys, return_inverse=True)
        if values.dtype.kind == "f" and not np.all(values == np.round(values)) and len(levels) > len(values) // 2:
            raise ChameleonError(f"encoding column {column!r} has {len(levels)} distinct non-integer values in "
                                 f"{len(values)} rows: not a choice (a measurement?); prefix its name with 'info:' or "
                                 f"name the device columns with --devices")
        block = np.zeros((len(values), len(levels)))
        block[np.arange(len(values)), inverse.reshape(-1)] = 1.0
        blocks.append(block)
        names += [f"{column}={level}" for level in levels]
    if not blocks:
        raise ChameleonError("the table has no encoding columns (architecture choices) to adapt with")
    return np.hstack(blocks), names


def ridge(X: np.ndarray, y: np.ndarray, penalties: np.ndarray) -> np.ndarray:
    """argmin |y - X·θ|² + Σ penalties·θ², as an augmented least-squares system (min-norm if singular)."""
    root = np.sqrt(np.asarray(penalties, dtype=float))
    rows = np.flatnonzero(root > 0)
    A = np.vstack([X, np.eye(X.shape[1])[rows] * root[rows, None]])
    b = np.concatenate([y, np.zeros(len(rows))])
    return np.linalg.lstsq(A, b, rcond=None)[0]


@dataclass
class ProxyModel:
    """f_p(x) = D(x)·w + c, fitted to a proxy's latencies."""

    penalty: float = PROXY_PENALTY

    def fit(self, D: np.ndarray, y: np.ndarray) -> "ProxyModel":
        X = np.hstack([D, np.ones((len(D), 1))])
        self.coef_ = ridge(X, y, np.r_[np.full(D.shape[1], self.penalty), 0.0])
        return self

    def predict(self, D: np.ndarray) -> np.ndarray:
        return D @ self.coef_[:-1] + self.coef_[-1]


@dataclass
class AdaptedModel:
    """f_t(x) = a·f_p(x) + D(x)·δ + b with an L2 penalty on δ only."""

    penalty: float = 1.0

    @staticmethod
    def _design(proxy: np.ndarray, D: np.ndarray) -> np.ndarray:
        return np.hstack([proxy[:, None], D, np.ones((len(D), 1))])

    def fit(self, proxy: np.ndarray, D: np.ndarray, y: np.ndarray) -> "AdaptedModel":
        penalties = np.r_[0.0, np.full(D.shape[1], self.penalty), 0.0]
        self.coef_ = ridge(self._design(proxy, D), y, penalties)
        return self

    def predict(self, proxy: np.ndarray, D: np.ndarray) -> np.ndarray:
        return self._design(proxy, D) @ self.coef_

    @property
    def scale_(self) -> float:
        return float(self.coef_[0])


def fit_adapted(proxy: np.ndarray, D: np.ndarray, y: np.ndarray, fit: np.ndarray, val: np.ndarray,
                grid: Sequence[float] = PENALTY_GRID) -> AdaptedModel:
    """The adapted model fitted on rows ``fit``, its penalty (grid × len(fit)) chosen by MSE on rows ``val``."""
    best, best_err = None, np.inf
    for g in grid:
        model = AdaptedModel(penalty=float(g) * len(fit)).fit(proxy[fit], D[fit], y[fit])
        if len(val) == 0:
            return model if best is None else best
        err = float(np.mean((model.predict(proxy[val], D[val]) - y[val]) ** 2))
        if err < best_err - 1e-15:
            best, best_err = model, err
    return best


@dataclass(frozen=True)
class AdaptationResult:
    proxy: str
    target: str
    samples: int
    validation: int
    draws: int
    evaluated: int  # architectures each draw is scored on
    raw_srcc_mean: float
    raw_srcc_std: float
    proxy_model_srcc_mean: float
    proxy_model_srcc_std: float
    adapted_srcc_mean: float
    adapted_srcc_std: float
    penalties: list[float]  # chosen per draw
    raw_srcc: list[float]
    adapted_srcc: list[float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def adapt_proxy(table: LatencyTable, proxy: str, target: str, samples: int, *, draws: int = 10, seed: int = 0,
                validation: int = DEFAULT_VALIDATION, grid: Sequence[float] = PENALTY_GRID,
                D: np.ndarray | None = None) -> AdaptationResult:
    """Adapt ``proxy`` to ``target`` with ``samples`` target measurements (+ ``validation``), over ``draws`` draws."""
    if proxy == target:
        raise ChameleonError(f"--proxy and --target are the same device ({proxy})")
    if samples < MIN_SAMPLES:
        raise TooFewSamples(f"--samples {samples}: the adaptation needs at least {MIN_SAMPLES} target samples")
    if validation < 0 or draws < 1:
        raise ChameleonError("--validation must be >= 0 and --draws >= 1")
    lp, lt = table.latency(proxy), table.latency(target)
    if D is None:
        D, _ = one_hot(table.encoding)
    on_proxy = np.isfinite(lp)
    pool = np.flatnonzero(on_proxy & np.isfinite(lt))
    need = samples + validation + MIN_SAMPLES
    if len(pool) < need:
        raise TooFewSamples(f"{table.source or 'table'}: {len(pool)} architecture(s) measured on both {proxy} and "
                            f"{target}; --samples {samples} + {validation} for validation + {MIN_SAMPLES} to score "
                            f"needs {need}")
    base = ProxyModel().fit(D[on_proxy], lp[on_proxy])
    fp = base.predict(D)
    rng = np.random.default_rng(seed)
    raw, model_only, adapted, penalties = [], [], [], []
    for _ in range(draws):
        order = rng.permutation(pool)
        fit, val, rest = order[:samples], order[samples:samples + validation], order[samples + validation:]
        model = fit_adapted(fp, D, lt, fit, val, grid)
        raw.append(spearman(lp[rest], lt[rest]))
        model_only.append(spearman(fp[rest], lt[rest]))
        adapted.append(spearman(model.predict(fp[rest], D[rest]), lt[rest]))
        penalties.append(model.penalty)
    return AdaptationResult(proxy, target, samples, validation, draws, int(len(pool) - samples - validation),
                            float(np.mean(raw)), float(np.std(raw)), float(np.mean(model_only)),
                            float(np.std(model_only)), float(np.mean(adapted)), float(np.std(adapted)),
                            penalties, raw, adapted)


def best_proxy(table: LatencyTable, proxies: Sequence[str], target: str, samples: int, *, skip_short: bool = False,
               **options: Any) -> tuple[list[AdaptationResult], str, str, dict[str, str]]:
    """Adapt every proxy to the target: the results (best adapted SRCC first), the best adapted, the best raw, and
    (``skip_short``) the proxies left out for having too few architectures in common with the target, with why."""
    proxies = [p for p in proxies if p != target]
    if not proxies:
        raise ChameleonError(f"no proxy device other than the target {target}")
    D, _ = one_hot(table.encoding)
    results, skipped = [], {}
    for p in proxies:
        try:
            results.append(adapt_proxy(table, p, target, samples, D=D, **options))
        except TooFewSamples as problem:
            if not skip_short or samples < MIN_SAMPLES:
                raise
            skipped[p] = str(problem)
    if not results:
        raise TooFewSamples(f"no proxy has enough architectures in common with {target}: {next(iter(skipped.values()))}")
    results.sort(key=lambda r: -np.nan_to_num(r.adapted_srcc_mean, nan=-2))
    by_raw = max(results, key=lambda r: np.nan_to_num(r.raw_srcc_mean, nan=-2))
    return results, results[0].proxy, by_raw.proxy, skipped


@dataclass(frozen=True)
class ChosenAdaptation:
    """What a user with ``samples + validation`` target measurements gets: per draw, the proxy that ranks those
    measurements best, adapted, or kept as it is when the adaptation does not beat it on the validation samples."""

    target: str
    candidates: list[str]
    samples: int
    validation: int
    draws: int
    srcc_mean: float  # of the model chosen per draw, on the target architectures used for nothing else
    srcc_std: float
    srcc: list[float]
    proxies_chosen: dict[str, int]  # proxy -> draws it was chosen in
    fell_back: int  # draws whose adaptation did not beat the raw proxy on the validation samples

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def adapt_chosen_proxy(table: LatencyTable, candidates: Sequence[str], target: str, samples: int, *, draws: int = 10,
                       seed: int = 0, validation: int = DEFAULT_VALIDATION,
                       grid: Sequence[float] = PENALTY_GRID) -> ChosenAdaptation:
    """Choose, adapt and fall back on the samples alone (see :class:`ChosenAdaptation`); scored on the rest.

    Per draw: the proxy is the candidate whose latencies rank the
    ``samples + validation`` target measurements best (SRCC); its adaptation's
    penalty is chosen on the validation samples (as :func:`adapt_proxy`); and
    the adapted model is kept only when its squared error on the validation
    samples is below that of the raw proxy scaled to the fit samples
    (a·latency + b), else the raw proxy is.  Without validation samples the
    adaptation is kept (nothing to compare on).
    """
    candidates = [c for c in candidates if c != target]
    if not candidates:
        raise ChameleonError(f"no proxy device other than the target {target}")
    if samples < MIN_SAMPLES:
        raise TooFewSamples(f"--samples {samples}: the adaptation needs at least {MIN_SAMPLES} target samples")
    lt = table.latency(target)
    L = np.column_stack([table.latency(c) for c in candidates])
    pool = np.flatnonzero(np.isfinite(lt) & np.isfinite(L).all(axis=1))
    need = samples + validation + MIN_SAMPLES
    if len(pool) < need:
        raise TooFewSamples(f"{table.source or 'table'}: {len(pool)} architecture(s) measured on {target} and every "
                            f"candidate proxy; --samples {samples} + {validation} for validation + {MIN_SAMPLES} to "
                            f"score needs {need}")
    D, _ = one_hot(table.encoding)
    proxy_models = {}
    rng = np.random.default_rng(seed)
    scores, chosen, fell_back = [], {}, 0
    for _ in range(draws):
        order = rng.permutation(pool)
        fit, val, rest = order[:samples], order[samples:samples + validation], order[samples + validation:]
        seen = order[:samples + validation]
        best = int(np.nanargmax([spearman(L[seen, j], lt[seen]) for j in range(len(candidates))]))
        name = candidates[best]
        chosen[name] = chosen.get(name, 0) + 1
        if name not in proxy_models:
            lp_all = table.latency(name)
            on = np.isfinite(lp_all)
            proxy_models[name] = ProxyModel().fit(D[on], lp_all[on]).predict(D)
        fp = proxy_models[name]
        model = fit_adapted(fp, D, lt, fit, val, grid)
        predicted = model.predict(fp[rest], D[rest])
        if len(val):
            lp = L[:, best]
            scale = np.linalg.lstsq(np.column_stack([lp[fit], np.ones(len(fit))]), lt[fit], rcond=None)[0]
            raw_error = np.mean((lp[val] * scale[0] + scale[1] - lt[val]) ** 2)
            adapted_error = np.mean((model.predict(fp[val], D[val]) - lt[val]) ** 2)
            if adapted_error >= raw_error:
                fell_back += 1
                predicted = L[rest, best]
        scores.append(spearman(predicted, lt[rest]))
    return ChosenAdaptation(target, candidates, samples, validation, draws, float(np.mean(scores)),
                            float(np.std(scores)), [float(s) for s in scores], chosen, fell_back)
