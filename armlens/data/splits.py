"""Seeded, leakage-free splits: a few-shot pool, a head-selection pool and a test split.

Context
-------
An Activation RM uses labelled pairs twice before it is evaluated: a *few-shot* pool whose mean activations are
patched in, and a *selection* pool on which the heads are chosen. Reporting test accuracy is only honest when no test
prompt was seen in either pool. Several datasets reuse one prompt for several pairs (HHH has up to 15 pairs per
dialogue; TruthfulQA in ``mode="all"``; RewardBench's alpacaeval subsets share prompts), so splitting pairs at random
would leak prompts across sides.

Intuition
---------
Pairs are grouped by :meth:`PreferencePair.prompt_key` and whole groups are dealt out: the groups, sorted by key, are
shuffled with ``random.Random(seed)`` and each pool takes groups in that order while they fit its requested size
(a group too big for the space left is passed over, never cut). The split therefore depends only on the set of pairs
and the seed, not on their order. Sizes are exact when the groups allow it, else an error says why.

:meth:`Split.to_dict` records ids, seed, requested and actual sizes and the pairs' hashes, so results can store the
split and :meth:`Split.from_dict` can rebuild it later from the same data.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from armlens.data.loaders import check_unique_ids
from armlens.data.records import PreferencePair, pairs_hash
from armlens.errors import BadDataError, BadInputError, MissingFieldError

log = logging.getLogger(__name__)

POOLS = ("fewshot", "select", "test")
"""The three sides of a split, in the order they are filled."""


@dataclass
class Split:
    """Three disjoint lists of pairs with no prompt on two sides, plus what is needed to rebuild them."""

    fewshot: list[PreferencePair]
    """Few-shot pool (examples whose activations are averaged), in draw order."""
    select: list[PreferencePair]
    """Head-selection pool, in draw order."""
    test: list[PreferencePair]
    """Held-out evaluation pairs, in input order."""
    seed: int
    """Seed of the group shuffle."""
    requested: dict[str, int | None] = field(default_factory=dict)
    """Requested sizes (``n_fewshot``, ``n_select``, ``n_test``; ``n_test=None`` means all the rest)."""
    stratify: bool = False
    """Whether the few-shot and selection pools were filled per subset, proportionally."""

    def pools(self) -> dict[str, list[PreferencePair]]:
        return {"fewshot": self.fewshot, "select": self.select, "test": self.test}

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.pools().items()}

    def check_no_leakage(self) -> None:
        """Raise ValueError if a pair id or a prompt appears on two sides."""
        owner: dict[str, str] = {}
        ids: set[str] = set()
        for name, pool in self.pools().items():
            for p in pool:
                if p.id in ids:
                    raise BadInputError(f"split leaks pair {p.id!r} into {name}")
                ids.add(p.id)
                key = p.prompt_key()
                if owner.setdefault(key, name) != name:
                    raise BadInputError(f"split leaks a prompt: pair {p.id!r} in {name} shares its prompt with "
                                        f"{owner[key]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record: seed, grouping, requested and actual sizes, ids per pool and the pools' hashes."""
        return {
            "seed": self.seed,
            "group_by": "prompt_key",
            "stratify": self.stratify,
            "requested": dict(self.requested),
            "sizes": self.sizes(),
            "ids": {k: [p.id for p in v] for k, v in self.pools().items()},
            "pairs_sha256": {k: pairs_hash(v) for k, v in self.pools().items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], pairs: Sequence[PreferencePair]) -> Split:
        """Rebuild a split saved with :meth:`to_dict` from the same ``pairs``.

        A saved id missing from ``pairs`` is a KeyError; pools whose content hash differs from the saved one (the
        data changed since) are a ValueError.
        """
        for k in ("seed", "ids"):
            if k not in d:
                raise MissingFieldError(f"split record is missing {k!r}: {sorted(d)}")
        by_id = {p.id: p for p in pairs}
        pools: dict[str, list[PreferencePair]] = {}
        for name in POOLS:
            ids = d["ids"].get(name, [])
            missing = [i for i in ids if i not in by_id]
            if missing:
                raise MissingFieldError(f"split {name} pool names {len(missing)} pair(s) not in the data, e.g. {missing[:3]}")
            pools[name] = [by_id[i] for i in ids]
            saved = d.get("pairs_sha256", {}).get(name)
            if saved is not None and saved != pairs_hash(pools[name]):
                raise BadDataError(f"split {name} pool: the pairs' content differs from when the split was saved")
        split = cls(**pools, seed=int(d["seed"]), requested=dict(d.get("requested", {})),
                    stratify=bool(d.get("stratify", False)))
        split.check_no_leakage()
        return split


