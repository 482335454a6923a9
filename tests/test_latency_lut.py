"""The LUT latency model's network correction: fitting, applying, saving; one-by-one and vectorised agree."""

from __future__ import annotations

import json
import math
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from optimizer.latency.lut_model import InvalidCorrection, LatencyPredictor, LutLatencyModel, NetworkCorrection, boundary_elements
from optimizer.spaces import get_space


def synthetic_model(space, correction: NetworkCorrection | None = None) -> LutLatencyModel:
    medians = {s.key: 4.0 + 0.002 * s.macs / 1000 + 1e-3 * math.prod(s.output_shape) for s in space.all_signatures()}
    return LutLatencyModel(medians, 3.0, "synthetic", "xeon", correction)


def test_boundary_elements_count_every_output_but_the_last() -> None:
    space = get_space("chamnet-mobile-mini")
    units = space.signatures(space.low)
    assert boundary_elements(units) == sum(math.prod(s.output_shape) for s in units[:-1])
    assert boundary_elements(units[:1]) == 0


def test_without_a_correction_the_estimate_is_the_plain_one() -> None:
    space = get_space("chamnet-mobile-mini")
    model = synthetic_model(space)
    units = space.signatures(space.high)
    estimate = model.estimate(units)
    plain = sum(model.median_us[s.key] for s in units) - (len(units) - 1) * 3.0
    assert estimate.latency_us == pytest.approx(plain) and estimate.plain_us == pytest.approx(plain)
    assert estimate.operators == len(units) and estimate.boundary_elements == boundary_elements(units)


def test_fit_recovers_the_terms_of_networks_that_follow_them() -> None:
    space = get_space("chamnet-mobile-mini")
    model = synthetic_model(space)
    truth = NetworkCorrection(scale=1.1, boundary_us=0.8, boundary_element_us=6e-4)
    estimates = [model.estimate(space.signatures(x)) for x in space.random(20, 3)]
    measured = [truth.apply(e.plain_us, e.operators - 1, e.boundary_elements) for e in estimates]
    fitted = NetworkCorrection.fit(estimates, measured, device="xeon", lut="synthetic")
    assert fitted.scale == pytest.approx(1.1, rel=1e-6)
    assert fitted.boundary_us == pytest.approx(0.8, rel=1e-5)
    assert fitted.boundary_element_us == pytest.approx(6e-4, rel=1e-5)
    assert fitted.networks == 20 and fitted.calibration_mape == pytest.approx(0, abs=1e-9)


def test_the_corrected_estimate_applies_the_correction() -> None:
    space = get_space("chamnet-mobile-mini")
    correction = NetworkCorrection(scale=0.9, boundary_us=0.5, boundary_element_us=1e-3)
    units = space.signatures(space.random(1, 5)[0])
    plain = synthetic_model(space).estimate(units)
    corrected = synthetic_model(space, correction).estimate(units)
    assert corrected.plain_us == pytest.approx(plain.latency_us)
    assert corrected.latency_us == pytest.approx(0.9 * plain.plain_us - 0.5 * (len(units) - 1)
                                                 - 1e-3 * boundary_elements(units))


@pytest.mark.parametrize("space_name", ["chamnet-mobile", "chamnet-mobile-mini"])
@pytest.mark.parametrize("correction", [None, NetworkCorrection(scale=1.07, boundary_us=1.2, boundary_element_us=4e-4)])
def test_vectorised_predictions_equal_one_by_one_estimates(space_name: str, correction: NetworkCorrection | None) -> None:
    space = get_space(space_name)
    model = synthetic_model(space, correction)
    X = space.random(40, 11)
    vectorised = LatencyPredictor(model, space).predict(X).latency_ms
    one_by_one = np.array([model.estimate(space.signatures(x)).latency_us for x in X]) / 1000
    np.testing.assert_allclose(vectorised, one_by_one, rtol=1e-9)


def test_corrections_save_and_load(tmp_path: Path) -> None:
    correction = NetworkCorrection(1.05, 0.7, 5e-4, networks=30, calibration_mape=0.02, device="xeon", lut="x.parquet")
    path = correction.save(tmp_path / "c.json")
    assert NetworkCorrection.load(path) == correction
    assert json.loads(path.read_text())["kind"] == "chameleon-network-correction"


