"""Splits: seeded, exact sizes, no prompt on two sides, saved and rebuilt from JSON."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest

from armlens.data import PreferencePair, Split, load_pairs, split_pairs


@pytest.fixture(scope="module")
def hhh(data_root):
    """HHH: 221 pairs over 102 prompts (groups of up to 15 pairs): the leakage-prone case."""
    return load_pairs("hhh", root=data_root)


def sides(split: Split) -> list[set[str]]:
    return [{p.prompt_key() for p in pool} for pool in (split.fewshot, split.select, split.test)]


def test_no_prompt_on_two_sides_and_exact_sizes(hhh):
    for seed in range(5):
        split = split_pairs(hhh, seed=seed, n_fewshot=16, n_select=40)
        assert split.sizes() == {"fewshot": 16, "select": 40, "test": 221 - 56}
        few, sel, test = sides(split)
        assert not (few & sel) and not (few & test) and not (sel & test)
        assert {p.id for pool in split.pools().values() for p in pool} == {p.id for p in hhh}


def test_seed_reproducible_and_order_independent(hhh):
    a = split_pairs(hhh, seed=3, n_fewshot=10, n_select=20)
    b = split_pairs(hhh, seed=3, n_fewshot=10, n_select=20)
    c = split_pairs(list(reversed(hhh)), seed=3, n_fewshot=10, n_select=20)
    d = split_pairs(hhh, seed=4, n_fewshot=10, n_select=20)
    assert a.to_dict() == b.to_dict()
    assert {p.id for p in c.fewshot} == {p.id for p in a.fewshot}
    assert {p.id for p in c.select} == {p.id for p in a.select}
    assert {p.id for p in d.fewshot} != {p.id for p in a.fewshot}


def test_n_test_caps_the_test_split(hhh):
    split = split_pairs(hhh, seed=0, n_fewshot=5, n_select=5, n_test=50)
    assert split.sizes() == {"fewshot": 5, "select": 5, "test": 50}
    split.check_no_leakage()


def test_stratified_pools_follow_subset_shares(data_root):
    llmbar = load_pairs("llmbar", root=data_root)
    split = split_pairs(llmbar, seed=0, n_fewshot=42, n_select=0, stratify=True)
    # 42 pairs over subsets of 100/134/92/47/46 (of 419): largest-remainder quotas
    assert Counter(p.subset for p in split.fewshot) == {"llmbar-natural": 10, "llmbar-adver-neighbor": 13,
                                                        "llmbar-adver-GPTInst": 9, "llmbar-adver-GPTOut": 5,
                                                        "llmbar-adver-manual": 5}


def test_round_trip_json(hhh):
    split = split_pairs(hhh, seed=1, n_fewshot=8, n_select=12)
    record = json.loads(json.dumps(split.to_dict()))
    assert record["seed"] == 1 and record["sizes"] == split.sizes()
    assert record["requested"] == {"n_fewshot": 8, "n_select": 12, "n_test": None}
    again = Split.from_dict(record, list(reversed(hhh)))
    assert again.pools() == split.pools()
    changed = [dataclasses.replace(p, chosen=p.chosen + "!") if p.id == split.test[0].id else p for p in hhh]
    with pytest.raises(ValueError, match="differs from when the split was saved"):
        Split.from_dict(record, changed)
    with pytest.raises(KeyError, match="not in the data"):
        Split.from_dict(record, hhh[:50])


def test_leak_is_detected(hhh):
    split = split_pairs(hhh, seed=0, n_fewshot=4, n_select=4)
    twin = next(p for p in split.test if p.prompt_key() not in sides(split)[0])
    leaky = Split(fewshot=split.fewshot + [dataclasses.replace(twin, id="twin")], select=split.select,
                  test=split.test, seed=0)
    with pytest.raises(ValueError, match="leaks a prompt"):
        leaky.check_no_leakage()


def test_bad_sizes():
    pairs = [PreferencePair(id=f"g/{i}", source="t", subset="s", prompt=f"prompt {i // 3}", chosen="a",
                            rejected="b") for i in range(9)]  # 3 prompts x 3 pairs
    with pytest.raises(ValueError, match="cannot fill the fewshot pool with exactly 2 pairs"):
        split_pairs(pairs, seed=0, n_fewshot=2, n_select=0)
    assert split_pairs(pairs, seed=0, n_fewshot=3, n_select=3).sizes() == {"fewshot": 3, "select": 3, "test": 3}
    with pytest.raises(ValueError, match="only 9 are available"):
        split_pairs(pairs, seed=0, n_fewshot=6, n_select=6)
    with pytest.raises(ValueError, match="non-negative integer"):
        split_pairs(pairs, seed=0, n_fewshot=-1, n_select=0)
    with pytest.raises(ValueError, match="no pairs"):
        split_pairs([], seed=0, n_fewshot=0, n_select=0)


def test_trim_fills_pools_from_few_large_prompt_groups_without_a_shared_prompt(hhh):
    """HHH's dev side (96 pairs in 46 dialogues) cannot give a stratified selection pool of exact size from whole
    prompt groups; with n_test=0 a group may be cut, and the rest of it is used by no pool."""
    from armlens.data.partition import load_partition

    dev = load_partition("hhh").select(hhh, "dev")
    with pytest.raises(ValueError, match="without cutting a prompt group"):
        split_pairs(dev, 0, 8, 8, n_test=0, stratify=True)
    split = split_pairs(dev, 0, 8, 8, n_test=0, stratify=True, trim=True)
    assert len(split.fewshot) == 8 and len(split.select) == 8 and not split.test
    split.check_no_leakage()  # no prompt in both pools
    assert split.to_dict()["requested"]["trim"] is True
    with pytest.raises(ValueError, match="trim drops pairs, so it needs n_test=0"):
        split_pairs(dev, 0, 8, 8, stratify=True, trim=True)
