"""Single-operator TFLite models, run for real in LiteRT and compared with their ONNX twins."""

from __future__ import annotations

import functools
import json

import numpy as np
import onnxruntime as ort
import pytest
import tflite
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from harness.models import onnx_models
from harness.models import tflite_models
from harness.signature import KINDS, make_signature
from harness.models.tflite_models import build_tflite, make_tflite_inputs, tflite_model_file

# (signature, the fp32 model's ops): every kind, every padding path.
CASES = [
    # stride 2 on an even size: TFLite's SAME pads after only, so PAD + VALID
    (make_signature("conv2d", c_in=3, h=12, w=12, c_out=8, kernel=3, stride=2, activation="relu6"), "PAD CONV_2D"),
    # stride 2 on an odd size: SAME is the symmetric padding
    (make_signature("conv2d", c_in=3, h=11, w=11, c_out=8, kernel=3, stride=2, activation="relu"), "CONV_2D"),
    (make_signature("conv2d", c_in=8, h=7, w=9, c_out=12, kernel=3, groups=4, activation="hardswish"), "CONV_2D HARD_SWISH"),
    (make_signature("conv2d", c_in=4, h=9, w=9, c_out=6, kernel=5, stride=2, padding=1, activation="relu"), "PAD CONV_2D"),
    (make_signature("conv2d", c_in=4, h=6, w=5, c_out=4, kernel=2, padding=1), "PAD CONV_2D"),
    (make_signature("depthwise_conv", c_in=8, h=8, w=8, kernel=3, stride=2, activation="relu"), "PAD DEPTHWISE_CONV_2D"),
    (make_signature("depthwise_conv", c_in=8, h=7, w=7, kernel=5, activation="relu6"), "DEPTHWISE_CONV_2D"),
    (make_signature("pointwise_conv", c_in=8, h=6, w=6, c_out=16), "CONV_2D"),
    (make_signature("inverted_residual", c_in=8, h=8, w=8, c_out=8, kernel=3, mid_channels=48),
     "CONV_2D DEPTHWISE_CONV_2D CONV_2D ADD"),
    (make_signature("inverted_residual", c_in=8, h=8, w=8, c_out=16, kernel=3, stride=2, mid_channels=8),
     "PAD DEPTHWISE_CONV_2D CONV_2D"),
    (make_signature("inverted_residual", c_in=8, h=7, w=7, c_out=12, kernel=5, mid_channels=24, activation="hardswish"),
     "CONV_2D HARD_SWISH DEPTHWISE_CONV_2D HARD_SWISH CONV_2D"),
    (make_signature("bottleneck", c_in=16, h=8, w=8, c_out=16, mid_channels=4), "CONV_2D CONV_2D CONV_2D ADD"),
    (make_signature("bottleneck", c_in=8, h=8, w=8, c_out=16, stride=2, mid_channels=8, groups=2),
     "CONV_2D PAD CONV_2D CONV_2D CONV_2D ADD"),
    (make_signature("fc", c_in=32, c_out=10, activation="relu"), "FULLY_CONNECTED"),
    (make_signature("fc", n=2, c_in=24, c_out=7), "FULLY_CONNECTED"),
    # the one inexact case: an explicit PAD is counted by the pooling (see tflite_models)
    (make_signature("avgpool", c_in=8, h=8, w=8, kernel=3, stride=2, padding=1), "PAD AVERAGE_POOL_2D"),
    (make_signature("avgpool", c_in=8, h=7, w=7, kernel=3, stride=2, padding=1), "AVERAGE_POOL_2D"),
    (make_signature("avgpool", c_in=4, h=6, w=6, kernel=2, stride=2), "AVERAGE_POOL_2D"),
    (make_signature("global_avgpool", c_in=8, h=7, w=7), "MEAN"),
    (make_signature("add", c_in=8, h=6, w=6, activation="relu"), "ADD"),
    (make_signature("add", n=2, c_in=4, h=5, w=5, activation="hardswish"), "ADD HARD_SWISH"),
    (make_signature("activation", c_in=8, h=6, w=6, activation="relu"), "RELU"),
    (make_signature("activation", c_in=8, h=6, w=6, activation="relu6"), "RELU6"),
    (make_signature("activation", c_in=8, h=6, w=6, activation="hardswish"), "HARD_SWISH"),
    (make_signature("identity", c_in=8, h=4, w=4), "RESHAPE"),
]
SIGNATURES = [sig for sig, _ in CASES]
BOTH_DTYPES = [sig.replace(dtype=dtype) for sig in SIGNATURES for dtype in ("fp32", "int8")]
WEIGHTED_KINDS = {"conv2d", "depthwise_conv", "pointwise_conv", "inverted_residual", "bottleneck", "fc"}
OP_NAMES = {code: name for name, code in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}
TYPE_NAMES = {code: name for name, code in vars(tflite.TensorType).items() if not name.startswith("_")}


