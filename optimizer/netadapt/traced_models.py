"""Any PyTorch model whose layers form a chain, traced into our unit vocabulary (so NetAdapt can prune it).

NetAdapt's own main experiment is MobileNetV1: a chain of 3x3 convs,
depthwise convs and 1x1 convs, each with batch-norm and ReLU, then pooling and
a classifier.  :func:`network_from_module` traces such a model with
``torch.fx``, reads its layers in execution order and rebuilds it as a
:class:`~optimizer.training.torch_networks.Network` of our signatures (``conv2d``,
``depthwise_conv``, ``pointwise_conv``, ``global_avgpool``, ``fc``) with the
model's weights: the LUT, the ONNX export, the pruning and the fine-tuning
then work on it as on our own networks.

Accepted, in a chain (each layer reads the previous one's output):
``Conv2d`` (square kernel, no dilation, symmetric padding; groups 1 or
depthwise) optionally followed by ``BatchNorm2d`` and an activation (ReLU,
ReLU6, Hardswish, as modules or functions); ``AdaptiveAvgPool2d(1)`` (or ``F.adaptive_avg_pool2d(x, 1)``);
flatten/view/reshape; ``Dropout`` (an identity at inference); ``Linear``
(optionally followed by an activation).  Anything else — a residual add, a
concatenation, another op — is refused with a line naming the node: models
with branches are built from the search spaces' blocks instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.errors import ChameleonError
from harness.signature import OpSignature, make_signature


class UntraceableModel(ChameleonError):
    """A model that is not a chain of the layers this importer knows."""


_ACTIVATION_NAMES = {"ReLU": "relu", "ReLU6": "relu6", "Hardswish": "hardswish"}


def network_from_module(module: Any, input_shape: Sequence[int]) -> Any:
    """The model as a Network of our units with its weights (eval-mode outputs equal to the model's)."""
    import torch
    from torch import fx, nn
    from torch.fx.passes.shape_prop import ShapeProp
    from torch.nn import functional as F

    from optimizer.training.torch_networks import Network

    module = module.eval()
    try:
        graph = fx.symbolic_trace(module)
    except Exception as problem:  # fx raises many kinds for dynamic control flow
        raise UntraceableModel(f"torch.fx cannot trace the model ({type(problem).__name__}: "
                               f"{str(problem).splitlines()[0] if str(problem) else ''})") from None
    ShapeProp(graph).propagate(torch.zeros(tuple(input_shape)))
    modules = dict(graph.named_modules())
    functional_activations = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.hardswish: "hardswish"}
    skip_functions = {torch.flatten}
    skip_methods = {"flatten", "view", "reshape", "contiguous"}

    layers: list[dict[str, Any]] = []  # {"kind", "module", "bn", "activation", "shape"}
    previous = None
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            previous = node
            continue
        if node.op == "output":
            break
        if node.op == "get_attr":
            raise UntraceableModel(f"node {node.name}: reads a parameter directly; only layers are supported")
        inputs = [a for a in node.args if isinstance(a, fx.Node)]
        if inputs != [previous]:
            raise UntraceableModel(f"node {node.name} ({node.target}): not a chain (it reads "
                                   f"{', '.join(a.name for a in inputs) or 'nothing'}); residual adds and branches "
                                   f"are not supported here")
        shape = tuple(node.args[0].meta["tensor_meta"].shape)
        target = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(target, nn.Conv2d):
            layers.append({"kind": "conv", "module": target, "bn": None, "activation": "none", "shape": shape})
        elif isinstance(target, nn.BatchNorm2d):
            if not layers or layers[-1]["kind"] != "conv" or layers[-1]["bn"] is not None or layers[-1]["activation"] != "none":
                raise UntraceableModel(f"node {node.name}: a batch-norm must follow a conv directly")
            layers[-1]["bn"] = target
        elif type(target).__name__ in _ACTIVATION_NAMES or (node.op == "call_function" and node.target in functional_activations):
            name = _ACTIVATION_NAMES.get(type(target).__name__) or functional_activations[node.target]
            if not layers or layers[-1]["kind"] not in ("conv", "fc") or layers[-1]["activation"] != "none":
                raise UntraceableModel(f"node {node.name}: an activation must follow a conv, its batch-norm or a linear")
            layers[-1]["activation"] = name
        elif isinstance(target, nn.AdaptiveAvgPool2d) or (node.op == "call_function" and node.target is F.adaptive_avg_pool2d):
            size = target.output_size if target is not None else (node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size"))
            if size not in (1, (1, 1)):
                raise UntraceableModel(f"node {node.name}: only AdaptiveAvgPool2d(1) (a global average pool)")
            layers.append({"kind": "pool", "shape": shape})
        elif isinstance(target, nn.Linear):
            layers.append({"kind": "fc", "module": target, "activation": "none", "shape": shape})
        elif isinstance(target, (nn.Dropout, nn.Flatten, nn.Identity)) or (
                node.op == "call_function" and node.target in skip_functions) or (
                node.op == "call_method" and node.target in skip_methods):
            pass
        else:
            raise UntraceableModel(f"node {node.name} ({node.op} {node.target}): not a supported layer")
        previous = node

    units: list[OpSignature] = []
    for layer in layers:
        shape = layer["shape"]
        if layer["kind"] == "conv":
            conv = layer["module"]
            kernel, stride, padding, dilation = conv.kernel_size, conv.stride, conv.padding, conv.dilation
            if isinstance(padding, str) or kernel[0] != kernel[1] or stride[0] != stride[1] or padding[0] != padding[1] \
                    or dilation != (1, 1) or conv.padding_mode != "zeros":
                raise UntraceableModel(f"conv {conv}: square kernels, equal strides and padding, no dilation only")
            values = dict(c_in=conv.in_channels, h=shape[2], w=shape[3], c_out=conv.out_channels, kernel=kernel[0],
                          stride=stride[0], padding=padding[0], activation=layer["activation"])
            if conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1:
                sig = make_signature("depthwise_conv", groups=conv.groups, **values)
            elif conv.groups == 1 and kernel[0] == 1 and padding[0] == 0:
                sig = make_signature("pointwise_conv", **values)
            elif conv.groups == 1:
                sig = make_signature("conv2d", **values)
            else:
                raise UntraceableModel(f"conv {conv}: grouped convs other than depthwise are not supported")
        elif layer["kind"] == "pool":
            sig = make_signature("global_avgpool", c_in=shape[1], h=shape[2], w=shape[3])
        else:
            linear = layer["module"]
            sig = make_signature("fc", c_in=linear.in_features, c_out=linear.out_features, activation=layer["activation"])
        units.append(sig)
    if not units:
        raise UntraceableModel("the model has no layers")

    net = Network(units)
    with torch.no_grad():
        for unit, layer in zip(net.units, layers):
            if layer["kind"] == "conv":
                conv_bn = unit.layers[0]
                source = layer["module"]
                conv_bn[0].weight.copy_(source.weight)
                bias = source.bias.detach() if source.bias is not None else torch.zeros(source.out_channels)
                bn = conv_bn[1]
                if layer["bn"] is not None:
                    src = layer["bn"]
                    bn.eps = src.eps
                    bn.weight.copy_(src.weight if src.affine else torch.ones_like(bn.weight))
                    bn.bias.copy_(src.bias if src.affine else torch.zeros_like(bn.bias))
                    bn.running_mean.copy_(src.running_mean - bias)  # BN(x + b) = BN'(x) with the mean moved by b
                    bn.running_var.copy_(src.running_var)
                else:  # no batch-norm: one that adds the conv's bias and nothing else
                    bn.weight.fill_(1.0)
                    bn.bias.copy_(bias)
                    bn.running_mean.zero_()
                    bn.running_var.fill_(1.0 - bn.eps)
            elif layer["kind"] == "fc":
                dense = unit.layers[0]
                dense[0].weight.copy_(layer["module"].weight)
                if layer["module"].bias is not None:
                    dense[0].bias.copy_(layer["module"].bias)
                else:
                    dense[0].bias.zero_()
    return net.eval()
