"""Search spaces: genes, the grid, slots, baselines, MACs, the harness plan, ONNX export."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from harness.errors import ChameleonError, InvalidSignature
from harness.models.onnx_models import build_network
from harness.plans import load_plan
from harness.signature import make_signature
from optimizer.spaces import SPACES, InvalidArchitecture, UnknownSpace, get_space, unit_params

MOBILE_GENES = {
    "resolution": (96, 224, 32), "c0": (8, 48, 8), "c1": (8, 32, 8),
    "t2": (2, 6, 1), "c2": (8, 40, 8), "n2": (1, 2, 1),
    "t3": (2, 6, 1), "c3": (8, 48, 8), "n3": (1, 3, 1),
    "t4": (2, 6, 1), "c4": (16, 96, 8), "n4": (1, 4, 1),
    "t5": (2, 6, 1), "c5": (32, 160, 8), "n5": (1, 3, 1),
    "t6": (2, 6, 1), "c6": (56, 256, 8), "n6": (1, 3, 1),
    "t7": (2, 6, 1), "c7": (96, 480, 8),
    "c_last": (1024, 2048, 8),
}
RES_GENES = {
    "c0": (16, 64, 8),
    "t1": (2, 6, 1), "c1": (16, 64, 8), "n1": (1, 3, 1),
    "t2": (2, 6, 1), "c2": (32, 128, 8), "n2": (1, 8, 1),
    "t3": (2, 6, 1), "c3": (64, 256, 8), "n3": (1, 36, 1),
    "t4": (2, 6, 1), "c4": (128, 512, 8), "n4": (1, 3, 1),
}


@pytest.fixture(scope="module")
def mobile():
    return get_space("chamnet-mobile")


@pytest.fixture(scope="module")
def res():
    return get_space("chamnet-res")


@pytest.fixture(params=SPACES)
def space(request):
    return get_space(request.param)


# ------------------------------------------------------------------ genes
@pytest.mark.parametrize("name, table", [("chamnet-mobile", MOBILE_GENES), ("chamnet-res", RES_GENES)])
def test_genes_follow_the_papers_tables(name, table):
    sp = get_space(name)
    assert sp.gene_names == tuple(table)
    assert [(g.low, g.high, g.step) for g in sp.genes] == list(table.values())
    assert sp.low.tolist() == [v[0] for v in table.values()]
    assert sp.high.tolist() == [v[1] for v in table.values()]
    assert sp.steps.tolist() == [v[2] for v in table.values()]


def test_spaces_are_listed_and_cached():
    assert SPACES == ("chamnet-mobile", "chamnet-res", "chamnet-mobile-mini", "ofa-mbv3", "fbnet", "fbnet-mini")
    assert get_space("chamnet-res") is get_space("chamnet-res")


def test_unknown_space_is_a_one_line_error():
    with pytest.raises(UnknownSpace) as err:
        get_space("chamnet-tiny")
    assert isinstance(err.value, ChameleonError)
    message = str(err.value)
    assert "\n" not in message and "chamnet-tiny" in message
    assert "chamnet-mobile" in message and "chamnet-res" in message


# ------------------------------------------------------------------ the grid
def test_snap_and_unit_round_trips(space):
    rng = np.random.default_rng(1)
    X = space.random(500, rng)
    assert space.contains(X).all()
    np.testing.assert_array_equal(space.snap(X), X)
    np.testing.assert_array_equal(space.from_unit(space.to_unit(X)), X)
    U = space.to_unit(X)
    assert ((U > 0) & (U < 1)).all()
    # A little noise snaps back; far out of bounds clips to the ends.
    noise = (rng.uniform(-0.45, 0.45, X.shape) * space.steps)
    np.testing.assert_array_equal(space.snap(X + noise), X)
    np.testing.assert_array_equal(space.snap(np.full(space.dim, -1e6)), space.low)
    np.testing.assert_array_equal(space.snap(np.full(space.dim, 1e6)), space.high)
    # Any point of the closed box decodes to a point of the space; a vector stays a vector.
    V = np.vstack([rng.uniform(0, 1, (200, space.dim)), np.zeros(space.dim), np.ones(space.dim)])
    assert space.contains(space.from_unit(V)).all()
    assert space.from_unit(V[0]).shape == (space.dim,)
    np.testing.assert_array_equal(space.from_unit(space.to_unit(X[3])), X[3])


def test_uniform_unit_points_give_each_value_the_same_weight(mobile):
    U = np.random.default_rng(0).uniform(0, 1, (30000, mobile.dim))
    n3 = mobile.from_unit(U)[:, mobile.index("n3")]
    counts = np.bincount(n3)[1:]
    assert len(counts) == 3 and counts.min() > 0.95 * counts.max()


def test_contains_rejects_off_grid_and_out_of_bounds(mobile):
    x = mobile.baselines()["mobilenetv2-1.0x-224"]
    assert mobile.contains(x)
    X = np.tile(x, (4, 1))
    X[1, mobile.index("c2")] = 25        # off the step grid
    X[2, mobile.index("resolution")] = 256  # above the bound
    X = X.astype(float)
    X[3, mobile.index("t2")] = 5.5       # not an integer
    assert mobile.contains(X).tolist() == [True, False, False, False]
    assert not mobile.contains(x[:-1])
    with pytest.raises(InvalidArchitecture, match="c2=25"):
        mobile.signatures(X[1].astype(int))
    with pytest.raises(InvalidArchitecture):
        mobile.macs_many(X[:2])


def test_sobol_pool(space):
    pool = space.sobol_pool(2048, seed=0)
    assert pool.dtype == np.int64 and pool.shape[1] == space.dim
    assert 0.99 * 2048 <= len(pool) <= 2048
    assert len(np.unique(pool, axis=0)) == len(pool)
    assert space.contains(pool).all()
    np.testing.assert_array_equal(space.sobol_pool(2048, seed=0), pool)
    assert not np.array_equal(space.sobol_pool(2048, seed=1), pool)
    assert len(space.sobol_pool(100, seed=0)) <= 100
    # Every value of every gene shows up.
    for j, gene in enumerate(space.genes):
        assert set(pool[:, j].tolist()) == set(gene.values.tolist())


def test_random_is_reproducible(space):
    np.testing.assert_array_equal(space.random(10, 7), space.random(10, np.random.default_rng(7)))


# ------------------------------------------------------------------ baselines
def test_baselines_are_inside_their_spaces(mobile, res):
    names = list(mobile.baselines())
    assert len(names) == 30
    assert names[0] == "mobilenetv2-0.35x-96" and "mobilenetv2-1.0x-224" in names and "mobilenetv2-1.4x-224" in names
    assert list(res.baselines()) == ["resnet-50", "resnet-101", "resnet-152"]
    for sp in (mobile, res):
        for x in sp.baselines().values():
            assert sp.contains(x)


def test_mobilenet_v2_channels(mobile):
    b = mobile.baselines()
    genes = dict(zip(mobile.gene_names, b["mobilenetv2-0.35x-96"].tolist()))
    assert [genes[c] for c in ("c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c_last")] == \
        [16, 8, 8, 16, 24, 32, 56, 112, 1280]
    genes = dict(zip(mobile.gene_names, b["mobilenetv2-1.4x-160"].tolist()))
    assert genes["resolution"] == 160
    assert [genes[c] for c in ("c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c_last")] == \
        [48, 24, 32, 48, 88, 136, 224, 448, 1792]


def _ir(c_in, h, c_out, t, stride=1):
    return make_signature("inverted_residual", c_in=c_in, h=h, w=h, c_out=c_out, kernel=3, stride=stride,
                          mid_channels=c_in * t, activation="relu6")


def test_mobilenet_v2_1_0_224_units(mobile):
    expected = [
        make_signature("conv2d", c_in=3, h=224, w=224, c_out=32, kernel=3, stride=2, padding=1, activation="relu6"),
        _ir(32, 112, 16, 1),
        _ir(16, 112, 24, 6, 2), _ir(24, 56, 24, 6),
        _ir(24, 56, 32, 6, 2), _ir(32, 28, 32, 6), _ir(32, 28, 32, 6),
        _ir(32, 28, 64, 6, 2), _ir(64, 14, 64, 6), _ir(64, 14, 64, 6), _ir(64, 14, 64, 6),
        _ir(64, 14, 96, 6), _ir(96, 14, 96, 6), _ir(96, 14, 96, 6),
        _ir(96, 14, 160, 6, 2), _ir(160, 7, 160, 6), _ir(160, 7, 160, 6),
        _ir(160, 7, 320, 6),
        make_signature("conv2d", c_in=320, h=7, w=7, c_out=1280, kernel=1, activation="relu6"),
        make_signature("global_avgpool", c_in=1280, h=7, w=7),
        make_signature("fc", c_in=1280, c_out=1000),
    ]
    x = mobile.baselines()["mobilenetv2-1.0x-224"]
    assert len(expected) == 21
    assert mobile.signatures(x) == expected
    macs = mobile.macs(x)
    assert macs == sum(s.macs for s in expected) == 301_053_376  # the paper's MobileNetV2 1.0: ~300 M
    assert abs(macs / 300e6 - 1) < 0.03
    assert abs(mobile.params(x) / 3.5e6 - 1) < 0.03  # 3.4 M weights + folded-BN biases
    d = mobile.describe(x)
    assert d["resolution"] == 224 and d["units"] == 21 and d["macs"] == macs
    assert [s["stage"] for s in d["stages"]][:3] == ["stem", "stage1", "stage2"]
    assert d["stages"][4] == {"stage": "stage4", "op": "inverted_residual", "t": 6, "c": 64, "n": 4, "s": 2, "k": 3}


def test_resnet_baselines(res):
    b = res.baselines()
    units = res.signatures(b["resnet-50"])
    assert len(units) == 1 + 16 + 2
    assert units[0] == make_signature("conv2d", c_in=3, h=224, w=224, c_out=64, kernel=7, stride=2, padding=3,
                                      activation="relu")
    # No max pool: the first bottleneck downsamples 112 -> 56.
    assert units[1] == make_signature("bottleneck", c_in=64, h=112, w=112, c_out=256, mid_channels=64, stride=2)
    assert units[2] == make_signature("bottleneck", c_in=256, h=56, w=56, c_out=256, mid_channels=64)
    assert units[-3] == make_signature("bottleneck", c_in=2048, h=7, w=7, c_out=2048, mid_channels=512)
    assert units[-2:] == [make_signature("global_avgpool", c_in=2048, h=7, w=7),
                          make_signature("fc", c_in=2048, c_out=1000)]
    # ResNet-50 is ~4.1 GMACs; 4.133 G here (no max pool, adds and pooling counted).
    assert res.macs(b["resnet-50"]) == 4_133_339_136
    assert abs(res.macs(b["resnet-50"]) / 4.1e9 - 1) < 0.03
    assert abs(res.params(b["resnet-50"]) / 25.5e6 - 1) < 0.01
    assert len(res.signatures(b["resnet-101"])) == 1 + 33 + 2
    assert len(res.signatures(b["resnet-152"])) == 1 + 50 + 2
    assert res.resolution(b["resnet-50"]) == 224


# ------------------------------------------------------------------ units
def _check_chain(units):
    for a, b in itertools.pairwise(units):
        if b.kind == "fc":
            assert a.output_shape == (b.n, b.c_in, 1, 1)
        else:
            assert a.output_shape == b.input_shape, (a, b)


def test_units_chain(space):
    for x in space.random(50, 3):
        units = space.signatures(x)
        _check_chain(units)
        assert units[0].h == space.resolution(x) and units[-1].kind == "fc" and units[-1].c_out == (10 if space.name in ("chamnet-mobile-mini", "fbnet-mini") else 1000)


def test_every_mobile_unit_is_in_the_harness_plan(mobile):
    plan = set(load_plan("chamnet-mobile").signatures)
    X = np.vstack([mobile.random(200, 11), *mobile.baselines().values(), mobile.low, mobile.high])
    units = {sig for x in X for sig in mobile.signatures(x)}
    missing = units - plan
    assert not missing, sorted(map(str, missing))[:3]


def test_vectorised_costs_equal_per_architecture_sums(space):
    X = np.vstack([space.random(60, 5), space.sobol_pool(64, seed=2), *space.baselines().values()])
    macs, params = space.macs_many(X), space.params_many(X)
    assert macs.dtype == np.int64 and macs.shape == (len(X),)
    for x, m, p in zip(X, macs, params):
        units = space.signatures(x)
        assert m == space.macs(x) == sum(s.macs for s in units)
        assert p == space.params(x) == sum(unit_params(s) for s in units)


def test_slot_counts_match_the_unit_list(mobile):
    x = mobile.baselines()["mobilenetv2-1.0x-224"]
    counts = {slot.name: int(slot.count(x[None, :])[0]) for slot in mobile.slots}
    assert counts["stage4.first"] == 1 and counts["stage4.repeat"] == 3 and counts["stage7"] == 1
    assert sum(counts.values()) == 21


# ------------------------------------------------------------------ ONNX export
def test_export_onnx_small_network(mobile, tmp_path):
    x = mobile.baselines()["mobilenetv2-0.35x-96"]
    path = mobile.export_onnx(x, tmp_path / "net.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17 and model.ir_version == 10
    assert [o.name for o in model.graph.output] == ["y"]
    weights = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.name[0] in "wb" and t.name[1:].isdigit())
    assert weights == mobile.params(x)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = np.random.default_rng(0).uniform(-1, 1, (1, 3, 96, 96)).astype(np.float32)
    (y,) = session.run(None, {"x": feed})
    assert y.shape == (1, 1000) and np.isfinite(y).all()
    # Deterministic: the same architecture and seed give the same bytes; another seed does not.
    again = mobile.export_onnx(x, tmp_path / "again.onnx")
    assert again.read_bytes() == path.read_bytes()
    assert mobile.export_onnx(x, tmp_path / "other.onnx", seed=1).read_bytes() != path.read_bytes()


def test_build_network_checks_shapes():
    a = make_signature("conv2d", c_in=3, h=8, w=8, c_out=8, kernel=3, stride=2, activation="relu")
    b = make_signature("conv2d", c_in=16, h=4, w=4, c_out=8, kernel=1)
    with pytest.raises(InvalidSignature, match="unit 1"):
        build_network([a, b])
    with pytest.raises(InvalidSignature, match="no units"):
        build_network([])
    with pytest.raises(InvalidSignature, match="fp32"):
        build_network([a.replace(dtype="int8")])
    fc_only = build_network([make_signature("fc", c_in=8, c_out=4), make_signature("fc", c_in=4, c_out=2)])
    assert [d.dim_value for d in fc_only.graph.output[0].type.tensor_type.shape.dim] == [1, 2]


def test_slots_declare_every_gene_they_read(space):
    """The latency predictor's tables are indexed by ``Slot.genes``: changing any other gene must change nothing."""
    rng = np.random.default_rng(4)
    X = space.random(200, rng)
    for slot in space.slots:
        assert slot.genes is not None and list(slot.genes) == sorted(set(slot.genes))
        others = [g for g in range(space.dim) if g not in slot.genes]
        changed = X.copy()
        changed[:, others] = space.random(len(X), rng)[:, others]
        assert np.array_equal(np.asarray(slot.params(changed)), np.asarray(slot.params(X))), slot.name
        assert np.array_equal(np.asarray(slot.count(changed)), np.asarray(slot.count(X))), slot.name
        probed = {g for g in range(space.dim) if space._slot_depends_on(slot, g, X[:48])}
        assert probed == set(slot.genes), slot.name  # and no gene more than it reads


def test_slot_signatures_are_make_signatures(space):
    """The slots build their signatures without make_signature after the first (issue 17): the same signatures."""
    X = np.vstack([space.random(100, 6), space.low, space.high])
    for slot in space.slots:
        make = slot.signature
        if not hasattr(make, "fields"):  # fbnet's slots pick among signatures built by make_signature itself
            continue
        for row in np.unique(np.asarray(slot.params(X)), axis=0):
            unit = tuple(int(v) for v in row)
            expected = make_signature(make.kind, **make.fixed, **make.fields(unit))
            assert make(unit) == expected and make(tuple(row)) == expected, (slot.name, unit)
