"""Single-operator ONNX models, run for real in ONNX Runtime's CPU provider."""

from __future__ import annotations

import os
import threading

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from harness.models import onnx_models
from harness.models.onnx_models import build_model, make_inputs, model_file, model_input_names
from harness.signature import KINDS, make_signature

SIGNATURES = [
    make_signature("conv2d", c_in=3, h=12, w=12, c_out=8, kernel=3, stride=2, activation="relu6"),
    make_signature("conv2d", c_in=8, h=7, w=9, c_out=12, kernel=3, groups=4, activation="hardswish"),
    make_signature("conv2d", c_in=4, h=9, w=9, c_out=6, kernel=5, stride=2, padding=1, activation="relu"),
    make_signature("depthwise_conv", c_in=8, h=8, w=8, kernel=3, stride=2, activation="relu"),
    make_signature("pointwise_conv", c_in=8, h=6, w=6, c_out=16),
    make_signature("inverted_residual", c_in=8, h=8, w=8, c_out=8, kernel=3, mid_channels=48),
    make_signature("inverted_residual", c_in=8, h=8, w=8, c_out=16, kernel=3, stride=2, mid_channels=8),
    make_signature("inverted_residual", c_in=8, h=7, w=7, c_out=12, kernel=5, mid_channels=24, activation="hardswish"),
    make_signature("bottleneck", c_in=16, h=8, w=8, c_out=16, mid_channels=4),
    make_signature("bottleneck", c_in=8, h=8, w=8, c_out=16, stride=2, mid_channels=8, groups=2),
    make_signature("fc", c_in=32, c_out=10, activation="relu"),
    make_signature("fc", n=2, c_in=24, c_out=7),
    make_signature("avgpool", c_in=8, h=8, w=8, kernel=3, stride=2, padding=1),
    make_signature("avgpool", c_in=4, h=6, w=6, kernel=2, stride=2),
    make_signature("global_avgpool", c_in=8, h=7, w=7),
    make_signature("add", c_in=8, h=6, w=6, activation="relu"),
    make_signature("add", n=2, c_in=4, h=5, w=5),
    make_signature("activation", c_in=8, h=6, w=6, activation="relu"),
    make_signature("activation", c_in=8, h=6, w=6, activation="relu6"),
    make_signature("activation", c_in=8, h=6, w=6, activation="hardswish"),
    make_signature("identity", c_in=8, h=4, w=4),
]
BOTH_DTYPES = [sig.replace(dtype=dtype) for sig in SIGNATURES for dtype in ("fp32", "int8")]
WEIGHTED_KINDS = {"conv2d", "depthwise_conv", "pointwise_conv", "inverted_residual", "bottleneck", "fc"}


def _id(sig) -> str:
    return f"{sig.kind}-{sig.dtype}-{sig.digest[:6]}"


def test_signature_list_covers_every_kind():
    assert {sig.kind for sig in SIGNATURES} == set(KINDS)


# ------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _session(model: onnx.ModelProto | os.PathLike, tmp_path=None, optimized: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    if optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = optimized
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _run(model, sig, seed: int = 0) -> np.ndarray:
    (out,) = _session(model).run(None, make_inputs(sig, seed))
    return out


def _expected_shape(sig) -> tuple[int, ...]:
    return (sig.n, sig.c_out) if sig.kind == "fc" else sig.output_shape


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


# ---------------------------------------------------------- every signature
@pytest.mark.parametrize("sig", BOTH_DTYPES, ids=_id)
def test_model_is_valid_runs_and_has_the_signature_shape(sig, cache):
    path = model_file(sig, cache=cache)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == onnx_models.IR_VERSION == 10
    assert [(o.domain, o.version) for o in model.opset_import] == [("", onnx_models.OPSET)]
    assert onnx_models.OPSET == 17

    assert [i.name for i in model.graph.input] == model_input_names(sig)
    declared = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert tuple(declared) == _expected_shape(sig)

    out = _run(path, sig)
    assert out.dtype == np.float32
    assert out.shape == _expected_shape(sig)
    assert np.isfinite(out).all()
    if out.size > 1:
        assert out.std() > 0


@pytest.mark.parametrize("sig", BOTH_DTYPES, ids=_id)
def test_build_is_byte_identical(sig):
    assert build_model(sig).SerializeToString() == build_model(sig).SerializeToString()


