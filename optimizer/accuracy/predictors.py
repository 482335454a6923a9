"""Accuracy and energy predictors: Gaussian-process regression built by Bayesian sample selection.

ChamNet (§3.2, Eq. 5-6, Algorithm 1) predicts an architecture's accuracy with a
GP regressor trained on as few trained networks as possible, chosen
iteratively from a quasi-Monte-Carlo pool of candidate architectures: each
round adds *exploration* samples (largest predictive uncertainty) and
*exploitation* samples (largest predicted accuracy / FLOPs), until the
predictor's leave-one-out MSE falls below a threshold.  The energy predictor
(§3.4) is built the same way with exploration samples only.

Inputs are plain ``numpy`` gene vectors in the search space's own units.  The
predictors know nothing of any particular space: the caller passes each
gene's bounds (``low``, ``high``, inclusive) and :class:`GPPredictor` scales
vectors to the unit box itself (``(x - low) / (high - low)``), so one RBF
length-scale range suits every gene.  Scaling lives inside the predictor so
a saved predictor carries it, and callers never hand it pre-scaled vectors.

Kernel: ``ConstantKernel * RBF + WhiteKernel`` with one length scale per gene.
scikit-learn's RBF is ``exp(-Σ_j (x_j - x'_j)² / (2 l_j²))``: the paper's
Eq. 6 ``exp(-γ‖x - x'‖²)`` with ``γ = 1 / (2 l²)``, made anisotropic (genes
matter unequally; an irrelevant gene learns a long length scale).  The white
kernel is Eq. 5's observation noise σ² (training-run noise in accuracy,
measurement noise in energy); the constant kernel is the signal variance.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.utils.validation import check_is_fitted

from harness.errors import ChameleonError
from optimizer.accuracy.trainer_protocol import Trainer

FILE_FORMAT = "chameleon-gp-predictor"
FILE_VERSION = 1

#: Bounds on the signal variance; targets are normalised (``normalize_y``), so ~1.
CONSTANT_VALUE_BOUNDS = (1e-3, 1e3)


class PredictorFileError(ChameleonError):
    """A saved predictor that is missing, unreadable or not one of ours."""


class TrainerError(ChameleonError):
    """A trainer that answered with the wrong number of values or non-finite ones."""


def _bounds(low: Any, high: Any) -> tuple[np.ndarray, np.ndarray]:
    low = np.atleast_1d(np.asarray(low, dtype=np.float64))
    high = np.atleast_1d(np.asarray(high, dtype=np.float64))
    if low.ndim != 1 or low.shape != high.shape:
        raise ValueError(f"low and high must be 1-D of one length, got shapes {low.shape} and {high.shape}")
    if not (np.isfinite(low).all() and np.isfinite(high).all()) or (high < low).any():
        raise ValueError("low and high must be finite with low <= high for every gene")
    return low, high


def to_unit(X: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Gene vectors → the unit box, gene by gene (a gene with low == high maps to 0)."""
    width = np.where(high > low, high - low, 1.0)
    return (np.asarray(X, dtype=np.float64) - low) / width


