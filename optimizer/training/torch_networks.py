"""PyTorch networks of a search space: the trainable twin of the ONNX export.

A network is built from the very unit list the LUT predictor sums
(:meth:`SearchSpace.signatures`), and each unit's structure comes from the
shared block descriptions of :mod:`harness.models.block_graphs` (the functions the
ONNX and TFLite builders call), recorded once as a small program of layers.
So the trained network, the ONNX model exported from it and the LUT's
single-operator models cannot drift apart: same convolutions, in the same
order, with the same activations and shortcuts.

Training uses batch-norm after every convolution; the export folds it into the
convolution's weights and bias (as the harness's models are built, and as
ONNX Runtime would fold it), and hands the folded parameters to
:func:`harness.models.onnx_models.build_network` in graph order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness.errors import InvalidSignature
from harness.models import block_graphs
from harness.signature import FC, GLOBAL_AVGPOOL, OpSignature

_ACTIVATIONS = {"none": nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish}


class ConvBN(nn.Sequential):
    """Conv (no bias) → BatchNorm → activation: one ``Conv`` (+ activation) node once folded."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, groups: int, activation: str):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            _ACTIVATIONS[activation](),
        )

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """Weight and bias with the batch-norm (running statistics) folded in."""
        conv, bn = self[0], self[1]
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        weight = conv.weight.detach() * scale[:, None, None, None]
        bias = bn.bias.detach() - bn.running_mean * scale
        return _numpy(weight), _numpy(bias)


class Dense(nn.Sequential):
    """Linear with bias → activation (a ``Gemm`` node)."""

    def __init__(self, c_in: int, c_out: int, activation: str):
        super().__init__(nn.Linear(c_in, c_out), _ACTIVATIONS[activation]())

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        return _numpy(self[0].weight.detach()), _numpy(self[0].bias.detach())


def _activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "relu":
        return F.relu(x)
    if activation == "relu6":
        return F.relu6(x)
    if activation == "hardswish":
        return F.hardswish(x)
    return x


def _shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle (FBNet's grouped block), the ONNX builder's Reshape-Transpose-Reshape."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.float32).cpu().numpy().copy()


class _Recorder:
    """A :class:`block_graphs.GraphBuilder` whose tensors are step numbers: it records layers and steps."""

    def __init__(self) -> None:
        self.layers: list[nn.Module] = []
        self.steps: list[tuple[str, Any, tuple[int, ...]]] = []  # (op, layer index or activation, inputs)

    def _step(self, op: str, arg: Any, inputs: tuple[int, ...]) -> int:
        self.steps.append((op, arg, inputs))
        return len(self.steps)  # tensor 0 is the unit's input, tensor i the output of step i

    def conv(self, x: int, c_in: int, c_out: int, kernel: int = 1, stride: int = 1,
             padding: int = 0, groups: int = 1, activation: str = "none") -> int:
        self.layers.append(ConvBN(c_in, c_out, kernel, stride, padding, groups, activation))
        return self._step("layer", len(self.layers) - 1, (x,))

    def gemm(self, x: int, c_in: int, c_out: int, activation: str) -> int:
        self.layers.append(Dense(c_in, c_out, activation))
        return self._step("layer", len(self.layers) - 1, (x,))

    def add(self, a: int, b: int, activation: str = "none") -> int:
        return self._step("add", activation, (a, b))

    def channel_shuffle(self, x: int, channels: int, groups: int, h: int, w: int) -> int:
        return self._step("shuffle", groups, (x,))


class Unit(nn.Module):
    """One operator signature as a module: the recorded program of its block graph."""

    def __init__(self, signature: OpSignature) -> None:
        super().__init__()
        if signature.dtype != "fp32":
            raise InvalidSignature(f"{signature.key}: PyTorch networks are fp32 (quantize the export instead)")
        self.signature = signature
        recorder = _Recorder()
        if signature.kind == GLOBAL_AVGPOOL:
            self.pool = nn.AdaptiveAvgPool2d(1)  # exports as GlobalAveragePool
        elif signature.kind in block_graphs.SHARED_GRAPHS and signature.kind != "add":
            block_graphs.SHARED_GRAPHS[signature.kind](recorder, signature, 0)
        elif signature.kind in block_graphs.GROUPED_GRAPHS:
            block_graphs.GROUPED_GRAPHS[signature.kind](recorder, signature, 0)
        else:
            raise InvalidSignature(f"{signature.key}: kind {signature.kind} has no PyTorch unit")
        self.layers = nn.ModuleList(recorder.layers)
        self.steps = tuple(recorder.steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.signature.kind == GLOBAL_AVGPOOL:
            return self.pool(x)
        if self.signature.kind == FC and x.dim() == 4:
            x = torch.flatten(x, 1)
        values = [x]
        for op, arg, inputs in self.steps:
            if op == "layer":
                values.append(self.layers[arg](values[inputs[0]]))
            elif op == "shuffle":
                values.append(_shuffle(values[inputs[0]], arg))
            else:
                values.append(_activate(values[inputs[0]] + values[inputs[1]], arg))
        return values[-1]


class Network(nn.Module):
    """A chain of units (NCHW float input of the first unit's shape → logits)."""

    def __init__(self, units: Sequence[OpSignature]) -> None:
        super().__init__()
        units = list(units)
        if not units:
            raise InvalidSignature("a network needs at least one unit")
        self.units = nn.ModuleList(Unit(sig) for sig in units)

    @property
    def signatures(self) -> list[OpSignature]:
        return [unit.signature for unit in self.units]

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        first = self.units[0].signature
        return (first.n, first.c_in, first.h, first.w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            x = unit(x)
        return x

    def folded_parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every Conv / Gemm's (weight, bias), batch-norm folded, in graph order (as build_network draws them)."""
        return [layer.folded() for unit in self.units for layer in unit.layers]

    def export_onnx(self, path: str | Path) -> Path:
        """The trained network as the harness's fp32 ONNX network model (the LUT's operators, these weights)."""
        from harness.atomic import write_atomically
        from harness.models.onnx_models import build_network

        path = Path(path)
        data = build_network(self.signatures, parameters=self.folded_parameters()).SerializeToString()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda tmp: tmp.write_bytes(data))
        return path


def build_torch_network(space: Any, genes: Any, seed: int = 0) -> Network:
    """The PyTorch network of an architecture of ``space`` (PyTorch's default init, seeded)."""
    units = space.signatures(genes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Network(units)
