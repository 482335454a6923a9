"""Single-operator TFLite models: the LiteRT twins of :mod:`harness.models.onnx_models`.

Every signature gets a small ``.tflite`` flatbuffer, written here directly with
``flatbuffers.Builder`` (no TensorFlow), holding the ops that the TFLite
converter would emit for the same operator.  The model is the twin of the ONNX
model of the same signature and seed:

* **Same weights.**  They are read out of ``onnx_models.build_model`` (the fp32
  model, in Conv/Gemm node order) and only transposed to TFLite layouts: conv
  filters OHWI, depthwise filters 1HWO, fc weights [out, in].
* **Same inputs.**  Tensors are NHWC, TFLite's layout: the input is the ONNX
  input transposed NCHW -> NHWC (:func:`make_tflite_inputs`); an fc's input is
  the flat (n, c_in), its output (n, c_out).  Input names are the ONNX ones
  (``x``, or ``x1``/``x2`` for add), the output is ``y``.
* **Same quantization points.**  An int8 model is full-integer, as the
  converter writes it: float32 input -> QUANTIZE -> int8 ops -> DEQUANTIZE ->
  float32 output, int8 activations (asymmetric, one zero point per tensor), int8
  symmetric weights in [-127, 127] (per output channel for conv: quantized
  dimension 0 of OHWI; per channel for depthwise: dimension 3 of 1HWO; per
  tensor for fc, the converter's default and what the Hexagon delegate's
  matmul takes), int32 bias with scale input_scale * weight_scale.  Activation
  ranges come from the ONNX builder's calibration (``onnx_models._calibrate``)
  and the same scale rounding, so each int8 tensor has the scale of the
  matching uint8 tensor of the ONNX QDQ model and its zero point minus 128.
  Ops whose int8 kernels require output qparams equal to the input's
  (AVERAGE_POOL_2D, PAD, RESHAPE) keep the input's, as the converter does.

Ops per kind:

* conv2d / pointwise_conv: CONV_2D (grouped when 1 < groups: the filter's
  input dim is c_in / groups, op version 6); depthwise_conv (groups == c_in):
  DEPTHWISE_CONV_2D, depth multiplier c_out / c_in.  relu / relu6 are fused
  into the op; hardswish is a separate HARD_SWISH.
* inverted_residual: [CONV_2D 1x1 expand] -> DEPTHWISE_CONV_2D -> CONV_2D 1x1
  project -> [ADD residual]; bottleneck: CONV_2D 1x1 -> CONV_2D kxk (grouped)
  -> CONV_2D 1x1, shortcut (identity or strided CONV_2D 1x1) -> ADD with the
  activation fused (or ADD -> HARD_SWISH).
* squeeze_excite: MEAN (keep_dims) -> CONV_2D 1x1 (relu) -> CONV_2D 1x1 ->
  ADD 3 (relu6 fused) -> MUL 1/6 (the hard-sigmoid, as the converter writes
  it) -> MUL with the input (broadcast over H, W); inverted_residual_se: the
  inverted residual with those ops between the depthwise and the project conv.
* fc: FULLY_CONNECTED; avgpool: AVERAGE_POOL_2D; global_avgpool: MEAN over
  H, W (keep_dims); add: ADD; activation: RELU / RELU6 / HARD_SWISH;
  identity: a RESHAPE to the same shape, the cheapest op LiteRT runs (a
  subgraph needs at least one op between its input and output tensors).

Padding: TFLite knows only SAME and VALID.  A layer with padding 0 is VALID; a
padded one is SAME where TFLite's SAME padding equals ONNX's symmetric padding
(same output size, same padding before), which holds for stride 1 with odd
kernels and for odd input sizes under stride 2.  Otherwise (e.g. a stride-2
conv on an even input, where SAME pads only after) an explicit PAD op with the
symmetric padding precedes a VALID op, so a conv computes exactly the ONNX
conv.  **avgpool with such an explicit PAD is not exact**: the PAD writes real
zeros, which AVERAGE_POOL_2D counts in the border windows' divisor
(count_include_pad=1), while the ONNX model averages over the valid elements
only (count_include_pad=0).  Interior windows are equal; the border windows are
scaled down by valid / kernel**2.  (A SAME avgpool excludes the padding like
ONNX and is exact.)  Making those windows exact would take an extra MUL by a
per-position correction map, an op a real network's pooling does not have, so
the model stays the pooling itself.

Models are deterministic: the same signature and seed always give the same
bytes, so a cached file can be rebuilt anywhere and compared.

This module holds the public builders, the graph builder that mirrors the ONNX
one and the per-kind graphs; the flatbuffer serialisation is
:mod:`harness.models.tflite_writer`.  Imports: ``onnx_models``,
``block_graphs``, ``tflite_writer`` and ``harness.signature``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tflite
from onnx import numpy_helper

from harness.models import block_graphs
from harness.models import onnx_models
from harness.models.tflite_writer import (SCHEMA_VERSION, FlatModel, Quant, add_options, conv_options,
                                          depthwise_options, fc_options, mul_options, pool_options, reducer_options)
from harness.signature import OpSignature

__all__ = ["BUILDER_VERSION", "SCHEMA_VERSION", "build_network_tflite", "build_tflite", "equals_onnx",
           "make_tflite_inputs", "model_input_shape", "model_output_shape", "network_input",
           "tflite_model_file", "write_network"]

# Part of the model cache key.  It embeds the ONNX builder's version, since the
# weights and calibration come from there: a new ONNX builder is a new model.
BUILDER_VERSION = f"t1.{onnx_models.BUILDER_VERSION}"

_WEIGHT_QMAX = 127  # TFLite's symmetric int8 weights: [-127, 127], zero point 0
_OP = tflite.BuiltinOperator
_TYPE = tflite.TensorType
_OPTIONS = tflite.BuiltinOptions
_ACT = tflite.ActivationFunctionType
_PAD = tflite.Padding
_FUSED = {"none": _ACT.NONE, "relu": _ACT.RELU, "relu6": _ACT.RELU6}


# --------------------------------------------------------------- public API
def model_input_shape(sig: OpSignature) -> tuple[int, ...]:
    """Shape of every model input: NHWC, except an fc's flat (n, c_in)."""
    return (sig.n, sig.c_in) if sig.kind == "fc" else (sig.n, sig.h, sig.w, sig.c_in)


