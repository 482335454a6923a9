"""Single-operator ExecuTorch programs (``.pte``): one small PyTorch module per :class:`OpSignature`.

The module computes what the signature's ONNX model computes, with the very
same weights: it runs the kind's graph function of
:mod:`harness.models.block_graphs` against a PyTorch builder that draws each
layer's weight and bias from the ONNX builder's generator, in the same graph
order.  So an ExecuTorch row and an ONNX Runtime row of one signature time the
same arithmetic on the same numbers, and a test can compare their outputs.

A program is exported the way ExecuTorch deploys a model: ``torch.export`` →
edge dialect → backend lowering → ``.pte``.  Two backends:

* ``xnnpack``: the XNNPACK partitioner takes every op it supports (ExecuTorch's
  CPU backend on phones and servers);
* ``portable``: no delegate, ExecuTorch's portable kernels (the reference every
  backend is checked against).

An int8 signature is quantized the PT2E way, with XNNPACK's quantizer
(symmetric per-channel int8 weights, int8 activations) calibrated on the
model's input of :func:`harness.models.onnx_models.make_inputs`, then lowered
to XNNPACK; ExecuTorch's portable kernels take no quantized convolutions, so
int8 is XNNPACK only.

PyTorch and ExecuTorch are imported inside the functions that need them:
importing this module costs nothing.  Built programs are cached like the other
model files, keyed by signature, seed, backend, builder version and the
ExecuTorch version (a program is read by the runtime that wrote it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

from harness.errors import ChameleonError, InvalidSignature
from harness.models import block_graphs, onnx_models
from harness.signature import OpSignature

# Part of the program cache key: bump whenever a module, a weight or a lowering choice changes.
BUILDER_VERSION = "e1"
BACKENDS = ("xnnpack", "portable")


# --------------------------------------------------------------- public API
def executorch_version() -> str:
    """The installed ExecuTorch's version ("unknown" when it is not installed)."""
    try:
        from importlib.metadata import version

        return version("executorch")
    except Exception:
        return "unknown"


def example_inputs(sig: OpSignature, seed: int = 0) -> tuple[Any, ...]:
    """The model's inputs as torch tensors: the ONNX model's feed (:func:`onnx_models.make_inputs`), in order."""
    import torch

    return tuple(torch.from_numpy(a) for a in onnx_models.make_inputs(sig, seed).values())


def build_module(sig: OpSignature, seed: int = 0) -> Any:
    """The signature's op as a ``torch.nn.Module`` in eval mode, with the ONNX model's weights."""
    import torch

    class SingleOp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sig = sig
            self.parameters_in_order = torch.nn.ParameterList()
            # A first run draws every weight, in graph order, from the ONNX builder's generator.
            builder = _TorchBuilder(self.parameters_in_order, onnx_models._weights_rng(sig, seed))
            with torch.no_grad():
                _GRAPHS[sig.kind](builder, sig, *example_inputs(sig, seed))

        def forward(self, *inputs):
            return _GRAPHS[self.sig.kind](_TorchBuilder(self.parameters_in_order), self.sig, *inputs)

    return SingleOp().eval()


def build_program(sig: OpSignature, seed: int = 0, backend: str = "xnnpack") -> bytes:
    """Export, lower and serialise the signature's program; one-line :class:`InvalidSignature` if that fails."""
    if backend not in BACKENDS:
        raise InvalidSignature(f"{sig.key}: unknown ExecuTorch backend {backend!r} (known: {', '.join(BACKENDS)})")
    if sig.dtype == "int8" and backend != "xnnpack":
        raise InvalidSignature(f"{sig.key}: int8 programs run through XNNPACK only, not the {backend} kernels")
    try:
        return _lower(sig, seed, backend)
    except ChameleonError:
        raise
    except Exception as error:  # torch.export and the lowering raise many classes; one line names the signature
        text = str(error).strip()
        first = text.splitlines()[0] if text else type(error).__name__
        raise InvalidSignature(f"{sig.key}: ExecuTorch cannot export it for {backend} "
                               f"({type(error).__name__}: {first[:300]})") from None