def _quotas(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Split ``total`` over keys proportionally to ``weights`` (largest remainder; ties broken by key)."""
    s = sum(weights.values())
    raw = {k: total * w / s for k, w in weights.items()}
    out = {k: int(v) for k, v in raw.items()}
    rest = total - sum(out.values())
    for k in sorted(raw, key=lambda k: (-(raw[k] - out[k]), k))[:rest]:
        out[k] += 1
    return out


def split_pairs(
    pairs: Sequence[PreferencePair],
    seed: int,
    n_fewshot: int,
    n_select: int,
    n_test: int | None = None,
    stratify: bool = False,
    trim: bool = False,
) -> Split:
    """Deal pairs into few-shot, selection and test pools, keeping every prompt on one side.

    Args:
        pairs: the pairs (ids must be unique).
        seed: seed of the group shuffle; the same pairs and seed always give the same split.
        n_fewshot: pairs in the few-shot pool (0 allowed).
        n_select: pairs in the head-selection pool (0 allowed).
        n_test: pairs in the test split; None (default) puts every remaining pair there.
        stratify: fill the few-shot and selection pools per subset in proportion to the subsets' sizes (largest
            remainder rounding); a prompt group counts toward the subset of its first pair.
        trim: when no whole prompt group fits the space left in a pool, take the first pairs of the next group and
            drop the rest of that group from every pool (so still no prompt on two sides). Only with ``n_test=0``,
            where the pairs left over are used nowhere: a run that scores another pool (the test side of a committed
            partition) and draws its few-shot and selection pairs from a pool of few, large prompt groups (HHH's dev
            side: 96 pairs in 46 dialogues) would otherwise fail to fill them.

    Returns:
        A :class:`Split`. Raises ValueError when the sizes exceed the data or cannot be met without cutting a
        prompt group.
    """
    if trim and n_test != 0:
        raise BadInputError("split_pairs: trim drops pairs, so it needs n_test=0 (the pairs left over are used nowhere)")
    for name, n in (("n_fewshot", n_fewshot), ("n_select", n_select), ("n_test", n_test)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise BadInputError(f"{name} must be a non-negative integer, got {n!r}")
    if not pairs:
        raise BadInputError("split_pairs: no pairs to split")
    check_unique_ids(pairs, "split_pairs")
    wanted = n_fewshot + n_select + (n_test or 0)
    if wanted > len(pairs):
        raise BadInputError(f"split_pairs: asked for {wanted} pairs (few-shot {n_fewshot}, select {n_select}, test "
                            f"{n_test}) but only {len(pairs)} are available")

    groups: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(p.prompt_key(), []).append(i)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    group_subset = {k: pairs[groups[k][0]].subset for k in order}
    assigned: set[str] = set()
    cut: dict[str, int] = {}  # a trimmed group: how many of its pairs were taken (the rest is dropped)

    def fill(target: int, pool: str, allowed: set[str] | None = None, label: str = "") -> list[str]:
        taken, left = [], target
        for k in order:
            if left == 0:
                break
            if k in assigned or (allowed is not None and group_subset[k] not in allowed):
                continue
            if len(groups[k]) <= left:
                taken.append(k)
                assigned.add(k)
                left -= len(groups[k])
        if left and trim:
            k = next((k for k in order if k not in assigned
                      and (allowed is None or group_subset[k] in allowed)), None)
            if k is not None:
                taken.append(k)
                assigned.add(k)
                cut[k] = left
                left = 0
        if left:
            free = [len(groups[k]) for k in order if k not in assigned
                    and (allowed is None or group_subset[k] in allowed)]
            raise BadInputError(f"split_pairs: cannot fill the {pool} pool{label} with exactly {target} pairs without "
                                f"cutting a prompt group ({left} short; {sum(free)} unassigned pairs in {len(free)} "
                                f"groups of sizes up to {max(free, default=0)}); choose other sizes")
        return taken

    def fill_pool(target: int, pool: str) -> list[str]:
        if not stratify or target == 0:
            return fill(target, pool)
        weights = Counter(pairs[i].subset for k in order for i in groups[k])
        taken = []
        for subset, quota in _quotas(target, dict(weights)).items():
            if quota:
                taken += fill(quota, pool, {subset}, f" for subset {subset!r}")
        rank = {k: j for j, k in enumerate(order)}
        return sorted(taken, key=rank.__getitem__)

    few = fill_pool(n_fewshot, "fewshot")
    sel = fill_pool(n_select, "select")
    if n_test is None:
        test_idx = sorted(i for k in order if k not in assigned for i in groups[k])
    else:
        test_idx = sorted(i for k in fill(n_test, "test") for i in groups[k])

    split = Split(
        fewshot=[pairs[i] for k in few for i in groups[k][: cut.get(k)]],
        select=[pairs[i] for k in sel for i in groups[k][: cut.get(k)]],
        test=[pairs[i] for i in test_idx],
        seed=seed,
        requested={"n_fewshot": n_fewshot, "n_select": n_select, "n_test": n_test, **({"trim": True} if trim else {})},
        stratify=stratify,
    )
    split.check_no_leakage()
    if cut:
        log.info("split: %d prompt group(s) trimmed to fill the pools exactly (%d pairs dropped)", len(cut),
                 sum(len(groups[k]) - n for k, n in cut.items()))
    log.info("split %d pairs (%d prompts) with seed %d: %s", len(pairs), len(groups), seed, split.sizes())
    return split
