"""FBNet's supernet in PyTorch: every layer holds all its candidate blocks, mixed by weights ``m`` (Gumbel-softmax).

The candidates are the very units the LUT prices and the trainer trains
(:class:`optimizer.training.torch_networks.Unit`, built from the shared block graphs), so a path
through the supernet is the network :func:`~optimizer.training.torch_networks.build_torch_network`
builds for the same genes, layer for layer.  A layer's output is ``Σ_i m_i · b_i(x)`` (FBNet Eq. 5);
a candidate whose weight is exactly 0 is not computed, so a one-hot ``m`` runs one path only.

Torch is imported at module level: the supernet subclasses ``torch.nn.Module``
(tests/test_architecture.py lists this module beside the torch networks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from optimizer.training.torch_networks import Unit


class Supernet(nn.Module):
    """The supernet of an :class:`~optimizer.spaces.fbnet.FBNetSpace`: fixed units around mixed layers."""

    def __init__(self, space: Any, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # PyTorch's default initialisation, seeded
            torch.manual_seed(seed)
            self.head = nn.ModuleList(Unit(s) for s in space.head)
            self.choices = nn.ModuleList(
                nn.ModuleList(nn.Identity() if unit is None else Unit(unit) for unit in units)
                for units in space.layer_units())
            self.tail = nn.ModuleList(Unit(s) for s in space.tail)

    @property
    def shape(self) -> tuple[int, int]:
        """(layers, candidates)."""
        return len(self.choices), len(self.choices[0])

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` through the layers mixed by ``weights``: ``[layers, candidates]`` for the whole batch, or
        ``[batch, layers, candidates]``, one architecture per image."""
        for unit in self.head:
            x = unit(x)
        for l, candidates in enumerate(self.choices):
            mixed = None
            for i, block in enumerate(candidates):
                w = weights[..., l, i]
                if not bool(w.ne(0).any()):  # a one-hot row runs its one block
                    continue
                y = (w if w.dim() == 0 else w.view(-1, 1, 1, 1)) * block(x)
                mixed = y if mixed is None else mixed + y
            x = mixed
        for unit in self.tail:
            if unit.signature.kind == "fc" and x.dim() == 4:
                x = torch.flatten(x, 1)
            x = unit(x)
        return x

    def path(self, x: torch.Tensor, genes: Sequence[int]) -> torch.Tensor:
        """Logits of one architecture (one block per layer) with the supernet's shared weights."""
        return self.forward(x, one_hot_weights(genes, self.shape))


def one_hot_weights(genes: Sequence[int], shape: tuple[int, int]) -> torch.Tensor:
    m = torch.zeros(shape)
    m[torch.arange(shape[0]), torch.as_tensor(np.asarray(genes, dtype=np.int64))] = 1.0
    return m


def gumbel_softmax(theta: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """FBNet Eq. 6: ``softmax((θ + g) / τ)`` per layer, g Gumbel(0, 1) noise from ``generator`` (seeded, so resumable).

    ``theta`` ``[layers, candidates]``, or broadcast to ``[batch, layers, candidates]`` for one sample per image.

    ``torch.nn.functional.gumbel_softmax`` draws from the global generator; ours takes one, so a
    resumed search draws the very noise an uninterrupted one would.
    """
    u = torch.rand(theta.shape, generator=generator, dtype=theta.dtype).clamp_(1e-10, 1.0 - 1e-7)
    return torch.softmax((theta - torch.log(-torch.log(u))) / tau, dim=-1)


@torch.no_grad()
def path_accuracy(net: Supernet, genes: Sequence[int], calibration: torch.Tensor, images: torch.Tensor,
                  labels: torch.Tensor, batch_size: int = 64) -> float:
    """Accuracy of one path with the shared weights, its batch-norm statistics first recomputed on ``calibration``.

    The running statistics the supernet kept mix every path's activations; a path alone sees other
    inputs (SPOS recomputes them the same way).  The supernet's own statistics are restored after.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum) for m in norms]
    weights = one_hot_weights(genes, net.shape)
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration pass
        net.train()
        for i in range(0, len(calibration), batch_size):
            if len(calibration) - i >= 2:
                net(calibration[i:i + batch_size], weights)
        net.eval()
        correct = 0
        for i in range(0, len(images), 500):
            correct += int((net(images[i:i + 500], weights).argmax(dim=1) == labels[i:i + 500]).sum())
        return correct / len(labels)
    finally:
        for m, (mean, var, tracked, momentum) in zip(norms, saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(tracked)
            m.momentum = momentum
