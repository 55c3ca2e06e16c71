"""Statistics shared by evaluation, analysis and the bias suite: score checks, bootstrap intervals, paired tests,
t-intervals, rank correlation, and the wording of a count (``counted``: "1 seed", "3 seeds").

Context
-------
This module sits at the bottom of armlens (it imports numpy and scipy only), so every layer above it can report
uncertainty the same way without importing :mod:`armlens.evaluation`. The computations are scipy's:

- :func:`bootstrap_ci`: ``scipy.stats.bootstrap`` with ``method="percentile"`` over items, seeded through a
  ``numpy.random.Generator``, so the same values, ``n`` and ``seed`` always give the same interval;
- :func:`paired_bootstrap`: the same resampling applied to per-item differences (method A vs method B on the same
  items), with a two-sided bootstrap p-value read off scipy's bootstrap distribution;
- :func:`clustered_bootstrap`: seeds, then items within a seed (numpy), for seeds that score different items;
- :func:`crossed_interval`: seeds and item clusters crossed, for seeds that score (nearly) the same items: the
  pigeonhole bootstrap rescaled to a moment-corrected variance from three bootstraps (:func:`crossed_variance`),
  so that its percentile interval is the t interval;
- :func:`t_interval`: ``scipy.stats.t`` for the mean across a handful of seeds;
- :func:`spearman`: ``scipy.stats.spearmanr`` (Pearson correlation of average ranks).

Resamples are drawn in batches of :data:`BATCH` item vectors, which bounds memory for large test sets; the batch
size is part of the seeded stream, so it is fixed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from armlens.errors import BadDataError

BATCH = 2000
"""Bootstrap resamples drawn per batch (bounds memory at ``BATCH x n_items`` indices; fixes the seeded stream)."""


def as_scores(x: Any, name: str) -> np.ndarray:
    """``x`` as a 1-D float array of finite scores; else a ValueError naming ``name``.

    Used wherever scores are compared (the RewardBench protocol, the bias suite): a NaN comparison would silently
    count as wrong.
    """
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise BadDataError(f"{name} must be a 1-D array of scores, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise BadDataError(f"{name} has {int((~np.isfinite(a)).sum())} NaN or infinite score(s)")
    return a


class CI(NamedTuple):
    """A point estimate with a percentile-bootstrap interval."""

    estimate: float
    low: float
    high: float


class PairedDiff(NamedTuple):
    """Difference ``mean(a) - mean(b)`` on the same items, its bootstrap interval and two-sided p-value."""

    diff: float
    low: float
    high: float
    p_value: float


def _bootstrap_means(v: np.ndarray, n: int, seed: int, alpha: float) -> tuple[np.ndarray, float, float]:
    """Means of ``n`` seeded bootstrap resamples of the items of ``v`` and their percentile ``1 - alpha`` interval.

    One item has only one resample (itself), which ``scipy.stats.bootstrap`` refuses; its distribution is that
    value ``n`` times.
    """
    if v.shape[0] == 1:
        return np.full(n, v[0]), float(v[0]), float(v[0])
    from scipy.stats import bootstrap

    res = bootstrap((v,), np.mean, n_resamples=n, batch=BATCH, vectorized=True, paired=False,
                    confidence_level=1 - alpha, method="percentile", rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return res.bootstrap_distribution, float(ci.low), float(ci.high)


def _check_bootstrap_args(n: int, alpha: float, name: str) -> None:
    if n < 1 or not 0 < alpha < 1:
        raise BadDataError(f"{name}: n must be >= 1 and 0 < alpha < 1")


def bootstrap_ci(values: ArrayLike, n: int = 1000, seed: int = 0, alpha: float = 0.05) -> CI:
    """Mean of ``values`` and its seeded percentile-bootstrap ``1 - alpha`` interval, resampling items.

    ``values`` are per-item numbers (``correct.astype(float)`` for accuracy). The same values, ``n`` and ``seed``
    always give the same interval.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.shape[0] == 0:
        raise BadDataError("bootstrap_ci needs a non-empty 1-D array")
    if not np.all(np.isfinite(v)):
        raise BadDataError("bootstrap_ci: values contain NaN or infinity")
    _check_bootstrap_args(n, alpha, "bootstrap_ci")
    _, low, high = _bootstrap_means(v, n, seed, alpha)
    return CI(float(v.mean()), low, high)


