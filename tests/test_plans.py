"""Sweep plans: the built-in plans, the YAML format, and its error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import InvalidPlan
from harness.paths import plans_dir
from harness.plans import Plan, available_plans, count_by_kind, load_plan
from harness.signature import DTYPES, IDENTITY, KINDS, OpSignature, make_signature, parse_signature


@pytest.fixture(scope="module")
def chamnet() -> Plan:
    return load_plan("chamnet-mobile")


@pytest.fixture(scope="module")
def smoke() -> Plan:
    return load_plan("smoke")


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def plan_of(tmp_path: Path, text: str) -> Plan:
    return load_plan(write(tmp_path, text))


# --------------------------------------------------------------- built-in plans
def test_builtin_plans_are_listed_and_load(smoke, chamnet):
    assert {"chamnet-mobile", "smoke"} <= set(available_plans())
    for name, plan in (("chamnet-mobile", chamnet), ("smoke", smoke)):
        assert plan.name == name
        assert plan.description
        assert plan.source == (plans_dir() / f"{name}.yaml").resolve()
        assert plan.signatures and all(isinstance(s, OpSignature) for s in plan.signatures)


def test_smoke_covers_every_kind_but_identity_and_both_dtypes(smoke):
    kinds = {s.kind for s in smoke.signatures}
    assert kinds == set(KINDS) - {IDENTITY}
    assert {s.dtype for s in smoke.signatures} == set(DTYPES)
    # most of it in both dtypes
    assert sum(s.dtype == "int8" for s in smoke.signatures) >= len(smoke.signatures) // 3
    assert 60 <= len(smoke.signatures) <= 90


def test_smoke_has_the_variants_it_promises(smoke):
    sigs = smoke.signatures
    assert any(s.kind == "conv2d" and 1 < s.groups for s in sigs)
    ir = [s for s in sigs if s.kind == "inverted_residual"]
    assert any(s.has_residual for s in ir) and any(not s.has_residual for s in ir)
    assert any(s.mid_channels == s.c_in for s in ir)  # t = 1
    bn = [s for s in sigs if s.kind == "bottleneck"]
    assert any(s.has_residual for s in bn) and any(not s.has_residual for s in bn)
    assert {s.activation for s in sigs if s.kind == "activation"} == {"relu", "relu6", "hardswish"}
    for s in sigs:
        if s.kind != "fc":
            assert 7 <= s.h <= 112 and 3 <= s.c_in <= 128


def test_smoke_has_no_duplicates(smoke):
    keys = [s.key for s in smoke.signatures]
    assert len(keys) == len(set(keys))


def test_count_by_kind(smoke):
    counts = count_by_kind(smoke)
    assert sum(counts.values()) == len(smoke.signatures)
    assert list(counts) == [k for k in KINDS if k in counts]
    assert IDENTITY not in counts


# ---------------------------------------------------------- chamnet-mobile plan
# Table 1 of the ChamNet paper: (op, t range, c range, n max, s, k); ranges inclusive.
TABLE1 = [
    ("conv2d", None, (8, 48), 1, 2, 3),
    ("inverted_residual", (1, 1), (8, 32), 1, 1, 3),
    ("inverted_residual", (2, 6), (8, 40), 2, 2, 3),
    ("inverted_residual", (2, 6), (8, 48), 3, 2, 3),
    ("inverted_residual", (2, 6), (16, 96), 4, 2, 3),
    ("inverted_residual", (2, 6), (32, 160), 3, 1, 3),
    ("inverted_residual", (2, 6), (56, 256), 3, 2, 3),
    ("inverted_residual", (2, 6), (96, 480), 1, 1, 3),
    ("conv2d", None, (1024, 2048), 1, 1, 1),
]


def table1_units() -> set[tuple]:
    """Written out with plain loops, independently of harness.plans."""
    units = set()
    for res in range(96, 224 + 1, 32):
        widths_in, size = [3], res
        for op, t_range, (c_lo, c_hi), n_max, stride, kernel in TABLE1:
            widths = list(range(c_lo, c_hi + 1, 8))
            ts = list(range(t_range[0], t_range[1] + 1)) if t_range else [0]
            out_size = (size + 2 * (kernel // 2) - kernel) // stride + 1
            for c_in in widths_in:
                for c_out in widths:
                    for t in ts:
                        units.add((op, c_in, size, c_out, kernel, stride, c_in * t))
            if n_max >= 2:
                for c in widths:
                    for t in ts:
                        units.add((op, c, out_size, c, kernel, 1, c * t))
            widths_in, size = widths, out_size
        for c in widths_in:
            units.add(("global_avgpool", c, size, c, 1, 1, 0))
            units.add(("fc", c, 1, 1000, 1, 1, 0))
    return units


def test_chamnet_mobile_matches_an_independent_count(chamnet):
    expected = table1_units()
    got = {(s.kind, s.c_in, s.h, s.c_out, s.kernel, s.stride, s.mid_channels) for s in chamnet.signatures}
    assert len(chamnet.signatures) == len(expected)
    assert got == expected
    by_kind: dict[str, int] = {}
    for unit in expected:
        by_kind[unit[0]] = by_kind.get(unit[0], 0) + 1
    assert count_by_kind(chamnet) == {k: by_kind[k] for k in KINDS if k in by_kind}
    assert {s.dtype for s in chamnet.signatures} == {"fp32"}
    assert all(s.n == 1 and s.h == s.w for s in chamnet.signatures)


def test_chamnet_mobile_header_states_the_count(chamnet):
    header = (plans_dir() / "chamnet-mobile.yaml").read_text()
    assert f"{len(chamnet.signatures)} signatures" in header


def mobilenet_v2_224() -> list[OpSignature]:
    """MobileNetV2 1.0x at 224 (Table 1's default column), block by block."""
    sigs = [make_signature("conv2d", c_in=3, h=224, w=224, c_out=32, kernel=3, stride=2, activation="relu6")]
    c_in, size = 32, 112
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            sigs.append(make_signature("inverted_residual", c_in=c_in, h=size, w=size, c_out=c,
                                       kernel=3, stride=stride, mid_channels=c_in * t))
            size = (size - 1) // stride + 1
            c_in = c
    sigs.append(make_signature("conv2d", c_in=320, h=7, w=7, c_out=1280, kernel=1, activation="relu6"))
    sigs.append(make_signature("global_avgpool", c_in=1280, h=7, w=7))
    sigs.append(make_signature("fc", c_in=1280, c_out=1000))
    return sigs


def test_chamnet_mobile_contains_mobilenet_v2(chamnet):
    everything = set(chamnet.signatures)
    network = mobilenet_v2_224()
    assert len(network) == 1 + 17 + 3
    missing = [str(s) for s in network if s not in everything]
    assert not missing


# ------------------------------------------------------------------- the format
def test_grid_lists_make_a_product_and_same_copies(tmp_path):
    plan = plan_of(tmp_path, """
name: grid
dtypes: [fp32, int8]
entries:
  - kind: conv2d
    c_in: 16
    h: [28, 56]
    w: same
    c_out: [16, 32]
    kernel: 3
    stride: [1, 2]
    activation: relu6
""")
    assert plan.name == "grid" and plan.description == ""
    assert len(plan.signatures) == 2 * 2 * 2 * 2
    assert all(s.h == s.w for s in plan.signatures)
    assert {(s.h, s.c_out, s.stride, s.dtype) for s in plan.signatures} == {
        (h, c, st, d) for h in (28, 56) for c in (16, 32) for st in (1, 2) for d in ("fp32", "int8")}
    assert all(s.padding == 1 and s.activation == "relu6" for s in plan.signatures)
    # deterministic order: fields in signature order, the last (dtype) fastest
    assert [s.dtype for s in plan.signatures[:2]] == ["fp32", "int8"]
    assert (plan.signatures[0].h, plan.signatures[-1].h) == (28, 56)
    assert plan_of(tmp_path, (tmp_path / "plan.yaml").read_text()).signatures == plan.signatures


def test_entry_defaults_expansion_and_c_out_same(tmp_path):
    plan = plan_of(tmp_path, """
name: blocks
entries:
  - {kind: inverted_residual, c_in: [16, 24], h: 28, w: 28, c_out: same, expansion: [1, 6], kernel: 3}
  - {kind: depthwise_conv, c_in: 32, h: 14, w: same, kernel: 5, dtype: int8}
  - {kind: fc, c_in: 64, c_out: 10}
""")
    ir = [s for s in plan.signatures if s.kind == "inverted_residual"]
    assert {(s.c_in, s.c_out, s.mid_channels) for s in ir} == {(16, 16, 16), (16, 16, 96), (24, 24, 24), (24, 24, 144)}
    assert all(s.has_residual and s.dtype == "fp32" and s.activation == "relu6" for s in ir)
    dw = [s for s in plan.signatures if s.kind == "depthwise_conv"]
    assert dw == [make_signature("depthwise_conv", c_in=32, h=14, w=14, kernel=5, dtype="int8")]
    assert dw[0].groups == 32 and dw[0].padding == 2
    assert make_signature("fc", c_in=64, c_out=10) in plan.signatures


def test_explicit_signatures_and_duplicates_removed_first_kept(tmp_path):
    stem = "conv2d(n=1,c_in=3,h=224,w=224,c_out=32,kernel=3,stride=2,padding=1,groups=1,mid_channels=0,activation=relu6,dtype=fp32)"
    add = make_signature("add", c_in=8, h=7, w=7)
    plan = plan_of(tmp_path, f"""
name: explicit
description: hand-written
entries:
  - {{kind: add, c_in: [8, 16], h: 7, w: same}}
  - {{kind: add, c_in: 8, h: 7, w: 7}}
signatures:
  - "{stem}"
  - "{add}"
  - "{stem}"
""")
    assert plan.description == "hand-written"
    assert [str(s) for s in plan.signatures] == [str(add), str(add.replace(c_in=16, c_out=16)), stem]
    assert plan.signatures[-1] == parse_signature(stem)


def test_generator_repeats_only_when_n_reaches_two(tmp_path):
    plan = plan_of(tmp_path, """
name: tiny
generators:
  - mobilenet_v2_stages:
      resolutions: [32]
      channel_step: 8
      stages:
        - {op: conv2d, c: [8, 16], s: 2, k: 3, activation: relu6}
        - {op: inverted_residual, t: [1, 2], c: 8, n: 1, s: 2}
        - {op: inverted_residual, t: 2, c: [8, 16], n: [1, 2], s: 2}
        - {op: pointwise_conv, c: 32}
        - {op: global_avgpool}
        - {op: fc, c: 10}
""")
    got = {(s.kind, s.c_in, s.h, s.c_out, s.stride, s.mid_channels) for s in plan.signatures}
    expected = (
        {("conv2d", 3, 32, c, 2, 0) for c in (8, 16)}
        | {("inverted_residual", ci, 16, 8, 2, ci * t) for ci in (8, 16) for t in (1, 2)}
        | {("inverted_residual", 8, 8, c, 2, 16) for c in (8, 16)}
        | {("inverted_residual", c, 4, c, 1, 2 * c) for c in (8, 16)}
        | {("pointwise_conv", c, 4, 32, 1, 0) for c in (8, 16)}
        | {("global_avgpool", 32, 4, 32, 1, 0), ("fc", 32, 1, 10, 1, 0)}
    )
    assert got == expected
    assert len(plan.signatures) == len(expected)


def test_load_by_path_name_and_plans_dir(tmp_path, monkeypatch):
    path = write(tmp_path, "name: mine\nentries: [{kind: add, c_in: 8, h: 7, w: same}]\n", "mine.yaml")
    assert load_plan(path).name == "mine"
    assert load_plan(str(path)).source == path.resolve()
    assert load_plan("mine", plans_dir=tmp_path).name == "mine"
    assert available_plans(tmp_path) == ["mine"]
    monkeypatch.setenv("CHAMELEON_PLANS", str(tmp_path))
    assert load_plan("mine").name == "mine"
    assert available_plans() == ["mine"]


def test_unknown_plan_name():
    with pytest.raises(InvalidPlan) as info:
        load_plan("nope")
    assert str(info.value) == "unknown plan 'nope' (built-in: chamnet-mobile, smoke; or give a path to a .yaml file)"


# ----------------------------------------------------------------------- errors
BAD_PLANS = {
    "yaml-syntax": ("name: x\nentries:\n  - {kind: conv2d, h: [1, 2}\n", "line 3"),
    "yaml-tab": ("name: x\n\tentries: []\n", "YAML syntax error"),
    "duplicate-key": ("name: x\nentries:\n  - {kind: add, c_in: 8, c_in: 9, h: 7, w: 7}\n", "duplicate key 'c_in'"),
    "empty-file": ("", "top level: the file is empty"),
    "top-level-list": ("- name: x\n", "top level: a plan must be a mapping"),
    "top-level-scalar": ("just words\n", "top level: a plan must be a mapping"),
    "missing-name": ("entries: [{kind: add, c_in: 8, h: 7, w: 7}]\n", "missing required key 'name'"),
    "name-not-string": ("name: [a]\nentries: [{kind: add, c_in: 8, h: 7, w: 7}]\n", "name: expected a non-empty string"),
    "unknown-key": ("name: x\nentry: []\n", "unknown key 'entry' (did you mean 'entries'?)"),
    "entries-not-list": ("name: x\nentries: {kind: add}\n", "entries: expected a list"),
    "entry-not-mapping": ("name: x\nentries:\n  - conv2d\n", "entries[0]: an entry must be a mapping"),
    "unknown-field": ("name: x\nentries:\n  - {kind: conv2d, c_in: 3, h: 8, w: 8, c_out: 8, kernal: 3}\n",
                      "entries[0]: unknown field 'kernal' (did you mean 'kernel'?)"),
    "missing-kind": ("name: x\nentries:\n  - {c_in: 3, h: 8, w: 8}\n", "entries[0]: missing field 'kind'"),
    "missing-w": ("name: x\nentries:\n  - {kind: add, c_in: 3, h: 8}\n", "missing field 'w'"),
    "non-integer": ("name: x\nentries:\n  - {kind: add, c_in: 3, h: abc, w: same}\n", "entries[0].h: expected an integer"),
    "float": ("name: x\nentries:\n  - {kind: add, c_in: 3.5, h: 8, w: same}\n", "entries[0].c_in: expected an integer"),
    "bool": ("name: x\nentries:\n  - {kind: add, c_in: true, h: 8, w: same}\n", "entries[0].c_in: expected an integer"),
    "non-integer-in-list": ("name: x\nentries:\n  - {kind: add, c_in: [8, x], h: 8, w: same}\n",
                            "entries[0].c_in[1]: expected an integer"),
    "empty-list": ("name: x\nentries:\n  - {kind: add, c_in: [], h: 8, w: same}\n", "entries[0].c_in: empty list"),
    "same-elsewhere": ("name: x\nentries:\n  - {kind: add, c_in: same, h: 8, w: same}\n", "'same' is only allowed"),
    "expansion-and-mid": ("name: x\nentries:\n  - {kind: inverted_residual, c_in: 8, h: 8, w: same, c_out: 8, "
                          "expansion: 6, mid_channels: 48}\n", "not both"),
    "expansion-wrong-kind": ("name: x\nentries:\n  - {kind: conv2d, c_in: 8, h: 8, w: same, c_out: 8, expansion: 6}\n",
                             "applies to inverted_residual only"),
    "impossible": ("name: x\nentries:\n  - {kind: add, c_in: 8, h: 8, w: same}\n  - {kind: add, c_in: 8, h: 8, w: same}\n"
                   "  - {kind: conv2d, c_in: 8, h: 8, w: same, c_out: 8, kernel: 0}\n",
                   "entries[2]: conv2d: kernel must be >= 1, got 0"),
    "unknown-kind": ("name: x\nentries:\n  - {kind: conv3d, c_in: 8, h: 8, w: same}\n", "entries[0]: unknown op kind 'conv3d'"),
    "unknown-dtype": ("name: x\ndtypes: [fp16]\nentries:\n  - {kind: add, c_in: 8, h: 8, w: same}\n",
                      "dtypes[0]: unknown dtype 'fp16'"),
    "empty-plan": ("name: x\n", "top level: the plan names no signatures"),
    "empty-sections": ("name: x\nentries: []\nsignatures: []\n", "the plan names no signatures"),
    "bad-signature": ("name: x\nsignatures:\n  - 'conv2d(c_in=3)'\n", "signatures[0]: signature 'conv2d(c_in=3)': missing field(s)"),
    "signature-not-string": ("name: x\nsignatures:\n  - {kind: add}\n", "signatures[0]: expected a signature string"),
    "unknown-generator": ("name: x\ngenerators:\n  - resnet_stages: {}\n", "generators[0]: unknown generator 'resnet_stages'"),
    "generator-bad-range": ("name: x\ngenerators:\n  - mobilenet_v2_stages:\n      resolutions: [32]\n"
                            "      stages:\n        - {op: conv2d, c: [8, 20], k: 3}\n",
                            "generators[0].mobilenet_v2_stages.stages[0].c: range [8, 20] does not end on a step of 8"),
    "generator-unknown-op": ("name: x\ngenerators:\n  - mobilenet_v2_stages:\n      resolutions: [32]\n"
                             "      stages:\n        - {op: bottleneck, c: 8}\n", "stages[0].op: unknown stage op 'bottleneck'"),
    "generator-fc-needs-pool": ("name: x\ngenerators:\n  - mobilenet_v2_stages:\n      resolutions: [32]\n"
                                "      stages:\n        - {op: fc, c: 10}\n", "stages[0] (resolution 32): fc takes a 1x1 input"),
    "generator-even-kernel": ("name: x\ngenerators:\n  - mobilenet_v2_stages:\n      resolutions: [32]\n"
                              "      stages:\n        - {op: conv2d, c: 8, k: 4}\n", "stages[0].k: kernel must be odd"),
    "generator-impossible": ("name: x\ngenerators:\n  - mobilenet_v2_stages:\n      resolutions: [32]\n"
                             "      stages:\n        - {op: inverted_residual, t: 6, c: 8, activation: none}\n",
                             "generators[0].mobilenet_v2_stages.stages[0] (resolution 32): inverted_residual: activation must not be none"),
    "generator-missing-stages": ("name: x\ngenerators:\n  - mobilenet_v2_stages: {resolutions: [32]}\n",
                                 "generators[0].mobilenet_v2_stages: missing required key 'stages'"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
def test_bad_plans_give_one_line_naming_the_file(tmp_path, case):
    text, expected = BAD_PLANS[case]
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(InvalidPlan) as info:
        load_plan(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"plan {path}: "), message
    assert expected in message, message


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "name: x\nentries:\n  - kind: add\n    c_in: 8\n   h: 7\n", "bad.yaml")
    with pytest.raises(InvalidPlan, match=r"^plan .*bad\.yaml: line 5, column \d+: YAML syntax error: "):
        load_plan(path)


def test_impossible_signature_message_is_exact(tmp_path):
    path = write(tmp_path, "name: x\nentries:\n  - {kind: conv2d, c_in: 8, h: 8, w: same, c_out: 8, kernel: 0}\n", "bad.yaml")
    with pytest.raises(InvalidPlan) as info:
        load_plan(path)
    assert str(info.value) == f"plan {path}: entries[0]: conv2d: kernel must be >= 1, got 0"


@pytest.mark.parametrize("case", ["missing", "directory", "binary"])
def test_unreadable_files(tmp_path, case):
    if case == "missing":
        path = tmp_path / "absent.yaml"
    elif case == "directory":
        path = tmp_path / "adir.yaml"
        path.mkdir()
    else:
        path = tmp_path / "binary.yaml"
        path.write_bytes(b"name: \xff\xfe\x00x\n")
    with pytest.raises(InvalidPlan) as info:
        load_plan(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"plan {path}: cannot read: "), message
