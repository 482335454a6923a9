"""ChamNet's Algorithm 1 for real: the accuracy predictor built by training the architectures it picks.

Joins the predictor-building loop (:mod:`optimizer.accuracy.predictors`) with the
trainer (:class:`~optimizer.training.trainer.TorchTrainer`); torch is imported by
the trainings, not by this module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from optimizer.accuracy.predictors import BuildHistory, BuildRound, GPPredictor, build_accuracy_predictor
from optimizer.spaces import get_space
from optimizer.training.settings import TrainingSettings
from optimizer.training.trainer import TorchTrainer


def build_predictor_by_training(space: Any, data: Any, observations: Path, *, settings: Any = None,
                                pool_size: int = 2048, initial: int = 40, p: int = 20, q: int = 20,
                                budget: int = 240, mse_threshold: float = 0.0, seed: int = 0,
                                workers: int | None = None, checkpoints: Path | None = None, progress: bool = True,
                                cluster: str | None = None, on_round: Callable[[BuildRound, GPPredictor], None] | None = None,
                                ) -> tuple[GPPredictor, BuildHistory, Any]:
    """ChamNet's Algorithm 1 for real: train the architectures it picks from a Sobol pool of ``space``.

    The pool is ``space.sobol_pool(pool_size, seed)`` (ChamNet: k = 2048);
    ``seed`` also seeds the initial subset and the GP fits.  Each round's batch
    (``initial`` first, then ``p`` exploration + ``q`` exploitation samples)
    is trained in parallel by a :class:`~optimizer.training.trainer.TorchTrainer` on
    ``data`` (``digits``, a folder, or a loaded data set) with ``settings``,
    appending every training to ``observations``.  Resumable: trainings the
    file already holds (same space, data set, settings, code version) are
    reused, and as training is deterministic, a rerun after a kill retraces the
    same rounds and trains only what is missing.  ``cluster`` (``"local"`` or a
    Ray head's ``HOST:PORT``) trains on that cluster's training hosts instead
    of ``workers`` local processes, with the same results.
    Returns the last predictor, the history and the trainer (its counters).
    """
    space = get_space(space) if isinstance(space, str) else space
    trainer = TorchTrainer(space, data, settings or TrainingSettings(), observations, workers=workers,
                           checkpoints=checkpoints, progress=progress, cluster=cluster)
    pool = space.sobol_pool(pool_size, seed)
    # No optimizer restarts, as build_from_observations.
    predictor, history = build_accuracy_predictor(
        pool, trainer, space.low, space.high, initial=min(initial, budget), p=p, q=q, mse_threshold=mse_threshold,
        budget=budget, flops=space.macs_many, random_state=seed, on_round=on_round,
        gp_params={"n_restarts_optimizer": 0})
    return predictor, history, trainer