def paired_bootstrap(
    a_correct: ArrayLike,
    b_correct: ArrayLike,
    n: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedDiff:
    """Paired bootstrap of ``mean(a) - mean(b)`` over the same items (method A vs method B on the same pairs).

    Each resample draws item indices once and applies them to both arrays (it resamples the per-item differences),
    so item difficulty cancels. The interval is the percentile interval of the resampled differences; the two-sided
    p-value tests "no difference" by centring the bootstrap distribution on zero:
    ``p = (1 + #{|d* - d| >= |d|}) / (n + 1)`` (Efron & Tibshirani 1993, 16.4). Identical inputs give ``diff = 0``
    and ``p = 1``.
    """
    a, b = np.asarray(a_correct, dtype=float), np.asarray(b_correct, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or a.shape[0] == 0:
        raise BadDataError(f"paired_bootstrap needs two non-empty 1-D arrays of equal length, got {a.shape}, {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise BadDataError("paired_bootstrap: values contain NaN or infinity")
    _check_bootstrap_args(n, alpha, "paired_bootstrap")
    d = float(a.mean() - b.mean())
    diffs, low, high = _bootstrap_means(a - b, n, seed, alpha)
    extreme = int((np.abs(diffs - d) >= abs(d) - 1e-12).sum())
    return PairedDiff(d, low, high, (1 + extreme) / (n + 1))


def clustered_bootstrap(groups: Sequence[ArrayLike], n: int = 2000, seed: int = 0,
                        clusters: Sequence[ArrayLike | None] | None = None) -> np.ndarray:
    """Seeded bootstrap distribution of the mean of group means, resampling groups, then clusters of items within
    each group.

    ``groups`` are per-item values of independent units that each carry their own variance (one array per seed: a
    seed is a new few-shot draw and a new fit, and its items share that fit). A plain item bootstrap over all seeds'
    items would ignore the seed-to-seed variance; this two-stage resampling keeps it. Per-item differences of two
    methods on the same items give a paired comparison. Returns ``n`` resampled statistics; see :func:`interval_of`.

    ``clusters``: per group, one label per item (or ``None``): items sharing a label are resampled together, and a
    resample's group statistic is the mean over the items of its drawn clusters. Pairs built from one prompt (HHH's
    221 pairs come from 102 prompts) share that prompt's difficulty, so resampling them one by one treats them as
    independent and narrows the interval; passing the prompt as the cluster does not. With every label distinct
    (or ``None``), the result is exactly the item bootstrap.
    """
    arrays = [np.asarray(g, dtype=float).ravel() for g in groups]
    if not arrays or any(a.size == 0 for a in arrays):
        raise BadDataError("clustered_bootstrap needs at least one group and no empty group")
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise BadDataError("clustered_bootstrap: values contain NaN or infinity")
    _check_bootstrap_args(n, 0.05, "clustered_bootstrap")
    if clusters is None:
        clusters = [None] * len(arrays)
    if len(clusters) != len(arrays):
        raise BadDataError(f"clustered_bootstrap: {len(clusters)} cluster label lists for {len(arrays)} groups")
    sums, counts = [], []
    for g, (a, labels) in enumerate(zip(arrays, clusters, strict=True)):
        if labels is None:
            sums.append(a)
            counts.append(np.ones_like(a))
            continue
        labels = list(labels)
        if len(labels) != a.size:
            raise BadDataError(f"clustered_bootstrap: group {g} has {a.size} items but {len(labels)} cluster labels")
        index: dict[Any, int] = {}  # clusters in order of first appearance, so distinct labels = the item bootstrap
        ids = np.array([index.setdefault(lab, len(index)) for lab in labels])
        sums.append(np.bincount(ids, weights=a, minlength=len(index)))
        counts.append(np.bincount(ids, minlength=len(index)).astype(float))
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(arrays), size=(n, len(arrays)))  # resample b draws groups pick[b]
    means = np.empty(pick.shape)
    for g, (s, c) in enumerate(zip(sums, counts, strict=True)):  # each draw of group g resamples g's clusters
        where = pick == g
        drawn = rng.integers(0, s.size, size=(int(where.sum()), s.size))
        means[where] = s[drawn].sum(axis=1) / c[drawn].sum(axis=1)
    return means.mean(axis=1)


class CrossedVariance(NamedTuple):
    """The variance of a mean over seeds x item clusters, from three bootstraps of the same table (see
    :func:`crossed_variance`)."""

    seeds: float
    """Bootstrap variance resampling the seeds only (every cluster kept)."""
    clusters: float
    """Bootstrap variance resampling the clusters only, once for all seeds (every seed kept)."""
    both: float
    """Bootstrap variance resampling both (the "pigeonhole" bootstrap, Owen 2007), which counts the seed x cluster
    interaction about three times over."""
    variance: float
    """The moment-corrected variance of the mean: the combination of the three that is unbiased for a balanced
    crossed design (seed + cluster + interaction components), floored at what the seeds alone and the clusters
    alone show."""
    df: float
    """Welch-Satterthwaite degrees of freedom of ``variance``: about ``S - 1`` when the seed component dominates,
    large when the clusters do."""


def _crossed_tables(groups: Sequence[ArrayLike], clusters: Sequence[ArrayLike],
                    name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per seed and distinct cluster (the union over seeds), the sum of the values and the number of items."""
    arrays = [np.asarray(g, dtype=float).ravel() for g in groups]
    if not arrays or any(a.size == 0 for a in arrays):
        raise BadDataError(f"{name} needs at least one group and no empty group")
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise BadDataError(f"{name}: values contain NaN or infinity")
    if len(clusters) != len(arrays):
        raise BadDataError(f"{name}: {len(clusters)} cluster label lists for {len(arrays)} groups")
    index: dict[Any, int] = {}  # the union of the clusters, in order of first appearance
    ids = []
    for g, (a, labels) in enumerate(zip(arrays, clusters, strict=True)):
        labels = list(labels)
        if len(labels) != a.size:
            raise BadDataError(f"{name}: group {g} has {a.size} items but {len(labels)} cluster labels")
        ids.append(np.array([index.setdefault(lab, len(index)) for lab in labels]))
    sums = np.stack([np.bincount(i, weights=a, minlength=len(index)) for i, a in zip(ids, arrays, strict=True)])
    counts = np.stack([np.bincount(i, minlength=len(index)).astype(float) for i in ids])
    return sums, counts


def _crossed_means(sums: np.ndarray, counts: np.ndarray, seeds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per replicate, the mean over drawn seeds (``seeds``: [b, S] draw counts) of each seed's mean over its items
    in the drawn clusters (``weights``: [b, C] draw counts); a seed with none of them sits the replicate out. In a
    replicate where no drawn seed has one (seeds with nearly disjoint items), every seed that has one counts once:
    each drawn cluster belongs to some seed, so every replicate has a value."""
    num, den = weights @ sums.T, weights @ counts.T
    has = den > 0
    stat = np.divide(num, den, out=np.zeros_like(num), where=has)
    used = seeds * has
    empty = used.sum(axis=1) == 0
    used[empty] = has[empty]
    return (used * stat).sum(axis=1) / used.sum(axis=1)


def crossed_bootstrap(groups: Sequence[ArrayLike], clusters: Sequence[ArrayLike], n: int = 2000, seed: int = 0,
                      resample: Literal["both", "seeds", "clusters"] = "both") -> np.ndarray:
    """Seeded bootstrap distribution of the mean of group means when the groups (seeds) score overlapping items:
    seeds and item clusters are crossed, not nested.

    Every seed of an evaluation scores nearly the same test pairs (two seeds' test sets overlap with Jaccard >= 0.86:
    only the few-shot draw differs), so resampling each seed's items on its own (:func:`clustered_bootstrap`) treats
    the same pair scored five times as five independent pairs and divides the item variance by about the number of
    seeds. Here a replicate draws the seeds with replacement and, once for all seeds, the distinct clusters
    (``clusters``: per group, one label per item, e.g. the pair's prompt; labels are shared across groups) with
    replacement from their union; each drawn seed's statistic is its mean over its items in the drawn clusters
    (weighted by how often each was drawn), and the replicate is the mean over the drawn seeds (a seed that has none
    of the drawn clusters sits that replicate out). ``resample="seeds"`` or ``"clusters"`` resamples one side only.
    Per-item differences of two methods on the same items give the paired comparison.

    This "pigeonhole" distribution is conservative (its variance counts the seed x item interaction about three
    times): report :func:`crossed_interval`, which corrects it.
    """
    _check_bootstrap_args(n, 0.05, "crossed_bootstrap")
    sums, counts = _crossed_tables(groups, clusters, "crossed_bootstrap")
    n_groups, n_clusters = sums.shape
    rng = np.random.default_rng(seed)
    out = np.empty(n)
    for start in range(0, n, BATCH):
        b = min(BATCH, n - start)
        weights = (rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), size=b).astype(float)
                   if resample != "seeds" else np.ones((b, n_clusters)))
        seeds = (rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=b).astype(float)
                 if resample != "clusters" else np.ones((b, n_groups)))
        out[start:start + b] = _crossed_means(sums, counts, seeds, weights)
    return out