class GPPredictor(RegressorMixin, BaseEstimator):
    """GP regressor on gene vectors, scaled to the unit box by the genes' bounds.

    Parameters (scikit-learn style: stored as given, used in :meth:`fit`):

    low, high
        Each gene's bounds, in the space's units; they define the unit-box scaling.
    length_scale
        Initial RBF length scale(s) in unit-box units: one number for all genes
        or one per gene.  Fitted per gene within ``length_scale_bounds``.
    noise_level
        Initial white-noise variance, relative to the targets' variance
        (targets are normalised).  Fitted within ``noise_level_bounds``.
    n_restarts_optimizer
        Extra starts of the marginal-likelihood optimiser (from random
        hyper-parameters drawn with ``random_state``).

    Learned state: ``gp_`` (the fitted ``GaussianProcessRegressor``),
    ``kernel_``, ``X_train_``/``y_train_`` (the space's units),
    ``low_``/``high_``, ``n_features_in_``.
    """

    def __init__(
        self,
        low: Sequence[float] | np.ndarray,
        high: Sequence[float] | np.ndarray,
        length_scale: float | Sequence[float] = 1.0,
        length_scale_bounds: tuple[float, float] = (1e-2, 1e3),
        noise_level: float = 1e-2,
        noise_level_bounds: tuple[float, float] = (1e-8, 1.0),
        n_restarts_optimizer: int = 2,
        random_state: int | None = 0,
    ) -> None:
        self.low = low
        self.high = high
        self.length_scale = length_scale
        self.length_scale_bounds = length_scale_bounds
        self.noise_level = noise_level
        self.noise_level_bounds = noise_level_bounds
        self.n_restarts_optimizer = n_restarts_optimizer
        self.random_state = random_state

    # -- fitting and prediction ------------------------------------------------------------

    def _initial_kernel(self, n_features: int):
        length_scale = np.broadcast_to(np.asarray(self.length_scale, dtype=np.float64), (n_features,)).copy()
        return ConstantKernel(1.0, CONSTANT_VALUE_BOUNDS) * RBF(
            length_scale, self.length_scale_bounds
        ) + WhiteKernel(self.noise_level, self.noise_level_bounds)

    def _check_X(self, X: np.ndarray, n_features: int) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1 and n_features == X.shape[0]:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != n_features:
            raise ValueError(f"X must have shape (n, {n_features}), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X has non-finite values")
        return X

    def fit(self, X: np.ndarray, y: np.ndarray) -> GPPredictor:
        """Fit kernel hyper-parameters by maximum marginal likelihood; returns self."""
        low, high = _bounds(self.low, self.high)
        X = self._check_X(X, low.shape[0])
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]} values")
        if X.shape[0] < 2:
            raise ValueError("a GP predictor needs at least 2 observations")
        if not np.isfinite(y).all():
            raise ValueError("y has non-finite values")
        gp = GaussianProcessRegressor(
            kernel=self._initial_kernel(low.shape[0]),
            normalize_y=True,
            n_restarts_optimizer=self.n_restarts_optimizer,
            random_state=self.random_state,
        )
        with warnings.catch_warnings():
            # A hyper-parameter at its bound is expected here, not a failure: an irrelevant
            # gene's length scale runs to the upper bound, a noiseless target's noise to the
            # lower.  (L-BFGS failing to converge still warns.)
            warnings.filterwarnings("ignore", message="The optimal value found for dimension",
                                    category=ConvergenceWarning)
            gp.fit(to_unit(X, low, high), y)
        self._set_fitted(gp, low, high, X, y)
        return self

    def _set_fitted(self, gp: GaussianProcessRegressor, low, high, X, y) -> None:
        self.gp_ = gp
        self.kernel_ = gp.kernel_
        self.low_, self.high_ = low, high
        self.X_train_ = X.copy()
        self.y_train_ = y.copy()
        self.n_features_in_ = low.shape[0]

    def predict(self, X: np.ndarray, return_std: bool = False):
        """Predicted values (the targets' units); with ``return_std``, also the predictive std.

        The std includes the fitted observation noise (scikit-learn's white
        kernel adds it on every point), so it never falls below ~sqrt(noise).
        """
        check_is_fitted(self, "gp_")
        X = self._check_X(X, self.n_features_in_)
        return self.gp_.predict(to_unit(X, self.low_, self.high_), return_std=return_std)

    # -- evaluation ------------------------------------------------------------------------

    def loo_residuals(self) -> np.ndarray:
        """Leave-one-out residuals y_i − μ_{−i}(x_i), kernel hyper-parameters held fixed.

        Closed form (Rasmussen & Williams 2006, Eq. 5.12): with K the training
        covariance (noise included), r_i = [K⁻¹ y]_i / [K⁻¹]_ii.  One Cholesky
        factor, already computed by the fit, serves all n folds: O(n³) once,
        not n refits.  The target normalisation (mean, scale) is held fixed
        too; the scale cancels in the mean and the fixed mean is the GP's prior
        mean, so this is exactly "refit without point i with this kernel".
        """
        check_is_fitted(self, "gp_")
        L = self.gp_.L_
        L_inv = solve_triangular(L, np.eye(L.shape[0]), lower=True, check_finite=False)
        k_inv_diag = np.einsum("ij,ij->j", L_inv, L_inv)  # diag(L⁻ᵀ L⁻¹) = diag(K⁻¹)
        alpha = np.asarray(self.gp_.alpha_).reshape(-1)
        y_std = float(np.ravel(self.gp_._y_train_std)[0])
        return alpha / k_inv_diag * y_std

    def loo_mse(self) -> float:
        """Leave-one-out mean squared error (the targets' units squared); Algorithm 1's Eval()."""
        return float(np.mean(self.loo_residuals() ** 2))

    # -- persistence (JSON; never pickle) ---------------------------------------------------

    def _params_for_file(self) -> dict[str, Any]:
        random_state = self.random_state if isinstance(self.random_state, (int, type(None))) else None
        return {
            "length_scale": np.asarray(self.length_scale, dtype=np.float64).tolist(),
            "length_scale_bounds": list(map(float, self.length_scale_bounds)),
            "noise_level": float(self.noise_level),
            "noise_level_bounds": list(map(float, self.noise_level_bounds)),
            "n_restarts_optimizer": int(self.n_restarts_optimizer),
            "random_state": random_state,
        }

    def save(self, path: str | Path) -> Path:
        """Write the fitted predictor as JSON: scaling, fitted kernel, training set, y normalisation.

        Floats are written with ``repr`` precision, so :meth:`load` rebuilds
        bit-identical predictions.
        """
        check_is_fitted(self, "gp_")
        kernel = self.gp_.kernel_
        document = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "params": self._params_for_file(),
            "low": self.low_.tolist(),
            "high": self.high_.tolist(),
            "kernel": {
                "constant_value": float(kernel.k1.k1.constant_value),
                "length_scale": np.atleast_1d(kernel.k1.k2.length_scale).astype(np.float64).tolist(),
                "noise_level": float(kernel.k2.noise_level),
            },
            "gp_alpha": float(self.gp_.alpha),
            "y_mean": float(np.ravel(self.gp_._y_train_mean)[0]),
            "y_std": float(np.ravel(self.gp_._y_train_std)[0]),
            "log_marginal_likelihood": float(self.gp_.log_marginal_likelihood_value_),
            "X_train": self.X_train_.tolist(),
            "y_train": self.y_train_.tolist(),
        }
        path = Path(path)
        try:
            path.write_text(json.dumps(document, allow_nan=False) + "\n")
        except OSError as problem:
            raise ChameleonError(f"{path}: cannot write predictor ({problem.strerror})") from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> GPPredictor:
        """Rebuild a saved predictor: a ``GaussianProcessRegressor`` with ``optimizer=None`` and
        the saved kernel fixed, fitted on the saved training set."""
        path = Path(path)
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise PredictorFileError(f"{path}: no such predictor file") from None
        except OSError as problem:
            raise PredictorFileError(f"{path}: cannot read predictor ({problem.strerror})") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise PredictorFileError(f"{path}: not a JSON predictor file") from None
        if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
            raise PredictorFileError(f"{path}: not a {FILE_FORMAT} file")
        if document.get("version") != FILE_VERSION:
            raise PredictorFileError(f"{path}: predictor file version {document.get('version')!r}, expected {FILE_VERSION}")
        try:
            params = document["params"]
            low, high = _bounds(document["low"], document["high"])
            X = np.asarray(document["X_train"], dtype=np.float64)
            y = np.asarray(document["y_train"], dtype=np.float64)
            saved = document["kernel"]
            kernel = ConstantKernel(float(saved["constant_value"]), "fixed") * RBF(
                np.asarray(saved["length_scale"], dtype=np.float64), "fixed"
            ) + WhiteKernel(float(saved["noise_level"]), "fixed")
            predictor = cls(
                low,
                high,
                length_scale=params["length_scale"],
                length_scale_bounds=tuple(params["length_scale_bounds"]),
                noise_level=params["noise_level"],
                noise_level_bounds=tuple(params["noise_level_bounds"]),
                n_restarts_optimizer=params["n_restarts_optimizer"],
                random_state=params["random_state"],
            )
            X = predictor._check_X(X, low.shape[0])
            if y.shape != (X.shape[0],) or not np.isfinite(y).all():
                raise ValueError("y_train does not match X_train")
            gp = GaussianProcessRegressor(
                kernel=kernel, alpha=float(document["gp_alpha"]), optimizer=None, normalize_y=True
            )
            gp.fit(to_unit(X, low, high), y)
        except (KeyError, TypeError, ValueError, np.linalg.LinAlgError) as problem:
            raise PredictorFileError(f"{path}: corrupt predictor file ({problem})") from None
        y_mean = float(np.ravel(gp._y_train_mean)[0])
        y_std = float(np.ravel(gp._y_train_std)[0])
        if not (math.isclose(y_mean, document["y_mean"], rel_tol=1e-12, abs_tol=1e-12)
                and math.isclose(y_std, document["y_std"], rel_tol=1e-12, abs_tol=1e-12)):
            raise PredictorFileError(f"{path}: corrupt predictor file (y normalisation does not match its training set)")
        predictor._set_fitted(gp, low, high, X, y)
        return predictor