@pytest.mark.parametrize("sig", [s for s in SIGNATURES if s.kind in WEIGHTED_KINDS], ids=_id)
def test_another_seed_gives_other_weights(sig):
    for dtype in ("fp32", "int8"):
        sig = sig.replace(dtype=dtype)
        first, second = _initializers(build_model(sig, seed=0)), _initializers(build_model(sig, seed=1))
        assert first.keys() == second.keys()
        weights = [name for name, value in first.items() if value.ndim >= 2]
        assert weights
        assert all(not np.array_equal(first[name], second[name]) for name in weights)


def test_make_inputs_matches_the_model_and_is_deterministic():
    for sig in SIGNATURES:
        feed = make_inputs(sig, seed=3)
        assert list(feed) == model_input_names(sig)
        for value in feed.values():
            shape = (sig.n, sig.c_in) if sig.kind == "fc" else sig.input_shape
            assert value.dtype == np.float32 and value.shape == shape
            assert -1.0 <= value.min() and value.max() <= 1.0
        again = make_inputs(sig, seed=3)
        assert all(np.array_equal(feed[name], again[name]) for name in feed)
        other = make_inputs(sig, seed=4)
        assert not any(np.array_equal(feed[name], other[name]) for name in feed)
    x1, x2 = make_inputs(make_signature("add", c_in=4, h=5, w=5)).values()
    assert not np.array_equal(x1, x2)


def test_identity_model_is_a_single_identity_node():
    sig = make_signature("identity", c_in=16, h=2, w=2)
    graph = build_model(sig).graph
    assert [(n.op_type, list(n.input), list(n.output)) for n in graph.node] == [("Identity", ["x"], ["y"])]
    assert not graph.initializer
    x = make_inputs(sig)["x"]
    np.testing.assert_array_equal(_run(build_model(sig), sig), x)


@settings(max_examples=12, deadline=None)
@given(
    c_in=st.sampled_from([1, 2, 4, 6]),
    c_out=st.sampled_from([1, 2, 4, 6]),
    h=st.integers(3, 9),
    w=st.integers(3, 9),
    kernel=st.sampled_from([1, 3]),
    stride=st.integers(1, 3),
    groups=st.sampled_from([1, 2]),
    activation=st.sampled_from(["none", "relu", "relu6", "hardswish"]),
    dtype=st.sampled_from(["fp32", "int8"]),
)
def test_any_conv2d_has_its_signature_shape(c_in, c_out, h, w, kernel, stride, groups, activation, dtype):
    if c_in % groups or c_out % groups:
        groups = 1
    sig = make_signature("conv2d", c_in=c_in, c_out=c_out, h=h, w=w, kernel=kernel, stride=stride,
                         groups=groups, activation=activation, dtype=dtype)
    out = _run(build_model(sig), sig)
    assert out.shape == sig.output_shape and np.isfinite(out).all()


# -------------------------------------------------------------- the cache
def test_model_file_writes_once_then_reuses(tmp_path):
    sig = SIGNATURES[0]
    path = model_file(sig, seed=2, cache=tmp_path)
    assert path == tmp_path / "models" / f"{sig.digest}-s2-{onnx_models.BUILDER_VERSION}.onnx"
    assert path.read_bytes() == build_model(sig, seed=2).SerializeToString()
    before = path.stat()
    again = model_file(sig, seed=2, cache=tmp_path)
    after = again.stat()
    assert again == path
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert model_file(sig, seed=3, cache=tmp_path) != path
    assert model_file(sig.replace(dtype="int8"), seed=2, cache=tmp_path) != path
    assert sorted(p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(".")) == []


def test_model_file_defaults_to_the_configured_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAMELEON_CACHE", str(tmp_path / "elsewhere"))
    path = model_file(SIGNATURES[4])
    assert path.parent == tmp_path / "elsewhere" / "models" and path.is_file()


def test_a_failed_write_leaves_no_model_and_no_temp_file(tmp_path, monkeypatch):
    def crash(src, dst):
        raise OSError("disk pulled out")

    monkeypatch.setattr(onnx_models.os, "replace", crash)
    with pytest.raises(OSError, match="disk pulled out"):
        model_file(SIGNATURES[0], cache=tmp_path)
    assert list((tmp_path / "models").iterdir()) == []