def _crossed_parts(groups: Sequence[ArrayLike], clusters: Sequence[ArrayLike], n: int,
                   seed: int) -> tuple[CrossedVariance, np.ndarray]:
    """The :class:`CrossedVariance` and the pigeonhole ("both") distribution it was computed with."""
    _check_bootstrap_args(n, 0.05, "crossed_variance")
    sums, _ = _crossed_tables(groups, clusters, "crossed_variance")
    n_groups, n_clusters = sums.shape
    parts = [crossed_bootstrap(groups, clusters, n, seed + i, resample=r)
             for i, r in enumerate(("seeds", "clusters", "both"))]
    v_seeds, v_clusters, v_both = (float(p.var()) if p.size > 1 else 0.0 for p in parts)
    if n_groups == 1:  # one seed: no seed component can be seen; the cluster bootstrap is the whole story
        return CrossedVariance(0.0, v_clusters, v_both, v_clusters, max(n_clusters - 1, 1)), parts[1]
    k = (n_groups - 1) / n_groups
    seed_part = v_seeds / k
    variance = max(2 * seed_part + (1 + 1 / k) * v_clusters - v_both / k, v_clusters, seed_part)
    den = seed_part ** 2 / (n_groups - 1) + v_clusters ** 2 / max(n_clusters - 1, 1)
    df = (seed_part + v_clusters) ** 2 / den if den > 0 else math.inf
    return CrossedVariance(v_seeds, v_clusters, v_both, variance, df), parts[2]