# -- Algorithm 1 -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildRound:
    """One round of Algorithm 1: what was trained, then the GP fitted on everything so far."""

    round: int  # 0: the initial random subset
    n_samples: int  # architectures the round's GP was fitted on
    loo_mse: float
    initial: tuple[int, ...] = ()  # pool indices trained this round, by reason
    exploration: tuple[int, ...] = ()
    exploitation: tuple[int, ...] = ()


@dataclass
class BuildHistory:
    rounds: list[BuildRound] = field(default_factory=list)
    stop_reason: str = ""  # "threshold", "budget" or "pool exhausted"
    trained_indices: list[int] = field(default_factory=list)  # pool indices, in training order
    values: list[float] = field(default_factory=list)  # what the trainer returned for them

    @property
    def n_samples(self) -> int:
        return len(self.trained_indices)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stop_reason": self.stop_reason,
            "n_samples": self.n_samples,
            "rounds": [asdict(r) | {k: list(getattr(r, k)) for k in ("initial", "exploration", "exploitation")}
                       for r in self.rounds],
            "trained_indices": list(self.trained_indices),
            "values": list(self.values),
        }


def _top(scores: np.ndarray, count: int) -> np.ndarray:
    """Positions of the ``count`` largest scores (ties: lower position first)."""
    if count <= 0:
        return np.empty(0, dtype=np.intp)
    return np.argsort(-scores, kind="stable")[:count]


