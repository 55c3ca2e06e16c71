"""armlens.stats against hand-computed answers and an independent numpy resampling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from armlens.stats import (
    BATCH,
    as_scores,
    bootstrap_ci,
    clustered_interval,
    crossed_interval,
    paired_bootstrap,
    spearman,
    t_interval,
)


def _numpy_percentile_bootstrap(v: np.ndarray, n: int, seed: int, alpha: float = 0.05) -> tuple[float, float]:
    """The documented resampling written out in numpy: ``n`` index vectors from one seeded Generator, in batches of
    ``BATCH``, and the linear-interpolation percentiles of the resampled means."""
    rng = np.random.default_rng(seed)
    means = np.concatenate([v[rng.integers(0, v.size, size=(min(BATCH, n - k), v.size))].mean(axis=1)
                            for k in range(0, n, BATCH)])
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def test_as_scores():
    assert as_scores([1, 2.5], "x").tolist() == [1.0, 2.5]
    with pytest.raises(ValueError, match="x has 1 NaN or infinite"):
        as_scores([1.0, float("inf")], "x")
    with pytest.raises(ValueError, match="y must be a 1-D array"):
        as_scores([[1.0]], "y")


def test_bootstrap_ci_hand_computed():
    # two items: resampled means are 0, .5, 1 with probabilities 1/4, 1/2, 1/4 -> 95% interval [0, 1]
    ci = bootstrap_ci([0.0, 1.0], n=4000, seed=0)
    assert ci == (0.5, 0.0, 1.0)
    # three items [0, 0, 1]: means 0, 1/3, 2/3, 1 w.p. 8/27, 12/27, 6/27, 1/27; P(mean <= 2/3) = .963 < .975
    assert bootstrap_ci([0.0, 0.0, 1.0], n=20000, seed=0) == pytest.approx((1 / 3, 0.0, 1.0))
    assert bootstrap_ci([0.7] * 10, n=100, seed=1) == pytest.approx((0.7, 0.7, 0.7))
    assert bootstrap_ci([0.3], n=10) == (0.3, 0.3, 0.3)  # one item: every resample is that item
    values = np.random.default_rng(0).random(400) < 0.7
    a = bootstrap_ci(values, n=2000, seed=3)
    assert a == bootstrap_ci(values, n=2000, seed=3)  # seeded
    assert a != bootstrap_ci(values, n=2000, seed=4)
    width = a.high - a.low  # normal approximation: 2 * 1.96 * sqrt(.21 / 400) = 0.0898
    assert 0.075 < width < 0.105 and a.low < a.estimate < a.high
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([1.0, 0.0], alpha=1.5)


@pytest.mark.parametrize(("m", "n", "seed"), [(37, 1000, 0), (400, 2000, 3), (50, 4001, 7)])
def test_bootstrap_ci_is_the_documented_resampling(m, n, seed):
    """Same numbers as the resampling written out in numpy (also across batch boundaries), so intervals stay
    reproducible from the values, ``n`` and ``seed`` alone."""
    v = np.random.default_rng(m).random(m)
    ci = bootstrap_ci(v, n=n, seed=seed)
    assert ci.estimate == pytest.approx(v.mean())
    assert (ci.low, ci.high) == pytest.approx(_numpy_percentile_bootstrap(v, n, seed), abs=1e-12)
    # and the interval of the differences is the paired one
    w = np.random.default_rng(m + 1).random(m)
    assert paired_bootstrap(v, w, n=n, seed=seed)[1:3] == pytest.approx(
        _numpy_percentile_bootstrap(v - w, n, seed), abs=1e-12)


def test_paired_bootstrap():
    x = np.array([1, 0, 1, 1, 0, 1], dtype=float)
    same = paired_bootstrap(x, x, n=500, seed=0)
    assert same == (0.0, 0.0, 0.0, 1.0)
    allwin = paired_bootstrap(np.ones(20), np.zeros(20), n=999, seed=0)
    assert allwin.diff == 1.0 and (allwin.low, allwin.high) == (1.0, 1.0) and allwin.p_value == pytest.approx(1e-3)
    # a = [1, 0], b = [0, 0]: d = .5; resampled d* in {0, .5, 1} w.p. 1/4, 1/2, 1/4; |d* - d| >= d w.p. 1/2
    half = paired_bootstrap([1, 0], [0, 0], n=20000, seed=0)
    assert half.diff == 0.5 and (half.low, half.high) == (0.0, 1.0)
    assert half.p_value == pytest.approx(0.5, abs=0.02)
    # the pairing matters: same marginal accuracies, perfectly correlated -> tiny interval
    a = np.array([1.0] * 60 + [0.0] * 40)
    b = np.array([1.0] * 50 + [0.0] * 50)
    paired = paired_bootstrap(a, b, n=2000, seed=0)
    assert paired.diff == pytest.approx(0.1) and paired.low > 0.04 and paired.p_value < 0.01
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap([1, 0], [1])


def test_t_interval_hand_computed():
    mean, sd, lo, hi = t_interval([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6) and sd == pytest.approx(0.1)
    assert (hi - lo) / 2 == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)  # t_{.975, 2} = 4.302653
    assert (lo + hi) / 2 == pytest.approx(0.6)
    assert t_interval([0.5, None, float("nan"), 0.7])[:2] == pytest.approx((0.6, math.sqrt(0.02)))
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.0, 0.5, 0.5)  # seeds that agree: a zero-width interval
    one = t_interval([0.5])
    assert one[0] == 0.5 and math.isnan(one[2])
    assert all(math.isnan(x) for x in t_interval([]))


def test_spearman_hand_computed():
    # no ties: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    # ties get average ranks: ranks [1.5, 1.5, 3] vs [1, 2, 3] -> Pearson 1.5 / sqrt(1.5 * 2)
    assert spearman([1, 1, 2], [5, 6, 7]) == pytest.approx(1.5 / math.sqrt(3))
    assert spearman([[1, 2], [3, 4]], [[4, 3], [2, 1]]) == pytest.approx(-1.0)  # flattened
    assert math.isnan(spearman([1, 2, 3], [2, 2, 2]))
    with pytest.raises(ValueError, match="equal size"):
        spearman([1, 2], [1, 2, 3])


# ----------------------------------------------------------------------------------------------------------------------
# Seeds that score the same test items: crossed intervals
# ----------------------------------------------------------------------------------------------------------------------


def _width(ci) -> float:
    return ci.high - ci.low


def test_crossed_interval_with_identical_seeds_is_the_single_seed_interval():
    """Five seeds that score the same 150 pairs (60 prompts) identically carry one seed's information: the crossed
    interval is the single-seed cluster interval, where the nested bootstrap is about sqrt(5) narrower."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 60, 150)
    values = (rng.random(150) < 0.6).astype(float)
    one = clustered_interval([values], n=4000, seed=1, clusters=[labels])
    crossed = crossed_interval([values] * 5, [labels] * 5, n=4000, seed=1)
    nested = clustered_interval([values] * 5, n=4000, seed=1, clusters=[labels] * 5)
    assert crossed.diff == pytest.approx(one.diff)
    assert 0.9 < _width(crossed) / _width(one) < 1.1
    assert _width(nested) / _width(one) < 0.6  # the old interval's error, for the record: ~1/sqrt(5)


