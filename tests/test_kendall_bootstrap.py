"""The vectorised rank-correlation bootstraps equal scipy on every resample, ties and repeated rows included."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from optimizer.crossdevice.monotonicity import pair_monotonicity
from optimizer.crossdevice.rank_correlation import (bootstrap_indices, bootstrap_kendall, kendall_of_resamples_scipy,
                                                    percentile_interval, spearman_of_resamples,
                                                    spearman_of_resamples_ranked)


def pairs(rng: np.random.Generator):
    """Small (x, y) pairs of every kind of tie: none, many, whole-ms phones, one side constant, anti-correlated."""
    for n in (2, 3, 5, 17, 64, 200):
        yield rng.standard_normal(n), rng.standard_normal(n)
        x = rng.standard_normal(n)
        yield x, x + 0.3 * rng.standard_normal(n)
        x = rng.integers(0, 4, n).astype(float)
        yield x, rng.integers(0, 3, n).astype(float)
        x = np.round(rng.uniform(5, 40, n))
        yield x, np.round(x * rng.uniform(0.8, 1.2, n))
        yield np.full(n, 2.0), rng.standard_normal(n)
        x = rng.integers(0, 6, n).astype(float)
        yield x, -x + rng.integers(0, 2, n)


def scipy_per_resample(x, y, index, what):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on a constant resample; its figure is NaN, as ours
        if what == "kendall":
            return np.array([stats.kendalltau(x[i], y[i]).statistic for i in index])
        return np.array([stats.spearmanr(x[i], y[i]).statistic for i in index])


@pytest.mark.parametrize("what, tolerance", [("kendall", 1e-9), ("spearman", 1e-12)])
def test_every_resample_equals_scipy(what, tolerance):
    rng = np.random.default_rng(0)
    checked = 0
    for x, y in pairs(rng):
        n = len(x)
        index = bootstrap_indices(n, 50, rng)
        # small chunks: several passes over the resamples, as a large table takes them
        ours = (bootstrap_kendall(x, y, index, chunk_elements=40) if what == "kendall"
                else spearman_of_resamples(x, y, index))
        reference = scipy_per_resample(x, y, index, what)
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference))
        finite = np.isfinite(reference)
        assert np.abs(ours[finite] - reference[finite]).max(initial=0.0) <= tolerance, (what, n)
        checked += int(finite.sum())
    assert checked > 1000


def test_resamples_of_another_size_and_the_reference_functions():
    rng = np.random.default_rng(4)
    x = np.round(rng.uniform(0, 30, 90))
    y = x + rng.integers(-3, 4, 90)
    index = rng.integers(0, 90, (40, 25))  # 25 rows drawn of 90
    np.testing.assert_allclose(bootstrap_kendall(x, y, index), scipy_per_resample(x, y, index, "kendall"),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(spearman_of_resamples(x, y, index), scipy_per_resample(x, y, index, "spearman"),
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(kendall_of_resamples_scipy(x, y, index), scipy_per_resample(x, y, index, "kendall"))
    np.testing.assert_allclose(spearman_of_resamples_ranked(x, y, index), spearman_of_resamples(x, y, index),
                               rtol=0, atol=1e-12)


def test_degenerate_inputs_are_nan():
    assert np.isnan(bootstrap_kendall(np.array([1.0]), np.array([2.0]), np.zeros((3, 1), dtype=int))).all()
    assert np.isnan(spearman_of_resamples(np.array([1.0]), np.array([2.0]), np.zeros((3, 1), dtype=int))).all()
    assert bootstrap_kendall(np.arange(3.0), np.arange(3.0), np.zeros((0, 3), dtype=int)).shape == (0,)


def test_pair_intervals_are_the_per_resample_ones():
    """pair_monotonicity draws the same resamples as before (SRCC's, then Kendall's) and reads the same intervals."""
    rng = np.random.default_rng(7)
    x = np.round(rng.uniform(1, 50, 400))
    y = x * rng.uniform(0.7, 1.3, 400)
    p = pair_monotonicity(x, y, bootstrap=200, seed=3)
    draws = np.random.default_rng(3)
    srcc_index = bootstrap_indices(400, 200, draws)
    kendall_index = bootstrap_indices(400, 200, draws)
    low, high = percentile_interval(scipy_per_resample(x, y, srcc_index, "spearman"))
    assert (p.srcc_low, p.srcc_high) == pytest.approx((low, high), abs=1e-12)
    low, high = percentile_interval(scipy_per_resample(x, y, kendall_index, "kendall"))
    assert (p.kendall_low, p.kendall_high) == pytest.approx((low, high), abs=1e-12)
