"""FBNet's grouped block, ``grouped_inverted_residual`` (issue 21): the signature and every builder of it.

ONNX (fp32 and its QDQ twin, run in ONNX Runtime), TFLite (run in LiteRT), the ExecuTorch module and the
optimizer's PyTorch unit compute the same function with the same weights; the channel shuffle is
ShuffleNet's permutation.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from harness.errors import InvalidSignature
from harness.models import onnx_models, pte_models, tflite_models
from harness.signature import (ALL_KINDS, GROUPED_INVERTED_RESIDUAL, GROUPED_KINDS, KINDS, make_signature,
                               parse_signature, working_set_bytes)
from optimizer.spaces.space import unit_params

SIGNATURES = [
    make_signature(GROUPED_INVERTED_RESIDUAL, c_in=8, h=8, w=8, c_out=8, kernel=3, groups=2, mid_channels=8,
                   activation="relu"),  # FBNet's k3_e1_g2 with its residual
    make_signature(GROUPED_INVERTED_RESIDUAL, c_in=8, h=9, w=9, c_out=16, kernel=5, stride=2, groups=2,
                   mid_channels=8, activation="relu6"),
    make_signature(GROUPED_INVERTED_RESIDUAL, c_in=12, h=6, w=7, c_out=12, kernel=3, groups=4, mid_channels=36,
                   activation="hardswish"),
]


def _id(sig) -> str:
    return f"g{sig.groups}-k{sig.kernel}-s{sig.stride}-{sig.activation}"


def _onnx(sig) -> np.ndarray:
    session = ort.InferenceSession(onnx_models.build_model(sig).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, onnx_models.make_inputs(sig))[0]


def test_the_kind_is_apart_from_the_smoke_plans_kinds_and_round_trips():
    assert GROUPED_KINDS == (GROUPED_INVERTED_RESIDUAL,) and GROUPED_INVERTED_RESIDUAL in ALL_KINDS
    assert GROUPED_INVERTED_RESIDUAL not in KINDS  # the smoke plan and the KINDS coverage tests are unchanged
    for sig in SIGNATURES:
        assert parse_signature(sig.key) == sig
    assert SIGNATURES[0].has_residual and not SIGNATURES[1].has_residual
    assert SIGNATURES[1].output_shape == (1, 16, 5, 5)


@pytest.mark.parametrize("fields, message", [
    (dict(groups=1), "groups must be >= 2"),
    (dict(groups=3), "must divide"),
    (dict(mid_channels=4), "must be >= c_in"),
    (dict(activation="none"), "activation must not be none"),
    (dict(kernel=4, padding=2), "kernel must be odd"),
])
def test_invalid_grouped_blocks_are_one_line_errors(fields, message):
    values = dict(c_in=8, h=8, w=8, c_out=8, kernel=3, groups=2, mid_channels=8, activation="relu") | fields
    with pytest.raises(InvalidSignature, match=message) as err:
        make_signature(GROUPED_INVERTED_RESIDUAL, **values)
    assert "\n" not in str(err.value)


def test_macs_params_and_working_set_count_the_groups():
    sig = SIGNATURES[2]  # 12 -> 36 in 4 groups, dw 3x3 at 6x7, 36 -> 12 in 4 groups, + residual
    hw = 6 * 7
    assert sig.macs == hw * 12 * 36 // 4 + hw * 36 * 9 + hw * 36 * 12 // 4 + hw * 12
    assert unit_params(sig) == (12 // 4 * 36 + 36) + (36 * 9 + 36) + (36 // 4 * 12 + 12)
    assert working_set_bytes(sig) > 4 * 3 * 12 * hw


@pytest.mark.parametrize("sig", SIGNATURES, ids=_id)
def test_onnx_runs_and_its_int8_twin_is_close_and_fused(sig):
    fp32 = _onnx(sig)
    assert fp32.shape == sig.output_shape and np.isfinite(fp32).all()
    assert [n.op_type for n in onnx_models.build_model(sig).graph.node].count("Transpose") == 1
    int8 = _onnx(sig.replace(dtype="int8"))
    assert np.linalg.norm(int8 - fp32) / np.linalg.norm(fp32) < 0.1
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(__import__("tempfile").mkdtemp()) + "/opt.onnx"
    ort.InferenceSession(onnx_models.build_model(sig.replace(dtype="int8")).SerializeToString(), options,
                         providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert ops.count("QLinearConv") == 3  # the shuffle keeps its input's scale: nothing falls back to float


def test_the_shuffle_is_shufflenets_permutation():
    """A block whose convolutions are identities (weights given) shows the shuffle alone: channel g·(c/G)+i → i·G+g."""
    sig = make_signature(GROUPED_INVERTED_RESIDUAL, c_in=6, h=1, w=1, c_out=6, kernel=1, stride=2, groups=3,
                         mid_channels=6, activation="relu")  # stride 2: no residual add
    grouped_identity = np.zeros((6, 2, 1, 1), np.float32)
    grouped_identity[np.arange(6), np.arange(6) % 2] = 1.0  # output o reads input o (its place in its group)
    zeros = np.zeros(6, np.float32)
    parameters = [(grouped_identity, zeros), (np.ones((6, 1, 1, 1), np.float32), zeros), (grouped_identity, zeros)]
    model = onnx_models.build_network([sig], parameters=parameters)
    x = np.arange(1, 7, dtype=np.float32).reshape(1, 6, 1, 1)
    (y,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert y.ravel().tolist() == [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
@pytest.mark.parametrize("sig", SIGNATURES, ids=_id)
def test_tflite_twin_matches_onnx(sig, dtype):
    from ai_edge_litert.interpreter import Interpreter

    sig = sig.replace(dtype=dtype)
    interpreter = Interpreter(model_content=tflite_models.build_tflite(sig), num_threads=1)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], tflite_models.make_tflite_inputs(sig)[detail["name"]])
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).transpose(0, 3, 1, 2)
    want = _onnx(sig)
    if dtype == "fp32":
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(np.abs(want).max(), 1.0))
    else:
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.1


@pytest.mark.parametrize("sig", SIGNATURES, ids=_id)
def test_executorch_module_and_pytorch_unit_compute_the_onnx_function(sig, tmp_path):
    import torch

    from optimizer.training.torch_networks import Network

    with torch.no_grad():
        module_out = pte_models.build_module(sig)(*pte_models.example_inputs(sig)).numpy()
    np.testing.assert_allclose(module_out, _onnx(sig), rtol=1e-4, atol=1e-5)
    # The trainable unit: its export (batch-norm folded) computes what the unit computes in eval mode.
    torch.manual_seed(0)
    net = Network([sig]).eval()
    x = torch.randn(2, *sig.input_shape[1:])
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        expected = net(x).numpy()
    path = net.export_onnx(tmp_path / "unit.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {"x": x[i:i + 1].numpy()})[0] for i in range(2)])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