def _id(sig) -> str:
    return f"{sig.kind}-{sig.dtype}-{sig.digest[:6]}"


def test_cases_cover_every_kind_and_both_paddings():
    assert {sig.kind for sig in SIGNATURES} == set(KINDS)
    assert any(not tflite_models.equals_onnx(sig) for sig in SIGNATURES)


# ------------------------------------------------------------------ helpers
@functools.cache
def _tflite(sig, seed: int = 0) -> bytes:
    return build_tflite(sig, seed)


def _run_tflite(model: bytes, sig, seed: int = 0, resolver=OpResolverType.AUTO) -> np.ndarray:
    interpreter = Interpreter(model_content=model, num_threads=1, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    feed = make_tflite_inputs(sig, seed)
    details = interpreter.get_input_details()
    assert [d["name"] for d in details] == list(feed)
    for detail in details:
        interpreter.set_tensor(detail["index"], feed[detail["name"]])
    interpreter.invoke()
    (output,) = interpreter.get_output_details()
    assert output["name"] == "y"
    return interpreter.get_tensor(output["index"])


@functools.cache
def _onnx_model(sig, seed: int = 0):
    return onnx_models.build_model(sig, seed)


def _run_onnx_nhwc(sig, seed: int = 0) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(_onnx_model(sig, seed).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    (out,) = session.run(None, onnx_models.make_inputs(sig, seed))
    return out.transpose(0, 2, 3, 1) if out.ndim == 4 else out


def _nhwc_shape(sig) -> tuple[int, ...]:
    n, c, h, w = sig.output_shape
    return (n, c) if sig.kind == "fc" else (n, h, w, c)


def _avgpool_counting_padding(sig, seed: int = 0) -> np.ndarray:
    """The avgpool with zero padding counted in every window's divisor (count_include_pad=1), NHWC."""
    (x,) = make_tflite_inputs(sig, seed).values()
    p, k, s = sig.padding, sig.kernel, sig.stride
    padded = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))[:, ::s, ::s]
    return windows.mean(axis=(-1, -2))


def _expected_fp32(sig, seed: int = 0) -> np.ndarray:
    """What the fp32 TFLite model computes: the ONNX output, but for an avgpool whose padding is a PAD op."""
    sig = sig.replace(dtype="fp32")
    return _run_onnx_nhwc(sig, seed) if tflite_models.equals_onnx(sig) else _avgpool_counting_padding(sig, seed)


