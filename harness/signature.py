"""The operator vocabulary: a canonical, hashable signature that keys the LUT.

A signature names one measurable unit of a network: a single operator (a conv,
a pooling, an add...) or a block that is measured as one fused entry (the
MobileNetV2 inverted residual, the ResNet bottleneck, MobileNetV3's inverted
residual with squeeze-and-excite).  It is the contract
between the harness, which measures signatures, and the optimizer, which adds
their latencies up.

Every field is always present; fields that do not apply to a kind hold a fixed
canonical value (kernel 1, stride 1, padding 0, groups 1, mid_channels 0), so
two descriptions of the same operator can never produce two LUT keys.

The stable string form spells every field, in a fixed order::

    conv2d(n=1,c_in=3,h=224,w=224,c_out=32,kernel=3,stride=2,padding=1,groups=1,mid_channels=0,activation=relu6,dtype=fp32)

and :func:`parse_signature` reads it back, so a signature round-trips through
text and through the LUT's Parquet columns (:meth:`OpSignature.to_record`).

Squeeze-and-excite (issue 19) is two kinds, not a field, so that no existing key
changes: ``squeeze_excite`` (global average pool → 1×1 reduce to
``mid_channels`` → ReLU → 1×1 expand → hard-sigmoid → channel-wise multiply of
the input) and ``inverted_residual_se`` (the inverted residual with that block
after its depthwise conv, its reduced width :func:`se_reduced_channels` of the
expanded width).  h-swish is the existing ``activation=hardswish``.

FBNet's grouped blocks (issue 21) are one more kind, ``grouped_inverted_residual``
(ShuffleNet's unit as FBNet uses it: a 1×1 convolution in ``groups`` groups to
``mid_channels`` + activation, a channel shuffle of ``groups``, the k×k depthwise
conv + activation, a linear 1×1 convolution in ``groups`` groups, the residual add
when stride 1 and ``c_in = c_out``).  Its expansion conv is always there (FBNet's
``k3_e1_g2`` has one at expansion 1: the grouped 1×1 and the shuffle are what
mix the groups); ``groups`` ≥ 2 (one group is the plain ``inverted_residual``).
It is a kind of its own rather than a meaning of ``groups`` on
``inverted_residual``, whose ``groups`` stays 1 as before.
"""

from __future__ import annotations

import hashlib
import numbers
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from harness.errors import InvalidSignature

# Kinds, in the order the README documents them.
CONV2D = "conv2d"
DEPTHWISE_CONV = "depthwise_conv"
POINTWISE_CONV = "pointwise_conv"
INVERTED_RESIDUAL = "inverted_residual"
BOTTLENECK = "bottleneck"
FC = "fc"
AVGPOOL = "avgpool"
GLOBAL_AVGPOOL = "global_avgpool"
ADD = "add"
ACTIVATION = "activation"
IDENTITY = "identity"  # an empty model: the runtime's fixed per-invocation cost
# MobileNetV3 / Once-for-All kinds (issue 19): squeeze-and-excite, alone and inside the inverted residual.
SQUEEZE_EXCITE = "squeeze_excite"
INVERTED_RESIDUAL_SE = "inverted_residual_se"
# FBNet's grouped block (issue 21): grouped 1x1 convs with a channel shuffle around the depthwise conv.
GROUPED_INVERTED_RESIDUAL = "grouped_inverted_residual"

KINDS: tuple[str, ...] = (
    CONV2D,
    DEPTHWISE_CONV,
    POINTWISE_CONV,
    INVERTED_RESIDUAL,
    BOTTLENECK,
    FC,
    AVGPOOL,
    GLOBAL_AVGPOOL,
    ADD,
    ACTIVATION,
    IDENTITY,
)
#: The squeeze-and-excite kinds of MobileNetV3 and Once-for-All.  Kept apart from :data:`KINDS`, the
#: vocabulary every builder (ONNX, TFLite, the optimizer's PyTorch units), the smoke plan and the
#: coverage tests span: these have ONNX and TFLite builders and LUT keys, no PyTorch training unit yet.
SE_KINDS: tuple[str, ...] = (SQUEEZE_EXCITE, INVERTED_RESIDUAL_SE)
#: FBNet's grouped inverted residual (issue 21).  Kept apart from :data:`KINDS` so that the smoke plan and the
#: coverage tests over it stay as they were; every builder (ONNX, TFLite, ExecuTorch, the PyTorch units) takes it.
GROUPED_KINDS: tuple[str, ...] = (GROUPED_INVERTED_RESIDUAL,)
#: Every kind a signature may have.
ALL_KINDS: tuple[str, ...] = KINDS + SE_KINDS + GROUPED_KINDS
ACTIVATIONS: tuple[str, ...] = ("none", "relu", "relu6", "hardswish")
DTYPES: tuple[str, ...] = ("fp32", "int8")

