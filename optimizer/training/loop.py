"""The training loop: one network fitted (:func:`fit_network`), scored (:func:`network_accuracy`), and one
architecture of a space trained end to end (:func:`train_architecture`, ChamNet §4: accuracy on the held-out
split, 50 images per class).

After the last step, batch-norm statistics are recomputed with the final
weights (one pass over the training images, no gradients): a short
training's running averages lag its weights, and without this one-epoch
networks scored chance (0.10) in eval mode with a training loss of 1.3.

Determinism: one thread, ``torch.use_deterministic_algorithms``, the network's
initialisation, the batch order and everything else seeded by
``settings.seed``: the same inputs give bit-identical accuracies, so a resumed
Algorithm 1 makes the very choices an uninterrupted one would have.

Speed (profiled on the main job's trainings, issue 17): the time is in the
convolutions and batch-norms, not in Python.  A network trains in
channels-last layout (NHWC in memory), which oneDNN's convolutions read
directly; in PyTorch's default layout every convolution reorders its input
and output, and a training took 1.7x as long.  The layout changes the order
of floating-point sums, and SGD amplifies the last bit: each network's
accuracy moves as a change of seed moves it (TRAINING_CODE_VERSION 2; the
figures are in ``benchmarks/results/main_job_training.json``).
Deterministic mode's filling of every new tensor with NaN, a debugging aid,
is switched off (:func:`_deterministic`): it changes no result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.training.checkpoints import _save_checkpoint
from optimizer.training.datasets import ImageDataset, load_dataset
from optimizer.training.settings import (
    InvalidSettings,
    TrainingSettings,
    TrainResult,
    _space,
    check_dataset_fits,
    code_version,
)

#: The memory layout networks train in (a ``torch`` memory format's name).  ``"contiguous_format"`` (PyTorch's
#: default) gives TRAINING_CODE_VERSION 1's results bit for bit, 1.7x slower: kept for
#: ``benchmarks/main_job_training.py``, which times both.
_LAYOUT = "channels_last"


@contextmanager
def _deterministic(threads: int = 1) -> Iterator[None]:
    """One thread, deterministic kernels, the global RNG left as it was.

    Uninitialised memory is not filled (``torch.utils.deterministic.fill_uninitialized_memory``):
    deterministic mode fills every new tensor with NaN so that a kernel reading memory it never
    wrote shows up.  That fill was 15% of a training's profile (most of it the first touch of fresh
    pages, see :func:`optimizer.training.workers._keep_freed_memory`), and no result changes
    without it (the main job's 48 trainings: the same accuracies and losses, bit for bit).
    """
    import torch
    import torch.utils.deterministic

    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
              torch.utils.deterministic.fill_uninitialized_memory)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1])
        torch.utils.deterministic.fill_uninitialized_memory = before[2]


def _resized(images: np.ndarray, resolution: int):
    import torch
    from torch.nn import functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tensor.shape[-1] == resolution:
        return tensor.clone()
    return F.interpolate(tensor, size=(resolution, resolution), mode="bilinear", align_corners=False,
                         antialias=tensor.shape[-1] > resolution)


def train_architecture(space_name: str, genes: Sequence[int] | np.ndarray, dataset_spec: str | Path | ImageDataset,
                       settings: TrainingSettings = TrainingSettings(), checkpoint: Path | None = None) -> TrainResult:
    """Train one architecture of a space and measure its held-out accuracy (deterministic, one thread).

    ``dataset_spec`` is a spec for :func:`~optimizer.training.datasets.load_dataset` or
    a loaded data set; ``checkpoint`` (a file) receives the trained weights.
    """
    import torch

    from optimizer.training.torch_networks import build_torch_network

    space = _space(space_name)
    x = space._vector(np.asarray(genes))  # a point of the space, or InvalidArchitecture
    data = dataset_spec if isinstance(dataset_spec, ImageDataset) else load_dataset(dataset_spec)
    check_dataset_fits(space, data)
    resolution = settings.training_resolution(space.resolution(x))
    started = time.perf_counter()
    with _deterministic(threads=1):
        torch.manual_seed(settings.seed)
        layout = getattr(torch, _LAYOUT)  # channels-last: no reorder around each convolution (module docstring)
        net = build_torch_network(space, x, seed=settings.seed).to(memory_format=layout)
        train_images, train_labels = data.train()
        held_images, held_labels = data.held_out()
        final_loss = fit_network(net, _resized(train_images, resolution).contiguous(memory_format=layout),
                                 torch.from_numpy(train_labels), settings)
        accuracy = network_accuracy(net, _resized(held_images, resolution).contiguous(memory_format=layout),
                                    held_labels)
        net = net.to(memory_format=torch.contiguous_format)  # checkpoints and exports hold plain tensors
    seconds = time.perf_counter() - started
    result = TrainResult(space=space.name, genes=tuple(int(v) for v in x), accuracy=float(accuracy),
                         epochs=settings.epochs, train_seconds=float(seconds), final_loss=float(final_loss),
                         dataset_id=data.dataset_id, seed=settings.seed, settings_id=settings.settings_id,
                         settings=settings.to_json(), code_version=code_version(),
                         checkpoint=None if checkpoint is None else str(checkpoint))
    if checkpoint is not None:
        _save_checkpoint(Path(checkpoint), net, result)
    return result


def fit_network(net: Any, inputs: Any, labels: Any, settings: TrainingSettings, *, steps: int | None = None,
                schedule: str = "cosine") -> float:
    """Train ``net`` in place on tensors (NCHW inputs at its resolution, int64 labels); the last epoch's mean loss.

    ``settings.epochs`` passes over the data, or exactly ``steps`` mini-batches
    when given (NetAdapt's short-term fine-tune counts iterations), the data
    reshuffled at each pass; ``schedule`` is "cosine" (to 0 over all steps) or
    "constant".  Batch-norm statistics are recomputed at the end when the
    settings say so.  Call under :func:`_deterministic` for repeatable results.
    """
    import torch
    from torch.nn import functional as F

    n = len(labels)
    per_epoch = [slice(i, i + settings.batch_size) for i in range(0, n, settings.batch_size)]
    if n - per_epoch[-1].start < 2:  # batch norm needs 2 images where the last stage is 1x1
        per_epoch.pop()
    if not per_epoch:
        raise InvalidSettings(f"training needs at least 2 images, got {n}")
    total_steps = settings.epochs * len(per_epoch) if steps is None else int(steps)
    if total_steps < 1:
        raise InvalidSettings(f"steps must be >= 1 (got {steps!r})")
    decay, plain = [], []
    for parameter in net.parameters():  # weight decay on conv and fc weights, not on batch-norm or biases
        (plain if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    if settings.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum,
                                    nesterov=settings.momentum > 0)
    else:
        optimizer = torch.optim.AdamW(groups, lr=settings.lr)
    if schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    elif schedule == "constant":
        scheduler = None
    else:
        raise InvalidSettings(f"schedule must be 'cosine' or 'constant' (got {schedule!r})")
    order = torch.Generator().manual_seed(settings.seed)
    net.train()
    final_loss = math.nan
    taken = 0
    while taken < total_steps:
        permutation = torch.randperm(n, generator=order)
        total, count = 0.0, 0
        for batch in per_epoch[:total_steps - taken]:
            index = permutation[batch]
            loss = F.cross_entropy(net(inputs[index]), labels[index], label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.item() * len(index)
            count += len(index)
            taken += 1
        final_loss = total / count
    if settings.recalibrate_bn:
        _recalibrate_batch_norm(net, inputs, settings.batch_size)
    net.eval()
    return float(final_loss)


def network_accuracy(net: Any, images: Any, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``net`` (eval mode) on image tensors and numpy labels, as a fraction."""
    import torch

    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), 500):
            correct += int((net(images[i:i + 500]).argmax(dim=1) == torch.from_numpy(np.asarray(labels[i:i + 500]))).sum())
    return correct / len(labels)


def _recalibrate_batch_norm(net: Any, inputs: Any, batch_size: int) -> None:
    """Batch-norm statistics recomputed over the training images with the final weights (no gradients).

    The running averages of a short training mix statistics of weights long
    gone (20 steps per epoch on digits): after one epoch, a network whose
    training loss is 1.3 can score chance in eval mode.  An exact average
    over one pass with the final weights costs a third of an epoch.
    """
    import torch

    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for i in range(0, len(inputs), batch_size):
            if len(inputs) - i >= 2:
                net(inputs[i:i + batch_size])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