class _Reader:
    """The model read back through the ``tflite`` package's flatbuffer reader classes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.model = tflite.Model.GetRootAsModel(data, 0)
        self.graph = self.model.Subgraphs(0)

    def tensor(self, index: int) -> tflite.Tensor:
        return self.graph.Tensors(index)

    def array(self, index: int) -> np.ndarray | None:
        t = self.tensor(index)
        raw = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(raw, int):  # no data
            return None
        dtype = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.INT8: np.int8,
                 tflite.TensorType.INT32: np.int32}[t.Type()]
        return raw.view(dtype).reshape(t.ShapeAsNumpy())

    def ops(self) -> list[tuple[str, int, tflite.Operator]]:
        out = []
        for i in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            out.append((OP_NAMES[code.BuiltinCode()], code.Version(), op))
        return out

    def options(self, op: tflite.Operator, cls):
        table = op.BuiltinOptions()
        options = cls()
        options.Init(table.Bytes, table.Pos)
        return options

    def quant(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        q = self.tensor(index).Quantization()
        return q.ScaleAsNumpy(), q.ZeroPointAsNumpy(), q.QuantizedDimension()


def _onnx_weights(sig) -> list[tuple[np.ndarray, np.ndarray]]:
    model = _onnx_model(sig.replace(dtype="fp32"))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return [(init[n.input[1]], init[n.input[2]]) for n in model.graph.node if n.op_type in ("Conv", "Gemm")]


def _tflite_layout(w: np.ndarray, depthwise: bool) -> np.ndarray:
    if w.ndim == 2:
        return w  # fc: [out, in] in both
    return w.transpose(1, 2, 3, 0) if depthwise else w.transpose(0, 2, 3, 1)


# ---------------------------------------------------------- every signature
@pytest.mark.parametrize("sig", BOTH_DTYPES, ids=_id)
def test_model_runs_in_litert_with_the_nhwc_signature_shape(sig):
    model = _tflite(sig)
    assert model[4:8] == b"TFL3"
    interpreter = Interpreter(model_content=model, num_threads=1)
    interpreter.allocate_tensors()
    inputs = interpreter.get_input_details()
    assert [d["name"] for d in inputs] == onnx_models.model_input_names(sig)
    for detail in inputs:
        assert detail["dtype"] == np.float32
        assert tuple(detail["shape"]) == tflite_models.model_input_shape(sig)
    out = _run_tflite(model, sig)
    assert out.dtype == np.float32
    assert out.shape == _nhwc_shape(sig) == tflite_models.model_output_shape(sig)
    assert np.isfinite(out).all()
    if out.size > 1:
        assert out.std() > 0


@pytest.mark.parametrize("resolver", [OpResolverType.AUTO, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES],
                         ids=["xnnpack", "builtin"])
@pytest.mark.parametrize("sig", SIGNATURES, ids=_id)
def test_fp32_output_equals_the_onnx_model(sig, resolver):
    got = _run_tflite(_tflite(sig, 3), sig, 3, resolver)
    expected = _expected_fp32(sig, 3)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * max(np.abs(expected).max(), 1.0))


def test_padded_avgpool_on_an_even_size_differs_from_onnx_only_in_border_windows():
    """TFLite's SAME pads after only; the explicit PAD's zeros count in the border averages."""
    sig = make_signature("avgpool", c_in=8, h=8, w=8, kernel=3, stride=2, padding=1)
    assert not tflite_models.equals_onnx(sig)
    got, onnx_out = _run_tflite(_tflite(sig), sig), _run_onnx_nhwc(sig)
    # Windows 1.. start inside the input: no padding, identical averages.
    np.testing.assert_allclose(got[:, 1:, 1:], onnx_out[:, 1:, 1:], rtol=1e-5, atol=1e-6)
    # The first row / column windows hold 6 (corner: 4) real values of 9.
    np.testing.assert_allclose(got[:, 0, 1:], onnx_out[:, 0, 1:] * 6 / 9, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, 0, 0], onnx_out[:, 0, 0] * 4 / 9, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sig", [s.replace(dtype="int8") for s in SIGNATURES], ids=_id)
def test_int8_output_is_close_to_onnx_int8_and_to_fp32(sig):
    int8 = _run_tflite(_tflite(sig), sig).ravel().astype(np.float64)
    fp32 = _expected_fp32(sig).ravel()
    references = [fp32]
    if tflite_models.equals_onnx(sig):
        references.append(_run_onnx_nhwc(sig).ravel().astype(np.float64))  # the ONNX QDQ model
    for reference in references:
        assert np.linalg.norm(int8 - reference) / np.linalg.norm(reference) < 0.1
        if reference.size > 1:
            assert np.corrcoef(reference, int8)[0, 1] > 0.95


@pytest.mark.parametrize("case", CASES, ids=[_id(sig) for sig, _ in CASES])
def test_ops_and_versions_are_the_converters(case):
    sig, expected = case
    fp32 = _Reader(_tflite(sig))
    assert " ".join(name for name, _, _ in fp32.ops()) == expected
    assert all(version == (6 if name == "CONV_2D" and _grouped(fp32, op) else 1) for name, version, op in fp32.ops())

    int8 = _Reader(_tflite(sig.replace(dtype="int8")))
    names = [name for name, _, _ in int8.ops()]
    n_inputs = len(onnx_models.model_input_names(sig))
    assert names == ["QUANTIZE"] * n_inputs + expected.split() + ["DEQUANTIZE"]
    # op_version.cc's versions for int8 kernels (the Hexagon delegate checks them).
    int8_versions = {"QUANTIZE": 1, "DEQUANTIZE": 2, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4,
                     "ADD": 2, "AVERAGE_POOL_2D": 2, "MEAN": 2, "PAD": 2, "RELU": 2, "RELU6": 2,
                     "HARD_SWISH": 1, "RESHAPE": 1}
    for name, version, op in int8.ops():
        assert version == (6 if name == "CONV_2D" and _grouped(int8, op) else int8_versions[name]), name


def _grouped(reader: _Reader, op) -> bool:
    x, w = (reader.tensor(i).ShapeAsNumpy() for i in op.InputsAsNumpy()[:2])
    return w[3] != x[3]


def test_options_fuse_relu_and_carry_padding_stride_and_groups():
    sig = CASES[0][0]  # conv 3x3 stride 2, relu6, on 12x12: PAD + VALID
    reader = _Reader(_tflite(sig))
    (_, _, pad), (_, _, conv) = reader.ops()
    assert reader.array(pad.InputsAsNumpy()[1]).tolist() == [[0, 0], [1, 1], [1, 1], [0, 0]]
    options = reader.options(conv, tflite.Conv2DOptions)
    assert (options.Padding(), options.StrideH(), options.StrideW()) == (tflite.Padding.VALID, 2, 2)
    assert options.FusedActivationFunction() == tflite.ActivationFunctionType.RELU6
    assert (options.DilationHFactor(), options.DilationWFactor()) == (1, 1)

    same = _Reader(_tflite(CASES[1][0]))
    ((_, _, conv),) = same.ops()
    options = same.options(conv, tflite.Conv2DOptions)
    assert options.Padding() == tflite.Padding.SAME
    assert options.FusedActivationFunction() == tflite.ActivationFunctionType.RELU

    grouped = _Reader(_tflite(CASES[2][0]))  # 8 -> 12 channels in 4 groups, hardswish unfused
    (_, version, conv), (name, _, _) = grouped.ops()
    assert version == 6 and name == "HARD_SWISH"
    assert tuple(grouped.tensor(conv.InputsAsNumpy()[1]).ShapeAsNumpy()) == (12, 3, 3, 2)
    assert grouped.options(conv, tflite.Conv2DOptions).FusedActivationFunction() == tflite.ActivationFunctionType.NONE

    depthwise = _Reader(_tflite(CASES[6][0]))
    ((_, _, op),) = depthwise.ops()
    options = depthwise.options(op, tflite.DepthwiseConv2DOptions)
    assert (options.Padding(), options.DepthMultiplier()) == (tflite.Padding.SAME, 1)
    assert options.FusedActivationFunction() == tflite.ActivationFunctionType.RELU6

    pool = _Reader(_tflite(make_signature("avgpool", c_in=8, h=7, w=7, kernel=3, stride=2, padding=1)))
    ((_, _, op),) = pool.ops()
    options = pool.options(op, tflite.Pool2DOptions)
    assert (options.Padding(), options.FilterHeight(), options.FilterWidth(), options.StrideH()) == (
        tflite.Padding.SAME, 3, 3, 2)

    add = _Reader(_tflite(make_signature("add", c_in=8, h=6, w=6, activation="relu")))
    ((_, _, op),) = add.ops()
    assert add.options(op, tflite.AddOptions).FusedActivationFunction() == tflite.ActivationFunctionType.RELU

    fc = _Reader(_tflite(make_signature("fc", c_in=32, c_out=10, activation="relu")))
    ((_, _, op),) = fc.ops()
    options = fc.options(op, tflite.FullyConnectedOptions)
    assert options.FusedActivationFunction() == tflite.ActivationFunctionType.RELU and not options.KeepNumDims()

    mean = _Reader(_tflite(make_signature("global_avgpool", c_in=8, h=7, w=7)))
    ((_, _, op),) = mean.ops()
    assert mean.options(op, tflite.ReducerOptions).KeepDims()
    assert mean.array(op.InputsAsNumpy()[1]).tolist() == [1, 2]


@pytest.mark.parametrize("sig", [s for s in SIGNATURES if s.kind in WEIGHTED_KINDS], ids=_id)
def test_fp32_weights_are_the_onnx_weights_in_tflite_layout(sig):
    reader = _Reader(_tflite(sig))
    computes = [op for name, _, op in reader.ops() if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    weights = _onnx_weights(sig)
    assert len(computes) == len(weights)
    for op, (w, b) in zip(computes, weights):
        depthwise = OP_NAMES[reader.model.OperatorCodes(op.OpcodeIndex()).BuiltinCode()] == "DEPTHWISE_CONV_2D"
        np.testing.assert_array_equal(reader.array(op.InputsAsNumpy()[1]), _tflite_layout(w, depthwise))
        np.testing.assert_array_equal(reader.array(op.InputsAsNumpy()[2]), b)


# ------------------------------------------------------------------- int8
@pytest.mark.parametrize("sig", [s.replace(dtype="int8") for s in SIGNATURES], ids=_id)
def test_int8_model_is_full_integer_with_a_float_interface(sig):
    reader = _Reader(_tflite(sig))
    graph = reader.graph
    ends = [*graph.InputsAsNumpy(), *graph.OutputsAsNumpy()]
    assert all(reader.tensor(i).Type() == tflite.TensorType.FLOAT32 for i in ends)
    for i in range(graph.TensorsLength()):
        if i in ends:
            continue
        t = reader.tensor(i)
        assert TYPE_NAMES[t.Type()] in ("INT8", "INT32"), t.Name()
        if t.Type() == tflite.TensorType.INT8:
            scale, zero_point, _ = reader.quant(i)
            assert (scale > 0).all() and ((-128 <= zero_point) & (zero_point <= 127)).all()
            if reader.array(i) is None:  # an activation: one scale, one zero point
                assert scale.shape == zero_point.shape == (1,)


@pytest.mark.parametrize("sig", [s.replace(dtype="int8") for s in SIGNATURES if s.kind in WEIGHTED_KINDS], ids=_id)
def test_int8_weights_are_symmetric_per_channel_with_int32_bias(sig):
    reader = _Reader(_tflite(sig))
    computes = [(name, op) for name, _, op in reader.ops() if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    weights = _onnx_weights(sig)
    assert len(computes) == len(weights)
    for (name, op), (w, b) in zip(computes, weights):
        x, w_index, b_index = op.InputsAsNumpy()
        w_q, b_q = reader.array(w_index), reader.array(b_index)
        assert w_q.dtype == np.int8 and b_q.dtype == np.int32
        assert reader.tensor(w_index).Type() == tflite.TensorType.INT8
        w_scale, w_zp, axis = reader.quant(w_index)
        assert not w_zp.any() and np.abs(w_q).max() <= 127
        fp32_w = _tflite_layout(w, name == "DEPTHWISE_CONV_2D")
        if name == "FULLY_CONNECTED":
            assert w_scale.shape == (1,)  # per tensor, the converter's default for dense layers
            per_channel = w_scale
        else:
            expected_axis = 3 if name == "DEPTHWISE_CONV_2D" else 0
            assert axis == expected_axis and w_scale.shape == (fp32_w.shape[axis],)
            per_channel = w_scale.reshape([-1 if i == axis else 1 for i in range(4)])
            # Symmetric over the full int8 range: every channel reaches +-127.
            assert (np.abs(np.moveaxis(w_q, axis, 0)).reshape(len(w_scale), -1).max(axis=1) == 127).all()
        # The int8 model quantizes the very weights of the fp32 (and ONNX) model.
        assert np.all(np.abs(w_q * per_channel - fp32_w) <= per_channel / 2 + 1e-7)
        x_scale, _, _ = reader.quant(x)
        b_scale, b_zp, _ = reader.quant(b_index)
        assert not b_zp.any()
        np.testing.assert_allclose(b_scale, x_scale[0] * w_scale, rtol=1e-6)
        np.testing.assert_allclose(b_q * b_scale, b, atol=float(b_scale.max()))


@pytest.mark.parametrize("sig", [s.replace(dtype="int8") for s in SIGNATURES], ids=_id)
def test_int8_activation_scales_are_the_onnx_qdq_scales_with_zero_point_shifted(sig):
    model = _onnx_model(sig)
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    onnx_qparams = {(float(init[n.input[1]]), int(init[n.input[2]]))
                    for n in model.graph.node if n.op_type == "QuantizeLinear"}
    reader = _Reader(_tflite(sig))
    activations = [i for i in range(reader.graph.TensorsLength())
                   if reader.tensor(i).Type() == tflite.TensorType.INT8 and reader.array(i) is None]
    assert activations
    for i in activations:
        scale, zero_point, _ = reader.quant(i)
        # uint8 zero point z in ONNX is int8 z - 128 here: the same real grid.
        assert (float(scale[0]), int(zero_point[0]) + 128) in onnx_qparams


# -------------------------------------------------------------- the builder
@pytest.mark.parametrize("sig", [SIGNATURES[0], SIGNATURES[8], SIGNATURES[15]], ids=_id)
def test_build_is_byte_identical_and_seeded(sig):
    for dtype in ("fp32", "int8"):
        sig = sig.replace(dtype=dtype)
        assert build_tflite(sig) == build_tflite(sig)
        assert build_tflite(sig, seed=1) != build_tflite(sig)


def test_make_tflite_inputs_are_the_onnx_inputs_in_nhwc():
    for sig in SIGNATURES:
        onnx_feed, feed = onnx_models.make_inputs(sig, seed=3), make_tflite_inputs(sig, seed=3)
        assert list(feed) == list(onnx_feed)
        for name, value in feed.items():
            assert value.dtype == np.float32 and value.flags.c_contiguous
            assert value.shape == tflite_models.model_input_shape(sig)
            expected = onnx_feed[name] if sig.kind == "fc" else onnx_feed[name].transpose(0, 2, 3, 1)
            np.testing.assert_array_equal(value, expected)


def test_identity_is_one_reshape_returning_its_input():
    sig = make_signature("identity", c_in=16, h=2, w=2)
    reader = _Reader(_tflite(sig))
    ((name, _, op),) = reader.ops()
    assert name == "RESHAPE"
    assert reader.array(op.InputsAsNumpy()[1]).tolist() == [1, 2, 2, 16]
    (x,) = make_tflite_inputs(sig).values()
    np.testing.assert_array_equal(_run_tflite(_tflite(sig), sig), x)


def test_model_header_description_and_metadata():
    sig = SIGNATURES[0].replace(dtype="int8")
    reader = _Reader(build_tflite(sig, seed=4))
    assert reader.model.Version() == tflite_models.SCHEMA_VERSION == 3
    assert reader.model.Description().decode() == sig.key
    assert reader.model.SubgraphsLength() == 1
    (entry,) = [reader.model.Metadata(i) for i in range(reader.model.MetadataLength())]
    assert entry.Name() == b"chameleon"
    meta = json.loads(bytes(reader.model.Buffers(entry.Buffer()).DataAsNumpy()))
    assert meta == {"signature": sig.key, "seed": "4", "builder_version": tflite_models.BUILDER_VERSION}
    assert reader.model.Buffers(0).DataLength() == 0  # the schema's empty sentinel buffer


def test_constant_buffers_are_16_byte_aligned():
    data = _tflite(SIGNATURES[8].replace(dtype="int8"))
    model = tflite.Model.GetRootAsModel(data, 0)
    checked = 0
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength():
            assert buffer._tab.Vector(buffer._tab.Offset(4)) % 16 == 0
            checked += 1
    assert checked > 5


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["conv2d", "depthwise_conv", "avgpool"]),
    c_in=st.sampled_from([2, 4]),
    c_out=st.sampled_from([2, 4, 6]),
    h=st.integers(3, 10),
    w=st.integers(3, 10),
    kernel=st.integers(1, 5),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    groups=st.sampled_from([1, 2]),
)
def test_any_padding_and_stride_matches_onnx(kind, c_in, c_out, h, w, kernel, stride, padding, groups):
    """The SAME / VALID / explicit-PAD choice reproduces ONNX's symmetric padding for every geometry."""
    kernel = min(kernel, h, w)
    padding = min(padding, kernel // 2 if kind == "avgpool" else kernel - 1)
    fields = {"c_in": c_in, "h": h, "w": w, "kernel": kernel, "stride": stride, "padding": padding}
    if kind == "conv2d":
        fields.update(c_out=c_out, groups=groups)
    sig = make_signature(kind, **fields)
    got = _run_tflite(build_tflite(sig), sig)
    expected = _expected_fp32(sig)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * max(np.abs(expected).max(), 1.0))


