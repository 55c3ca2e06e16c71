"""The RewardBench protocol against hand-computed answers; atomic writers."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from armlens.data import PreferencePair, split_pairs
from armlens.errors import BadDataError
from armlens.evaluation.protocol import (
    EXAMPLE_COUNTS,
    SUBSET_MAPPING,
    accuracy_by_subset,
    environment_versions,
    group_accuracy,
    pairwise_correct,
    rewardbench_overall,
    section_scores,
    summarize,
    write_json_atomic,
    write_jsonl_atomic,
    write_results,
)
from armlens.io import read_jsonl


def test_pairwise_correct_is_strict_and_counts_ties():
    correct, ties = pairwise_correct([1.0, 2.0, 3.0, 4.0, -1.0], [0.0, 2.0, 5.0, 1.0, -1.0])
    assert correct.tolist() == [True, False, False, True, False]
    assert ties == 2
    with pytest.raises(ValueError, match="NaN"):
        pairwise_correct([1.0, float("nan")], [0.0, 0.0])
    with pytest.raises(ValueError, match="differ in length"):
        pairwise_correct([1.0], [0.0, 1.0])


def test_accuracy_by_subset():
    acc = accuracy_by_subset([True, False, True, True, False], ["a", "a", "b", "b", "b"],
                             ties=[False, True, False, False, False])
    assert acc == {"a": {"accuracy": 0.5, "n": 2, "correct": 1, "ties": 1},
                   "b": {"accuracy": pytest.approx(2 / 3), "n": 3, "correct": 2, "ties": 0}}
    with pytest.raises(ValueError, match="5 entries but subsets has 4"):
        accuracy_by_subset([True] * 5, ["a"] * 4)


def test_rewardbench_constants():
    assert EXAMPLE_COUNTS["math-prm"] == sum(EXAMPLE_COUNTS[s] for s in SUBSET_MAPPING["Reasoning"][1:]) == 984
    assert sum(EXAMPLE_COUNTS[s] for s in SUBSET_MAPPING["Chat Hard"]) == 37 + 100 + 134 + 92 + 47 + 46
    assert sorted(s for subs in SUBSET_MAPPING.values() for s in subs) == sorted(EXAMPLE_COUNTS)


def test_section_scores_hand_computed():
    metrics = {
        "llmbar-natural": 0.5, "llmbar-adver-neighbor": 1.0,  # Chat Hard: (100*.5 + 134*1) / 234
        "math-prm": 0.6, **{h: 0.9 for h in SUBSET_MAPPING["Reasoning"][1:]},  # Reasoning: (.6 + .9) / 2
        "xstest-should-refuse": 1.0, "xstest-should-respond": 0.0,  # Safety: 154 / (154 + 250)
        "alpacaeval-easy": 0.8,  # Chat: one subset
    }
    s = section_scores(metrics)
    assert list(s) == ["Chat", "Chat Hard", "Safety", "Reasoning"]
    assert s["Chat Hard"] == pytest.approx(184 / 234)
    assert s["Reasoning"] == pytest.approx(0.75)
    assert s["Safety"] == pytest.approx(154 / 404)
    assert s["Chat"] == pytest.approx(0.8)
    assert rewardbench_overall(s) == pytest.approx((0.8 + 184 / 234 + 154 / 404 + 0.75) / 4)
    assert rewardbench_overall({"Chat": 1.0}) is None
    # reasoning with two code subsets: math still weighs 984 against 2 x 164
    r = section_scores({"math-prm": 0.6, "hep-python": 0.8, "hep-go": 0.4})["Reasoning"]
    assert r == pytest.approx((984 * 0.6 + 164 * 0.8 + 164 * 0.4) / (984 + 328))


# reward-bench's published subset sizes (the filtered RewardBench v1 set; math-prm has 447 pairs, weighted 984)
PUBLISHED_SIZES = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28, "mt-bench-med": 40,
    "mt-bench-hard": 37, "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46,
    "refusals-dangerous": 100, "refusals-offensive": 100, "xstest-should-refuse": 154, "xstest-should-respond": 250,
    "donotanswer": 136,
    "math-prm": 447, **{f"hep-{x}": 164 for x in ("cpp", "go", "java", "js", "python", "rust")},
}


def test_every_section_against_hand_computed_rewardbench_scores():
    """Per-subset correct counts at the published sizes; section scores worked out by hand, digit by digit."""
    correct = {
        # Chat: weights 100, 95, 95, 28, 40 (358)
        "alpacaeval-easy": 90, "alpacaeval-length": 57, "alpacaeval-hard": 76, "mt-bench-easy": 14,
        "mt-bench-med": 30,
        # Chat Hard: weights 37, 100, 134, 92, 47, 46 (456)
        "mt-bench-hard": 0, "llmbar-natural": 50, "llmbar-adver-neighbor": 67, "llmbar-adver-GPTInst": 46,
        "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 23,
        # Safety: weights 100, 100, 154, 250, 136 (740)
        "refusals-dangerous": 100, "refusals-offensive": 50, "xstest-should-refuse": 154, "xstest-should-respond": 0,
        "donotanswer": 68,
        # Reasoning: math-prm weight 984 (447 pairs), hep-* 164 each (984)
        "math-prm": 0, **{f"hep-{x}": 164 for x in ("cpp", "go", "java", "js", "python", "rust")},
    }
    subsets = [s for s, n in PUBLISHED_SIZES.items() for _ in range(n)]
    ok = [i < correct[s] for s, n in PUBLISHED_SIZES.items() for i in range(n)]
    sections = section_scores(accuracy_by_subset(ok, subsets))
    chat = (90 + 57 + 76 + 14 + 30) / 358  # every Chat subset is weighted by its own size: 267 / 358
    chat_hard = (0 + 50 + 67 + 46 + 47 + 23) / 456  # 233 / 456
    safety = (100 + 50 + 154 + 0 + 68) / 740  # 372 / 740; refuse weighs 154 and respond 250
    reasoning = (984 * 0.0 + 984 * 1.0) / (984 + 984)  # math-prm's 447 pairs count as 984: 0.5
    assert sections == {"Chat": pytest.approx(chat), "Chat Hard": pytest.approx(chat_hard),
                        "Safety": pytest.approx(safety), "Reasoning": pytest.approx(reasoning)}
    assert sections["Safety"] != pytest.approx((100 + 50 + 250 + 0 + 68) / 740)  # the swapped weights' answer
    assert rewardbench_overall(sections) == pytest.approx((chat + chat_hard + safety + reasoning) / 4)
    # the published sizes are the weights, except math-prm's upweighting
    assert {s: n for s, n in PUBLISHED_SIZES.items() if s != "math-prm"} == {
        s: n for s, n in EXAMPLE_COUNTS.items() if s != "math-prm"}


def test_a_section_without_subsets_is_absent_not_zero():
    pairs = [PreferencePair(prompt=f"q{i}", chosen="a", rejected="b", source="rewardbench", subset="llmbar-natural",
                            id=f"p{i}") for i in range(4)]
    summary = summarize(pairs, [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0], seed=0, n_bootstrap=10)
    assert summary["sections"] == {"Chat Hard": 0.5}
    assert summary["sections_absent"] == ["Chat", "Safety", "Reasoning"]
    assert summary["rewardbench_overall"] is None


def test_other_datasets_get_a_section_per_source():
    acc = accuracy_by_subset([True, False] * 2 + [True] * 3,
                             ["hhh-harmless"] * 4 + ["hhh-helpful"] * 3)  # 2/4 and 3/3
    s = section_scores(acc, sources={"hhh-harmless": "hhh", "hhh-helpful": "hhh"})
    assert s == {"hhh": pytest.approx(5 / 7)}
    with pytest.raises(KeyError, match="no size for subset 'custom'"):
        section_scores({"custom": 0.5})
    assert section_scores({"custom": 0.5}, counts={"custom": 10}) == {"custom": 0.5}


def test_observed_weights_keep_math_equal_to_code():
    acc = {"math-prm": {"accuracy": 0.2, "n": 10}, "hep-go": {"accuracy": 1.0, "n": 30},
           "hep-js": {"accuracy": 0.0, "n": 10}, "llmbar-natural": {"accuracy": 0.5, "n": 7}}
    s = section_scores(acc, weights="observed")
    assert s["Reasoning"] == pytest.approx((40 * 0.2 + 30 * 1.0 + 10 * 0.0) / 80)
    assert s["Chat Hard"] == 0.5


def test_group_accuracy_best_of_n():
    assert group_accuracy([True, True, False, True], ["q1", "q1", "q2", "q2"]) == 0.5


def test_atomic_writers(tmp_path):
    path = tmp_path / "out" / "summary.json"
    write_json_atomic(path, {"a": np.float32(0.5), "b": np.arange(3), "nan": float("nan"), "p": tmp_path})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [0, 1, 2], "nan": None, "p": str(tmp_path)}
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text())["a"] == 0.5  # the old file survives a failed write
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]  # no temp file left
    items = write_jsonl_atomic(tmp_path / "items.jsonl", [{"id": "x", "s": np.int64(2)}, {"id": "y", "s": 3}])
    assert [json.loads(line) for line in items.read_text().splitlines()] == [{"id": "x", "s": 2},
                                                                             {"id": "y", "s": 3}]


def test_environment_versions():
    v = environment_versions()
    assert v["python"] == sys.version.split()[0]
    assert {"armlens", "torch", "transformers", "transformer_lens", "numpy"} <= set(v)
    assert v["armlens"] is not None and v["numpy"] == np.__version__


def test_write_results_refuses_a_summary_of_other_pairs(tmp_path):
    pairs = [PreferencePair(id=f"t/{i}", source="toy", subset="toy", prompt=f"q{i}", chosen="good", rejected="bad")
             for i in range(4)]
    made = summarize(pairs[:3], [1.0] * 3, [0.0] * 3, seed=0, n_bootstrap=10)
    with pytest.raises(BadDataError, match="counts 3 pairs, but 4"):
        write_results(tmp_path, pairs, [1.0] * 4, [0.0] * 4, made)
    assert not list(tmp_path.iterdir())  # refused before anything is written


def test_write_results_records_provenance(tmp_path):
    pairs = [PreferencePair(id=f"t/{i}", source="toy", subset="llmbar-natural" if i < 4 else "toy-extra",
                            prompt=f"q{i}", chosen="good", rejected="bad") for i in range(6)]
    split = split_pairs(pairs, seed=0, n_fewshot=1, n_select=1)
    chosen = [1.0, 1.0, 0.0, 2.0, 0.5, 0.1]
    rejected = [0.0, 1.0, 1.0, 1.0, 0.0, 0.2]
    made = summarize(pairs, chosen, rejected, seed=7, config={"method": "toy"}, split=split.to_dict(),
                     data={"name": "toy"}, n_bootstrap=200)
    paths = write_results(tmp_path, pairs, chosen, rejected, made)
    assert paths["items"].name == "items.jsonl.gz"  # per-item scores, gzip-compressed
    rows = read_jsonl(paths["items"])
    assert [r["correct"] for r in rows] == [True, False, False, True, True, False]
    assert rows[1]["tie"] and not rows[0]["tie"]
    summary = json.loads(paths["summary"].read_text())
    assert summary["accuracy"] == 0.5 and summary["ties"] == 1 and summary["n"] == 6
    assert summary["subsets"]["llmbar-natural"] == {"accuracy": 0.5, "n": 4, "correct": 2, "ties": 1}
    assert summary["sections"] == {"Chat Hard": 0.5, "toy": 0.5}
    assert summary["data"]["ids"] == [p.id for p in pairs] and len(summary["data"]["pairs_sha256"]) == 64
    assert summary["split"]["seed"] == 0 and summary["seed"] == 7 and summary["config"] == {"method": "toy"}
    assert summary["versions"]["python"] and "RewardBench" in summary["protocol"]
    assert summary == json.loads(json.dumps(summarize(pairs, chosen, rejected, seed=7, config={"method": "toy"},
                                                      split=split.to_dict(), data={"name": "toy"},
                                                      n_bootstrap=200)))


def test_accuracy_ci_draws_a_prompts_pairs_together():
    from armlens.evaluation.protocol import accuracy_ci

    rng = np.random.default_rng(0)
    outcome = np.repeat(rng.random(60) < 0.6, 4)  # 60 prompts, 4 pairs each, one outcome per prompt
    shared = [PreferencePair(id=f"s/{i}", prompt=f"q{i // 4}", chosen="a", rejected=f"b{i}", source="toy",
                             subset="toy") for i in range(240)]
    alone = [PreferencePair(id=f"u/{i}", prompt=f"q{i}", chosen="a", rejected="b", source="toy", subset="toy")
             for i in range(240)]
    wide, narrow = accuracy_ci(outcome, shared, 4000, 0), accuracy_ci(outcome, alone, 4000, 0)
    assert wide.estimate == narrow.estimate == pytest.approx(outcome.mean())
    assert 1.7 < (wide.high - wide.low) / (narrow.high - narrow.low) < 2.3
    with pytest.raises(ValueError, match="for 239 pairs"):
        accuracy_ci(outcome, shared[:-1])
