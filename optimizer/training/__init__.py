"""Training networks of a search space for real (PyTorch): the trainer behind Algorithm 1 and NetAdapt.

* :mod:`optimizer.training.datasets`, :mod:`optimizer.training.glyphs`: the built-in and folder data sets.
* :mod:`optimizer.training.torch_networks`: an architecture as a PyTorch network, exported to ONNX.
* :mod:`optimizer.training.settings`: training settings and the record of one training.
* :mod:`optimizer.training.loop`: the training loop (:func:`fit_network`), accuracy, one architecture trained.
* :mod:`optimizer.training.checkpoints`: trained weights saved and found again.
* :mod:`optimizer.training.observations`: the resumable observations file (one row per training).
* :mod:`optimizer.training.workers`: the spawned worker pool that trainings and fine-tunes share.
* :mod:`optimizer.training.cluster`: the same calls as Ray tasks on a cluster's training hosts (``--cluster``).
* :mod:`optimizer.training.trainer`: :class:`TorchTrainer`, Algorithm 1's trainer.
* :mod:`optimizer.training.algorithm1`: Algorithm 1 driving real trainings (:func:`build_predictor_by_training`).

The only package that imports torch, and only inside the functions that train, build or export.
May import: the harness's vocabulary and model builders, :mod:`optimizer.spaces`,
:mod:`optimizer.accuracy` (the trainer protocol, the predictors); ray only inside
:mod:`optimizer.training.cluster`'s functions.
"""
