"""FBNet's differentiable search (issue 21): the LUT latency and its gradient, the schedule, the resumable search,
the per-budget pick, and `optimize dnas` on a synthetic LUT (tiny data, no device)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import one_line_error, run_optimize
from harness.errors import ChameleonError
from lut_rows import row, write_lut
from optimizer.dnas import (DnasError, DnasSettings, LayerLatencyTable, ScoredCandidate, argmax_architecture,
                            candidates_of, expected_latency_torch, expected_latency_us, one_hot, pick, run_search,
                            sample_architectures, softmax, temperature)
from optimizer.dnas.selection import order_for_budget, representatives
from optimizer.dnas.search import FBNET_TAU_FINAL, FBNET_TAU_INITIAL
from optimizer.latency.lut_model import LatencyPredictor, LutLatencyModel, NetworkCorrection
from optimizer.netadapt.records import MEASURED_MARGIN
from optimizer.spaces import get_space

SPACE = get_space("fbnet-mini")
CORRECTION = NetworkCorrection(scale=1.07, boundary_us=1.3, boundary_element_us=2.1e-4, networks=20)


def _medians() -> dict[str, float]:
    """A LUT-like figure per unit: a fixed cost plus one per MAC, with a little irregular noise (not round numbers)."""
    rng = np.random.default_rng(5)
    sigs = SPACE.all_signatures()
    return {s.key: float(2.5 + s.macs / 9000 + rng.uniform(0, 1.7)) for s in sigs}


def _lut(correction: NetworkCorrection | None) -> LutLatencyModel:
    from harness.sweep import OVERHEAD_SIGNATURE

    return LutLatencyModel(_medians() | {OVERHEAD_SIGNATURE.key: 2.47}, 2.47, "synthetic.parquet", "xeon", correction)


@pytest.fixture(scope="module", params=["plain", "corrected"])
def lut(request) -> LutLatencyModel:
    return _lut(CORRECTION if request.param == "corrected" else None)


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory) -> Path:
    from harness.signature import parse_signature
    from harness.sweep import OVERHEAD_SIGNATURE

    rows = [row(OVERHEAD_SIGNATURE, median=2.47)] + [row(parse_signature(k), median=v) for k, v in _medians().items()]
    return write_lut(tmp_path_factory.mktemp("lut") / "lut.parquet", rows)


# ------------------------------------------------------------------ the latency
def test_argmax_latency_is_the_lut_estimate_exactly(lut):
    import torch

    table = LayerLatencyTable.from_lut(SPACE, lut)
    predictor = LatencyPredictor(lut, SPACE)
    rng = np.random.default_rng(0)
    for _ in range(25):
        theta = rng.normal(0, 2, table.shape)
        genes = argmax_architecture(theta)
        estimate = lut.estimate(SPACE.signatures(genes)).latency_us
        m = one_hot(genes, table.shape[1])
        assert expected_latency_us(table, m) == estimate  # to the last bit
        assert float(expected_latency_torch(table, torch.as_tensor(m))) == estimate
        assert predictor.predict(genes[None]).latency_ms[0] * 1000 == pytest.approx(estimate, rel=1e-12)


def test_argmax_latency_is_what_optimize_estimate_prints(lut_file, tmp_path):
    lut = LutLatencyModel.from_file(lut_file)
    table = LayerLatencyTable.from_lut(SPACE, lut)
    genes = argmax_architecture(np.random.default_rng(3).normal(size=table.shape))
    (tmp_path / "net.txt").write_text("\n".join(s.key for s in SPACE.signatures(genes)) + "\n")
    result = run_optimize("estimate", "--lut", str(lut_file), str(tmp_path / "net.txt"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["latency_us"] == expected_latency_us(table, one_hot(genes, table.shape[1]))


def test_expected_latency_is_linear_and_its_gradient_matches_finite_differences(lut):
    import torch

    table = LayerLatencyTable.from_lut(SPACE, lut)
    theta = torch.tensor(np.random.default_rng(1).normal(0, 1, table.shape), dtype=torch.float64, requires_grad=True)
    value = expected_latency_torch(table, torch.softmax(theta, dim=1))
    (grad,) = torch.autograd.grad(value, [theta])
    assert value.item() == pytest.approx(expected_latency_us(table, softmax(theta.detach().numpy())), rel=1e-12)
    eps = 1e-6
    numeric = np.zeros(table.shape)
    with torch.no_grad():
        for index in np.ndindex(*table.shape):
            for sign in (1, -1):
                shifted = theta.detach().clone()
                shifted[index] += sign * eps
                numeric[index] += sign * float(expected_latency_torch(table, torch.softmax(shifted, dim=1))) / (2 * eps)
    np.testing.assert_allclose(grad.numpy(), numeric, rtol=1e-5, atol=1e-7)
    # d LAT / d m is each candidate's own cost in a network: its entry less the overhead it no longer pays, ...
    m = torch.softmax(theta.detach(), dim=1).requires_grad_(True)
    (dm,) = torch.autograd.grad(expected_latency_torch(table, m), [m])
    c = lut.correction or NetworkCorrection()
    own = c.scale * (table.candidate_us - table.present * table.overhead_us) - c.boundary_us * table.present \
        - c.boundary_element_us * table.elements
    np.testing.assert_allclose(dm.numpy(), own, rtol=1e-12, atol=1e-12)
    # ... and a batch of architectures gives one latency each.
    batch = torch.stack([m.detach(), torch.as_tensor(one_hot(argmax_architecture(theta.detach()), table.shape[1]))])
    assert expected_latency_torch(table, batch).shape == (2,)


def test_a_space_without_layers_is_refused_in_one_line(lut):
    with pytest.raises(ChameleonError) as err:
        LayerLatencyTable.from_lut(get_space("chamnet-mobile-mini"), lut)
    assert "fbnet" in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------ schedule and sampling
def test_temperature_anneals_geometrically_between_its_ends():
    s = DnasSettings(epochs=9, tau_initial=5.0, tau_final=0.5)
    taus = [temperature(e, s) for e in range(9)]
    assert taus[0] == 5.0 and taus[-1] == pytest.approx(0.5)
    np.testing.assert_allclose(np.array(taus[1:]) / np.array(taus[:-1]), (0.1) ** (1 / 8))
    assert FBNET_TAU_INITIAL == 5.0 and FBNET_TAU_FINAL == pytest.approx(5.0 * math.exp(-0.045 * 90))
    assert temperature(0, DnasSettings(epochs=1, warmup_epochs=0)) == 5.0
    with pytest.raises(DnasError, match="warmup_epochs"):
        DnasSettings(epochs=3, warmup_epochs=3)


def test_gumbel_softmax_is_seeded_and_samples_p_theta():
    import torch

    from optimizer.dnas.supernet import gumbel_softmax

    theta = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    draw = lambda tau, seed: gumbel_softmax(theta.expand(4000, 2, 3), tau, torch.Generator().manual_seed(seed))
    assert torch.equal(draw(1.0, 7), draw(1.0, 7)) and not torch.equal(draw(1.0, 7), draw(1.0, 8))
    m = draw(0.05, 0)
    assert torch.allclose(m.sum(-1), torch.ones(4000, 2)) and float(m.max(-1).values.mean()) > 0.97
    frequencies = np.bincount(m[:, 0].argmax(-1).numpy(), minlength=3) / 4000
    np.testing.assert_allclose(frequencies, softmax(theta.numpy())[0], atol=0.03)


def test_sampled_architectures_follow_p_theta_and_candidates_start_with_the_argmax():
    theta = np.log(np.array([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]]))
    X = sample_architectures(theta, 20000, np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(X[:, 0], minlength=3) / 20000, [0.7, 0.2, 0.1], atol=0.015)
    drawn = candidates_of(theta, 12, np.random.default_rng(0))
    assert drawn[0][1] and drawn[0][0].tolist() == [0, 2]
    assert len({tuple(g) for g, _, _ in drawn}) == len(drawn)
    assert drawn[0][2] == pytest.approx(math.log(0.7 * 0.9))


def test_each_search_offers_its_most_probable_network_and_the_best_validated_one_measuring_in_margin_wins():
    def cand(search, logp, ms, trained=None):
        return ScoredCandidate([0], ["skip"], search, 0.2, 1.0, False, logp, ms, None, 0, trained)

    c1, c2, c3 = cand("a", -1.0, 0.09, 0.90), cand("a", -3.0, 0.0995), cand("a", -0.5, 0.12)
    c4, c5 = cand("b", -2.0, 0.05, 0.95), cand("b", -4.0, 0.06)
    cands = [c1, c2, c3, c4, c5]
    assert representatives(cands, 0.1) == [c1, c4]  # c3 is a's most probable, but over the budget
    order = order_for_budget(cands, 0.1)
    assert order == [c4, c1, c2, c5]
    measured = {id(c4): 0.0995, id(c1): 0.093, id(c2): 0.08}
    chosen, ms, log = pick(order, 0.1, lambda batch: [measured[id(c)] for c in batch])
    assert chosen is c1 and ms == 0.093  # b's network measures 0.0995 > 0.1·(1 − margin)
    assert [entry["accepted"] for entry in log] == [False, True] and MEASURED_MARGIN == 0.02
    assert pick(order_for_budget(cands, 0.04), 0.04, lambda batch: [1.0] * len(batch))[0] is None
    assert pick(order, 0.1, lambda batch: [1.0] * len(batch))[0] is None
    assert pick(order, 0.1, None)[0] is c4  # no device: the LUT alone


# ------------------------------------------------------------------ the search
def _tiny_data():
    from optimizer.training.datasets import ImageDataset, load_dataset

    full = load_dataset("digits")
    keep = np.concatenate([np.flatnonzero(full.labels == c)[:14] for c in range(10)])
    images, labels = full.images[keep], full.labels[keep]
    train = np.concatenate([np.flatnonzero(labels == c)[:12] for c in range(10)])
    held = np.setdiff1d(np.arange(len(labels)), train)
    return ImageDataset("digits-tiny", "digits-tiny-test", full.classes, images, labels, np.sort(train), held)


def test_a_search_interrupted_and_resumed_ends_as_an_uninterrupted_one(tmp_path):
    import torch

    table = LayerLatencyTable.from_lut(SPACE, _lut(CORRECTION))
    data = _tiny_data()
    settings = DnasSettings(epochs=3, warmup_epochs=1, batch_size=24, beta=2.0, seed=3)
    whole = run_search(SPACE, table, data, settings, tmp_path / "whole")

    def stop(record, epochs):
        if record.epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(SPACE, table, data, settings, tmp_path / "killed", on_epoch=stop)
    assert json.loads((tmp_path / "killed" / "state.json").read_text())["epochs_done"] == 1
    resumed = run_search(SPACE, table, data, settings, tmp_path / "killed")
    assert resumed.resumed_at_epoch == 1 and whole.resumed_at_epoch is None
    assert resumed.theta == whole.theta
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["supernet"]
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["supernet"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda h: [{k: v for k, v in vars(r).items() if k not in ("seconds", "cpu_seconds")} for r in h]
    assert strip(resumed.history) == strip(whole.history)
    assert len(whole.history) == 3 and whole.history[0].theta_loss is None and whole.history[-1].theta_loss > 0
    again = run_search(SPACE, table, data, settings, tmp_path / "whole")  # finished: nothing left to do
    assert again.theta == whole.theta and again.resumed_at_epoch is None
    with pytest.raises(DnasError, match="holds another search") as err:
        run_search(SPACE, table, data, replace(settings, beta=0.6), tmp_path / "whole")
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ the command line
@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory) -> Path:
    """An ImageFolder of 55 digits per class (50 held out: the folder loader's split), 16 px PNGs."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    bunch = load_digits()
    for c in range(10):
        (root / str(c)).mkdir()
        for k, i in enumerate(np.flatnonzero(bunch.target == c)[:55]):
            pixels = (bunch.images[i] * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels).resize((16, 16)).save(root / str(c) / f"{k}.png")
    return root


def test_optimize_dnas_json_is_one_strict_document(lut_file, digit_folder, tmp_path):
    result = run_optimize("dnas", "--lut", str(lut_file), "--budget", "0.05,0.07ms", "--beta", "2", "--epochs", "2",
                          "--warmup-epochs", "1", "--samples", "2", "--train-epochs", "1", "--data", str(digit_folder),
                          "--no-measure", "--workers", "1", "--out", str(tmp_path / "run"), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert document["space"] == "fbnet-mini" and len(document["searches"]) == 1
    assert document["searches"][0]["beta"] == 2.0 and document["search_cpu_seconds"] > 0
    for final in document["finals"]:
        assert final["predicted_latency_ms"] <= final["budget_ms"] and final["within_budget"] is None
        assert 0 <= final["trained_validation_accuracy"] <= 1
        assert 0 <= final["trained_accuracy"] <= 1 and Path(final["onnx"]).is_file()
    assert len(document["finals"]) + len(document["unmet_budgets"]) == 2
    assert json.loads((tmp_path / "run" / "result.json").read_text())["seed"] == 0


@pytest.mark.parametrize("args, words", [
    (["--beta", "x"], "--beta"),
    (["--space", "chamnet-mobile-mini"], "fbnet"),
    (["--budget", "0ms"], "budget"),
    (["--epochs", "2", "--warmup-epochs", "2"], "warmup"),
])
def test_optimize_dnas_bad_input_is_one_line(lut_file, tmp_path, args, words):
    base = {"--budget": "0.05ms"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    flat = [x for kv in base.items() for x in kv]
    line = one_line_error(run_optimize("dnas", "--lut", str(lut_file), *flat, "--no-measure", "--out",
                                       str(tmp_path / "run")))
    assert words in line