def crossed_variance(groups: Sequence[ArrayLike], clusters: Sequence[ArrayLike], n: int = 2000,
                     seed: int = 0) -> CrossedVariance:
    """The variance of the mean of group means over crossed seeds and item clusters (see :func:`crossed_bootstrap`).

    For a mean over S seeds and C clusters with seed, cluster and interaction components ``a, b, e``, the true
    variance is ``a/S + b/C + e/(SC)``; resampling the seeds alone gives about ``k(a/S + e/(SC))`` with
    ``k = (S-1)/S``, the clusters alone ``b/C + e/(SC)``, and both (the pigeonhole) ``k a/S + b/C + (3 - 2/S) e/(SC)``.
    Solving for the truth gives ``2 V_seeds / k + (1 + 1/k) V_clusters - V_both / k``, floored at ``V_clusters`` and
    ``V_seeds / k`` (each a lower bound of the truth), since three noisy estimates can combine to less. The
    degrees of freedom are Welch-Satterthwaite's for ``V_seeds / k`` (S - 1) plus ``V_clusters`` (C - 1).
    """
    return _crossed_parts(groups, clusters, n, seed)[0]


def crossed_distribution(groups: Sequence[ArrayLike], clusters: Sequence[ArrayLike], n: int = 2000, seed: int = 0,
                         alpha: float = 0.05) -> np.ndarray:
    """A bootstrap distribution of the mean of group means for crossed seeds and clusters whose percentile
    ``1 - alpha`` interval is the Student-t interval on the :func:`crossed_variance`: the pigeonhole distribution
    (:func:`crossed_bootstrap`), kept in shape and moved to centre on the estimate, with its spread scaled to the
    corrected variance times ``(t_df / z)^2`` at that level, and kept within the range of the values (a mean of 0/1
    outcomes stays in [0, 1] however few pairs there are). Being a distribution, it pools like the others
    (averaged draw by draw over independent datasets) and gives :func:`interval_of`'s p-value.

    Why not the percentile of the pigeonhole bootstrap itself: it over-covers (98-99% in simulations shaped like the
    measured components, where the seed x item interaction is most of the item variance; the nested
    :func:`clustered_bootstrap` under-covers there, 91-93%). This interval covers 95-97% there
    (``tests/test_stats.py`` asserts 92-98% over 500 simulated 5-seed evaluations). Its limit: when the seed
    component dominates (logit sd 0.5 between seeds), it covered 91-93%, because the degrees of freedom are
    estimated from 5 seeds' spread; more seeds, not a wider formula, is the remedy there.
    """
    from scipy.stats import norm, t

    _check_bootstrap_args(n, alpha, "crossed_distribution")
    v, both = _crossed_parts(groups, clusters, n, seed)  # checks the input first
    estimate = float(np.mean([np.asarray(g, dtype=float).mean() for g in groups]))
    spread = both - both.mean()
    if v.variance == 0 or not np.any(spread):
        return np.full(both.size, estimate)
    widen = float(t.ppf(1 - alpha / 2, v.df) / norm.ppf(1 - alpha / 2))
    out = estimate + spread * math.sqrt(v.variance) / float(spread.std()) * widen
    values = np.concatenate([np.asarray(g, dtype=float).ravel() for g in groups])
    return np.clip(out, values.min(), values.max())  # a mean lies within its values' range (accuracy in [0, 1])