def model_output_shape(sig: OpSignature) -> tuple[int, ...]:
    """Shape of the model output: NHWC of ``sig.output_shape``, except an fc's flat (n, c_out)."""
    if sig.kind == "fc":
        return (sig.n, sig.c_out)
    n, c, h, w = sig.output_shape
    return (n, h, w, c)


def make_tflite_inputs(sig: OpSignature, seed: int = 0) -> dict[str, np.ndarray]:
    """The feed of :func:`onnx_models.make_inputs` (same values, same names), in NHWC."""
    feed = onnx_models.make_inputs(sig, seed)
    return {name: np.ascontiguousarray(_to_nhwc(value)) for name, value in feed.items()}


def build_tflite(sig: OpSignature, seed: int = 0) -> bytes:
    """The serialized ``.tflite`` model of ``sig`` (fp32 or full-integer int8)."""
    weights = _onnx_weights(sig, seed)
    ranges = onnx_models._calibrate(sig, seed) if sig.dtype == "int8" else None
    graph = _Graph(sig, seed, weights, ranges)
    names = onnx_models.model_input_names(sig)
    inputs = [graph.input(name, model_input_shape(sig)) for name in names]
    graph.output(_GRAPHS[sig.kind](graph, sig, *inputs))
    return graph.finish()


def equals_onnx(sig: OpSignature) -> bool:
    """Whether the fp32 model computes the ONNX model's function (up to float rounding).

    False only for an avgpool whose symmetric padding needs an explicit PAD
    (see the module docstring): its border windows count the padding.
    """
    if sig.kind != "avgpool":
        return True
    return _padding_mode(sig.h, sig.w, sig.kernel, sig.stride, sig.padding) is not None


def tflite_model_file(sig: OpSignature, seed: int = 0, cache: Path | None = None) -> Path:
    """Path of the serialized model in the cache, building and writing it if absent."""
    return onnx_models.cached_file(cache, "tflite", f"{sig.digest}-s{seed}-{BUILDER_VERSION}.tflite",
                                   lambda: build_tflite(sig, seed))


