"""The committed development/test partitions: reproducible from the code and the bundled data, split by prompt."""

from __future__ import annotations

import dataclasses

import pytest

from armlens.data import load_pairs
from armlens.data.partition import (
    PARTITION_DIR,
    PARTITIONED,
    TEST_ONLY,
    build_partitions,
    load_partition,
    make_partition,
)
from armlens.io import read_json


@pytest.fixture(scope="module")
def built():
    return build_partitions()


def test_committed_partitions_are_what_the_code_makes(built):
    """A changed loader, data file or partition rule fails here until the files are remade on purpose."""
    assert sorted(p.stem for p in PARTITION_DIR.glob("*.json")) == sorted([*PARTITIONED, *TEST_ONLY])
    for dataset, record in built.items():
        assert read_json(PARTITION_DIR / f"{dataset}.json") == record, dataset


@pytest.mark.parametrize("dataset", PARTITIONED)
def test_dev_and_test_share_no_prompt_and_cover_every_pair(dataset):
    pairs = load_pairs(dataset)
    part = load_partition(dataset)
    dev, test = part.select(pairs, "dev"), part.select(pairs, "test")
    assert len(dev) + len(test) == len(pairs) and not part.dev & part.test
    assert not {p.prompt_key() for p in dev} & {p.prompt_key() for p in test}
    for subset in {p.subset for p in pairs}:  # about 40% of each subset on dev
        n = sum(p.subset == subset for p in pairs)
        share = sum(p.subset == subset for p in dev) / n
        assert 0.33 <= share <= 0.5, (subset, share)


@pytest.mark.parametrize("dataset", TEST_ONLY)
def test_test_only_sets_have_no_dev_side(dataset):
    part = load_partition(dataset)
    assert not part.dev and len(part.test) == len(load_pairs(dataset)) and part.record["test_only"]


def test_other_data_is_refused_not_silently_split():
    pairs = load_pairs("hhh")
    part = load_partition("hhh")
    stranger = dataclasses.replace(pairs[0], id="hhh-helpful/not-a-pair")
    with pytest.raises(ValueError, match=r"1 hhh pair\(s\) are not in its committed partition"):
        part.select([*pairs, stranger], "test")
    with pytest.raises(FileNotFoundError, match="no committed dev/test partition for 'rewardbench'"):
        load_partition("rewardbench")


def test_the_partition_depends_on_the_seed_and_not_on_the_order():
    pairs = load_pairs("llmbar")
    a = make_partition(pairs, "llmbar", seed=0)
    assert set(make_partition(pairs[::-1], "llmbar", seed=0)["dev"]) == set(a["dev"])
    assert set(make_partition(pairs, "llmbar", seed=1)["dev"]) != set(a["dev"])
