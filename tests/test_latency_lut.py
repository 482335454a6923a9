"""The LUT latency model's network correction: fitting, applying, saving; one-by-one and vectorised agree."""

from __future__ import annotations

import json
import math
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