def build_network_tflite(units: Sequence[OpSignature], seed: int = 0,
                         parameters: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> bytes:
    """The whole network of chained fp32 ``units`` as one ``.tflite`` model: the twin of
    :func:`onnx_models.build_network` with the same ``units``, ``seed`` (and ``parameters``).

    Input ``x`` (NHWC of the first unit's input), output ``y``.  Each unit is
    the graph of its single-operator model; a global_avgpool's (n, 1, 1, c)
    output reaches an fc through a RESHAPE to (n, c) (the ONNX Flatten).  The
    weights are the ONNX network's, read out of it in Conv/Gemm order and
    transposed to TFLite layouts, so both files compute the same function on
    the same input (transposed NCHW -> NHWC), up to float rounding; except an
    avgpool unit that needs an explicit PAD (see the module docstring,
    :func:`equals_onnx`).  The checks and their errors are build_network's
    (:class:`InvalidSignature`: empty, int8 or two-input units, shapes that do
    not chain).  Deterministic: same units and seed, same bytes.
    """
    units = list(units)
    model = onnx_models.build_network(units, seed, parameters)  # validates the chain
    weights = _conv_gemm_weights(model)
    meta = {key: value for key, value in ((p.key, p.value) for p in model.metadata_props)
            if key in ("units", "units_sha256")}
    meta["description"] = f"network of {len(units)} units"
    graph = _Graph(None, seed, weights, None, meta)
    x = graph.input("x", model_input_shape(units[0]))
    shape = model_input_shape(units[0])
    for sig in units:
        wanted = model_input_shape(sig)
        if sig.kind == "fc" and len(shape) == 4 and shape[1:3] == (1, 1):
            new_shape = graph.const("shape", np.array(wanted, np.int32), _TYPE.INT32)
            x = graph.op(_OP.RESHAPE, [x, new_shape], wanted, tied=True, version=1)
            shape = wanted
        x = _GRAPHS[sig.kind](graph, sig, x)
        shape = model_output_shape(sig)
    if graph._weights:
        raise AssertionError(f"{len(graph._weights)} ONNX weights left over: the graphs diverged")
    graph.output(x)
    return graph.finish()


def write_network(units: Sequence[OpSignature], path: str | Path, seed: int = 0,
                  parameters: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> Path:
    """Write :func:`build_network_tflite` of ``units`` to ``path`` (atomically) and return the path.

    A search space's network: ``write_network(space.signatures(genes), "net.tflite")``,
    the LiteRT twin of ``space.export_onnx(genes, "net.onnx")`` (same seed, same weights).
    """
    from harness.atomic import write_atomically

    data = build_network_tflite(units, seed, parameters)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: tmp.write_bytes(data))
    return path


def network_input(units: Sequence[OpSignature], seed: int = 0) -> np.ndarray:
    """A deterministic NHWC input of a network, uniform in [-1, 1) (the NCHW ONNX input is its transpose)."""
    shape = model_input_shape(list(units)[0])
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=shape).astype(np.float32)


# ------------------------------------------------------ flatbuffer writing


