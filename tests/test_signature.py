"""Operator signatures: construction, the canonical string, parsing, validation, shapes and MACs."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import ChameleonError, InvalidSignature
from harness.signature import ACTIVATIONS, ADD, AVGPOOL, BOTTLENECK, CONV2D, DEPTHWISE_CONV, DTYPES, FC, GLOBAL_AVGPOOL, IDENTITY, INVERTED_RESIDUAL, KINDS, POINTWISE_CONV, SIGNATURE_COLUMNS, ACTIVATION, OpSignature, make_signature, parse_signature

# The documented field order of the stable string (after the kind).
FIELD_ORDER = ("n", "c_in", "h", "w", "c_out", "kernel", "stride", "padding", "groups", "mid_channels",
               "activation", "dtype")
SPATIAL = (CONV2D, DEPTHWISE_CONV, POINTWISE_CONV, INVERTED_RESIDUAL, BOTTLENECK, AVGPOOL)


def one_line(err: BaseException) -> str:
    message = str(err)
    assert message and "\n" not in message and "\r" not in message
    return message


# ----------------------------------------------------------- hypothesis: valid signatures of each kind
batch = st.integers(1, 4)
channels = st.integers(1, 64)
dtypes = st.sampled_from(DTYPES)
any_act = st.sampled_from(ACTIVATIONS)
real_act = st.sampled_from([a for a in ACTIVATIONS if a != "none"])
odd_kernel = st.sampled_from([1, 3, 5, 7])


@st.composite
def _window(draw, max_kernel=7, padding_max=None):
    """kernel, padding, stride and input h, w that fit together."""
    kernel = draw(st.integers(1, max_kernel))
    top = kernel - 1 if padding_max is None else padding_max(kernel)
    padding = draw(st.integers(0, top))
    stride = draw(st.integers(1, 3))
    low = max(1, kernel - 2 * padding)
    return kernel, padding, stride, draw(st.integers(low, 64)), draw(st.integers(low, 64))


@st.composite
def conv2d_sigs(draw):
    groups = draw(st.integers(1, 4))
    kernel, padding, stride, h, w = draw(_window())
    return make_signature(CONV2D, n=draw(batch), c_in=groups * draw(st.integers(1, 16)), h=h, w=w,
                          c_out=groups * draw(st.integers(1, 16)), kernel=kernel, stride=stride, padding=padding,
                          groups=groups, activation=draw(any_act), dtype=draw(dtypes))


@st.composite
def depthwise_sigs(draw):
    kernel, padding, stride, h, w = draw(_window())
    return make_signature(DEPTHWISE_CONV, n=draw(batch), c_in=draw(channels), h=h, w=w, kernel=kernel, stride=stride,
                          padding=padding, activation=draw(any_act), dtype=draw(dtypes))


@st.composite
def pointwise_sigs(draw):
    groups = draw(st.integers(1, 4))
    return make_signature(POINTWISE_CONV, n=draw(batch), c_in=groups * draw(st.integers(1, 16)),
                          h=draw(st.integers(1, 64)), w=draw(st.integers(1, 64)),
                          c_out=groups * draw(st.integers(1, 16)), stride=draw(st.integers(1, 3)), groups=groups,
                          activation=draw(any_act), dtype=draw(dtypes))


@st.composite
def inverted_residual_sigs(draw):
    c_in = draw(channels)
    return make_signature(INVERTED_RESIDUAL, n=draw(batch), c_in=c_in, h=draw(st.integers(1, 64)),
                          w=draw(st.integers(1, 64)), c_out=draw(channels), kernel=draw(odd_kernel),
                          stride=draw(st.integers(1, 2)), mid_channels=c_in * draw(st.integers(1, 6)),
                          activation=draw(real_act), dtype=draw(dtypes))


@st.composite
def bottleneck_sigs(draw):
    groups = draw(st.integers(1, 4))
    return make_signature(BOTTLENECK, n=draw(batch), c_in=draw(channels), h=draw(st.integers(1, 64)),
                          w=draw(st.integers(1, 64)), c_out=draw(channels), kernel=draw(odd_kernel),
                          stride=draw(st.integers(1, 2)), groups=groups,
                          mid_channels=groups * draw(st.integers(1, 16)), activation=draw(real_act),
                          dtype=draw(dtypes))


@st.composite
def fc_sigs(draw):
    return make_signature(FC, n=draw(batch), c_in=draw(st.integers(1, 4096)), c_out=draw(st.integers(1, 4096)),
                          activation=draw(any_act), dtype=draw(dtypes))


@st.composite
def avgpool_sigs(draw):
    kernel, padding, stride, h, w = draw(_window(padding_max=lambda k: k // 2))
    return make_signature(AVGPOOL, n=draw(batch), c_in=draw(channels), h=h, w=w, kernel=kernel, stride=stride,
                          padding=padding, dtype=draw(dtypes))


@st.composite
def plain_sigs(draw, kind, activation):
    return make_signature(kind, n=draw(batch), c_in=draw(channels), h=draw(st.integers(1, 64)),
                          w=draw(st.integers(1, 64)), activation=draw(activation), dtype=draw(dtypes))


KIND_STRATEGIES = {
    CONV2D: conv2d_sigs(),
    DEPTHWISE_CONV: depthwise_sigs(),
    POINTWISE_CONV: pointwise_sigs(),
    INVERTED_RESIDUAL: inverted_residual_sigs(),
    BOTTLENECK: bottleneck_sigs(),
    FC: fc_sigs(),
    AVGPOOL: avgpool_sigs(),
    GLOBAL_AVGPOOL: plain_sigs(GLOBAL_AVGPOOL, st.just("none")),
    ADD: plain_sigs(ADD, any_act),
    ACTIVATION: plain_sigs(ACTIVATION, real_act),
    IDENTITY: plain_sigs(IDENTITY, st.just("none")),
}
signatures = st.one_of(*KIND_STRATEGIES.values())


def test_strategies_cover_every_kind():
    assert set(KIND_STRATEGIES) == set(KINDS)


# ----------------------------------------------------------- defaults
MINIMAL = {
    CONV2D: dict(c_in=3, h=8, w=8, c_out=4),
    DEPTHWISE_CONV: dict(c_in=4, h=8, w=8),
    POINTWISE_CONV: dict(c_in=4, h=8, w=8, c_out=6),
    INVERTED_RESIDUAL: dict(c_in=4, h=8, w=8, c_out=4, mid_channels=24),
    BOTTLENECK: dict(c_in=16, h=8, w=8, c_out=16, mid_channels=4),
    FC: dict(c_in=16, c_out=10),
    AVGPOOL: dict(c_in=4, h=8, w=8),
    GLOBAL_AVGPOOL: dict(c_in=4, h=8, w=8),
    ADD: dict(c_in=4, h=8, w=8),
    ACTIVATION: dict(c_in=4, h=8, w=8, activation="relu"),
    IDENTITY: dict(),
}


def test_minimal_table_covers_every_kind():
    assert set(MINIMAL) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_with_defaults(kind):
    sig = make_signature(kind, **MINIMAL[kind])
    assert sig.kind == kind
    assert sig.n == 1
    assert sig.dtype == "fp32"
    assert parse_signature(str(sig)) == sig
    assert sig.macs >= 0
    if kind not in (INVERTED_RESIDUAL, BOTTLENECK):
        assert sig.mid_channels == 0
    if kind not in SPATIAL:
        assert (sig.kernel, sig.stride, sig.padding, sig.groups) == (1, 1, 0, 1)


def test_kind_specific_defaults():
    assert make_signature(DEPTHWISE_CONV, c_in=8, h=4, w=4).groups == 8
    assert make_signature(DEPTHWISE_CONV, c_in=8, h=4, w=4).c_out == 8
    assert make_signature(ADD, c_in=8, h=4, w=4).c_out == 8
    assert make_signature(CONV2D, c_in=3, h=8, w=8, c_out=4, kernel=5).padding == 2
    assert make_signature(CONV2D, c_in=3, h=8, w=8, c_out=4, kernel=3, padding=0).padding == 0
    assert make_signature(DEPTHWISE_CONV, c_in=3, h=8, w=8, kernel=7).padding == 3
    fc = make_signature(FC, c_in=16, c_out=10)
    assert (fc.h, fc.w) == (1, 1)
    ir = make_signature(INVERTED_RESIDUAL, c_in=4, h=8, w=8, c_out=4, mid_channels=24, kernel=5)
    assert ir.activation == "relu6" and ir.padding == 2
    bn = make_signature(BOTTLENECK, c_in=16, h=8, w=8, c_out=16, mid_channels=4)
    assert (bn.kernel, bn.padding, bn.activation) == (3, 1, "relu")
    bn5 = make_signature(BOTTLENECK, c_in=16, h=8, w=8, c_out=16, mid_channels=4, kernel=5)
    assert bn5.padding == 2
    ident = make_signature(IDENTITY)
    assert (ident.n, ident.c_in, ident.h, ident.w, ident.c_out) == (1, 1, 1, 1, 1)
    assert ident.macs == 0


def test_make_signature_coerces_integer_like_values():
    sig = make_signature(CONV2D, c_in=np.int64(3), h="8", w=8.0, c_out=np.int32(4), kernel=3)
    assert (sig.c_in, sig.h, sig.w, sig.c_out) == (3, 8, 8, 4)
    assert all(type(getattr(sig, name)) is int for name in FIELD_ORDER[:10])


# ----------------------------------------------------------- canonical string and round trips
def test_documented_example_string():
    sig = make_signature(CONV2D, c_in=3, h=224, w=224, c_out=32, kernel=3, stride=2, activation="relu6")
    text = ("conv2d(n=1,c_in=3,h=224,w=224,c_out=32,kernel=3,stride=2,padding=1,groups=1,mid_channels=0,"
            "activation=relu6,dtype=fp32)")
    assert str(sig) == text
    assert sig.key == text
    assert parse_signature(text) == sig


def test_signature_columns_are_kind_then_fields_in_order():
    assert SIGNATURE_COLUMNS == ("kind",) + FIELD_ORDER


@given(signatures)
def test_str_is_canonical(sig):
    text = str(sig)
    expected = f"{sig.kind}(" + ",".join(f"{name}={getattr(sig, name)}" for name in FIELD_ORDER) + ")"
    assert text == expected
    assert " " not in text
    assert text == sig.key


@given(signatures)
def test_string_round_trip(sig):
    back = parse_signature(str(sig))
    assert back == sig
    assert hash(back) == hash(sig)
    assert str(back) == str(sig)
    assert back.digest == sig.digest


@given(signatures)
def test_record_round_trip(sig):
    record = sig.to_record()
    assert tuple(record) == SIGNATURE_COLUMNS
    back = OpSignature.from_record(record)
    assert back == sig and hash(back) == hash(sig)
    # Extra columns (a LUT row) are ignored; numpy integers (from Arrow/Pandas) are accepted.
    noisy = {name: (np.int64(v) if isinstance(v, int) else v) for name, v in record.items()}
    noisy.update(median_us=1.5, signature=str(sig))
    assert OpSignature.from_record(noisy) == sig


@given(signatures, st.randoms(use_true_random=False))
def test_parse_accepts_any_field_order_and_spaces(sig, rnd):
    parts = [f"{name}={getattr(sig, name)}" for name in FIELD_ORDER]
    rnd.shuffle(parts)
    text = f"  {sig.kind}( " + " , ".join(parts) + " )  "
    assert parse_signature(text) == sig


@given(signatures, signatures)
def test_hash_and_eq_consistent(a, b):
    assert (a == b) == (str(a) == str(b))
    assert (a == b) == (a.to_record() == b.to_record())
    if a == b:
        assert hash(a) == hash(b)
        assert a.digest == b.digest
    assert len({a, b}) == (1 if a == b else 2)


@given(signatures)
def test_digest_is_short_hex(sig):
    assert re.fullmatch(r"[0-9a-f]{16}", sig.digest)


def test_signatures_sort_and_dedupe_in_sets():
    a = make_signature(ADD, c_in=4, h=8, w=8)
    b = make_signature(ADD, c_in=4, h=8, w=8)
    c = make_signature(ADD, c_in=8, h=8, w=8)
    assert a == b and a is not b
    assert len({a, b, c}) == 2
    assert sorted([c, a]) == [a, c]


def test_replace_revalidates():
    sig = make_signature(CONV2D, c_in=3, h=8, w=8, c_out=4, kernel=3)
    assert sig.replace(c_out=8).c_out == 8
    assert sig.replace(c_out=8) != sig
    with pytest.raises(InvalidSignature):
        sig.replace(groups=2)


def test_signature_is_frozen():
    sig = make_signature(ADD, c_in=4, h=8, w=8)
    with pytest.raises(Exception):
        sig.c_in = 5  # type: ignore[misc]


# ----------------------------------------------------------- parse errors
VALID = str(make_signature(CONV2D, c_in=3, h=224, w=224, c_out=32, kernel=3, stride=2))


def _swap(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new, 1)


BAD_STRINGS = {
    "empty": "",
    "blank": "   ",
    "no parentheses": "conv2d",
    "unclosed": "conv2d(n=1,c_in=3",
    "upper-case kind": VALID.replace("conv2d", "CONV2D"),
    "empty body": "conv2d()",
    "trailing comma": VALID[:-1] + ",)",
    "part without =": _swap("n=1,", "n1,"),
    "empty name": _swap("n=1,", "=1,"),
    "duplicate field": _swap("n=1,", "n=1,n=1,"),
    "duplicate with other value": _swap("c_in=3,", "c_in=3,c_in=4,"),
    "kind as field": _swap("n=1,", "kind=conv2d,n=1,"),
    "unknown field": _swap("n=1,", "n=1,bias=1,"),
    "missing field": _swap("groups=1,", ""),
    "only kind and n": "conv2d(n=1)",
    "float": _swap("kernel=3", "kernel=3.0"),
    "word": _swap("kernel=3", "kernel=three"),
    "empty value": _swap("kernel=3", "kernel="),
    "hex": _swap("kernel=3", "kernel=0x3"),
    "unknown kind": VALID.replace("conv2d", "conv3d"),
    "unknown activation": _swap("activation=none", "activation=gelu"),
    "unknown dtype": _swap("dtype=fp32", "dtype=fp16"),
    "newline inside": VALID.replace(",", ",\n", 1),
    "text after": VALID + " extra",
    "zero channels": _swap("c_in=3", "c_in=0"),
    "negative": _swap("h=224", "h=-224"),
}


@pytest.mark.parametrize("text", list(BAD_STRINGS.values()), ids=list(BAD_STRINGS))
def test_parse_rejects_malformed(text):
    with pytest.raises(InvalidSignature) as info:
        parse_signature(text)
    one_line(info.value)
    assert isinstance(info.value, ChameleonError)


@pytest.mark.parametrize("text, fragment", [
    (_swap("n=1,", "n=1,n=1,"), "twice"),
    (_swap("n=1,", "n=1,bias=1,"), "bias"),
    (_swap("groups=1,", ""), "groups"),
    (_swap("kernel=3", "kernel=three"), "kernel"),
    (VALID.replace("conv2d", "conv3d"), "conv3d"),
    (_swap("activation=none", "activation=gelu"), "gelu"),
    (_swap("dtype=fp32", "dtype=fp16"), "fp16"),
    ("conv2d", "malformed"),
])
def test_parse_errors_name_the_problem(text, fragment):
    with pytest.raises(InvalidSignature, match=re.escape(fragment)) as info:
        parse_signature(text)
    one_line(info.value)


def test_parse_accepts_signed_integers_with_same_meaning():
    # Lenient on integer spelling, but the result is canonical.
    sig = parse_signature(_swap("n=1,", "n=+1,"))
    assert str(sig) == VALID


# ----------------------------------------------------------- validation rules
INVALID = {
    "depthwise groups != c_in": (DEPTHWISE_CONV, dict(c_in=8, h=8, w=8, kernel=3, groups=4), "groups must equal c_in"),
    "depthwise c_out != c_in": (DEPTHWISE_CONV, dict(c_in=8, h=8, w=8, c_out=16, kernel=3), "c_out must equal c_in"),
    "pointwise kernel 3": (POINTWISE_CONV, dict(c_in=8, h=8, w=8, c_out=8, kernel=3), "kernel must be 1"),
    "pointwise padding": (POINTWISE_CONV, dict(c_in=8, h=8, w=8, c_out=8, kernel=3, padding=1), "kernel must be 1"),
    "pointwise groups": (POINTWISE_CONV, dict(c_in=8, h=8, w=8, c_out=6, groups=4), "must divide"),
    "conv groups c_in": (CONV2D, dict(c_in=8, h=8, w=8, c_out=6, kernel=3, groups=3), "must divide"),
    "conv groups c_out": (CONV2D, dict(c_in=6, h=8, w=8, c_out=8, kernel=3, groups=3), "must divide"),
    "conv groups 0": (CONV2D, dict(c_in=6, h=8, w=8, c_out=6, kernel=3, groups=0), "groups must be >= 1"),
    "conv padding >= kernel": (CONV2D, dict(c_in=3, h=8, w=8, c_out=4, kernel=3, padding=3), "smaller than kernel"),
    "conv negative padding": (CONV2D, dict(c_in=3, h=8, w=8, c_out=4, kernel=3, padding=-1), "padding must be >= 0"),
    "conv stride 0": (CONV2D, dict(c_in=3, h=8, w=8, c_out=4, kernel=3, stride=0), "stride must be >= 1"),
    "conv kernel 0": (CONV2D, dict(c_in=3, h=8, w=8, c_out=4, kernel=0), "kernel must be >= 1"),
    "conv kernel > input": (CONV2D, dict(c_in=3, h=3, w=8, c_out=4, kernel=5, padding=0), "does not fit input h=3"),
    "conv kernel > input w": (CONV2D, dict(c_in=3, h=8, w=2, c_out=4, kernel=3, padding=0), "does not fit input w=2"),
    "avgpool kernel > input": (AVGPOOL, dict(c_in=3, h=2, w=2, kernel=3), "does not fit"),
    "avgpool padding > k//2": (AVGPOOL, dict(c_in=3, h=8, w=8, kernel=3, padding=2), "at most kernel // 2"),
    "avgpool activation": (AVGPOOL, dict(c_in=3, h=8, w=8, kernel=3, activation="relu"), "activation"),
    "avgpool groups": (AVGPOOL, dict(c_in=3, h=8, w=8, kernel=3, groups=3), "groups does not apply"),
    "ir mid < c_in": (INVERTED_RESIDUAL, dict(c_in=16, h=8, w=8, c_out=16, kernel=3, mid_channels=8), "mid_channels"),
    "ir mid missing": (INVERTED_RESIDUAL, dict(c_in=16, h=8, w=8, c_out=16, kernel=3), "mid_channels"),
    "ir even kernel": (INVERTED_RESIDUAL, dict(c_in=4, h=8, w=8, c_out=4, kernel=4, mid_channels=8), "odd"),
    "ir padding": (INVERTED_RESIDUAL, dict(c_in=4, h=8, w=8, c_out=4, kernel=5, padding=1, mid_channels=8),
                   "padding must be kernel // 2"),
    "ir groups": (INVERTED_RESIDUAL, dict(c_in=4, h=8, w=8, c_out=4, kernel=3, groups=2, mid_channels=8),
                  "groups does not apply"),
    "ir no activation": (INVERTED_RESIDUAL, dict(c_in=4, h=8, w=8, c_out=4, kernel=3, mid_channels=8,
                                                 activation="none"), "activation"),
    "bottleneck mid 0": (BOTTLENECK, dict(c_in=16, h=8, w=8, c_out=16), "mid_channels"),
    "bottleneck groups": (BOTTLENECK, dict(c_in=16, h=8, w=8, c_out=16, mid_channels=6, groups=4), "must divide"),
    "bottleneck even kernel": (BOTTLENECK, dict(c_in=16, h=8, w=8, c_out=16, mid_channels=4, kernel=2), "odd"),
    "bottleneck no activation": (BOTTLENECK, dict(c_in=16, h=8, w=8, c_out=16, mid_channels=4, activation="none"),
                                 "activation"),
    "fc spatial input": (FC, dict(c_in=16, h=2, w=2, c_out=10), "h and w must be 1"),
    "fc kernel": (FC, dict(c_in=16, c_out=10, kernel=3), "kernel does not apply to fc and must be 1"),
    "fc stride": (FC, dict(c_in=16, c_out=10, stride=2), "stride does not apply"),
    "fc mid": (FC, dict(c_in=16, c_out=10, mid_channels=4), "mid_channels does not apply"),
    "add stride": (ADD, dict(c_in=4, h=8, w=8, stride=2), "stride does not apply"),
    "add c_out": (ADD, dict(c_in=4, h=8, w=8, c_out=8), "c_out must equal c_in"),
    "gap padding": (GLOBAL_AVGPOOL, dict(c_in=4, h=8, w=8, padding=1), "padding does not apply"),
    "gap activation": (GLOBAL_AVGPOOL, dict(c_in=4, h=8, w=8, activation="relu"), "activation"),
    "activation kernel": (ACTIVATION, dict(c_in=4, h=8, w=8, kernel=3, activation="relu"), "kernel does not apply"),
    "activation none": (ACTIVATION, dict(c_in=4, h=8, w=8), "activation"),
    "identity groups": (IDENTITY, dict(groups=2), "groups does not apply"),
    "identity activation": (IDENTITY, dict(activation="relu"), "activation"),
    "conv mid": (CONV2D, dict(c_in=3, h=8, w=8, c_out=4, kernel=3, mid_channels=4), "mid_channels does not apply"),
    "depthwise mid": (DEPTHWISE_CONV, dict(c_in=3, h=8, w=8, kernel=3, mid_channels=3), "mid_channels does not apply"),
    "n 0": (CONV2D, dict(n=0, c_in=3, h=8, w=8, c_out=4), "n must be >= 1"),
    "h 0": (ADD, dict(c_in=3, h=0, w=8), "h must be >= 1"),
    "c_out 0": (CONV2D, dict(c_in=3, h=8, w=8, c_out=0), "c_out must be >= 1"),
    "unknown activation": (CONV2D, dict(c_in=3, h=8, w=8, c_out=4, activation="gelu"), "unknown activation"),
    "unknown dtype": (CONV2D, dict(c_in=3, h=8, w=8, c_out=4, dtype="fp16"), "unknown dtype"),
    "bool field": (CONV2D, dict(c_in=3, h=8, w=8, c_out=4, kernel=True), "must be an integer"),
    "fractional field": (CONV2D, dict(c_in=3, h=8, w=8, c_out=4, kernel=2.5), "must be an integer"),
    "text field": (CONV2D, dict(c_in=3, h=8, w=8, c_out=4, kernel="3x3"), "must be an integer"),
    "missing c_out": (CONV2D, dict(c_in=3, h=8, w=8), "missing field(s) c_out"),
    "missing h w": (ADD, dict(c_in=3), "missing field(s) h, w"),
    "unknown field": (CONV2D, dict(c_in=3, h=8, w=8, c_out=4, bias=True), "unknown field(s) bias"),
}


@pytest.mark.parametrize("kind, values, fragment", list(INVALID.values()), ids=list(INVALID))
def test_validation_rejects(kind, values, fragment):
    with pytest.raises(InvalidSignature) as info:
        make_signature(kind, **values)
    message = one_line(info.value)
    assert fragment in message
    assert message.startswith(kind)


@pytest.mark.parametrize("values", [dict(c_out=None), dict(c_out="four"), dict(h=2.5)], ids=["None", "text", "fraction"])
def test_bad_integer_value_is_rejected(values):
    with pytest.raises(InvalidSignature, match="must be an integer") as info:
        make_signature(CONV2D, **{**dict(c_in=3, h=8, w=8, c_out=4), **values})
    one_line(info.value)


@pytest.mark.parametrize("values", [dict(c_out=None), dict(c_out="four"), dict(h=2.5)], ids=["None", "text", "fraction"])
def test_bad_integer_value_message_names_the_kind(values):
    with pytest.raises(InvalidSignature) as info:
        make_signature(CONV2D, **{**dict(c_in=3, h=8, w=8, c_out=4), **values})
    assert one_line(info.value).startswith("conv2d:")


def test_unknown_kind_lists_known_kinds():
    with pytest.raises(InvalidSignature) as info:
        make_signature("conv3d", c_in=3, h=8, w=8, c_out=4)
    message = one_line(info.value)
    assert "conv3d" in message and all(kind in message for kind in KINDS)


def test_constructor_validates_too():
    with pytest.raises(InvalidSignature):
        OpSignature(kind="conv3d", n=1, c_in=3, h=8, w=8, c_out=4)
    with pytest.raises(InvalidSignature, match="must be an integer"):
        OpSignature(kind=CONV2D, n=1, c_in="3", h=8, w=8, c_out=4)  # type: ignore[arg-type]
    with pytest.raises(InvalidSignature, match="groups must equal c_in"):
        OpSignature(kind=DEPTHWISE_CONV, n=1, c_in=3, h=8, w=8, c_out=3, kernel=3, padding=1)


def test_from_record_missing_column():
    record = make_signature(ADD, c_in=4, h=8, w=8).to_record()
    del record["dtype"]
    with pytest.raises(InvalidSignature, match="dtype") as info:
        OpSignature.from_record(record)
    one_line(info.value)


def test_make_signature_kind_passed_twice_is_invalid_signature():
    with pytest.raises(InvalidSignature):
        make_signature(CONV2D, kind=FC, c_in=3, h=8, w=8, c_out=4)


# ----------------------------------------------------------- output shapes
@pytest.mark.parametrize("kind, values, hw_out", [
    (CONV2D, dict(c_in=3, h=224, w=224, c_out=32, kernel=3, stride=2), (112, 112)),
    (CONV2D, dict(c_in=3, h=224, w=224, c_out=64, kernel=7, stride=2), (112, 112)),
    (CONV2D, dict(c_in=3, h=10, w=12, c_out=4, kernel=3, padding=0), (8, 10)),
    (CONV2D, dict(c_in=3, h=7, w=7, c_out=4, kernel=3, stride=2, padding=0), (3, 3)),
    (DEPTHWISE_CONV, dict(c_in=32, h=112, w=112, kernel=3, stride=1), (112, 112)),
    (DEPTHWISE_CONV, dict(c_in=32, h=113, w=113, kernel=5, stride=2), (57, 57)),
    (POINTWISE_CONV, dict(c_in=32, h=7, w=7, c_out=16, stride=2), (4, 4)),
    (AVGPOOL, dict(c_in=8, h=7, w=7, kernel=2, stride=2), (3, 3)),
    (AVGPOOL, dict(c_in=8, h=8, w=8, kernel=3, stride=2, padding=1), (4, 4)),
    (INVERTED_RESIDUAL, dict(c_in=16, h=112, w=112, c_out=24, kernel=3, stride=2, mid_channels=96), (56, 56)),
    (BOTTLENECK, dict(c_in=256, h=56, w=56, c_out=512, stride=2, mid_channels=128), (28, 28)),
    (GLOBAL_AVGPOOL, dict(c_in=1280, h=7, w=7), (1, 1)),
    (FC, dict(c_in=1280, c_out=1000), (1, 1)),
    (ADD, dict(c_in=8, h=14, w=15), (14, 15)),
    (ACTIVATION, dict(c_in=8, h=14, w=15, activation="hardswish"), (14, 15)),
    (IDENTITY, dict(c_in=8, h=14, w=15), (14, 15)),
])
def test_output_shape(kind, values, hw_out):
    sig = make_signature(kind, n=2, **values)
    assert (sig.h_out, sig.w_out) == hw_out
    assert sig.output_shape == (2, sig.c_out) + hw_out
    assert sig.input_shape == (2, sig.c_in, sig.h, sig.w)


@given(signatures)
def test_output_size_formula(sig):
    if sig.kind in SPATIAL:
        assert sig.h_out == (sig.h + 2 * sig.padding - sig.kernel) // sig.stride + 1
        assert sig.w_out == (sig.w + 2 * sig.padding - sig.kernel) // sig.stride + 1
    elif sig.kind in (GLOBAL_AVGPOOL, FC):
        assert (sig.h_out, sig.w_out) == (1, 1)
    else:
        assert (sig.h_out, sig.w_out) == (sig.h, sig.w)
    assert sig.h_out >= 1 and sig.w_out >= 1
    assert sig.output_shape[0] == sig.n and sig.output_shape[1] == sig.c_out


def test_fc_output_shape_is_flat():
    assert make_signature(FC, n=4, c_in=16, c_out=10).output_shape == (4, 10, 1, 1)


@pytest.mark.parametrize("kind, values, expected", [
    (INVERTED_RESIDUAL, dict(c_in=24, h=56, w=56, c_out=24, kernel=3, mid_channels=144), True),
    (INVERTED_RESIDUAL, dict(c_in=24, h=56, w=56, c_out=24, kernel=3, stride=2, mid_channels=144), False),
    (INVERTED_RESIDUAL, dict(c_in=24, h=56, w=56, c_out=32, kernel=3, mid_channels=144), False),
    (BOTTLENECK, dict(c_in=256, h=56, w=56, c_out=256, mid_channels=64), True),
    (BOTTLENECK, dict(c_in=64, h=56, w=56, c_out=256, mid_channels=64), False),
    (BOTTLENECK, dict(c_in=256, h=56, w=56, c_out=256, stride=2, mid_channels=64), False),
    (CONV2D, dict(c_in=8, h=8, w=8, c_out=8, kernel=3), False),
    (ADD, dict(c_in=8, h=8, w=8), False),
])
def test_has_residual(kind, values, expected):
    assert make_signature(kind, **values).has_residual is expected


# ----------------------------------------------------------- MACs
@pytest.mark.parametrize("kind, values, macs", [
    (CONV2D, dict(c_in=3, h=224, w=224, c_out=32, kernel=3, stride=2), 112 * 112 * 32 * 3 * 9),
    (CONV2D, dict(n=2, c_in=3, h=224, w=224, c_out=32, kernel=3, stride=2), 2 * 112 * 112 * 32 * 3 * 9),
    (CONV2D, dict(c_in=8, h=4, w=4, c_out=8, kernel=3, groups=2), 4 * 4 * 8 * 4 * 9),
    (DEPTHWISE_CONV, dict(c_in=32, h=112, w=112, kernel=3), 112 * 112 * 32 * 9),
    (DEPTHWISE_CONV, dict(c_in=96, h=112, w=112, kernel=3, stride=2), 56 * 56 * 96 * 9),
    (POINTWISE_CONV, dict(c_in=32, h=112, w=112, c_out=16), 112 * 112 * 16 * 32),
    (POINTWISE_CONV, dict(c_in=32, h=8, w=8, c_out=16, groups=4), 8 * 8 * 16 * 8),
    (FC, dict(c_in=1280, c_out=1000), 1280 * 1000),
    (FC, dict(n=3, c_in=1280, c_out=1000), 3 * 1280 * 1000),
    (AVGPOOL, dict(c_in=4, h=8, w=8, kernel=3, stride=2, padding=1), 4 * 4 * 4 * 9),
    (GLOBAL_AVGPOOL, dict(c_in=1280, h=7, w=7), 1280 * 49),
    (ADD, dict(c_in=24, h=56, w=56), 24 * 56 * 56),
    (ACTIVATION, dict(c_in=24, h=56, w=56, activation="relu6"), 24 * 56 * 56),
    (IDENTITY, dict(c_in=24, h=56, w=56), 0),
    # MobileNetV2 blocks: expand 1x1, depthwise kxk (stride here), project 1x1, (+ residual add).
    (INVERTED_RESIDUAL, dict(c_in=16, h=112, w=112, c_out=24, kernel=3, stride=2, mid_channels=96),
     112 * 112 * 16 * 96 + 56 * 56 * 96 * 9 + 56 * 56 * 96 * 24),
    (INVERTED_RESIDUAL, dict(c_in=32, h=112, w=112, c_out=16, kernel=3, mid_channels=32),  # t = 1: no expansion
     112 * 112 * 32 * 9 + 112 * 112 * 32 * 16),
    (INVERTED_RESIDUAL, dict(c_in=24, h=56, w=56, c_out=24, kernel=3, mid_channels=144),
     56 * 56 * 24 * 144 + 56 * 56 * 144 * 9 + 56 * 56 * 144 * 24 + 56 * 56 * 24),
    # ResNet-50 conv2_x bottleneck with identity shortcut: about 219 M MACs.
    (BOTTLENECK, dict(c_in=256, h=56, w=56, c_out=256, mid_channels=64),
     56 * 56 * (256 * 64 + 64 * 64 * 9 + 64 * 256 + 256)),
    # ... and with a projection shortcut (stride 2).
    (BOTTLENECK, dict(c_in=256, h=56, w=56, c_out=512, stride=2, mid_channels=128),
     56 * 56 * 256 * 128 + 28 * 28 * (128 * 128 * 9 + 128 * 512 + 256 * 512 + 512)),
])
def test_macs(kind, values, macs):
    assert make_signature(kind, **values).macs == macs


@given(signatures)
def test_macs_scale_with_batch(sig):
    assert sig.macs >= 0
    if sig.n == 1:
        assert sig.replace(n=3).macs == 3 * sig.macs