def _build(
    pool: np.ndarray,
    trainer: Trainer,
    low: Any,
    high: Any,
    *,
    initial: int,
    p: int,
    q: int,
    mse_threshold: float,
    budget: int,
    flops: Callable[[np.ndarray], np.ndarray] | np.ndarray | None,
    random_state: int | None,
    on_round: Callable[[BuildRound, GPPredictor], None] | None,
    gp_params: Mapping[str, Any] | None,
) -> tuple[GPPredictor, BuildHistory]:
    low, high = _bounds(low, high)
    pool = np.asarray(pool, dtype=np.float64)
    if pool.ndim != 2 or pool.shape[1] != low.shape[0] or pool.shape[0] == 0:
        raise ValueError(f"pool must have shape (k, {low.shape[0]}) with k >= 1, got {pool.shape}")
    if not np.isfinite(pool).all():
        raise ValueError("pool has non-finite values")
    if p < 0 or q < 0 or p + q < 1:
        raise ValueError(f"need p >= 0, q >= 0 and p + q >= 1 samples per round, got p={p}, q={q}")
    if initial < 2 or budget < 2:
        raise ValueError(f"need initial >= 2 and budget >= 2, got initial={initial}, budget={budget}")

    flop_values = None
    if q > 0:
        if flops is None:
            raise ValueError("exploitation samples (q > 0) need the pool's FLOPs")
        flop_values = np.asarray(flops(pool) if callable(flops) else flops, dtype=np.float64).reshape(-1)
        if flop_values.shape != (pool.shape[0],):
            raise ValueError(f"flops gives {flop_values.shape[0]} values for a pool of {pool.shape[0]}")
        if not (np.isfinite(flop_values).all() and (flop_values > 0).all()):
            raise ValueError("flops must be finite and positive for every pool member")

    # A pool may repeat an architecture (integer genes from a QMC sequence): each one is
    # trained once, through the first pool index that holds it.
    _, first = np.unique(pool + 0.0, axis=0, return_index=True)
    available = np.zeros(pool.shape[0], dtype=bool)
    available[first] = True

    rng = np.random.default_rng(random_state)
    history = BuildHistory()
    params = {"random_state": random_state, **(gp_params or {})}

    def train(indices: np.ndarray) -> None:
        values = np.asarray(trainer.train(pool[indices]), dtype=np.float64).reshape(-1)
        if values.shape != (len(indices),):
            raise TrainerError(f"the trainer returned {values.shape[0]} values for {len(indices)} architectures")
        if not np.isfinite(values).all():
            raise TrainerError(f"the trainer returned non-finite values for {int((~np.isfinite(values)).sum())} "
                               f"of {len(indices)} architectures")
        available[indices] = False
        history.trained_indices.extend(int(i) for i in indices)
        history.values.extend(float(v) for v in values)

    chosen = {"initial": rng.choice(np.flatnonzero(available), min(initial, budget, int(available.sum())), replace=False)}
    if len(chosen["initial"]) < 2:
        raise ValueError("the pool holds fewer than 2 distinct architectures")
    round_number = 0
    while True:
        train(np.concatenate([np.asarray(v, dtype=np.intp) for v in chosen.values()]))
        trained = np.asarray(history.trained_indices)
        predictor = GPPredictor(low, high, **params).fit(pool[trained], np.asarray(history.values))
        record = BuildRound(
            round=round_number,
            n_samples=len(trained),
            loo_mse=predictor.loo_mse(),
            **{reason: tuple(int(i) for i in indices) for reason, indices in chosen.items()},
        )
        history.rounds.append(record)
        if on_round is not None:
            on_round(record, predictor)
        if record.loo_mse < mse_threshold:
            history.stop_reason = "threshold"
            break
        room = budget - record.n_samples
        if room <= 0:
            history.stop_reason = "budget"
            break
        candidates = np.flatnonzero(available)
        if len(candidates) == 0:
            history.stop_reason = "pool exhausted"
            break
        # A last round smaller than p + q keeps the p : q proportion.
        n_explore = p if room >= p + q else round(room * p / (p + q))
        n_explore = min(n_explore, len(candidates))
        n_exploit = min(q if room >= p + q else room - n_explore, len(candidates) - n_explore)
        mean, std = predictor.predict(pool[candidates], return_std=True)
        explore_at = _top(std, n_explore)
        rest = np.setdiff1d(np.arange(len(candidates)), explore_at, assume_unique=True)
        chosen = {"exploration": candidates[explore_at]}
        if n_exploit > 0:
            ratio = mean[rest] / flop_values[candidates[rest]]
            chosen["exploitation"] = candidates[rest[_top(ratio, n_exploit)]]
        round_number += 1
    return predictor, history