# Kinds whose kernel/stride/padding/groups fields are meaningful.
_SPATIAL_KINDS = {CONV2D, DEPTHWISE_CONV, POINTWISE_CONV, INVERTED_RESIDUAL, BOTTLENECK, AVGPOOL, INVERTED_RESIDUAL_SE,
                  GROUPED_INVERTED_RESIDUAL}
# Kinds whose output has as many channels as the input.
_SAME_CHANNEL_KINDS = {DEPTHWISE_CONV, AVGPOOL, GLOBAL_AVGPOOL, ADD, ACTIVATION, IDENTITY, SQUEEZE_EXCITE}
# The MobileNetV2 inverted residual, with or without squeeze-and-excite.
_INVERTED_RESIDUALS = {INVERTED_RESIDUAL, INVERTED_RESIDUAL_SE}
# Blocks with the identity shortcut when stride 1 and c_in = c_out.
_RESIDUAL_BLOCKS = {INVERTED_RESIDUAL, BOTTLENECK, INVERTED_RESIDUAL_SE, GROUPED_INVERTED_RESIDUAL}
# Kinds whose mid_channels field is meaningful.
_MID_CHANNEL_KINDS = {INVERTED_RESIDUAL, BOTTLENECK, INVERTED_RESIDUAL_SE, SQUEEZE_EXCITE, GROUPED_INVERTED_RESIDUAL}

_INT_FIELDS = ("n", "c_in", "h", "w", "c_out", "kernel", "stride", "padding", "groups", "mid_channels")

#: The largest value any integer field may take (2**20): far beyond any layer of a real network (the
#: widest fc input of VGG is 25,088), small enough that shapes and MAC counts stay exact integers and
#: the model builders never meet an array they cannot describe.  What a device can hold is a tighter,
#: per-profile limit (``memory_limit_mb``), checked against :func:`working_set_bytes` before building.
MAX_DIMENSION = 1 << 20


@dataclass(frozen=True, order=True)
class OpSignature:
    """One operator (or fused block) with its input shape and attributes.

    Shapes are NCHW.  ``c_out`` is the output channel count (equal to ``c_in``
    for shape-preserving kinds).  ``mid_channels`` is the expanded width of an
    inverted residual (``c_in * t``; equal to ``c_in`` when t = 1, meaning no
    expansion conv), the bottleneck width of a ResNet bottleneck, the reduced
    width of a squeeze-and-excite, else 0.
    ``activation`` is the activation fused after the operator (for blocks: the
    one used inside them).
    """

    kind: str
    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1
    mid_channels: int = 0
    activation: str = "none"
    dtype: str = "fp32"

    def __post_init__(self) -> None:
        _validate(self)

    # ----------------------------------------------------------------- shapes
    @property
    def h_out(self) -> int:
        return _out_size(self, self.h)

    @property
    def w_out(self) -> int:
        return _out_size(self, self.w)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        if self.kind == FC:
            return (self.n, self.c_out, 1, 1)
        return (self.n, self.c_out, self.h_out, self.w_out)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c_in, self.h, self.w)

    @property
    def has_residual(self) -> bool:
        """True when a block adds its input to its output unchanged (identity shortcut)."""
        return self.kind in _RESIDUAL_BLOCKS and self.stride == 1 and self.c_in == self.c_out

    @property
    def se_channels(self) -> int:
        """The reduced width of the block's squeeze-and-excite (0 when it has none).

        A ``squeeze_excite`` states it (``mid_channels``); an ``inverted_residual_se`` derives it from its
        expanded width by MobileNetV3's and Once-for-All's rule, :func:`se_reduced_channels`.
        """
        if self.kind == SQUEEZE_EXCITE:
            return self.mid_channels
        if self.kind == INVERTED_RESIDUAL_SE:
            return se_reduced_channels(self.mid_channels)
        return 0

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass (adds and pools count one per element)."""
        return _macs(self)

    # ------------------------------------------------------------ serialising
    def __str__(self) -> str:
        body = ",".join(f"{name}={getattr(self, name)}" for name in _FIELD_NAMES[1:])
        return f"{self.kind}({body})"

    @property
    def key(self) -> str:
        """The stable string form: the LUT's ``signature`` column."""
        return str(self)

    @property
    def digest(self) -> str:
        """A short stable hash of the key, for file names (model cache)."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:16]

    def to_record(self) -> dict[str, Any]:
        """The signature as LUT columns (one per field)."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "OpSignature":
        """Rebuild a signature from LUT columns; extra keys are ignored."""
        try:
            values = {name: record[name] for name in _FIELD_NAMES}
        except KeyError as missing:
            raise InvalidSignature(f"record lacks signature column {missing}") from None
        return cls(**_coerce(values))

    def replace(self, **changes: Any) -> "OpSignature":
        values = self.to_record()
        values.update(changes)
        return OpSignature(**values)


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(OpSignature))
SIGNATURE_COLUMNS = _FIELD_NAMES


