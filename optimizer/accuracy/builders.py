"""Predictors from files: Algorithm 1 over an observations file (the trainings' record), or a saved GP.

Algorithm 1 driving real trainings is :func:`optimizer.training.algorithm1.build_predictor_by_training`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from optimizer.accuracy.predictors import GPPredictor, PredictorFileError, build_accuracy_predictor, build_energy_predictor
from optimizer.accuracy.trainer_protocol import InvalidObservations, ObservationsTrainer


def build_from_observations(path: Path, space: Any, target: str = "accuracy", budget: int = 240,
                            seed: int = 0, *, initial: int = 40, p: int = 20, q: int = 20) -> tuple[GPPredictor, Any]:
    """Algorithm 1 over the architectures an observations file holds (the file is the trainer's record).

    Accuracy: exploration and exploitation samples (ChamNet Algorithm 1);
    energy: exploration samples only.  The budget is capped at the number of
    observed architectures.  ``p`` and ``q`` are the accuracy predictor's
    exploration and exploitation samples per round.
    """
    trainer = ObservationsTrainer(path, space.gene_names, space.low, space.high, target=target)
    pool = trainer.genes
    off_grid = ~space.contains(pool)
    if off_grid.any():
        example = dict(zip(space.gene_names, map(int, pool[np.argmax(off_grid)])))
        raise InvalidObservations(f"{path}: {int(off_grid.sum())} architecture(s) are not on {space.name}'s gene grid, e.g. {example}")
    budget = min(budget, len(pool))
    # No optimizer restarts: on this space they gave the same fits at 2-4x the time (benchmarks/algorithm1_vs_random.py).
    gp = {"n_restarts_optimizer": 0}
    if target == "accuracy":
        return build_accuracy_predictor(pool, trainer, space.low, space.high, budget=budget, initial=min(initial, budget),
                                        p=p, q=q, flops=space.macs_many, random_state=seed, gp_params=gp)
    return build_energy_predictor(pool, trainer, space.low, space.high, budget=budget, initial=min(initial, budget),
                                  random_state=seed, gp_params=gp)


def load_predictor(path: Path, space: Any, target: str = "accuracy", seed: int = 0) -> GPPredictor:
    """A saved predictor (``.json``, from ``optimize build-predictor``), or one built now from observations."""
    path = Path(path)
    if path.suffix == ".json":
        predictor = GPPredictor.load(path)
        if predictor.X_train_.shape[1] != len(space.gene_names) or not (
                np.array_equal(predictor.low_, space.low) and np.array_equal(predictor.high_, space.high)):
            raise PredictorFileError(f"{path}: a predictor of another space ({predictor.X_train_.shape[1]} genes), not {space.name}")
        return predictor
    return build_from_observations(path, space, target=target, seed=seed)[0]
