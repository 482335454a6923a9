"""GP predictors, ChamNet's Algorithm 1 and the trainers that feed it."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sklearn.gaussian_process import GaussianProcessRegressor

from harness.errors import ChameleonError
from optimizer.accuracy.predictors import GPPredictor, PredictorFileError, TrainerError, build_accuracy_predictor, build_energy_predictor, to_unit
from optimizer.accuracy.trainer_protocol import FunctionTrainer, InvalidObservations, MissingObservation, ObservationsTrainer, Trainer

D = 10
LOW = np.zeros(D)
HIGH = np.full(D, 8.0)  # integer-like genes 0..8, scaled by the predictor
FAST = {"n_restarts_optimizer": 0}


def smooth(X: np.ndarray) -> np.ndarray:
    """A smooth 'accuracy' on the 10-D box: all genes matter, some interact."""
    U = to_unit(X, LOW, HIGH)
    return (
        70
        + 4 * np.sin(2.5 * U[:, 0])
        + 3 * U[:, 1] ** 2
        - 2 * (U[:, 2] - 0.4) ** 2
        + 1.5 * np.cos(2 * U[:, 3] * U[:, 4])
        + U[:, 5:].sum(axis=1) * 0.6
        + 0.8 * U[:, 6] * U[:, 7]
    )


def flops(X: np.ndarray) -> np.ndarray:
    return 1.0 + to_unit(X, LOW, HIGH)[:, :5].sum(axis=1)


def integer_pool(k: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 9, size=(k, D)).astype(float)


# -- GPPredictor ------------------------------------------------------------------------------


def test_gp_fits_a_smooth_function_on_held_out_points():
    rng = np.random.default_rng(1)
    X, X_test = rng.uniform(0, 8, (150, D)), rng.uniform(0, 8, (400, D))
    model = GPPredictor(LOW, HIGH, n_restarts_optimizer=1, random_state=0)
    assert model.fit(X, smooth(X)) is model
    assert model.score(X_test, smooth(X_test)) > 0.98
    mean, std = model.predict(X_test, return_std=True)
    assert mean.shape == std.shape == (400,) and (std > 0).all()
    assert model.kernel_.k1.k2.length_scale.shape == (D,)  # one length scale per gene
    assert model.X_train_.shape == (150, D) and model.n_features_in_ == D


def test_gp_keeps_sklearn_habits():
    model = GPPredictor(LOW, HIGH, noise_level=0.1)
    assert model.get_params()["noise_level"] == 0.1
    assert not hasattr(model, "gp_")
    with pytest.raises(Exception, match="not fitted"):
        model.predict(np.zeros((1, D)))
    with pytest.raises(ValueError, match="shape"):
        model.fit(np.zeros((5, D + 1)), np.zeros(5))


def test_loo_mse_closed_form_equals_refits_with_the_fixed_kernel():
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 8, (25, D))
    y = smooth(X) + rng.normal(0, 0.3, 25)
    model = GPPredictor(LOW, HIGH, **FAST).fit(X, y)
    U = to_unit(X, LOW, HIGH)
    y_mean = y.mean()  # normalisation held fixed; its scale cancels in the posterior mean
    residuals = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        refit = GaussianProcessRegressor(kernel=model.kernel_, optimizer=None, normalize_y=False)
        refit.fit(U[keep], y[keep] - y_mean)
        residuals.append(y[i] - (refit.predict(U[i : i + 1])[0] + y_mean))
    np.testing.assert_allclose(model.loo_residuals(), residuals, rtol=1e-6, atol=1e-9)
    assert model.loo_mse() == pytest.approx(np.mean(np.square(residuals)), rel=1e-6)


def test_save_load_gives_identical_predictions_from_json(tmp_path):
    rng = np.random.default_rng(3)
    X, X_test = rng.uniform(0, 8, (40, D)), rng.uniform(0, 8, (50, D))
    model = GPPredictor(LOW, HIGH, **FAST).fit(X, smooth(X) + rng.normal(0, 0.1, 40))
    path = model.save(tmp_path / "accuracy.json")
    document = json.loads(path.read_text())  # plain JSON, no pickle anywhere
    assert document["format"] == "chameleon-gp-predictor" and not path.read_bytes().startswith(b"\x80")
    loaded = GPPredictor.load(path)
    assert loaded.gp_.optimizer is None
    mean, std = model.predict(X_test, return_std=True)
    mean2, std2 = loaded.predict(X_test, return_std=True)
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_array_equal(std, std2)
    assert loaded.loo_mse() == model.loo_mse()
    np.testing.assert_array_equal(loaded.kernel_.k1.k2.length_scale, model.kernel_.k1.k2.length_scale)


def test_load_refuses_foreign_or_broken_files(tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04\x95 pickle")
    (tmp_path / "other.json").write_text('{"format": "something-else"}')
    (tmp_path / "broken.json").write_text('{"format": "chameleon-gp-predictor", "version": 1}')
    for name, message in [("missing.json", "no such"), ("model.pkl", "not a JSON"),
                          ("other.json", "not a chameleon-gp-predictor"), ("broken.json", "corrupt")]:
        with pytest.raises(PredictorFileError, match=message) as caught:
            GPPredictor.load(tmp_path / name)
        assert "\n" not in str(caught.value)


# -- Algorithm 1 --------------------------------------------------------------------------------


def test_algorithm1_stops_at_the_budget_and_never_retrains():
    pool = integer_pool(300, seed=4)
    pool[1] = pool[0]  # a pool may repeat an architecture: it is still trained once
    trainer = FunctionTrainer(smooth)
    model, history = build_accuracy_predictor(
        pool, trainer, LOW, HIGH, initial=12, p=5, q=5, budget=37, flops=flops, random_state=0, gp_params=FAST
    )
    assert history.stop_reason == "budget"
    assert [r.n_samples for r in history.rounds] == [12, 22, 32, 37]
    last = history.rounds[-1]
    assert (len(last.exploration), len(last.exploitation)) == (2, 3)  # shrunk, keeping p : q
    trained = np.concatenate(trainer.calls)
    assert len(trained) == trainer.n_trained == 37
    assert len(np.unique(trained, axis=0)) == 37  # nothing trained twice
    assert sorted(history.trained_indices) == sorted(set(history.trained_indices))
    assert 1 not in history.trained_indices  # the repeat of pool[0] is never offered
    assert model.X_train_.shape == (37, D)
    np.testing.assert_array_equal(history.values, smooth(pool[history.trained_indices]))
    assert history.rounds[0].initial and not history.rounds[0].exploration
    json.dumps(history.to_dict())


def test_algorithm1_stops_at_the_mse_threshold():
    pool = integer_pool(200, seed=5)
    _, history = build_accuracy_predictor(
        pool, FunctionTrainer(smooth), LOW, HIGH, initial=10, p=5, q=5, budget=200,
        mse_threshold=10.0, flops=flops, gp_params=FAST,
    )
    assert history.stop_reason == "threshold"
    assert len(history.rounds) == 1 and history.n_samples == 10
    assert history.rounds[0].loo_mse < 10.0


def test_algorithm1_picks_exploration_by_std_and_exploitation_by_accuracy_per_flop():
    pool = integer_pool(250, seed=6)
    seen = []
    _, history = build_accuracy_predictor(
        pool, FunctionTrainer(smooth), LOW, HIGH, initial=15, p=4, q=6, budget=45, flops=flops,
        gp_params=FAST, on_round=lambda record, predictor: seen.append((record, predictor)),
    )
    assert len(seen) == len(history.rounds) == 4
    for (record, predictor), (following, _) in itertools.pairwise(seen):
        untrained = np.setdiff1d(np.arange(len(pool)), history.trained_indices[: record.n_samples])
        _, std = predictor.predict(pool[untrained], return_std=True)
        explore = set(following.exploration)
        assert explore == set(untrained[np.argsort(-std, kind="stable")[:4]].tolist())
        rest = np.array([i for i in untrained if i not in explore])
        ratio = predictor.predict(pool[rest]) / flops(pool[rest])
        assert set(following.exploitation) == set(rest[np.argsort(-ratio, kind="stable")[:6]].tolist())
    # Exploitation lands on 'samples of interest': true accuracy / FLOPs well above the pool's.
    exploited = [i for r in history.rounds for i in r.exploitation]
    true_ratio = smooth(pool) / flops(pool)
    assert np.mean(true_ratio[exploited]) > np.quantile(true_ratio, 0.8)


def test_energy_predictor_uses_exploration_only():
    pool = integer_pool(200, seed=7)
    energy = lambda X: 5.0 + to_unit(X, LOW, HIGH) @ np.linspace(0.5, 2.0, D)
    model, history = build_energy_predictor(pool, FunctionTrainer(energy), LOW, HIGH, budget=30,
                                            initial=10, p=10, gp_params=FAST)
    assert history.stop_reason == "budget" and history.n_samples == 30
    assert all(not r.exploitation for r in history.rounds)
    assert [len(r.exploration) for r in history.rounds] == [0, 10, 10]
    assert model.predict(pool[:3]).shape == (3,)


def test_algorithm1_checks_its_inputs():
    pool = integer_pool(50, seed=8)
    with pytest.raises(ValueError, match="FLOPs"):
        build_accuracy_predictor(pool, FunctionTrainer(smooth), LOW, HIGH, budget=20)
    with pytest.raises(TrainerError, match="non-finite"):
        build_accuracy_predictor(pool, FunctionTrainer(lambda X: np.full(len(X), np.nan)), LOW, HIGH,
                                 flops=flops, budget=20)


def test_pool_exhaustion_stops_the_loop():
    pool = integer_pool(30, seed=9)
    _, history = build_energy_predictor(pool, FunctionTrainer(smooth), LOW, HIGH, budget=100, initial=10,
                                        p=15, gp_params=FAST)
    assert history.stop_reason == "pool exhausted" and history.n_samples == 30


# -- Trainers -----------------------------------------------------------------------------------

GENES = [f"g{i}" for i in range(D)]


def write_observations(path, X, values, target="accuracy"):
    table = pa.table({**{name: X[:, j] for j, name in enumerate(GENES)}, target: values, "note": ["x"] * len(X)})
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_observations_trainer_looks_up_exact_architectures(tmp_path, suffix):
    X = integer_pool(20, seed=10)
    X = np.unique(X, axis=0)
    path = write_observations(tmp_path / f"obs{suffix}", X, smooth(X))
    trainer = ObservationsTrainer(path, GENES, LOW, HIGH)
    assert isinstance(trainer, Trainer) and len(trainer) == len(X)
    order = np.arange(len(X))[::-1]
    np.testing.assert_allclose(trainer.train(X[order]), smooth(X[order]))
    with pytest.raises(MissingObservation, match=r"2 of 3 architecture\(s\).*e\.g\. \(g0=") as caught:
        trainer.train(np.vstack([X[:1], X[:1] + 0.5, X[:1] + 0.25]))
    assert "\n" not in str(caught.value) and isinstance(caught.value, ChameleonError)


def test_observations_trainer_averages_repeats_and_reads_other_targets(tmp_path):
    X = np.vstack([np.ones(D), np.ones(D), np.zeros(D)])
    path = write_observations(tmp_path / "energy.parquet", X, np.array([10.0, 12.0, 3.0]), target="energy_mj")
    trainer = ObservationsTrainer(path, GENES, LOW, HIGH, target="energy_mj")
    np.testing.assert_allclose(trainer.train(X), [11.0, 11.0, 3.0])


def test_observations_trainer_refuses_bad_files(tmp_path):
    X = integer_pool(5, seed=11)
    outside = X.copy()
    outside[2, 3] = 9
    cases = {
        "outside": (write_observations(tmp_path / "outside.parquet", outside, smooth(X)), "outside the space's bounds, e.g. row 3: g3=9 not in \\[0, 8\\]"),
        "no_target": (write_observations(tmp_path / "energy.csv", X, smooth(X), target="energy_mj"), "missing column\\(s\\) 'accuracy'"),
        "missing": (tmp_path / "absent.parquet", "no such observations file"),
        "garbage": (tmp_path / "garbage.parquet", "cannot read observations"),
        "suffix": (tmp_path / "obs.txt", "must be a .parquet or .csv"),
    }
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "obs.txt").write_text("g0\n1\n")
    for path, message in cases.values():
        with pytest.raises(InvalidObservations, match=message) as caught:
            ObservationsTrainer(path, GENES, LOW, HIGH)
        assert "\n" not in str(caught.value)
