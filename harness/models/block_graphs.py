"""What each weighted kind computes, once for every model format.

These functions describe a kind's structure (which convolutions, in which
order, with which activations and shortcut) against a small builder
interface; ``onnx_models`` and ``tflite_models`` each provide a builder that
writes it in their format.  So the MobileNetV2 inverted residual (with or
without MobileNetV3's squeeze-and-excite), FBNet's grouped inverted residual and the ResNet bottleneck are defined in one
place, and the ONNX and TFLite models of a signature cannot drift apart.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from harness.signature import OpSignature

T = TypeVar("T")  # a builder's handle for a tensor (a name in ONNX, an index in TFLite)


class GraphBuilder(Protocol[T]):
    def conv(self, x: T, c_in: int, c_out: int, kernel: int = 1, stride: int = 1,
             padding: int = 0, groups: int = 1, activation: str = "none") -> T:
        """Convolution with folded batch-norm (a bias), its activation and quantization point."""

    def gemm(self, x: T, c_in: int, c_out: int, activation: str) -> T:
        """Fully connected layer with bias, its activation and quantization point."""

    def add(self, a: T, b: T, activation: str = "none") -> T:
        """Element-wise sum, its activation and quantization point."""


class SqueezeExciteBuilder(GraphBuilder[T], Protocol[T]):
    """What a squeeze-and-excite needs beyond convolutions (the ONNX and TFLite builders; not the PyTorch recorder)."""

    def global_avgpool(self, x: T) -> T:
        """Mean over H and W, keeping them as 1 x 1, and its quantization point."""

    def hard_sigmoid(self, x: T) -> T:
        """relu6(x + 3) / 6, and its quantization point."""

    def mul(self, x: T, scale: T) -> T:
        """``x`` times a per-channel (n, c, 1, 1) ``scale``, broadcast over H and W, and its quantization point."""


class ShuffleBuilder(GraphBuilder[T], Protocol[T]):
    """What FBNet's grouped block needs beyond convolutions (every builder: ONNX, TFLite, ExecuTorch, PyTorch)."""

    def channel_shuffle(self, x: T, channels: int, groups: int, h: int, w: int) -> T:
        """ShuffleNet's channel shuffle of an (n, channels, h, w) tensor: channel ``g·(channels/groups) + i`` moves
        to ``i·groups + g``; then its quantization point (a permutation keeps the tensor's range)."""


def conv_graph(b: GraphBuilder[T], sig: OpSignature, x: T) -> T:
    return b.conv(x, sig.c_in, sig.c_out, sig.kernel, sig.stride, sig.padding, sig.groups, sig.activation)


def inverted_residual_graph(b: GraphBuilder[T], sig: OpSignature, x: T) -> T:
    """MobileNetV2: [1x1 expand + act] → kxk depthwise + act → linear 1x1 project → [+ input].

    ``inverted_residual_se`` (MobileNetV3, Once-for-All) adds a squeeze-and-excite of
    ``sig.se_channels`` between the depthwise conv and the projection.
    """
    mid, act = sig.mid_channels, sig.activation
    h = x
    if mid != sig.c_in:  # expansion factor t = 1 has no expand conv
        h = b.conv(h, sig.c_in, mid, activation=act)
    h = b.conv(h, mid, mid, sig.kernel, sig.stride, sig.kernel // 2, groups=mid, activation=act)
    if sig.se_channels:
        h = squeeze_excite(b, h, mid, sig.se_channels)  # type: ignore[arg-type]
    h = b.conv(h, mid, sig.c_out)  # linear bottleneck: no activation
    if sig.has_residual:
        h = b.add(x, h)
    return h


def grouped_inverted_residual_graph(b: ShuffleBuilder[T], sig: OpSignature, x: T) -> T:
    """FBNet's grouped block: 1x1 in groups + act → channel shuffle → kxk depthwise + act → linear 1x1 in groups → [+ input].

    The expansion conv is there at expansion 1 too (FBNet's ``k3_e1_g2``): without it the grouped
    projection would only ever see its own group's channels.
    """
    mid, act, groups = sig.mid_channels, sig.activation, sig.groups
    h = b.conv(x, sig.c_in, mid, groups=groups, activation=act)
    h = b.channel_shuffle(h, mid, groups, sig.h, sig.w)
    h = b.conv(h, mid, mid, sig.kernel, sig.stride, sig.kernel // 2, groups=mid, activation=act)
    h = b.conv(h, mid, sig.c_out, groups=groups)  # linear bottleneck: no activation
    if sig.has_residual:
        h = b.add(x, h)
    return h


def squeeze_excite(b: SqueezeExciteBuilder[T], x: T, channels: int, reduced: int) -> T:
    """Squeeze-and-excite (MobileNetV3): global average pool → 1x1 reduce + ReLU → 1x1 expand → hard-sigmoid → × input."""
    s = b.global_avgpool(x)
    s = b.conv(s, channels, reduced, activation="relu")
    s = b.conv(s, reduced, channels)
    return b.mul(x, b.hard_sigmoid(s))


def squeeze_excite_graph(b: SqueezeExciteBuilder[T], sig: OpSignature, x: T) -> T:
    return squeeze_excite(b, x, sig.c_in, sig.mid_channels)


def bottleneck_graph(b: GraphBuilder[T], sig: OpSignature, x: T) -> T:
    """ResNet: 1x1 reduce + act → kxk (stride, groups) + act → 1x1 expand; + shortcut; act."""
    mid, act = sig.mid_channels, sig.activation
    h = b.conv(x, sig.c_in, mid, activation=act)
    h = b.conv(h, mid, mid, sig.kernel, sig.stride, sig.padding, sig.groups, act)
    h = b.conv(h, mid, sig.c_out)
    shortcut = x if sig.has_residual else b.conv(x, sig.c_in, sig.c_out, stride=sig.stride)
    return b.add(shortcut, h, act)


def fc_graph(b: GraphBuilder[T], sig: OpSignature, x: T) -> T:
    return b.gemm(x, sig.c_in, sig.c_out, sig.activation)


def add_graph(b: GraphBuilder[T], sig: OpSignature, x1: T, x2: T) -> T:
    return b.add(x1, x2, sig.activation)


# The kinds whose structure is the same in every format, by kind name; each
# model builder adds its own pooling, activation and identity graphs.
SHARED_GRAPHS = {
    "conv2d": conv_graph,
    "depthwise_conv": conv_graph,
    "pointwise_conv": conv_graph,
    "inverted_residual": inverted_residual_graph,
    "bottleneck": bottleneck_graph,
    "fc": fc_graph,
    "add": add_graph,
}

# The squeeze-and-excite kinds (harness.signature.SE_KINDS): the ONNX and TFLite builders add them
# to their graphs; the optimizer's PyTorch units do not take them (yet), so they are kept apart.
SE_GRAPHS = {
    "squeeze_excite": squeeze_excite_graph,
    "inverted_residual_se": inverted_residual_graph,
}

# FBNet's grouped block (harness.signature.GROUPED_KINDS): every builder adds it and provides channel_shuffle.
GROUPED_GRAPHS = {
    "grouped_inverted_residual": grouped_inverted_residual_graph,
}
