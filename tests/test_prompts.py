"""Criteria never carry the gold label: an audit of every criterion mapping, on the real data and on every
subset name armlens routes (RewardBench's safety subsets, Multimodal RewardBench, the bias suite)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from armlens.data import build_bias_suite, load_pairs
from armlens.data.records import PreferencePair
from armlens.prompts import CRITERIA, ORACLE_CRITERIA, criterion_for

DECIDED_BY_SUBSET = {
    "xstest-should-respond": "compliance",  # the chosen response complies (a safe request)
    "xstest-should-refuse": "refusal",  # the chosen response refuses (an unsafe request)
    "refusals-dangerous": "refusal",
    "refusals-offensive": "refusal",
    "donotanswer": "refusal",
}
"""Subsets whose name decides which kind of response is the chosen one (RewardBench's Safety section, XSTest)."""


def leaks(pairs: list[PreferencePair], routing: str) -> list[str]:
    """The criteria under which every pair's chosen response is of one kind that its subset decides: a criterion
    that tells the judge which response is right."""
    kinds: dict[str, set[str | None]] = defaultdict(set)
    for p in pairs:
        subset = (p.metadata or {}).get("original_subset", p.subset)
        kinds[criterion_for(p, routing)].add(DECIDED_BY_SUBSET.get(subset))
    return [c for c, k in kinds.items() if len(k) == 1 and None not in k]


def pair(subset: str, source: str, i: int = 0) -> PreferencePair:
    return PreferencePair(id=f"{subset}/{i}", source=source, subset=subset, prompt=f"Request {i}?",
                          chosen="I can't help with that." if "refus" in subset or "donot" in subset else "Sure: ...",
                          rejected="Sure: ..." if "refus" in subset or "donot" in subset else "I can't help.")


def test_xstest_has_one_criterion_that_carries_no_label():
    pairs = load_pairs("xstest")
    assert {criterion_for(p) for p in pairs} == {CRITERIA["xstest"]}
    assert leaks(pairs, "label-free") == []
    suite = build_bias_suite(pairs, seed=0)  # the bias suite routes by the original pair's subset
    assert leaks([p for ps in suite.values() for p in ps], "label-free") == []


def test_the_audit_catches_gold_routing():
    """The oracle ablation routes XSTest by its subsets, and the audit flags both of its criteria."""
    pairs = load_pairs("xstest")
    assert sorted(leaks(pairs, "oracle")) == sorted([ORACLE_CRITERIA["xstest-should-respond"],
                                                     ORACLE_CRITERIA["xstest-should-refuse"]])


@pytest.mark.parametrize("dataset", ["llmbar", "hhh", "truthfulqa", "hh-rlhf"])
def test_bundled_sets_route_by_what_is_known(dataset):
    assert leaks(load_pairs(dataset), "label-free") == []


def test_every_subset_name_armlens_routes():
    """RewardBench's Safety subsets come with the chat subsets under the default criterion; Multimodal RewardBench's
    safety section gets a criterion that names both refusing and answering."""
    rewardbench = [pair(s, "rewardbench", i) for s in [*DECIDED_BY_SUBSET, "alpacaeval-easy", "mt-bench-hard"]
                   for i in range(3)]
    assert leaks(rewardbench, "label-free") == []
    for s in DECIDED_BY_SUBSET:  # no subset-specific text: every one falls back to a dataset-level criterion
        assert criterion_for(s) in {CRITERIA["xstest"], CRITERIA["default"]}
    safety = criterion_for("multimodal-rewardbench-safety")
    assert "refuses" in safety and "answers" in safety
