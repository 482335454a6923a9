"""Accuracy and energy predictors: Gaussian processes built by ChamNet's Algorithm 1.

* :mod:`optimizer.accuracy.predictors`: :class:`GPPredictor` (scikit-learn's fit/predict) and Algorithm 1
  (exploration and exploitation samples until the leave-one-out error is small).
* :mod:`optimizer.accuracy.trainer_protocol`: the ``Train(samples)`` edge of Algorithm 1: the
  :class:`Trainer` protocol and trainers that answer from a file of observations or a function.
* :mod:`optimizer.accuracy.builders`: predictors from an observations file or a saved predictor file.

Algorithm 1 driving real trainings joins this package with the trainer, so it lives on the training side
(:mod:`optimizer.training.algorithm1`): training imports accuracy, never the reverse.

May import: numpy, scipy, scikit-learn, ``harness.errors``.  Never :mod:`optimizer.training`; no torch.
"""
