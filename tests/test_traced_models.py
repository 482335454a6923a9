"""A plain PyTorch MobileNetV1-style model traced into our units: same outputs, prunable, exportable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optimizer.netadapt.pruning import ChannelStructure
from optimizer.netadapt.traced_models import UntraceableModel, network_from_module

from torch_helpers import assert_export_computes_the_same, perturb_batch_norms


def conv_bn(c_in: int, c_out: int, stride: int, groups: int = 1, kernel: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


def mobilenet_v1(width: int = 16, classes: int = 10) -> nn.Module:
    """MobileNetV1's pattern at a small size: conv, then (depthwise, pointwise) pairs, pool, dropout, fc."""
    layers = conv_bn(3, width, 2)
    c = width
    for c_out, stride in ((2 * width, 1), (4 * width, 2), (4 * width, 1), (8 * width, 2)):
        layers += conv_bn(c, c, stride, groups=c) + conv_bn(c, c_out, 1, kernel=1)
        c = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c, classes)]
    model = nn.Sequential(*layers)
    perturb_batch_norms(model)
    return model.eval()


class WithFunctionalsAndBias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 1, 1, bias=True)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu6(self.conv(x))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, 1, 1)

    def forward(self, x):
        return x + self.conv(x)


def test_a_mobilenet_v1_is_traced_into_our_units_with_its_outputs() -> None:
    model = mobilenet_v1()
    net = network_from_module(model, (1, 3, 32, 32))
    kinds = [s.kind for s in net.signatures]
    assert kinds[0] == "conv2d" and kinds[-2:] == ["global_avgpool", "fc"]
    assert kinds.count("depthwise_conv") == 4 and kinds.count("pointwise_conv") == 4
    assert all(s.activation == "relu" for s in net.signatures if s.kind != "global_avgpool" and s.kind != "fc")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_conv_bias_without_batch_norm_and_functional_activations_are_kept() -> None:
    model = WithFunctionalsAndBias().eval()
    net = network_from_module(model, (1, 3, 8, 8))
    assert [s.kind for s in net.signatures] == ["conv2d", "global_avgpool", "fc"]
    assert net.signatures[0].activation == "relu6"
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_a_traced_model_prunes_depthwise_pairs_together_and_exports(tmp_path) -> None:
    net = network_from_module(mobilenet_v1(), (1, 3, 32, 32))
    structure = ChannelStructure(net.signatures)
    # a depthwise conv ties its input and output: each (pointwise → depthwise → pointwise) width is one group
    assert len(structure.groups) == 5
    sizes = {g.index: g.channels // 2 for g in structure.groups}
    pruned = structure.prune(net, sizes).eval()
    assert_export_computes_the_same(pruned, tmp_path / "pruned.onnx")


def test_branches_are_refused_in_one_line() -> None:
    with pytest.raises(UntraceableModel, match="not a chain"):
        network_from_module(Residual(), (1, 3, 8, 8))
    with pytest.raises(UntraceableModel, match="not a supported layer"):
        network_from_module(nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2)), (1, 3, 8, 8))
