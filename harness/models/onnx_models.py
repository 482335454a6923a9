"""Single-operator ONNX models: one small graph per :class:`OpSignature`.

The harness times these graphs to fill the LUT, so each one has to look, to the
runtime, like the same operator inside a real network: batch-norm folded into
conv weights and bias, activations fused after their op, blocks (inverted
residual, bottleneck) built from the same ops a whole model would use.

int8 signatures are built in QDQ form, the way ONNX Runtime's
``quantize_static`` writes a model (uint8 activations, int8 per-output-channel
symmetric weights in the reduced 7-bit range, int32 bias), so that ONNX Runtime's graph optimizer fuses
them into QLinearConv / QLinearAdd / QGemm exactly as it would in a deployed
quantized network.  An int8 model is the quantized twin of the fp32 model of
the same signature and seed: same weights, same inputs, and activation scales
calibrated on that fp32 model with the input of :func:`make_inputs`, as the
quantization tool does with its calibration reader.

Models are deterministic: the same signature and seed always serialise to the
same bytes, so a cached file can be rebuilt anywhere and compared.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
from pathlib import Path
from collections.abc import Sequence
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from harness import paths
from harness.models import block_graphs
from harness.errors import InvalidSignature
from harness.signature import OpSignature

OPSET = 17
# onnx 1.23 stamps IR 14 by default, which onnxruntime < 1.32 refuses to load.
IR_VERSION = 10
# Part of the model cache key: bump whenever a graph, a weight init or a
# quantization choice changes, so stale cached models are never timed.
BUILDER_VERSION = "b1"

_FLOAT = TensorProto.FLOAT
_INT8 = np.int8
# uint8 activations (U8S8): on x86 ONNX Runtime fuses QDQ into QLinearConv only
# for uint8 activations; it rewrites int8 ones to uint8 first, but not for a
# tensor with two readers (a residual input), which then stays float.
_ACT_DTYPE = np.uint8
_ACT_QMIN, _ACT_QMAX = 0, 255
# Weights symmetric over [-64, 64], quantize_static's reduce_range: x86 CPUs
# without VNNI multiply u8 x s8 pairs into int16 with saturation (VPMADDUBSW),
# and 2 * 255 * 64 is the largest pair sum that cannot overflow.  The kernels,
# hence the latency, are the same as with 8-bit weights.
_WEIGHT_QMAX = 64
# Activation scales are snapped up onto a quarter-octave grid: the last-bit noise
# of a calibration run on another machine must not change the model's bytes.
_SCALE_GRID_STEPS_PER_OCTAVE = 4
_MIN_CALIBRATED_RANGE = 1e-4


# --------------------------------------------------------------- public API
def model_input_names(sig: OpSignature) -> list[str]:
    """Names of the model's graph inputs, in the order :func:`make_inputs` fills them."""
    return ["x1", "x2"] if sig.kind == "add" else ["x"]


def model_input_shape(sig: OpSignature) -> tuple[int, ...]:
    """Shape of every graph input: NCHW, except an fc's flat (n, c_in)."""
    return (sig.n, sig.c_in) if sig.kind == "fc" else sig.input_shape


def model_output_shape(sig: OpSignature) -> tuple[int, ...]:
    """Shape of the graph output: ``sig.output_shape``, except an fc's flat (n, c_out)."""
    return (sig.n, sig.c_out) if sig.kind == "fc" else sig.output_shape


def make_inputs(sig: OpSignature, seed: int = 0) -> dict[str, np.ndarray]:
    """A deterministic float32 feed for the model, uniform in [-1, 1)."""
    # A stream separate from the weights', so inputs and weights are independent.
    rng = np.random.default_rng([seed, _digest_seed(sig), 1])
    shape = model_input_shape(sig)
    return {name: rng.uniform(-1.0, 1.0, size=shape).astype(np.float32) for name in model_input_names(sig)}


def build_model(sig: OpSignature, seed: int = 0) -> onnx.ModelProto:
    """Build, check and return the single-operator model of ``sig``."""
    if sig.dtype == "int8":
        ranges = _calibrate(sig, seed)
        model = _assemble(sig, seed, _QdqBuilder(_weights_rng(sig, seed), ranges))
    else:
        model = _assemble(sig, seed, _Builder(_weights_rng(sig, seed)))
    onnx.checker.check_model(model, full_check=True)
    return model