# ----------------------------------------------------------- graph builder
class _Graph:
    """Builds one model's ops; the methods mirror ``onnx_models._Builder``.

    ``quant`` marks the tensors that the ONNX builder quantizes, in the same
    order, so the k-th one takes the k-th calibrated range.  In an fp32 model
    (``ranges`` None) it only records the tensor.
    """

    def __init__(self, sig: OpSignature | None, seed: int, weights: list[tuple[np.ndarray, np.ndarray]],
                 ranges: list[tuple[float, float]] | None, meta: dict[str, str] | None = None) -> None:
        # A single-op model is described by its signature; a network by ``meta`` (sig None).
        meta = {"signature": sig.key} if sig is not None else dict(meta or {})
        meta.update({"seed": str(seed), "builder_version": BUILDER_VERSION})
        self.model = FlatModel(sig.key if sig is not None else meta.get("description", "network"),
                                {"chameleon": json.dumps(meta, sort_keys=True)})
        self.int8 = ranges is not None
        self.act_type = _TYPE.INT8 if self.int8 else _TYPE.FLOAT32
        self._weights = list(weights)
        self._ranges = list(ranges or [])
        self._tied: set[int] = set()  # tensors whose qparams are their input's
        self.quant_points: set[int] = set()
        self._counter = 0

    # ---- tensors
    def name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def tensor(self, prefix: str, shape: tuple[int, ...], tied_to: int | None = None) -> int:
        """A new activation tensor; ``tied_to`` gives it that tensor's qparams (int8)."""
        t = self.model.add_tensor(self.name(prefix), shape, self.act_type)
        if self.int8 and tied_to is not None:
            self.model.tensors[t].quant = self.model.tensors[tied_to].quant
            self._tied.add(t)
        return t

    def const(self, prefix: str, array: np.ndarray, type: int, quant: Quant | None = None) -> int:
        return self.model.add_tensor(self.name(prefix), array.shape, type, array, quant)

    def shape(self, t: int) -> tuple[int, ...]:
        return self.model.tensors[t].shape

    def scale(self, t: int) -> float:
        return float(self.model.tensors[t].quant.scale[0])

    # ---- quantization points
    def quant(self, t: int) -> int:
        if self.int8:
            low, high = self._ranges.pop(0)
            if t not in self._tied:  # pooling / reshape outputs keep their input's qparams
                scale, zero_point = onnx_models._activation_qparams(low, high)
                # The ONNX model's uint8 zero point, shifted to int8: the same real grid.
                self.model.tensors[t].quant = Quant(np.array([scale], np.float32),
                                                     np.array([zero_point - 128], np.int64))
        self.quant_points.add(t)
        return t

    def quantized(self, t: int) -> int:
        return t if t in self.quant_points else self.quant(t)

    # ---- graph ends
    def input(self, name: str, shape: tuple[int, ...]) -> int:
        x = self.model.add_tensor(name, shape, _TYPE.FLOAT32)
        self.model.inputs.append(x)
        if not self.int8:
            return self.quant(x)
        q = self.tensor(f"{name}_int8_", shape)
        self.model.add_operator(_OP.QUANTIZE, [x], [q], version=1)
        return self.quant(q)

    def output(self, t: int) -> None:
        if self._ranges:
            raise AssertionError(f"{len(self._ranges)} calibrated ranges left over: the graph no longer mirrors the ONNX one")
        if self.int8:
            y = self.model.add_tensor("y", self.shape(t), _TYPE.FLOAT32)
            self.model.add_operator(_OP.DEQUANTIZE, [t], [y], version=2)
            t = y
        else:
            self.model.tensors[t].name = "y"
        self.model.outputs.append(t)

    def finish(self) -> bytes:
        unquantized = [t.name for t in self.model.tensors if t.type == _TYPE.INT8 and t.quant is None]
        if unquantized:
            raise AssertionError(f"int8 tensors without quantization parameters: {unquantized}")
        return self.model.finish()

    # ---- ops
    def op(self, builtin: int, inputs: list[int], shape: tuple[int, ...], *, int8_version: int = 2,
           options_type: int = _OPTIONS.NONE, options: tuple = (), tied: bool = False, version: int | None = None) -> int:
        out = self.tensor(_OP_NAMES[builtin] + "_", shape, tied_to=inputs[0] if tied else None)
        if version is None:
            version = int8_version if self.int8 else 1
        self.model.add_operator(builtin, inputs, [out], version, options_type, options)
        return out

    def activation(self, x: int, activation: str) -> int:
        """A standalone activation op (``none`` returns ``x``)."""
        if activation == "relu":
            return self.op(_OP.RELU, [x], self.shape(x))
        if activation == "relu6":
            return self.op(_OP.RELU6, [x], self.shape(x))
        if activation == "hardswish":
            # Like the ONNX model: the op before it gets its own quantization point.
            return self.op(_OP.HARD_SWISH, [self.quantized(x)], self.shape(x), int8_version=1)
        return x

    def _unfused(self, activation: str) -> str:
        """The part of ``activation`` an op cannot fuse: hardswish."""
        return "hardswish" if activation == "hardswish" else "none"

    def pad(self, x: int, padding: int) -> int:
        n, h, w, c = self.shape(x)
        paddings = self.const("paddings", np.array([[0, 0], [padding, padding], [padding, padding], [0, 0]], np.int32),
                              _TYPE.INT32)
        return self.op(_OP.PAD, [x, paddings], (n, h + 2 * padding, w + 2 * padding, c), tied=True)

    def spatial_input(self, x: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
        """``x`` (padded when needed) and the TFLite padding that reproduces ONNX's symmetric ``padding``."""
        _, h, w, _ = self.shape(x)
        mode = _padding_mode(h, w, kernel, stride, padding)
        if mode is None:
            return self.pad(x, padding), _PAD.VALID
        return x, mode

    def conv(self, x: int, c_in: int, c_out: int, kernel: int = 1, stride: int = 1,
             padding: int = 0, groups: int = 1, activation: str = "none") -> int:
        """CONV_2D / DEPTHWISE_CONV_2D with bias, relu/relu6 fused, then its quantization point."""
        w, b = self.next_weights((c_out, c_in // groups, kernel, kernel))
        n, h, wd, _ = self.shape(x)
        x_in, mode = self.spatial_input(x, kernel, stride, padding)
        out_shape = (n, (h + 2 * padding - kernel) // stride + 1, (wd + 2 * padding - kernel) // stride + 1, c_out)
        fused = _FUSED.get(activation, _ACT.NONE)
        if groups == c_in and groups > 1:
            filt = w.transpose(1, 2, 3, 0)  # (c_out, 1, k, k) -> 1HWO; channel o reads input o // multiplier
            w_t, b_t = self.weights(filt, b, x, axis=3)
            y = self.op(_OP.DEPTHWISE_CONV_2D, [x_in, w_t, b_t], out_shape, int8_version=3,
                        options_type=_OPTIONS.DepthwiseConv2DOptions,
                        options=depthwise_options(mode, stride, c_out // c_in, fused))
        else:
            filt = w.transpose(0, 2, 3, 1)  # OIHW -> OHWI (I = c_in / groups)
            w_t, b_t = self.weights(filt, b, x, axis=0)
            # The converter marks grouped convolutions as version 6.
            y = self.op(_OP.CONV_2D, [x_in, w_t, b_t], out_shape, int8_version=3,
                        version=6 if groups > 1 else None,
                        options_type=_OPTIONS.Conv2DOptions, options=conv_options(mode, stride, fused))
        return self.quant(self.activation(y, self._unfused(activation)))

    def gemm(self, x: int, c_in: int, c_out: int, activation: str) -> int:
        w, b = self.next_weights((c_out, c_in))
        w_t, b_t = self.weights(w, b, x, axis=None)
        y = self.op(_OP.FULLY_CONNECTED, [x, w_t, b_t], (self.shape(x)[0], c_out), int8_version=4,
                    options_type=_OPTIONS.FullyConnectedOptions,
                    options=fc_options(_FUSED.get(activation, _ACT.NONE)))
        return self.quant(self.activation(y, self._unfused(activation)))

    def add(self, a: int, b: int, activation: str = "none") -> int:
        y = self.op(_OP.ADD, [a, b], self.shape(a), options_type=_OPTIONS.AddOptions,
                    options=add_options(_FUSED.get(activation, _ACT.NONE)))
        return self.quant(self.activation(y, self._unfused(activation)))

    def channel_shuffle(self, x: int, channels: int, groups: int, h: int, w: int) -> int:
        """RESHAPE to (n, h·w, groups, channels/groups), TRANSPOSE the last two axes, RESHAPE back (NHWC): the
        ONNX model's shuffle.  Every output keeps its input's qparams, as the converter writes these ops; one
        quantization point, as in the ONNX model."""
        n = self.shape(x)[0]
        split = (n, h * w, groups, channels // groups)
        y = self.op(_OP.RESHAPE, [x, self.const("shape", np.array(split, np.int32), _TYPE.INT32)], split,
                    tied=True, version=1)
        perm = self.const("perm", np.array([0, 1, 3, 2], np.int32), _TYPE.INT32)
        y = self.op(_OP.TRANSPOSE, [y, perm], (n, h * w, channels // groups, groups), tied=True)
        whole = (n, h, w, channels)
        y = self.op(_OP.RESHAPE, [y, self.const("shape", np.array(whole, np.int32), _TYPE.INT32)], whole,
                    tied=True, version=1)
        return self.quant(y)

    # ---- the steps of a squeeze-and-excite (block_graphs.squeeze_excite)
    def global_avgpool(self, x: int) -> int:
        n, _, _, c = self.shape(x)
        axes = self.const("axes", np.array([1, 2], np.int32), _TYPE.INT32)
        return self.quant(self.op(_OP.MEAN, [x, axes], (n, 1, 1, c), options_type=_OPTIONS.ReducerOptions,
                                  options=reducer_options(True)))

    def hard_sigmoid(self, x: int) -> int:
        """relu6(x + 3) / 6 as the converter writes it: ADD (RELU6 fused), then MUL by 1/6.

        The ONNX model's HardSigmoid is one quantization point; the ADD's output here is an extra
        int8 tensor, whose range follows from its input's: clip(range + 3, 0, 6).
        """
        x = self.quantized(x)
        shape = self.shape(x)
        shifted = self.op(_OP.ADD, [x, self.scalar(3.0)], shape, options_type=_OPTIONS.AddOptions,
                          options=add_options(_ACT.RELU6))
        if self.int8:
            low, high = self.real_range(x)
            scale, zero_point = onnx_models._activation_qparams(min(max(low + 3.0, 0.0), 6.0),
                                                                min(max(high + 3.0, 0.0), 6.0))
            self.model.tensors[shifted].quant = Quant(np.array([scale], np.float32), np.array([zero_point - 128], np.int64))
        y = self.op(_OP.MUL, [shifted, self.scalar(1.0 / 6.0)], shape, options_type=_OPTIONS.MulOptions,
                    options=mul_options(_ACT.NONE))
        return self.quant(y)

    def mul(self, x: int, scale: int) -> int:
        return self.quant(self.op(_OP.MUL, [x, scale], self.shape(x), options_type=_OPTIONS.MulOptions,
                                  options=mul_options(_ACT.NONE)))

    def scalar(self, value: float) -> int:
        """A constant of shape [1]: float32, or int8 at ±127 with the scale that makes it ``value``."""
        if not self.int8:
            return self.const("c", np.array([value], np.float32), _TYPE.FLOAT32)
        quant = Quant(np.array([abs(value) / _WEIGHT_QMAX], np.float32), np.zeros(1, np.int64))
        return self.const("c", np.array([_WEIGHT_QMAX if value > 0 else -_WEIGHT_QMAX], np.int8), _TYPE.INT8, quant)

    def real_range(self, t: int) -> tuple[float, float]:
        """The real values an int8 tensor can hold: its quantization grid's ends."""
        quant = self.model.tensors[t].quant
        scale, zero_point = float(quant.scale[0]), int(quant.zero_point[0])
        return (-128 - zero_point) * scale, (127 - zero_point) * scale

    # ---- weights
    def next_weights(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The next (weight, bias) of the ONNX model, in ONNX layout."""
        w, b = self._weights.pop(0)
        if w.shape != shape:
            raise AssertionError(f"ONNX weight {w.shape} where {shape} was expected: the graphs diverged")
        return w, b

    def weights(self, w: np.ndarray, b: np.ndarray, x: int, axis: int | None) -> tuple[int, int]:
        """Weight and bias tensors (TFLite layout) for an op reading ``x``.

        int8: symmetric weights in [-127, 127], per channel along ``axis`` (per
        tensor when None), int32 bias with scale input_scale * weight_scale.
        """
        if not self.int8:
            return self.const("w", w.astype(np.float32), _TYPE.FLOAT32), self.const("b", b.astype(np.float32), _TYPE.FLOAT32)
        if axis is None:
            absmax = np.array([np.abs(w).max()])
            broadcast = absmax
        else:
            moved = np.moveaxis(w, axis, 0)
            absmax = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1)
            broadcast = absmax.reshape([-1 if i == axis else 1 for i in range(w.ndim)])
        w_scale = np.where(absmax > 0, absmax / _WEIGHT_QMAX, 1.0).astype(np.float32)
        scale_b = np.where(broadcast > 0, broadcast / _WEIGHT_QMAX, 1.0).astype(np.float32)
        w_q = np.clip(np.round(w / scale_b), -_WEIGHT_QMAX, _WEIGHT_QMAX).astype(np.int8)
        b_scale = (np.float32(self.scale(x)) * w_scale).astype(np.float32)
        int32 = np.iinfo(np.int32)
        b_q = np.clip(np.round(b.astype(np.float64) / b_scale), int32.min, int32.max).astype(np.int32)
        zeros = np.zeros(w_scale.shape, np.int64)
        w_t = self.const("w", w_q, _TYPE.INT8, Quant(w_scale, zeros, 0 if axis is None else axis))
        b_t = self.const("b", b_q, _TYPE.INT32, Quant(b_scale, zeros, 0))
        return w_t, b_t


_OP_NAMES = {code: name.lower() for name, code in vars(_OP).items() if not name.startswith("_")}


def _padding_mode(h: int, w: int, kernel: int, stride: int, padding: int) -> int | None:
    """VALID or SAME when it equals ONNX's symmetric ``padding``; None when an explicit PAD is needed."""
    if padding == 0:
        return _PAD.VALID
    for size in (h, w):
        onnx_out = (size + 2 * padding - kernel) // stride + 1
        same_out = -(-size // stride)
        pad_before = max((same_out - 1) * stride + kernel - size, 0) // 2
        if same_out != onnx_out or pad_before != padding:
            return None
    return _PAD.SAME


# ------------------------------------------------------------ kind graphs
# Each mirrors the function of the same name in onnx_models.
def _avgpool_graph(g: _Graph, sig: OpSignature, x: int) -> int:
    x_in, mode = g.spatial_input(x, sig.kernel, sig.stride, sig.padding)
    n, c = sig.n, sig.c_in
    y = g.op(_OP.AVERAGE_POOL_2D, [x_in], (n, sig.h_out, sig.w_out, c), tied=True,
             options_type=_OPTIONS.Pool2DOptions, options=pool_options(mode, sig.stride, sig.kernel))
    return g.quant(y)


def _global_avgpool_graph(g: _Graph, sig: OpSignature, x: int) -> int:
    axes = g.const("axes", np.array([1, 2], np.int32), _TYPE.INT32)
    y = g.op(_OP.MEAN, [x, axes], (sig.n, 1, 1, sig.c_in), options_type=_OPTIONS.ReducerOptions,
             options=reducer_options(True))
    return g.quant(y)


def _activation_graph(g: _Graph, sig: OpSignature, x: int) -> int:
    return g.quant(g.activation(x, sig.activation))


def _identity_graph(g: _Graph, sig: OpSignature, x: int) -> int:
    shape = g.shape(x)
    new_shape = g.const("shape", np.array(shape, np.int32), _TYPE.INT32)
    return g.quant(g.op(_OP.RESHAPE, [x, new_shape], shape, tied=True, version=1))


_GRAPHS: dict[str, Callable[..., int]] = {
    **block_graphs.SHARED_GRAPHS,
    **block_graphs.SE_GRAPHS,
    **block_graphs.GROUPED_GRAPHS,
    "avgpool": _avgpool_graph,
    "global_avgpool": _global_avgpool_graph,
    "activation": _activation_graph,
    "identity": _identity_graph,
}


# --------------------------------------------------------------- helpers
def _onnx_weights(sig: OpSignature, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) of every Conv / Gemm of the fp32 ONNX model, in node order (ONNX layouts)."""
    return _conv_gemm_weights(onnx_models.build_model(sig.replace(dtype="fp32"), seed))


def _conv_gemm_weights(model) -> list[tuple[np.ndarray, np.ndarray]]:
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return [(init[node.input[1]], init[node.input[2]])
            for node in model.graph.node if node.op_type in ("Conv", "Gemm")]


def _to_nhwc(array: np.ndarray) -> np.ndarray:
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array