def test_concurrent_writers_agree(tmp_path):
    sig = SIGNATURES[5].replace(dtype="int8")
    paths, errors = [], []

    def write():
        try:
            paths.append(model_file(sig, cache=tmp_path))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(paths)) == 1
    assert paths[0].read_bytes() == build_model(sig).SerializeToString()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [paths[0].name]


# -------------------------------------------------- fp32 numerics vs numpy
def _conv(x, w, b, stride, padding, groups):
    n, _, _, _ = x.shape
    c_out, c_per_group, k, _ = w.shape
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    h_out, w_out = windows.shape[2:4]
    windows = windows.reshape(n, groups, c_per_group, h_out, w_out, k, k)
    kernels = w.reshape(groups, c_out // groups, c_per_group, k, k)
    out = np.einsum("ngchwij,gocij->ngohw", windows, kernels).reshape(n, c_out, h_out, w_out)
    return out + b[None, :, None, None]


def _act(x, activation):
    if activation == "relu":
        return np.maximum(x, 0)
    if activation == "relu6":
        return np.clip(x, 0, 6)
    if activation == "hardswish":
        return x * np.clip(x / 6 + 0.5, 0, 1)
    return x


def _avgpool(x, kernel, stride, padding):
    def window_sum(a):
        a = np.pad(a, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
        win = np.lib.stride_tricks.sliding_window_view(a, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
        return win.sum(axis=(-1, -2))

    return window_sum(x) / window_sum(np.ones_like(x))  # count_include_pad=0


def _reference(sig, model, feed):
    """The operator computed in float64 numpy from the model's own weights."""
    init = _initializers(model)
    params = [
        tuple(init[name].astype(np.float64) for name in node.input[1:3])
        for node in model.graph.node if node.op_type in ("Conv", "Gemm")
    ]
    xs = [v.astype(np.float64) for v in feed.values()]
    x, act = xs[0], sig.activation
    if sig.kind in ("conv2d", "depthwise_conv", "pointwise_conv"):
        (w, b), = params
        return _act(_conv(x, w, b, sig.stride, sig.padding, sig.groups), act)
    if sig.kind == "inverted_residual":
        h = x
        if sig.mid_channels != sig.c_in:
            h = _act(_conv(h, *params.pop(0), 1, 0, 1), act)
        h = _act(_conv(h, *params.pop(0), sig.stride, sig.kernel // 2, sig.mid_channels), act)
        h = _conv(h, *params.pop(0), 1, 0, 1)
        return h + x if sig.has_residual else h
    if sig.kind == "bottleneck":
        h = _act(_conv(x, *params[0], 1, 0, 1), act)
        h = _act(_conv(h, *params[1], sig.stride, sig.padding, sig.groups), act)
        h = _conv(h, *params[2], 1, 0, 1)
        shortcut = x if sig.has_residual else _conv(x, *params[3], sig.stride, 0, 1)
        return _act(h + shortcut, act)
    if sig.kind == "fc":
        (w, b), = params
        return _act(x @ w.T + b, act)
    if sig.kind == "avgpool":
        return _avgpool(x, sig.kernel, sig.stride, sig.padding)
    if sig.kind == "global_avgpool":
        return x.mean(axis=(2, 3), keepdims=True)
    if sig.kind == "add":
        return _act(xs[0] + xs[1], act)
    if sig.kind == "activation":
        return _act(x, act)
    return x  # identity


@pytest.mark.parametrize("sig", SIGNATURES, ids=_id)
def test_fp32_output_matches_numpy(sig):
    model = build_model(sig, seed=5)
    feed = make_inputs(sig, seed=5)
    expected = _reference(sig, model, feed)
    got = _run(model, sig, seed=5)
    assert expected.shape == got.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_weights_are_he_scaled_and_convs_have_a_bias():
    sig = make_signature("conv2d", c_in=64, h=8, w=8, c_out=64, kernel=3)
    model = build_model(sig)
    (conv,) = model.graph.node
    assert conv.op_type == "Conv" and len(conv.input) == 3
    w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == conv.input[1]))
    assert w.std() == pytest.approx(np.sqrt(2 / (64 * 9)), rel=0.05)
    # He init keeps the activation scale of a conv-relu stack from exploding or vanishing.
    out = _run(model, sig)
    assert 0.2 < out.std() / make_inputs(sig)["x"].std() < 5


# ------------------------------------------------------------------- int8
@pytest.mark.parametrize("sig", SIGNATURES, ids=_id)
def test_int8_output_is_close_to_fp32(sig):
    fp32 = _run(build_model(sig), sig).ravel().astype(np.float64)
    int8 = _run(build_model(sig.replace(dtype="int8")), sig.replace(dtype="int8")).ravel().astype(np.float64)
    relative_error = np.linalg.norm(int8 - fp32) / np.linalg.norm(fp32)
    assert relative_error < 0.1
    if fp32.size > 1:
        assert np.corrcoef(fp32, int8)[0, 1] > 0.95


def _producer(graph, tensor):
    return next(node for node in graph.node if tensor in node.output)


@pytest.mark.parametrize("sig", [s.replace(dtype="int8") for s in SIGNATURES if s.kind in WEIGHTED_KINDS], ids=_id)
def test_int8_is_qdq_with_per_channel_weights_and_int32_bias(sig):
    model = build_model(sig)
    graph, init = model.graph, _initializers(model)
    fp32_init = _initializers(build_model(sig.replace(dtype="fp32")))
    fp32_weights = [fp32_init[n.input[1]] for n in build_model(sig.replace(dtype="fp32")).graph.node
                    if n.op_type in ("Conv", "Gemm")]
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in [*graph.input, *graph.output])
    computes = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(computes) == len(fp32_weights)
    for node, fp32_w in zip(computes, fp32_weights):
        x_dq, w_dq, b_dq = (_producer(graph, t) for t in node.input)
        assert {x_dq.op_type, w_dq.op_type, b_dq.op_type} == {"DequantizeLinear"}
        x_scale = init[x_dq.input[1]]
        assert init[x_dq.input[2]].dtype == np.uint8 and x_scale.shape == ()
        w_q, w_scale, w_zp = (init[t] for t in w_dq.input)
        assert w_q.dtype == np.int8 and np.abs(w_q).max() <= 64
        assert w_scale.shape == (w_q.shape[0],) and not w_zp.any()
        assert onnx.helper.get_attribute_value(w_dq.attribute[0]) == 0  # axis
        # The int8 model quantizes the very weights of its fp32 twin.
        per_channel = w_scale.reshape(-1, *[1] * (w_q.ndim - 1))
        assert np.all(np.abs(w_q * per_channel - fp32_w) <= per_channel / 2 + 1e-7)
        b_q, b_scale, b_zp = (init[t] for t in b_dq.input)
        assert b_q.dtype == np.int32 and not b_zp.any()
        np.testing.assert_allclose(b_scale, x_scale * w_scale, rtol=1e-6)
        # One quantization point right after the op and its fused activation.
        assert len([n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in _downstream(graph, node)]) == 1


def _downstream(graph, node):
    """Tensors reachable from ``node`` through non-quantizing ops (its fused activation)."""
    tensors = list(node.output)
    for later in graph.node:
        if later.op_type in ("Relu", "Clip") and later.input[0] in tensors:
            tensors += list(later.output)
    return tensors


FUSED = {
    "conv2d": {"QLinearConv"},
    "depthwise_conv": {"QLinearConv"},
    "pointwise_conv": {"QLinearConv"},
    "inverted_residual": {"QLinearConv"},
    "bottleneck": {"QLinearConv", "QLinearAdd"},
    "fc": {"QGemm"},
    "avgpool": {"QLinearAveragePool"},
    "global_avgpool": {"QLinearGlobalAveragePool"},
    "add": {"QLinearAdd"},
}


@pytest.mark.parametrize("sig", [s.replace(dtype="int8") for s in SIGNATURES if s.kind in FUSED], ids=_id)
def test_onnxruntime_fuses_int8_models_into_quantized_kernels(sig, tmp_path):
    optimized = tmp_path / "optimized.onnx"
    _session(build_model(sig), optimized=str(optimized))
    ops = {node.op_type for node in onnx.load(optimized).graph.node}
    assert FUSED[sig.kind] <= ops
    if sig.has_residual:
        assert "QLinearAdd" in ops
    assert not ops & {"Conv", "Gemm", "FusedConv", "FusedGemm", "Add", "AveragePool", "GlobalAveragePool"}
