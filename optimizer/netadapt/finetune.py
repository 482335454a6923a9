"""NetAdapt's trainings as jobs: the data splits they use, one :class:`TrainJob` trained in this process
(:func:`run_job`) and many in the shared worker pool (:func:`run_jobs`) — short-term and long-term fine-tunes
and the width-multiplier baselines trained from scratch alike."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import ChameleonError
from harness.signature import parse_signature


def data_splits(dataset: Any, resolution: int, selection_per_class: int) -> dict[str, tuple[Any, np.ndarray]]:
    """Tensors at the network's resolution: ``fine_tune`` (training images minus the selection hold-out),
    ``selection`` (the hold-out NetAdapt picks proposals on), ``train`` (all training images, for the
    long-term fine-tune and for training baselines) and ``test`` (the data set's held-out split)."""
    from optimizer.training.datasets import held_out_split
    from optimizer.training.loop import _resized

    images, labels = dataset.train()
    keep, held = held_out_split(labels, dataset.classes, selection_per_class, f"{dataset.name} (NetAdapt's selection hold-out)")
    test_images, test_labels = dataset.held_out()
    return {"fine_tune": (_resized(images[keep], resolution), labels[keep]),
            "selection": (_resized(images[held], resolution), labels[held]),
            "train": (_resized(images, resolution), labels),
            "test": (_resized(test_images, resolution), test_labels)}


@dataclass(frozen=True)
class TrainJob:
    """One training of a network given by its units: fine-tune from ``state`` or train from scratch (``state=None``)."""

    name: str
    units: tuple[str, ...]
    state: dict | None
    settings: Any  # TrainingSettings
    train_on: str  # a split of data_splits
    evaluate_on: tuple[str, ...]
    selection_per_class: int
    steps: int | None = None  # None: settings.epochs passes
    schedule: str = "cosine"


@dataclass
class JobResult:
    name: str
    accuracy: dict[str, float]
    state: dict
    final_loss: float
    seconds: float


def run_job(job: TrainJob, dataset: Any) -> JobResult:
    """Train one job in this process (one thread, deterministic)."""
    import torch

    from optimizer.training.torch_networks import Network
    from optimizer.training.loop import _deterministic, fit_network, network_accuracy

    started = time.perf_counter()
    units = [parse_signature(k) for k in job.units]
    with _deterministic(threads=1):
        torch.manual_seed(job.settings.seed)
        net = Network(units)
        if job.state is not None:
            net.load_state_dict(job.state)
        splits = data_splits(dataset, units[0].h, job.selection_per_class)
        images, labels = splits[job.train_on]
        loss = fit_network(net, images, torch.from_numpy(labels), job.settings, steps=job.steps, schedule=job.schedule)
        accuracy = {split: float(network_accuracy(net, *splits[split])) for split in job.evaluate_on}
    return JobResult(job.name, accuracy, {k: v.detach().clone() for k, v in net.state_dict().items()}, loss,
                     time.perf_counter() - started)


def _worker_job(job: TrainJob) -> JobResult:
    from optimizer.training.workers import worker_dataset

    return run_job(job, worker_dataset())


def run_jobs(jobs: Sequence[TrainJob], dataset: Any, workers: int, cluster: str | None = None) -> Iterator[JobResult]:
    """Run jobs in ``workers`` spawned processes (inline for one), yielding results as they finish.

    A failing job is one :class:`~optimizer.training.settings.TrainingFailed` line;
    the jobs in flight are stopped (the same discipline as the trainer).  With
    ``cluster`` (``"local"`` or a Ray head's ``HOST:PORT``) every job, even a
    single one, is a Ray task on the cluster's training hosts
    (:mod:`optimizer.training.cluster`); the results come back here.
    """
    from optimizer.training.settings import TrainingFailed
    from optimizer.training.workers import _first_line, run_in_workers

    if not jobs:
        return
    if cluster is None and (workers <= 1 or len(jobs) == 1):
        for job in jobs:
            try:
                result = run_job(job, dataset)
            except ChameleonError:
                raise
            except Exception as problem:
                raise TrainingFailed(f"training {job.name} failed: {_first_line(problem)}") from None
            yield result
        return
    for _, result in run_in_workers([(_worker_job, (job,)) for job in jobs], dataset, workers, lambda i: jobs[i].name,
                                    cluster=cluster):
        yield result