def model_file(sig: OpSignature, seed: int = 0, cache: Path | None = None) -> Path:
    """Path of the serialized model in the cache, building and writing it if absent."""
    return cached_file(cache, "models", f"{sig.digest}-s{seed}-{BUILDER_VERSION}.onnx",
                       lambda: build_model(sig, seed).SerializeToString())


def cached_file(cache: Path | None, folder: str, name: str, build: Callable[[], bytes]) -> Path:
    """``<cache>/<folder>/<name>``, written (atomically) from ``build()`` only when absent."""
    path = Path(cache if cache is not None else paths.cache_dir()) / folder / name
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, build())
    return path


# ----------------------------------------------------------- graph builders
class _Builder:
    """Accumulates the nodes and initializers of an fp32 graph.

    ``quant`` marks a tensor that an int8 model would quantize; here it only
    records the tensor, so the fp32 graph doubles as the calibration model.
    """

    def __init__(self, rng: np.random.Generator,
                 parameters: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self.rng = rng  # draws every weight, in graph order
        # Given (weight, bias) pairs replace the draws, in graph order (a trained network's export).
        self._given = None if parameters is None else list(parameters)
        self._taken = 0
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.quant_points: list[str] = []
        self._counter = 0

    def name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def const(self, prefix: str, array: np.ndarray) -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower() + "_")
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def quant(self, tensor: str) -> str:
        self.quant_points.append(tensor)
        return tensor

    def quantized(self, tensor: str) -> str:
        """``tensor`` through a quantization point, unless it already went through one."""
        return tensor if tensor in self.quant_points else self.quant(tensor)

    def rename(self, old: str, new: str) -> None:
        """Rename a node output (and its uses), to give the graph output a fixed name."""
        for node in self.nodes:
            node.input[:] = [new if t == old else t for t in node.input]
            node.output[:] = [new if t == old else t for t in node.output]
        self.quant_points = [new if t == old else t for t in self.quant_points]

    def weights(self, w: np.ndarray, b: np.ndarray, x: str) -> list[str]:
        """The weight and bias inputs of a Conv / Gemm reading ``x``."""
        return [self.const("w", w), self.const("b", b)]

    # ---- composite steps shared by every kind
    def activation(self, x: str, activation: str) -> str:
        if activation == "relu":
            return self.op("Relu", [x])
        if activation == "relu6":
            low = self.const("clip_min", np.array(0.0, np.float32))
            high = self.const("clip_max", np.array(6.0, np.float32))
            return self.op("Clip", [x, low, high])
        if activation == "hardswish":
            # ONNX Runtime has no quantized HardSwish: it runs in float between
            # a DQ and a Q, and the op before it needs its own quantization
            # point to still fuse into a quantized kernel.
            return self.op("HardSwish", [self.quantized(x)])
        return x

    def conv(self, x: str, c_in: int, c_out: int, kernel: int = 1, stride: int = 1,
             padding: int = 0, groups: int = 1, activation: str = "none") -> str:
        """Conv with folded batch-norm (hence a bias), its activation, then the quantization point."""
        w, b = self._parameters((c_out, c_in // groups, kernel, kernel))
        y = self.op("Conv", [x, *self.weights(w, b, x)], kernel_shape=[kernel, kernel],
                    strides=[stride, stride], pads=[padding] * 4, group=groups)
        return self.quant(self.activation(y, activation))

    def gemm(self, x: str, c_in: int, c_out: int, activation: str) -> str:
        w, b = self._parameters((c_out, c_in))
        y = self.op("Gemm", [x, *self.weights(w, b, x)], transB=1)
        return self.quant(self.activation(y, activation))

    def _parameters(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The next layer's weight (``shape``) and bias: drawn, or the next given pair (shapes checked)."""
        if self._given is None:
            return _he_normal(self.rng, shape), _bias(self.rng, shape[0])
        index = self._taken
        if index >= len(self._given):
            raise InvalidSignature(f"build_network: {len(self._given)} parameter pairs given, the graph needs more")
        w, b = (np.asarray(a, dtype=np.float32) for a in self._given[index])
        if w.shape != shape or b.shape != (shape[0],):
            raise InvalidSignature(f"build_network: parameter pair {index} has shapes {w.shape}, {b.shape}; "
                                   f"the graph's layer {index} needs {shape}, ({shape[0]},)")
        self._taken += 1
        return w, b

    def add(self, a: str, b: str, activation: str = "none") -> str:
        return self.quant(self.activation(self.op("Add", [a, b]), activation))

    def channel_shuffle(self, x: str, channels: int, groups: int, h: int, w: int) -> str:
        """Reshape to (n, groups, channels/groups, h·w), swap the two channel axes, reshape back (ShuffleNet's
        graph).  In the QDQ twin the shuffled tensor gets its own quantization point, whose calibrated range is
        the input's (a permutation): ONNX Runtime then runs the shuffle on the uint8 tensor."""
        split = self.const("shape", np.array([0, groups, channels // groups, h * w], np.int64))
        whole = self.const("shape", np.array([0, channels, h, w], np.int64))
        y = self.op("Transpose", [self.op("Reshape", [x, split])], perm=[0, 2, 1, 3])
        return self.quant(self.op("Reshape", [y, whole]))

    # ---- the steps of a squeeze-and-excite (block_graphs.squeeze_excite)
    def global_avgpool(self, x: str) -> str:
        return self.quant(self.op("GlobalAveragePool", [x]))

    def hard_sigmoid(self, x: str) -> str:
        # relu6(x + 3) / 6.  Like HardSwish, ONNX Runtime runs it in float between a DQ and a Q.
        return self.quant(self.op("HardSigmoid", [self.quantized(x)], alpha=1.0 / 6.0, beta=0.5))

    def mul(self, x: str, scale: str) -> str:
        return self.quant(self.op("Mul", [x, scale]))


class _QdqBuilder(_Builder):
    """Builds the QDQ twin: the same calls, with Q/DQ pairs at every quantization point."""

    def __init__(self, rng: np.random.Generator, ranges: list[tuple[float, float]]) -> None:
        super().__init__(rng)
        self._ranges = list(ranges)
        self._scales: dict[str, float] = {}  # dequantized tensor -> its activation scale

    def quant(self, tensor: str) -> str:
        # The k-th quantization point of this graph is the k-th one calibrated.
        low, high = self._ranges.pop(0)
        scale, zero_point = _activation_qparams(low, high)
        scale_name = self.const("act_scale", np.array(scale, np.float32))
        zp_name = self.const("act_zp", np.array(zero_point, _ACT_DTYPE))
        q = self.op("QuantizeLinear", [tensor, scale_name, zp_name])
        dq = self.op("DequantizeLinear", [q, scale_name, zp_name])
        self._scales[dq] = scale
        self.quant_points.append(dq)
        return dq

    def weights(self, w: np.ndarray, b: np.ndarray, x: str) -> list[str]:
        # Per-output-channel symmetric weights; the int32 bias shares the scale
        # of the product input * weight, which is what QLinearConv / QGemm expect.
        w_scale = _weight_scales(w)
        w_q = np.clip(np.round(w / w_scale.reshape(-1, *[1] * (w.ndim - 1))),
                      -_WEIGHT_QMAX, _WEIGHT_QMAX).astype(_INT8)
        b_scale = (np.float32(self._scales[x]) * w_scale).astype(np.float32)
        int32 = np.iinfo(np.int32)
        b_q = np.clip(np.round(b / b_scale), int32.min, int32.max).astype(np.int32)
        return [
            self._dequantized("w", w_q, w_scale),
            self._dequantized("b", b_q, b_scale),
        ]

    def _dequantized(self, prefix: str, values: np.ndarray, scales: np.ndarray) -> str:
        zero_points = np.zeros(scales.shape, values.dtype)
        names = [self.const(prefix, values), self.const(prefix + "_scale", scales),
                 self.const(prefix + "_zp", zero_points)]
        return self.op("DequantizeLinear", names, axis=0)


# ------------------------------------------------------------ kind graphs
# Each takes the builder, the signature and the graph inputs (already through
# their quantization point) and returns the output tensor.
def _avgpool_graph(b: _Builder, sig: OpSignature, x: str) -> str:
    y = b.op("AveragePool", [x], kernel_shape=[sig.kernel, sig.kernel], strides=[sig.stride, sig.stride],
             pads=[sig.padding] * 4, count_include_pad=0)
    return b.quant(y)


def _global_avgpool_graph(b: _Builder, sig: OpSignature, x: str) -> str:
    return b.quant(b.op("GlobalAveragePool", [x]))


def _activation_graph(b: _Builder, sig: OpSignature, x: str) -> str:
    return b.quant(b.activation(x, sig.activation))


def _identity_graph(b: _Builder, sig: OpSignature, x: str) -> str:
    return b.quant(b.op("Identity", [x]))


_GRAPHS: dict[str, Callable[..., str]] = {
    **block_graphs.SHARED_GRAPHS,
    **block_graphs.SE_GRAPHS,
    **block_graphs.GROUPED_GRAPHS,
    "avgpool": _avgpool_graph,
    "global_avgpool": _global_avgpool_graph,
    "activation": _activation_graph,
    "identity": _identity_graph,
}


# ---------------------------------------------------------------- assembly
def _assemble(sig: OpSignature, seed: int, b: _Builder, extra_outputs: bool = False) -> onnx.ModelProto:
    """Run the kind's graph function on ``b`` and wrap the result in a model.

    With ``extra_outputs`` every quantization point becomes a graph output too
    (the calibration model).
    """
    names = model_input_names(sig)
    graph_inputs = [b.quant(name) for name in names]
    b.rename(_GRAPHS[sig.kind](b, sig, *graph_inputs), "y")

    in_shape, out_shape = model_input_shape(sig), model_output_shape(sig)
    outputs = [helper.make_tensor_value_info("y", _FLOAT, out_shape)]
    if extra_outputs:
        outputs += [helper.make_tensor_value_info(t, _FLOAT, None) for t in b.quant_points if t not in names and t != "y"]
    graph = helper.make_graph(
        b.nodes,
        f"{sig.kind}_{sig.dtype}",
        [helper.make_tensor_value_info(name, _FLOAT, in_shape) for name in names],
        outputs,
        initializer=b.initializers,
    )
    model = _make_model(graph, doc=sig.key)
    helper.set_model_props(model, {"signature": sig.key, "seed": str(seed), "builder_version": BUILDER_VERSION})
    return model


def _calibrate(sig: OpSignature, seed: int) -> list[tuple[float, float]]:
    """(min, max) of every quantization point of the fp32 twin on :func:`make_inputs`."""
    import onnxruntime as ort  # only int8 builds need a runtime

    b = _Builder(_weights_rng(sig, seed))
    model = _assemble(sig, seed, b, extra_outputs=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a fixed reduction order, for reproducible ranges
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = make_inputs(sig, seed)
    wanted = [t for t in b.quant_points if t not in feed]
    values = dict(zip(wanted, session.run(wanted, feed)))
    values.update(feed)
    return [(float(values[t].min()), float(values[t].max())) for t in b.quant_points]


# ------------------------------------------------------------ numeric helpers
def _weights_rng(sig: OpSignature, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, _digest_seed(sig)])


def _digest_seed(sig: OpSignature) -> int:
    # Seeded from the fp32 signature, so an int8 model quantizes the very
    # weights (and reads the very inputs) of its fp32 twin.
    return int(sig.replace(dtype="fp32").digest, 16) % 2**32


def _he_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    # He/Kaiming: keeps the output variance of a ReLU layer near its input's.
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape).astype(np.float32)


def _bias(rng: np.random.Generator, channels: int) -> np.ndarray:
    # A folded batch-norm leaves a small per-channel shift.
    return rng.normal(0.0, 0.1, size=channels).astype(np.float32)


def _weight_scales(w: np.ndarray) -> np.ndarray:
    absmax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    return np.where(absmax > 0, absmax / _WEIGHT_QMAX, 1.0).astype(np.float32)


def _activation_qparams(low: float, high: float) -> tuple[float, int]:
    """Asymmetric uint8 scale and zero point covering [low, high] (and 0)."""
    low, high = min(low, 0.0), max(high, 0.0)
    span = max(high - low, _MIN_CALIBRATED_RANGE)
    steps = _SCALE_GRID_STEPS_PER_OCTAVE
    scale = 2.0 ** (math.ceil(math.log2(span / (_ACT_QMAX - _ACT_QMIN)) * steps) / steps)
    scale = float(np.float32(scale))
    # A non-negative tensor (after relu/relu6) gets zero point qmin exactly,
    # which lets ONNX Runtime drop the Relu/Clip into the quantization.
    zero_point = int(np.clip(round(_ACT_QMIN - low / scale), _ACT_QMIN, _ACT_QMAX))
    return scale, zero_point


def _make_model(graph: onnx.GraphProto, doc: str) -> onnx.ModelProto:
    """Our opset and the IR version ONNX Runtime accepts (onnx 1.23 writes IR 14 by default, which ORT 1.31 refuses)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="chameleon",
                              producer_version=BUILDER_VERSION, doc_string=doc)
    model.ir_version = IR_VERSION
    return model


def _write_atomically(path: Path, data: bytes) -> None:
    # A temp file in the same folder, then a rename: readers see either no file
    # or a whole one, and concurrent writers of the same bytes just race to rename.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------ whole networks

def build_network(units: Sequence[OpSignature], seed: int = 0,
                  parameters: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> onnx.ModelProto:
    """Chain fp32 units into one model: input "x" (the first unit's input), output "y".

    Each unit is the very graph its single-operator model holds (the same kind
    functions, one fp32 builder), fed by the previous unit's output; a
    global_avgpool's (n, c, 1, 1) output reaches an fc through a Flatten.
    Weights are drawn in graph order from one generator seeded by ``seed`` and
    the units' keys, so the same units and seed give the same bytes; or, with
    ``parameters``, taken from those (weight, bias) pairs in graph order (a
    trained network's, batch-norm folded), every one used and shape-checked.  Raises
    :class:`InvalidSignature` (one line) for an empty list, an int8 unit or a
    unit whose input shape is not the previous unit's output shape.
    """
    units = list(units)
    if not units:
        raise InvalidSignature("build_network: no units")
    for index, sig in enumerate(units):
        if sig.dtype != "fp32":
            raise InvalidSignature(f"build_network: unit {index} ({sig.key}) is {sig.dtype}; networks are fp32 only")
        if len(model_input_names(sig)) != 1:
            raise InvalidSignature(f"build_network: unit {index} ({sig.kind}) takes two inputs and cannot be chained")
    digest = hashlib.sha256("\n".join(sig.key for sig in units).encode()).hexdigest()
    b = _Builder(np.random.default_rng([seed, int(digest[:8], 16)]), parameters)
    in_shape = model_input_shape(units[0])
    x = b.quant("x")
    shape: tuple[int, ...] = in_shape
    for index, sig in enumerate(units):
        wanted = model_input_shape(sig)
        if sig.kind == "fc" and len(shape) == 4 and shape[2:] == (1, 1) and shape[:2] == wanted:
            x, shape = b.op("Flatten", [x], axis=1), wanted
        if shape != wanted:
            raise InvalidSignature(f"build_network: unit {index} ({sig.key}) takes shape {wanted} "
                                   f"but the previous unit outputs {shape}")
        x = _GRAPHS[sig.kind](b, sig, x)
        shape = model_output_shape(sig)
    if parameters is not None and b._taken != len(b._given):
        raise InvalidSignature(f"build_network: {len(b._given)} parameter pairs given, the graph used {b._taken}")
    b.rename(x, "y")
    graph = helper.make_graph(
        b.nodes,
        "network_fp32",
        [helper.make_tensor_value_info("x", _FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", _FLOAT, shape)],
        initializer=b.initializers,
    )
    model = _make_model(graph, doc=f"network of {len(units)} units")
    helper.set_model_props(model, {"units": str(len(units)), "units_sha256": digest, "seed": str(seed),
                                   "builder_version": BUILDER_VERSION})
    onnx.checker.check_model(model, full_check=True)
    return model