# -------------------------------------------------------------- the cache
def test_model_file_writes_once_then_reuses(tmp_path):
    sig = SIGNATURES[0]
    path = tflite_model_file(sig, seed=2, cache=tmp_path)
    assert path == tmp_path / "tflite" / f"{sig.digest}-s2-{tflite_models.BUILDER_VERSION}.tflite"
    assert path.read_bytes() == build_tflite(sig, seed=2)
    before = path.stat()
    again = tflite_model_file(sig, seed=2, cache=tmp_path)
    after = again.stat()
    assert again == path
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert tflite_model_file(sig, seed=3, cache=tmp_path) != path
    assert tflite_model_file(sig.replace(dtype="int8"), seed=2, cache=tmp_path) != path
    assert [p.name for p in (tmp_path / "tflite").iterdir() if p.name.startswith(".")] == []
    # The cached file is what LiteRT runs.
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()


def test_model_file_defaults_to_the_configured_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAMELEON_CACHE", str(tmp_path / "elsewhere"))
    path = tflite_model_file(SIGNATURES[7])
    assert path.parent == tmp_path / "elsewhere" / "tflite" and path.is_file()


def test_a_failed_write_leaves_no_model_and_no_temp_file(tmp_path, monkeypatch):
    def crash(src, dst):
        raise OSError("disk pulled out")

    monkeypatch.setattr(onnx_models.os, "replace", crash)
    with pytest.raises(OSError, match="disk pulled out"):
        tflite_model_file(SIGNATURES[7], cache=tmp_path)
    assert list((tmp_path / "tflite").iterdir()) == []
