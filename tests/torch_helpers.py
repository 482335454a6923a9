"""Helpers for tests of PyTorch networks: batch-norm statistics worth folding, and an export checked against torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch


def perturb_batch_norms(net: torch.nn.Module, seed: int = 0) -> None:
    """Untrained BN is the identity; give it statistics and affine terms so that folding and slicing are really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


def assert_export_computes_the_same(net, path: Path) -> None:
    """``net.export_onnx(path)`` run by ONNX Runtime gives the network's own (eval-mode) outputs, to 1e-4."""
    path = net.export_onnx(path)
    x = np.random.default_rng(0).standard_normal(net.input_shape).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = net.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4)
