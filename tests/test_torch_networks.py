"""The PyTorch twin of a space's networks is the network the LUT predicts and the export measures."""

from __future__ import annotations

import io
import warnings
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from harness.errors import InvalidSignature
from harness.models.onnx_models import build_network
from optimizer.spaces import get_space
from optimizer.training.torch_networks import build_torch_network

from torch_helpers import perturb_batch_norms


def _small_architecture(name: str) -> np.ndarray:
    space = get_space(name)
    x = space.random(1, 7)[0]
    if name == "chamnet-mobile":
        x[space.index("resolution")] = 96
    if name == "chamnet-res":  # the smallest depth keeps the test fast; widths stay random
        for s in range(1, 5):
            x[space.index(f"n{s}")] = 1 + (s == 2)
    return x


def _conv_like_nodes(model: onnx.ModelProto) -> Counter:
    """What makes two graphs the same network: every Conv / Gemm with its attributes and weight shape, other ops counted."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    ops: Counter = Counter()
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            attrs = {a.name: tuple(onnx.helper.get_attribute_value(a)) if a.type == onnx.AttributeProto.INTS
                     else onnx.helper.get_attribute_value(a) for a in node.attribute}
            attrs.pop("alpha", None), attrs.pop("beta", None), attrs.pop("dilations", None)
            ops[(node.op_type, shapes[node.input[1]], tuple(sorted(attrs.items())))] += 1
        elif node.op_type in ("Add", "GlobalAveragePool", "Relu", "Clip", "Flatten"):
            ops[node.op_type] += 1
    return ops


@pytest.mark.parametrize("name", ["chamnet-mobile-mini", "chamnet-mobile", "chamnet-res"])
def test_torch_network_export_matches_the_space_and_pytorch(name, tmp_path):
    space = get_space(name)
    x = _small_architecture(name)
    net = build_torch_network(space, x, seed=3)
    assert net.signatures == space.signatures(x)
    perturb_batch_norms(net)
    net.eval()
    inp = torch.randn(2, *net.input_shape[1:], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = net(inp).numpy()
    assert reference.shape == (2, space.signatures(x)[-1].c_out)

    ours = onnx.load(net.export_onnx(tmp_path / "ours.onnx"))
    # Our export is the harness's network model: the very graph the LUT's operators are (only the weights differ).
    untrained = build_network(space.signatures(x), seed=0)
    assert [n.op_type for n in ours.graph.node] == [n.op_type for n in untrained.graph.node]

    # PyTorch's own exporter (BN folded in eval mode) gives the same convolutions, shapes and ops.
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, inp[:1], buffer, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"])
    theirs = onnx.load_from_string(buffer.getvalue())
    assert _conv_like_nodes(theirs) == _conv_like_nodes(ours)

    def run(model: onnx.ModelProto) -> np.ndarray:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {"x": inp[i:i + 1].numpy()})[0] for i in range(2)])

    scale = float(np.abs(reference).max())
    assert np.allclose(run(ours), reference, atol=1e-4 * max(scale, 1.0), rtol=1e-4)
    assert np.allclose(run(theirs), reference, atol=1e-4 * max(scale, 1.0), rtol=1e-4)


def test_folded_parameters_follow_graph_order_and_shapes():
    space = get_space("chamnet-mobile-mini")
    x = space.baselines()["uniform-mid-32"]
    net = build_torch_network(space, x)
    pairs = net.folded_parameters()
    model = build_network(space.signatures(x), parameters=pairs)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    layer_weights = [weights[n.input[1]] for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(layer_weights) == len(pairs)
    for (w, _), stored in zip(pairs, layer_weights):
        assert np.array_equal(w, stored)


def test_build_network_refuses_parameters_that_do_not_fit():
    space = get_space("chamnet-mobile-mini")
    units = space.signatures(space.baselines()["uniform-narrowest-32"])
    pairs = build_torch_network(space, space.baselines()["uniform-narrowest-32"]).folded_parameters()
    with pytest.raises(InvalidSignature, match="the graph used"):
        build_network(units, parameters=pairs + [pairs[-1]])
    with pytest.raises(InvalidSignature, match="needs more"):
        build_network(units, parameters=pairs[:-1])
    swapped = [pairs[1], pairs[0], *pairs[2:]]
    with pytest.raises(InvalidSignature, match="parameter pair 0 has shapes"):
        build_network(units, parameters=swapped)


def test_seeded_networks_are_reproducible():
    space = get_space("chamnet-mobile-mini")
    x = space.random(1, 0)[0]
    a, b = build_torch_network(space, x, seed=5), build_torch_network(space, x, seed=5)
    c = build_torch_network(space, x, seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