def model_file(sig: OpSignature, seed: int = 0, backend: str = "xnnpack", cache: Path | None = None) -> Path:
    """Path of the signature's ``.pte`` in the model cache, building and writing it if absent."""
    name = f"{sig.digest}-s{seed}-{backend}-{BUILDER_VERSION}-et{executorch_version()}.pte"
    return onnx_models.cached_file(cache, "pte", name, lambda: build_program(sig, seed, backend))


# ---------------------------------------------------------- whole networks
def build_network_module(units: Sequence[OpSignature], seed: int = 0) -> Any:
    """Chained fp32 units as one ``torch.nn.Module``: the very network :func:`onnx_models.build_network` writes.

    Same graph functions, same weights (one generator seeded by ``seed`` and the
    units' keys, drawn in graph order), a Flatten before an fc that follows a
    global pool; so the ExecuTorch and ONNX Runtime programs of a network
    compute the same numbers.  One-line :class:`InvalidSignature` for what
    ``build_network`` refuses.
    """
    import numpy as np
    import torch

    units = list(units)
    if not units:
        raise InvalidSignature("build_network_module: no units")
    shapes = [onnx_models.model_input_shape(units[0])]
    for index, sig in enumerate(units):
        if sig.dtype != "fp32":
            raise InvalidSignature(f"build_network_module: unit {index} ({sig.key}) is {sig.dtype}; networks are fp32 only")
        if len(onnx_models.model_input_names(sig)) != 1:
            raise InvalidSignature(f"build_network_module: unit {index} ({sig.kind}) takes two inputs and cannot be chained")
        wanted, shape = onnx_models.model_input_shape(sig), shapes[-1]
        flatten = sig.kind == "fc" and len(shape) == 4 and shape[2:] == (1, 1) and shape[:2] == wanted
        if shape != wanted and not flatten:
            raise InvalidSignature(f"build_network_module: unit {index} ({sig.key}) takes shape {wanted} "
                                   f"but the previous unit outputs {shape}")
        shapes.append(onnx_models.model_output_shape(sig))
    digest = hashlib.sha256("\n".join(sig.key for sig in units).encode()).hexdigest()

    class ChainedUnits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.parameters_in_order = torch.nn.ParameterList()
            # A first run draws every weight in graph order from build_network's generator.
            builder = _TorchBuilder(self.parameters_in_order, np.random.default_rng([seed, int(digest[:8], 16)]))
            with torch.no_grad():
                self._chain(builder, torch.zeros(shapes[0]))

        @staticmethod
        def _chain(builder: _TorchBuilder, x: Any) -> Any:
            for sig in units:
                if sig.kind == "fc" and x.dim() == 4:
                    x = torch.flatten(x, 1)
                x = _GRAPHS[sig.kind](builder, sig, x)
            return x

        def forward(self, x):
            return self._chain(_TorchBuilder(self.parameters_in_order), x)

    return ChainedUnits().eval()


def network_program(units: Sequence[OpSignature], seed: int = 0, backend: str = "xnnpack") -> bytes:
    """The chained network as a ``.pte``, lowered as single-op programs are; one-line error if that fails."""
    import torch

    units = list(units)
    if backend not in BACKENDS:
        raise InvalidSignature(f"unknown ExecuTorch backend {backend!r} (known: {', '.join(BACKENDS)})")
    module = build_network_module(units, seed)
    inputs = (torch.zeros(onnx_models.model_input_shape(units[0])),)
    try:
        return _serialise(torch.export.export(module, inputs), backend)
    except Exception as error:  # torch.export and the lowering raise many classes
        text = str(error).strip()
        raise InvalidSignature(f"a network of {len(units)} units: ExecuTorch cannot export it for {backend} "
                               f"({type(error).__name__}: {(text.splitlines()[0] if text else '')[:300]})") from None


# ----------------------------------------------------------------- lowering
def _lower(sig: OpSignature, seed: int, backend: str) -> bytes:
    import torch

    module, inputs = build_module(sig, seed), example_inputs(sig, seed)
    if sig.dtype == "int8":
        module = _quantized(module, inputs)
    return _serialise(torch.export.export(module, inputs), backend)


