"""`optimize --lut FILE` alone: the space inferred from the LUT, the space's accuracy predictor found, default budgets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import one_line_error, run_optimize
from harness.lut.store import rows_to_table, write_lut_atomic
from lut_rows import row
from optimizer.accuracy.predictors import GPPredictor
from optimizer.latency.lut_model import LatencyPredictor, LutLatencyModel
from optimizer.search import defaults
from optimizer.search.defaults import (NoAccuracyPredictor, SpaceNotInferred, default_budgets, find_accuracy_predictor,
                                       infer_space, shipped_predictor_path)
from optimizer.spaces import get_space

MINI = get_space("chamnet-mobile-mini")


def space_lut(path: Path, space_name: str, drop: int = 0) -> Path:
    """A LUT holding every operator of a space (medians from their MACs, as a CPU would roughly give), minus ``drop``."""
    from harness.signature import make_signature

    signatures = list(get_space(space_name).all_signatures())
    identity = make_signature("identity")
    signatures = [s for s in signatures if s != identity][drop:]
    rows = [row(identity, median=5.0)] + [row(s, median=1.0 + s.macs / 2e4) for s in signatures]
    write_lut_atomic(rows_to_table(rows), path)
    return path


def fitted_predictor(space, n: int = 24, seed: int = 0) -> GPPredictor:
    X = space.random(n, np.random.default_rng(seed))
    y = 0.9 + 0.05 * (X - space.low).sum(axis=1) / (space.high - space.low).sum()  # wider, more accurate
    return GPPredictor(space.low, space.high, n_restarts_optimizer=0, random_state=0).fit(X, y)


def test_the_space_is_the_one_whose_every_operator_the_lut_holds() -> None:
    keys = {s.key for s in MINI.all_signatures()}
    assert infer_space(keys) == "chamnet-mobile-mini"
    baseline_units = {s.key for x in MINI.baselines().values() for s in MINI.signatures(x)}
    with pytest.raises(SpaceNotInferred, match=r"chamnet-mobile-mini \d+%") as refused:
        infer_space(keys - set(sorted(baseline_units)[:5]), "x.parquet")
    assert "--space" in str(refused.value) and "x.parquet" in str(refused.value)


def test_the_predictor_is_found_beside_the_lut_then_in_the_cache_then_shipped(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CHAMELEON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(defaults, "SHIPPED_DIR", tmp_path / "shipped")
    lut = tmp_path / "run" / "lut.parquet"
    lut.parent.mkdir()
    with pytest.raises(NoAccuracyPredictor, match="optimize build-predictor --space chamnet-mobile-mini"):
        find_accuracy_predictor(MINI, lut)
    shipped_predictor_path("chamnet-mobile-mini").parent.mkdir()
    fitted_predictor(MINI, seed=1).save(shipped_predictor_path("chamnet-mobile-mini"))
    assert find_accuracy_predictor(MINI, lut)[1].source == "shipped"
    assert defaults.remember_predictor(fitted_predictor(MINI, seed=2), MINI.name) is not None
    assert find_accuracy_predictor(MINI, lut)[1].source == "cache"
    fitted_predictor(get_space("chamnet-mobile"), n=8).save(lut.parent / "accuracy_predictor.json")
    assert find_accuracy_predictor(MINI, lut)[1].source == "cache"  # another space's predictor is passed over
    fitted_predictor(MINI, seed=3).save(lut.parent / "accuracy_predictor.json")
    assert find_accuracy_predictor(MINI, lut)[1].source == "beside the LUT"


def test_default_budgets_span_the_spaces_latency_on_this_lut(tmp_path: Path) -> None:
    lut = space_lut(tmp_path / "lut.parquet", MINI.name)
    latency = LatencyPredictor(LutLatencyModel.from_file(lut), MINI)
    budgets = default_budgets(MINI, latency)
    predicted = latency.predict(MINI.sobol_pool(1024, 0)).latency_ms
    assert 3 <= len(budgets) <= 5 and budgets == sorted(set(budgets))  # quantiles that round alike are merged
    assert predicted.min() < budgets[0] < budgets[-1] < predicted.max()


def test_optimize_with_a_lut_alone_prints_a_frontier_and_writes_its_png(tmp_path: Path) -> None:
    run = tmp_path / "chameleon-run"
    run.mkdir()
    lut = space_lut(run / "lut.parquet", MINI.name)
    fitted_predictor(MINI).save(run / "accuracy_predictor.json")  # where the main job leaves it
    out = tmp_path / "search"
    result = run_optimize("--lut", str(lut), "--out", str(out), "--generations", "5", "--json",
                          env={"CHAMELEON_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["space"] == MINI.name and document["accuracy_predictor"].endswith("(beside the LUT)")
    assert document["network_correction"] is None  # none beside this LUT: the plain sum
    assert len(document["choices"]) == len(document["budgets_ms"]) >= 3
    assert Path(document["frontier_png"]).is_file() and (out / "result.json").is_file()
    text = run_optimize("--lut", str(lut), "--out", str(out), "--generations", "5", env={"CHAMELEON_CACHE": str(tmp_path / "cache")})
    assert text.returncode == 0 and "budgets: quantiles" in " ".join(text.stdout.split())


def test_a_lut_of_no_space_is_one_line(tmp_path: Path) -> None:
    lut = space_lut(tmp_path / "lut.parquet", MINI.name, drop=40)
    line = one_line_error(run_optimize("--lut", str(lut), "--out", str(tmp_path / "o")))
    assert "does not hold every operator" in line and "chamnet-mobile-mini" in line


@pytest.mark.parametrize("space_name", ["chamnet-mobile", "chamnet-mobile-mini"])
def test_the_project_ships_a_predictor_for_its_spaces(space_name: str) -> None:
    space = get_space(space_name)
    predictor = GPPredictor.load(shipped_predictor_path(space_name))
    assert predictor.X_train_.shape[1] == len(space.gene_names)
    recipe = shipped_predictor_path(space_name).with_suffix(".md").read_text()
    assert f"optimize build-predictor --space {space_name}" in recipe
    accuracy = predictor.predict(np.array(list(space.baselines().values())))
    assert np.all((accuracy > 0) & (accuracy < 1.0 + 1e-6)) and np.ptp(accuracy) > 0  # not a flat line


def test_a_lut_of_the_full_chamnet_mobile_plan_picks_with_the_shipped_predictor(tmp_path: Path) -> None:
    lut = space_lut(tmp_path / "s835.parquet", "chamnet-mobile")
    result = run_optimize("--lut", str(lut), "--latency", "20ms", "--out", str(tmp_path / "o"), "--generations", "5",
                          "--json", env={"CHAMELEON_CACHE": str(tmp_path / "cache")}, timeout=600)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["space"] == "chamnet-mobile" and document["accuracy_predictor"].endswith("(shipped)")
    assert document["choices"][0]["predicted_latency_ms"] <= 20.0


def test_a_predictor_of_too_few_samples_or_a_flat_one_is_warned_about() -> None:
    from optimizer.search.defaults import predictor_warnings

    few = fitted_predictor(MINI, n=9)
    assert any("fitted on 9 architectures" in w for w in predictor_warnings(few, MINI))
    X = MINI.random(60, np.random.default_rng(0))
    flat = GPPredictor(MINI.low, MINI.high, n_restarts_optimizer=0, random_state=0).fit(X, np.full(60, 0.9704))
    assert any("predicts 0.9704 for every architecture" in w for w in predictor_warnings(flat, MINI))
    many = fitted_predictor(MINI, n=60)
    assert predictor_warnings(many, MINI) == []