def build_accuracy_predictor(
    pool: np.ndarray,
    trainer: Trainer,
    low: Sequence[float] | np.ndarray,
    high: Sequence[float] | np.ndarray,
    *,
    initial: int = 40,
    p: int = 20,
    q: int = 20,
    mse_threshold: float = 0.0,
    budget: int = 240,
    flops: Callable[[np.ndarray], np.ndarray] | np.ndarray | None = None,
    random_state: int | None = 0,
    on_round: Callable[[BuildRound, GPPredictor], None] | None = None,
    gp_params: Mapping[str, Any] | None = None,
) -> tuple[GPPredictor, BuildHistory]:
    """ChamNet's Algorithm 1: build a GP accuracy predictor from a pool of candidate architectures.

    ``pool`` (k × genes, the space's units; ChamNet draws k = 2048 by QMC, e.g.
    a scrambled Sobol sequence) is given by the caller.  A random subset of
    ``initial`` distinct architectures is trained first; then each round fits
    the GP on everything trained, stops when its leave-one-out MSE is below
    ``mse_threshold`` or ``budget`` architectures have been trained (or the
    pool is used up), and otherwise trains ``p`` exploration samples (largest
    predictive std among untrained pool members) and ``q`` exploitation
    samples (largest predicted accuracy / FLOPs among the rest; ``flops`` is a
    callable on a genes matrix or one value per pool member).  Exploitation
    is chosen after exploration, so a round adds p + q distinct architectures
    (the paper's union could add fewer); a final round that would pass the
    budget shrinks, keeping the p : q proportion.  No architecture is trained
    twice, even where the pool repeats one.

    Defaults.  The paper fixes k = 2048 and 240 trained samples (§4) but not
    the initial size, p, q or e.  ``initial = 40``, ``p = q = 20`` give six GP
    fits at 40, 80, ..., 240 samples, with exploration and exploitation in
    equal measure.  ``mse_threshold = 0`` means "train the whole budget", as
    in the paper's experiments; set it in the targets' units squared (e.g.
    0.25 for accuracy in percent: 0.5 points of LOO RMSE) to stop early.

    ``gp_params`` go to :class:`GPPredictor` (e.g. ``n_restarts_optimizer``);
    ``random_state`` seeds both the initial subset and the GP fits.
    ``on_round(round, predictor)`` is called after each fit.
    Returns the last fitted predictor and the :class:`BuildHistory`.
    """
    return _build(pool, trainer, low, high, initial=initial, p=p, q=q, mse_threshold=mse_threshold,
                  budget=budget, flops=flops, random_state=random_state, on_round=on_round, gp_params=gp_params)


def build_energy_predictor(
    pool: np.ndarray,
    trainer: Trainer,
    low: Sequence[float] | np.ndarray,
    high: Sequence[float] | np.ndarray,
    budget: int = 240,
    *,
    initial: int = 40,
    p: int = 40,
    mse_threshold: float = 0.0,
    random_state: int | None = 0,
    on_round: Callable[[BuildRound, GPPredictor], None] | None = None,
    gp_params: Mapping[str, Any] | None = None,
) -> tuple[GPPredictor, BuildHistory]:
    """Algorithm 1 for the energy predictor (ChamNet §3.4): exploration samples only.

    "Samples of interest" (accuracy / FLOPs) mean nothing for energy, so each
    round trains the ``p`` untrained pool members of largest predictive std;
    ``trainer`` measures them (e.g. an :class:`~optimizer.accuracy.trainer_protocol.ObservationsTrainer`
    on ``energy_mj``).  ``p = 40`` keeps the accuracy predictor's round size.
    """
    return _build(pool, trainer, low, high, initial=initial, p=p, q=0, mse_threshold=mse_threshold,
                  budget=budget, flops=None, random_state=random_state, on_round=on_round, gp_params=gp_params)