def _serialise(exported: Any, backend: str) -> bytes:
    from executorch.exir import to_edge_transform_and_lower

    partitioners = []
    if backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioners = [XnnpackPartitioner()]
    return bytes(to_edge_transform_and_lower(exported, partitioner=partitioners).to_executorch().buffer)


def _quantized(module: Any, inputs: tuple[Any, ...]) -> Any:
    """PT2E: XNNPACK's quantizer (per-channel symmetric weights), calibrated on the model's own input."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(module, inputs).module(), quantizer)
    with torch.no_grad():
        prepared(*inputs)
    return convert_pt2e(prepared)


# ------------------------------------------------------------ the builder
class _TorchBuilder:
    """block_graphs' builder over torch tensors (the SE steps included).

    With a generator it draws each layer's (weight, bias) as ``onnx_models._Builder``
    does and appends them to ``parameters``; without one it reads them back in order.
    """

    def __init__(self, parameters: Any, rng: Any = None) -> None:
        self.parameters, self.rng, self.taken = parameters, rng, 0

    def _pair(self, shape: tuple[int, ...]) -> tuple[Any, Any]:
        import torch

        if self.rng is not None:
            weight = onnx_models._he_normal(self.rng, shape)
            bias = onnx_models._bias(self.rng, shape[0])
            for array in (weight, bias):
                self.parameters.append(torch.nn.Parameter(torch.from_numpy(array), requires_grad=False))
        weight, bias = self.parameters[self.taken], self.parameters[self.taken + 1]
        self.taken += 2
        return weight, bias

    @staticmethod
    def activation(x: Any, activation: str) -> Any:
        import torch.nn.functional as F

        if activation == "relu":
            return F.relu(x)
        if activation == "relu6":
            return F.relu6(x)
        if activation == "hardswish":
            return F.hardswish(x)
        return x

    def conv(self, x, c_in: int, c_out: int, kernel: int = 1, stride: int = 1,
             padding: int = 0, groups: int = 1, activation: str = "none"):
        import torch.nn.functional as F

        weight, bias = self._pair((c_out, c_in // groups, kernel, kernel))
        return self.activation(F.conv2d(x, weight, bias, stride=stride, padding=padding, groups=groups), activation)

    def gemm(self, x, c_in: int, c_out: int, activation: str):
        import torch.nn.functional as F

        weight, bias = self._pair((c_out, c_in))
        return self.activation(F.linear(x, weight, bias), activation)

    def add(self, a, b, activation: str = "none"):
        return self.activation(a + b, activation)

    @staticmethod
    def channel_shuffle(x, channels: int, groups: int, h: int, w: int):
        n = x.shape[0]
        return x.reshape(n, groups, channels // groups, h, w).transpose(1, 2).reshape(n, channels, h, w)

    @staticmethod
    def global_avgpool(x):
        return x.mean(dim=(-2, -1), keepdim=True)

    @staticmethod
    def hard_sigmoid(x):
        import torch.nn.functional as F

        return F.hardsigmoid(x)  # relu6(x + 3) / 6, ONNX's HardSigmoid(alpha=1/6, beta=0.5)

    @staticmethod
    def mul(x, scale):
        return x * scale


def _avgpool_graph(b: _TorchBuilder, sig: OpSignature, x):
    import torch.nn.functional as F

    return F.avg_pool2d(x, sig.kernel, sig.stride, sig.padding, count_include_pad=False)


def _global_avgpool_graph(b: _TorchBuilder, sig: OpSignature, x):
    return b.global_avgpool(x)


def _activation_graph(b: _TorchBuilder, sig: OpSignature, x):
    return b.activation(x, sig.activation)


def _identity_graph(b: _TorchBuilder, sig: OpSignature, x):
    return x  # the runtime's fixed per-call cost, as the ONNX Identity model


_GRAPHS = {
    **block_graphs.SHARED_GRAPHS,
    **block_graphs.SE_GRAPHS,
    **block_graphs.GROUPED_GRAPHS,
    "avgpool": _avgpool_graph,
    "global_avgpool": _global_avgpool_graph,
    "activation": _activation_graph,
    "identity": _identity_graph,
}