@pytest.mark.parametrize("text", ["not json", json.dumps({"kind": "other"}),
                                  json.dumps({"kind": "chameleon-network-correction", "version": 1, "scale": "x",
                                              "boundary_us": 1, "boundary_element_us": 0})])
def test_bad_correction_files_are_one_line_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(InvalidCorrection) as error:
        NetworkCorrection.load(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_correction_needs_enough_networks_and_the_lut_device() -> None:
    space = get_space("chamnet-mobile-mini")
    model = synthetic_model(space)
    estimates = [model.estimate(space.signatures(x)) for x in space.random(2, 0)]
    with pytest.raises(InvalidCorrection, match="at least 3"):
        NetworkCorrection.fit(estimates, [100.0, 200.0])
    with pytest.raises(InvalidCorrection, match="device 'pixel'"):
        LutLatencyModel({}, 3.0, "x.parquet", "xeon", NetworkCorrection(device="pixel"))


def test_the_slot_tables_give_the_same_latencies_whatever_the_batch_order_and_size() -> None:
    """The array lookup (issue 17: no per-row Python at search batch sizes) against one architecture at a time."""
    import numpy as np

    from harness.lut.store import rows_to_table, write_lut_atomic
    from harness.signature import make_signature
    from lut_rows import row
    from optimizer.latency.lut_model import LatencyPredictor, LutLatencyModel
    from optimizer.spaces import get_space
    import tempfile
    from pathlib import Path

    space = get_space("chamnet-mobile-mini")
    units = [s for s in space.all_signatures() if s.kind != "identity"]
    rows = [row(make_signature("identity"), median=5.0)] + [row(s, median=1.0 + (i % 13) + s.macs / 1e4) for i, s in enumerate(units)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lut.parquet"
        write_lut_atomic(rows_to_table(rows), path)
        model = LutLatencyModel.from_file(path)
        X = space.random(300, np.random.default_rng(0))
        one_by_one = np.array([model.estimate(space.signatures(x)).latency_us / 1000 for x in X])
        predictor = LatencyPredictor(model, space)
        small_batches = np.concatenate([predictor.predict(X[i:i + 7]).latency_ms for i in range(0, len(X), 7)])
        fresh = LatencyPredictor(model, space).predict(X[::-1]).latency_ms[::-1]
    assert np.allclose(small_batches, one_by_one) and np.allclose(fresh, one_by_one)


# ------------------------------------------------ the gene-grid tables against a straightforward computation
def _families(s) -> tuple[tuple, ...]:
    return ((s.kind, s.dtype, s.kernel, s.stride, s.activation), (s.kind, s.dtype), (s.dtype,))


def _reference_neighbours(lut: LutLatencyModel) -> dict[tuple, list[tuple[float, float]]]:
    from harness.signature import IDENTITY, parse_signature

    neighbours: dict[tuple, list[tuple[float, float]]] = {}
    for key, median in lut.median_us.items():
        other = parse_signature(key)
        if other.kind != IDENTITY:
            for family in _families(other):
                neighbours.setdefault(family, []).append((float(max(other.macs, 1)), median))
    return neighbours


def _reference_interpolated_us(neighbours: dict, signature) -> float:
    """The nearest measured entry of the closest family, by log-MACs, scaled by MACs (as the predictor documents)."""
    families = _families
    candidates = next((neighbours[f] for f in families(signature) if f in neighbours), None)
    macs = float(max(signature.macs, 1))
    nearest_macs, nearest_us = min(candidates, key=lambda c: abs(np.log(c[0]) - np.log(macs)))
    return nearest_us * macs / nearest_macs


def _reference_predict(lut: LutLatencyModel, space, X: np.ndarray, interpolate: bool) -> tuple:
    """One architecture and one slot at a time: latencies (ms), flags, and the units interpolated for this batch.

    A slot's unit is looked up (and, missing, interpolated) for every architecture of a batch in which some
    architecture uses the slot; a missing unit that an architecture uses is an error naming all of them.
    """
    from optimizer.latency.lut_model import MissingSignatures

    overhead, correction = lut.overhead_us, lut.correction
    neighbours = _reference_neighbours(lut) if interpolate else {}
    looked_up: dict[str, tuple[float, bool]] = {}
    for slot in space.slots:
        if any(int(slot.count(x[None])[0]) > 0 for x in X):
            for x in X:
                signature = slot.signature(tuple(int(v) for v in slot.params(x[None])[0]))
                value = lut.median_us.get(signature.key)
                if signature.key in looked_up:
                    continue
                if value is not None:
                    looked_up[signature.key] = (value, False)
                elif interpolate:
                    looked_up[signature.key] = (_reference_interpolated_us(neighbours, signature), True)
                else:
                    looked_up[signature.key] = (float("nan"), False)
    latency, flagged, missing = [], [], set()
    for x in X:
        total, units, elements, last, guessed = overhead, 0, 0, 0, False
        for slot in space.slots:
            count = int(slot.count(x[None])[0])
            if count <= 0:
                continue
            signature = slot.signature(tuple(int(v) for v in slot.params(x[None])[0]))
            value, interpolated = looked_up[signature.key]
            if np.isnan(value):
                missing.add(signature.key)
            total += count * (value - overhead)
            guessed |= interpolated
            output = math.prod(signature.output_shape)
            units, elements, last = units + count, elements + count * output, output
        if correction is not None:
            total = float(correction.apply(total, max(units - 1, 0), elements - last))
        latency.append(total / 1000.0)
        flagged.append(guessed)
    if missing:
        keys = sorted(missing)
        raise MissingSignatures(
            f"{lut.source}: {len(keys)} signature(s) of {space.name} are not in the LUT, e.g. {keys[0]}; "
            f"measure them with: bench sweep --device {lut.device} --plan {space.name} --out {lut.source} "
            f"(or pass --interpolate to estimate them, flagged)")
    return np.array(latency), np.array(flagged), {k for k, (_, g) in looked_up.items() if g}


def _partial_lut(space, correction: NetworkCorrection | None = None, seed: int = 0) -> tuple[LutLatencyModel, np.ndarray]:
    """A LUT holding the units of 150 random architectures (and so missing most of the space), and those architectures."""
    covered = space.random(150, seed)
    units = {s.key: s for x in covered for s in space.signatures(x)}
    medians = {key: 2.0 + 1e-4 * s.macs / 7 + (zlib.crc32(key.encode()) % 97) / 31 for key, s in units.items()}
    medians["identity(n=1,c_in=1,h=1,w=1,c_out=1,kernel=1,stride=1,padding=0,groups=1,mid_channels=0,activation=none,dtype=fp32)"] = 3.3
    return LutLatencyModel(medians, 3.3, "partial.parquet", "xeon", correction), covered


CORRECTIONS = [None, NetworkCorrection(scale=1.07, boundary_us=1.2, boundary_element_us=4e-4)]


@pytest.mark.parametrize("space_name", ["chamnet-mobile", "chamnet-res", "chamnet-mobile-mini"])
@pytest.mark.parametrize("correction", CORRECTIONS)
def test_predictions_equal_the_reference_bit_for_bit(space_name: str, correction: NetworkCorrection | None) -> None:
    """Covered architectures exactly; others interpolated exactly, flagged, and the same units reported."""
    space = get_space(space_name)
    lut, covered = _partial_lut(space, correction)
    predictor = LatencyPredictor(lut, space)
    for batch in (covered, covered[:84], covered[7:8], covered[:0]):
        prediction = predictor.predict(batch)
        expected, flags, _ = _reference_predict(lut, space, batch, interpolate=False)
        assert np.array_equal(prediction.latency_ms, expected) and not prediction.interpolated.any()
    guessing = LatencyPredictor(lut, space, interpolate=True)
    expected_keys: set[str] = set()
    for seed in (1, 2):
        X = np.vstack([space.random(84, seed), covered[:10]])
        prediction = guessing.predict(X)
        expected, flags, keys = _reference_predict(lut, space, X, interpolate=True)
        expected_keys |= keys
        assert np.array_equal(prediction.latency_ms, expected)
        assert np.array_equal(prediction.interpolated, flags) and flags.any() and not flags[-10:].any()
        assert guessing.interpolated_keys == expected_keys
        assert prediction.interpolated_signatures == tuple(sorted(expected_keys))


@pytest.mark.parametrize("space_name", ["chamnet-mobile", "chamnet-res", "chamnet-mobile-mini"])
def test_units_missing_from_the_lut_are_the_same_one_line_error(space_name: str) -> None:
    from optimizer.latency.lut_model import MissingSignatures

    space = get_space(space_name)
    lut, covered = _partial_lut(space)
    X = np.vstack([covered[:5], space.random(30, 4)])
    with pytest.raises(MissingSignatures) as expected:
        _reference_predict(lut, space, X, interpolate=False)
    predictor = LatencyPredictor(lut, space)
    with pytest.raises(MissingSignatures) as error:
        predictor.predict(X)
    assert str(error.value) == str(expected.value) and "\n" not in str(error.value)
    with pytest.raises(MissingSignatures) as again:  # the cached tables give the same error
        predictor.predict(X)
    assert str(again.value) == str(expected.value)
    assert np.array_equal(predictor.predict(covered[:5]).latency_ms, _reference_predict(lut, space, covered[:5], False)[0])


def test_nothing_to_interpolate_from_is_the_same_error() -> None:
    from optimizer.latency.lut_model import MissingSignatures

    space = get_space("chamnet-mobile-mini")
    lut = LutLatencyModel({"identity(n=1,c_in=1,h=1,w=1,c_out=1,kernel=1,stride=1,padding=0,groups=1,mid_channels=0,"
                           "activation=none,dtype=fp32)": 3.0}, 3.0, "empty.parquet", "xeon")
    X = space.random(20, 0)
    first = space.slots[0].signature(min(tuple(int(v) for v in row) for row in space.slots[0].params(X))).key
    with pytest.raises(MissingSignatures, match=f"nothing to interpolate {re.escape(first)} from"):
        LatencyPredictor(lut, space, interpolate=True).predict(X)


@pytest.mark.parametrize("correction", CORRECTIONS)
def test_slots_without_declared_genes_and_rows_off_the_grid_give_the_same_latencies(correction) -> None:
    """The row-by-row path (no gene-grid tables) agrees with the tables and the reference."""
    import dataclasses

    from optimizer.spaces import SearchSpace

    space = get_space("chamnet-mobile")
    plain = SearchSpace("undeclared", space.genes, [dataclasses.replace(s, genes=None) for s in space.slots])
    lut, covered = _partial_lut(space, correction)
    lut_plain = LutLatencyModel(lut.median_us, lut.overhead_us, lut.source, lut.device, correction)
    X = np.vstack([space.random(50, 3), covered[:20]])
    expected, flags, keys = _reference_predict(lut, space, X, interpolate=True)
    by_rows = LatencyPredictor(lut_plain, plain, interpolate=True)
    prediction = by_rows.predict(X)
    assert by_rows._grid is None  # no tables without the slots' genes
    assert np.array_equal(prediction.latency_ms, expected) and np.array_equal(prediction.interpolated, flags)
    assert by_rows.interpolated_keys == keys
    as_floats = LatencyPredictor(lut, space, interpolate=True).predict(X.astype(np.float64))
    assert np.array_equal(as_floats.latency_ms, expected)
    off_grid = X.copy()
    off_grid[:, space.index("c1")] += 1  # channels off the step-8 grid: priced row by row, as before
    np.testing.assert_array_equal(LatencyPredictor(lut, space, interpolate=True).predict(off_grid).latency_ms,
                                  LatencyPredictor(lut_plain, plain, interpolate=True).predict(off_grid).latency_ms)


def test_a_warm_batch_is_priced_without_the_slot_arithmetic() -> None:
    """Issue 17: once its grid points are known, a batch runs no slot function (no per-architecture Python)."""
    import dataclasses

    from optimizer.spaces import SearchSpace

    space = get_space("chamnet-mobile")
    calls = {"n": 0}

    def counted(fn):
        def wrapped(*args):
            calls["n"] += 1
            return fn(*args)
        return wrapped

    slots = [dataclasses.replace(s, params=counted(s.params), count=counted(s.count), signature=counted(s.signature))
             for s in space.slots]
    counting = SearchSpace(space.name, space.genes, slots)
    lut, covered = _partial_lut(space)
    predictor = LatencyPredictor(lut, counting, interpolate=True)
    X = np.vstack([covered, space.random(200, 9)])
    first = predictor.predict(X).latency_ms
    assert calls["n"] > 0
    calls["n"] = 0
    batches = [predictor.predict(X[i:i + 84]).latency_ms for i in range(0, len(X), 84)]
    assert calls["n"] == 0 and np.array_equal(np.concatenate(batches), first)
