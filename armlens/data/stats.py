"""Descriptive statistics of a preference set: pairs per subset, response lengths, and the length signal.

The share of pairs whose chosen response is the shorter one tells at a glance whether "pick the longer answer"
(reward-bench issues #267/#268) would do well or badly on a subset: LLMBar's adversarial subsets sit at 80-88%, so a
length-biased judge fails them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from armlens.data.records import PreferencePair
from armlens.errors import BadInputError


def _summary(values: list[int]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 1), "median": float(statistics.median(values)),
            "min": float(min(values)), "max": float(max(values))}


def group_stats(pairs: Sequence[PreferencePair]) -> dict[str, Any]:
    """Counts and length statistics of one group of pairs (lengths in characters and words)."""
    cc = [len(p.chosen) for p in pairs]
    rc = [len(p.rejected) for p in pairs]
    cw = [len(p.chosen.split()) for p in pairs]
    rw = [len(p.rejected.split()) for p in pairs]
    n = len(pairs)
    return {
        "n": n,
        "prompts": len({p.prompt_key() for p in pairs}),
        "multi_turn": sum(isinstance(p.prompt, list) and len(p.prompt) > 1 for p in pairs),
        "chosen_chars": _summary(cc),
        "rejected_chars": _summary(rc),
        "chosen_words": _summary(cw),
        "rejected_words": _summary(rw),
        "chosen_shorter": sum(c < r for c, r in zip(cc, rc, strict=True)) / n,
        "chosen_shorter_words": sum(c < r for c, r in zip(cw, rw, strict=True)) / n,
        "length_ties": sum(c == r for c, r in zip(cc, rc, strict=True)),
    }


def dataset_stats(pairs: Sequence[PreferencePair]) -> dict[str, Any]:
    """``{"total": stats, "subsets": {subset: stats}}`` with :func:`group_stats` per subset, in first-seen order.

    ``chosen_shorter`` is the share of pairs whose chosen response has strictly fewer characters than the rejected
    one (``chosen_shorter_words`` the same in words); ``length_ties`` counts equal character lengths.
    """
    if not pairs:
        raise BadInputError("dataset_stats: no pairs")
    by_subset: dict[str, list[PreferencePair]] = {}
    for p in pairs:
        by_subset.setdefault(p.subset, []).append(p)
    return {"total": group_stats(pairs), "subsets": {s: group_stats(ps) for s, ps in by_subset.items()}}