def test_crossed_interval_with_disjoint_seeds_is_the_nested_interval():
    """Seeds with disjoint test sets (and a real seed effect) are the nested design: the crossed interval agrees
    with the two-stage bootstrap."""
    rng = np.random.default_rng(2)
    groups, labels = [], []
    for g in range(5):
        lab = rng.integers(0, 40, 120) + 1000 * g  # no prompt shared between seeds
        p = 0.6 + rng.normal(0, 0.04) + rng.normal(0, 0.15, 40)[lab % 1000]
        groups.append((rng.random(120) < np.clip(p, 0, 1)).astype(float))
        labels.append(lab)
    crossed = crossed_interval(groups, labels, n=4000, seed=3)
    nested = clustered_interval(groups, n=4000, seed=3, clusters=labels)
    assert crossed.diff == pytest.approx(nested.diff)
    assert 0.8 < _width(crossed) / _width(nested) < 1.3


def _simulated_eval(rng, mu, sd_prompt, sd_seed, sd_cell, n_seeds=5, n_prompts=120, drop=0.12):
    """One simulated evaluation: prompts with one or two pairs each, each seed scoring all but a random ~12% of the
    prompts (its few-shot draw), correct ~ Bernoulli(logistic(mu + seed + prompt + pair + seed x pair))."""
    sizes = rng.integers(1, 3, n_prompts)
    prompt = np.repeat(np.arange(n_prompts), sizes)
    pair = rng.normal(0, sd_prompt, n_prompts)[prompt] + rng.normal(0, 0.3, prompt.size)
    groups, labels = [], []
    for _ in range(n_seeds):
        keep = (rng.random(n_prompts) >= drop)[prompt]
        logit = mu + rng.normal(0, sd_seed) + pair[keep] + rng.normal(0, sd_cell, keep.sum())
        groups.append((rng.random(keep.sum()) < 1 / (1 + np.exp(-logit))).astype(float))
        labels.append(prompt[keep])
    return groups, labels


def test_crossed_interval_covers_the_true_mean():
    """500 simulated 5-seed evaluations whose variance components are like the measured ones (LLMBar's ARM, from
    its committed per-item files: seed ~0, item 0.050, seed x item 0.177 of a 0/1 outcome; HHH's 0, 0.057, 0.19;
    here about 0.0004, 0.04-0.05, 0.19). The t interval on the corrected variance covers the true mean (over new
    seeds and new prompts) in 92-98% of them. (When the seed component dominates it covers 91-93%: see
    :func:`armlens.stats.crossed_interval`.)"""
    mu, sd_prompt, sd_seed, sd_cell = 0.8, 1.3, 0.1, 0.9
    truth_rng = np.random.default_rng(123)
    z = sum(truth_rng.normal(0, s, 1_000_000) for s in (sd_prompt, 0.3, sd_seed, sd_cell))
    truth = float(np.mean(1 / (1 + np.exp(-(mu + z)))))
    rng = np.random.default_rng(5)
    hits = 0
    for r in range(500):
        groups, labels = _simulated_eval(rng, mu, sd_prompt, sd_seed, sd_cell)
        ci = crossed_interval(groups, labels, n=300, seed=r)
        hits += ci.low <= truth <= ci.high
    assert 0.92 <= hits / 500 <= 0.98, hits / 500


def test_crossed_bad_input():
    with pytest.raises(ValueError, match="group 1 has 2 items but 1 cluster labels"):
        crossed_interval([[1, 0], [1, 0]], [["a", "b"], ["a"]])
    with pytest.raises(ValueError, match="NaN"):
        crossed_interval([[1, float("nan")]], [["a", "b"]])
    with pytest.raises(ValueError, match="no empty group"):
        crossed_interval([[1], []], [["a"], []])