def crossed_interval(groups: Sequence[ArrayLike], clusters: Sequence[ArrayLike], n: int = 2000, seed: int = 0,
                     alpha: float = 0.05) -> PairedDiff:
    """The mean of group means when seeds share test items, with the percentile ``1 - alpha`` interval and p-value
    of its :func:`crossed_distribution` (:func:`interval_of`)."""
    distribution = crossed_distribution(groups, clusters, n, seed, alpha)  # checks the input first
    estimate = float(np.mean([np.asarray(g, dtype=float).mean() for g in groups]))
    return interval_of(distribution, estimate, alpha)


def clustered_interval(groups: Sequence[ArrayLike], n: int = 2000, seed: int = 0,
                        clusters: Sequence[ArrayLike | None] | None = None) -> PairedDiff:
    """The mean of group means and its :func:`clustered_bootstrap` 95% interval and p-value (:func:`interval_of`)."""
    estimate = float(np.mean([np.asarray(g, dtype=float).mean() for g in groups]))
    return interval_of(clustered_bootstrap(groups, n, seed, clusters=clusters), estimate)


def interval_of(distribution: ArrayLike, estimate: float, alpha: float = 0.05) -> PairedDiff:
    """Percentile ``1 - alpha`` interval of a bootstrap distribution around ``estimate``, with the two-sided
    p-value of "estimate is 0" computed as in :func:`paired_bootstrap` (the distribution centred on zero)."""
    d = np.asarray(distribution, dtype=float)
    low, high = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    extreme = int((np.abs(d - estimate) >= abs(estimate) - 1e-12).sum())
    return PairedDiff(float(estimate), float(low), float(high), (1 + extreme) / (d.size + 1))


def t_interval(values: Sequence[float | None], level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, standard deviation (``ddof=1``) and the Student-t ``level`` interval of the mean, e.g. across seeds.

    None and NaN values are left out; all four are NaN without values, and the last three with a single value.
    """
    from scipy.stats import t

    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return (math.nan,) * 4
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(v.std(ddof=1))
    half = float(t.ppf(0.5 + level / 2, v.size - 1)) * sd / math.sqrt(v.size)  # t.interval refuses sd = 0
    return mean, sd, mean - half, mean + half


def counted(n: int, noun: str) -> str:
    """``"1 seed"``, ``"3 seeds"``: a count with its noun, plural unless it is one (tables and figure titles report
    their n with it)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def spearman(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman rank correlation of two aligned 1-D arrays (ties get average ranks); NaN when either is constant."""
    from scipy.stats import spearmanr

    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise BadDataError(f"spearman needs two arrays of equal size, got {x.size} and {y.size}")
    if np.unique(x).size < 2 or np.unique(y).size < 2:
        return math.nan
    return float(spearmanr(x, y).statistic)