def make_signature(kind: str, /, **values: Any) -> OpSignature:
    """Build a signature from the fields that matter for ``kind``.

    Fields that do not apply get their canonical value; a convolution's padding
    defaults to ``kernel // 2`` ("same" for odd kernels); a shape-preserving
    kind's ``c_out`` defaults to ``c_in``.  ``n`` defaults to 1.  A
    squeeze-and-excite's reduced width defaults to :func:`se_reduced_channels`
    of its channels.
    """
    if kind not in ALL_KINDS:
        raise InvalidSignature(f"unknown op kind {kind!r} (known: {', '.join(ALL_KINDS)})")
    unknown = set(values) - set(_FIELD_NAMES[1:])
    if unknown:
        raise InvalidSignature(f"{kind}: unknown field(s) {', '.join(sorted(unknown))}")
    values = dict(values)
    values.setdefault("n", 1)
    if kind in _SAME_CHANNEL_KINDS and "c_in" in values:
        values.setdefault("c_out", values["c_in"])
    if kind == DEPTHWISE_CONV and "c_in" in values:
        values.setdefault("groups", values["c_in"])
    if kind == FC:
        values.setdefault("h", 1)
        values.setdefault("w", 1)
    if kind in (CONV2D, DEPTHWISE_CONV, INVERTED_RESIDUAL, BOTTLENECK, INVERTED_RESIDUAL_SE,
                GROUPED_INVERTED_RESIDUAL) and "kernel" in values:
        values.setdefault("padding", _int(kind, "kernel", values["kernel"]) // 2)
    if kind in (INVERTED_RESIDUAL, INVERTED_RESIDUAL_SE, GROUPED_INVERTED_RESIDUAL):
        values.setdefault("activation", "relu6")
    if kind == SQUEEZE_EXCITE and "c_in" in values:
        values.setdefault("mid_channels", se_reduced_channels(_int(kind, "c_in", values["c_in"])))
    if kind == BOTTLENECK:
        values.setdefault("kernel", 3)
        values.setdefault("padding", 1)
        values.setdefault("activation", "relu")
    if kind == IDENTITY:
        for name in ("c_in", "h", "w"):
            values.setdefault(name, 1)
        values.setdefault("c_out", values["c_in"])
    missing = [name for name in ("c_in", "h", "w", "c_out") if name not in values]
    if missing:
        raise InvalidSignature(f"{kind}: missing field(s) {', '.join(missing)}")
    return OpSignature(**_coerce({"kind": kind, **values}))


_SIGNATURE_RE = re.compile(r"^\s*([a-z_0-9]+)\((.*)\)\s*$")


def parse_signature(text: str) -> OpSignature:
    """Parse the stable string form (all fields, any order, no duplicates)."""
    match = _SIGNATURE_RE.match(text)
    if not match:
        raise InvalidSignature(f"malformed signature {text!r}: expected kind(field=value,...)")
    kind, body = match.groups()
    values: dict[str, Any] = {"kind": kind}
    for part in body.split(","):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise InvalidSignature(f"malformed signature {text!r}: {part!r} is not field=value")
        if name in values:
            raise InvalidSignature(f"malformed signature {text!r}: field {name!r} given twice")
        values[name] = value
    unknown = set(values) - set(_FIELD_NAMES)
    if unknown:
        raise InvalidSignature(f"signature {text!r}: unknown field(s) {', '.join(sorted(unknown))}")
    missing = [name for name in _FIELD_NAMES if name not in values]
    if missing:
        raise InvalidSignature(f"signature {text!r}: missing field(s) {', '.join(missing)}")
    return OpSignature(**_coerce(values))


# ---------------------------------------------------------------- internals
def _int(kind: str, name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidSignature(f"{kind}: {name} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):  # int, numpy integers (Parquet columns)
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    raise InvalidSignature(f"{kind}: {name} must be an integer, got {value!r}")


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    kind = str(values.get("kind", "?"))
    out = dict(values)
    for name in _INT_FIELDS:
        if name in out:
            out[name] = _int(kind, name, out[name])
    for name in ("kind", "activation", "dtype"):
        if name in out:
            out[name] = str(out[name])
    return out


def _out_size(sig: OpSignature, size: int) -> int:
    if sig.kind in (GLOBAL_AVGPOOL, FC):
        return 1
    if sig.kind not in _SPATIAL_KINDS:
        return size
    return (size + 2 * sig.padding - sig.kernel) // sig.stride + 1


def _validate(sig: OpSignature) -> None:
    kind = sig.kind
    if kind not in ALL_KINDS:
        raise InvalidSignature(f"unknown op kind {kind!r} (known: {', '.join(ALL_KINDS)})")
    for name in _INT_FIELDS:
        value = getattr(sig, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidSignature(f"{kind}: {name} must be an integer, got {value!r}")
    if sig.activation not in ACTIVATIONS:
        raise InvalidSignature(f"{kind}: unknown activation {sig.activation!r} (known: {', '.join(ACTIVATIONS)})")
    if sig.dtype not in DTYPES:
        raise InvalidSignature(f"{kind}: unknown dtype {sig.dtype!r} (known: {', '.join(DTYPES)})")
    for name in _INT_FIELDS:
        if getattr(sig, name) > MAX_DIMENSION:
            raise InvalidSignature(f"{kind}: {name}={getattr(sig, name)} is beyond the largest size a signature may have ({MAX_DIMENSION})")
    for name in ("n", "c_in", "h", "w", "c_out"):
        if getattr(sig, name) < 1:
            raise InvalidSignature(f"{kind}: {name} must be >= 1, got {getattr(sig, name)}")

    def require(condition: bool, message: str) -> None:
        if not condition:
            raise InvalidSignature(f"{kind}: {message}")

    def canonical(name: str, value: int) -> None:
        require(getattr(sig, name) == value, f"{name} does not apply to {kind} and must be {value}, got {getattr(sig, name)}")

    if kind in _SPATIAL_KINDS:
        require(sig.kernel >= 1, f"kernel must be >= 1, got {sig.kernel}")
        require(sig.stride >= 1, f"stride must be >= 1, got {sig.stride}")
        require(sig.padding >= 0, f"padding must be >= 0, got {sig.padding}")
        require(sig.padding < sig.kernel, f"padding {sig.padding} must be smaller than kernel {sig.kernel}")
    else:
        for name, value in (("kernel", 1), ("stride", 1), ("padding", 0), ("groups", 1)):
            canonical(name, value)
    if kind in _SAME_CHANNEL_KINDS:
        require(sig.c_out == sig.c_in, f"c_out must equal c_in ({sig.c_in}), got {sig.c_out}")
    if kind not in _MID_CHANNEL_KINDS:
        canonical("mid_channels", 0)

    if kind == CONV2D:
        require(sig.groups >= 1, f"groups must be >= 1, got {sig.groups}")
        require(sig.c_in % sig.groups == 0 and sig.c_out % sig.groups == 0,
                f"groups {sig.groups} must divide c_in {sig.c_in} and c_out {sig.c_out}")
    elif kind == DEPTHWISE_CONV:
        require(sig.groups == sig.c_in, f"groups must equal c_in ({sig.c_in}) for a depthwise conv, got {sig.groups}")
    elif kind == POINTWISE_CONV:
        require(sig.kernel == 1, f"kernel must be 1 for a pointwise conv, got {sig.kernel}")
        require(sig.padding == 0, f"padding must be 0 for a pointwise conv, got {sig.padding}")
        require(sig.groups >= 1 and sig.c_in % sig.groups == 0 and sig.c_out % sig.groups == 0,
                f"groups {sig.groups} must divide c_in {sig.c_in} and c_out {sig.c_out}")
    elif kind in (INVERTED_RESIDUAL, BOTTLENECK, INVERTED_RESIDUAL_SE, GROUPED_INVERTED_RESIDUAL):
        require(sig.kernel % 2 == 1, f"kernel must be odd, got {sig.kernel}")
        require(sig.padding == sig.kernel // 2, f"padding must be kernel // 2 = {sig.kernel // 2}, got {sig.padding}")
        if kind in _INVERTED_RESIDUALS:
            canonical("groups", 1)
            require(sig.mid_channels >= sig.c_in,
                    f"mid_channels (expanded width) must be >= c_in {sig.c_in}, got {sig.mid_channels}")
            require(sig.activation != "none", "activation must not be none inside an inverted residual")
        elif kind == GROUPED_INVERTED_RESIDUAL:
            require(sig.groups >= 2, f"groups must be >= 2 (one group is an inverted_residual), got {sig.groups}")
            require(sig.mid_channels >= sig.c_in,
                    f"mid_channels (expanded width) must be >= c_in {sig.c_in}, got {sig.mid_channels}")
            require(sig.c_in % sig.groups == 0 and sig.mid_channels % sig.groups == 0 and sig.c_out % sig.groups == 0,
                    f"groups {sig.groups} must divide c_in {sig.c_in}, mid_channels {sig.mid_channels} and c_out {sig.c_out}")
            require(sig.activation != "none", "activation must not be none inside an inverted residual")
        else:
            require(sig.mid_channels >= 1, f"mid_channels (bottleneck width) must be >= 1, got {sig.mid_channels}")
            require(sig.groups >= 1 and sig.mid_channels % sig.groups == 0,
                    f"groups {sig.groups} must divide mid_channels {sig.mid_channels}")
            require(sig.activation != "none", "activation must not be none inside a bottleneck")
    elif kind == FC:
        require(sig.h == 1 and sig.w == 1, f"an fc takes a flat input: h and w must be 1, got {sig.h}x{sig.w}")
    elif kind == AVGPOOL:
        canonical("groups", 1)
        canonical("mid_channels", 0)
        require(sig.padding <= sig.kernel // 2, f"padding {sig.padding} must be at most kernel // 2 = {sig.kernel // 2}")
        require(sig.activation == "none", f"activation does not apply to avgpool, got {sig.activation}")
    elif kind in (GLOBAL_AVGPOOL, IDENTITY):
        require(sig.activation == "none", f"activation does not apply to {kind}, got {sig.activation}")
    elif kind == ACTIVATION:
        require(sig.activation != "none", "an activation op needs activation relu, relu6 or hardswish")
    elif kind == SQUEEZE_EXCITE:
        require(sig.mid_channels >= 1, f"mid_channels (the reduced width) must be >= 1, got {sig.mid_channels}")
        require(sig.activation == "none",
                f"activation does not apply to squeeze_excite (its relu and hard-sigmoid are fixed), got {sig.activation}")

    if kind in _SPATIAL_KINDS:
        for axis, size in (("h", sig.h), ("w", sig.w)):
            out = (size + 2 * sig.padding - sig.kernel) // sig.stride + 1
            require(out >= 1, f"kernel {sig.kernel} with padding {sig.padding} does not fit input {axis}={size}")


def working_set_bytes(sig: OpSignature) -> int:
    """An upper estimate of the memory one measurement of ``sig`` needs, in bytes.

    Every tensor counted at 4 bytes (the harness feeds fp32 inputs, and int8 models quantize from and
    dequantize to them): the input three times (its random values are drawn in float64, then cast), the output, the
    weights, and the intermediate activations of a fused block.  It is checked against a device's
    ``memory_limit_mb`` before a model is built, so an impossible op is one line, not minutes of
    swapping.
    """
    n, c_in, c_out, mid = sig.n, sig.c_in, sig.c_out, sig.mid_channels
    k2 = sig.kernel * sig.kernel
    inputs = n * c_in * sig.h * sig.w * (2 if sig.kind == ADD else 1)
    outputs = n * c_out * sig.h_out * sig.w_out
    if sig.kind in (CONV2D, POINTWISE_CONV):
        weights = c_out * (c_in // sig.groups) * k2
        inner = 0
    elif sig.kind == DEPTHWISE_CONV:
        weights, inner = c_out * k2, 0
    elif sig.kind in _INVERTED_RESIDUALS:
        se = sig.se_channels
        weights = c_in * mid + mid * k2 + mid * c_out + 2 * mid * se
        inner = n * mid * (sig.h * sig.w + sig.h_out * sig.w_out)
    elif sig.kind == GROUPED_INVERTED_RESIDUAL:  # the expanded tensor twice at input size: before and after the shuffle
        weights = (c_in * mid + mid * c_out) // sig.groups + mid * k2
        inner = n * mid * (2 * sig.h * sig.w + sig.h_out * sig.w_out)
    elif sig.kind == SQUEEZE_EXCITE:
        weights, inner = 2 * c_in * mid, n * (c_in + mid)
    elif sig.kind == BOTTLENECK:
        weights = c_in * mid + mid * (mid // sig.groups) * k2 + mid * c_out + c_in * c_out
        inner = n * mid * (sig.h * sig.w + 2 * sig.h_out * sig.w_out)
    elif sig.kind == FC:
        weights, inner = c_in * c_out, 0
    else:
        weights, inner = 0, 0
    return 4 * (3 * inputs + outputs + weights + inner)


def _macs(sig: OpSignature) -> int:
    n, c_in, c_out = sig.n, sig.c_in, sig.c_out
    hw_in = sig.h * sig.w
    hw_out = sig.h_out * sig.w_out
    k2 = sig.kernel * sig.kernel
    kind = sig.kind
    if kind in (CONV2D, POINTWISE_CONV):
        return n * hw_out * c_out * (c_in // sig.groups) * k2
    if kind == DEPTHWISE_CONV:
        return n * hw_out * c_out * k2
    if kind in _INVERTED_RESIDUALS:
        mid = sig.mid_channels
        expand = n * hw_in * c_in * mid if mid != c_in else 0
        depthwise = n * hw_out * mid * k2
        project = n * hw_out * mid * c_out
        se = _se_macs(n, hw_out, mid, sig.se_channels) if kind == INVERTED_RESIDUAL_SE else 0
        return expand + depthwise + se + project + (n * hw_out * c_out if sig.has_residual else 0)
    if kind == GROUPED_INVERTED_RESIDUAL:  # the shuffle moves data and counts no MACs
        mid, g = sig.mid_channels, sig.groups
        expand = n * hw_in * c_in * mid // g
        project = n * hw_out * mid * c_out // g
        return expand + n * hw_out * mid * k2 + project + (n * hw_out * c_out if sig.has_residual else 0)
    if kind == SQUEEZE_EXCITE:
        return _se_macs(n, hw_in, c_in, sig.mid_channels)
    if kind == BOTTLENECK:
        mid = sig.mid_channels
        reduce = n * hw_in * c_in * mid
        spatial = n * hw_out * mid * (mid // sig.groups) * k2
        expand = n * hw_out * mid * c_out
        shortcut = 0 if sig.has_residual else n * hw_out * c_in * c_out
        return reduce + spatial + expand + shortcut + n * hw_out * c_out
    if kind == FC:
        return n * c_in * c_out
    if kind == AVGPOOL:
        return n * hw_out * c_out * k2
    if kind in (GLOBAL_AVGPOOL, ADD, ACTIVATION):
        return n * hw_in * c_in
    return 0  # identity


def _se_macs(n: int, hw: int, channels: int, reduced: int) -> int:
    """A squeeze-and-excite: the pooling and the rescaling one per element, the two 1x1 convs on the pooled vector."""
    return n * (2 * hw * channels + 2 * channels * reduced)


def se_reduced_channels(channels: int) -> int:
    """The squeeze-and-excite width of MobileNetV3 and Once-for-All: ``channels // 4`` rounded to a multiple of 8.

    The rounding is MobileNet's ``_make_divisible(v, 8)``: the nearest multiple of 8 (at least 8), one
    step up when that falls more than 10 % below ``v`` (72 channels → 24, 144 → 40, 576 → 144).
    """
    v = channels // 4
    reduced = max(8, int(v + 4) // 8 * 8)
    return reduced + 8 if reduced < 0.9 * v else reduced
