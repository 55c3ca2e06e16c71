"""One development/test partition per dataset, made once and committed: choices on dev, claims on test.

Context
-------
Defaults, prompts, criteria wording and every sweep or ablation are *choices*; the headline table is a *claim*. A
claim scored on the pairs a choice was tuned on overstates the method, so each bundled dataset that anything is
chosen on (LLMBar, HHH, XSTest) is split once, by prompt, into ``dev`` (about 40% of the pairs) and ``test``:

- **dev**: every sweep, ablation, default choice and exploration draws its few-shot, selection *and* scored pairs
  from here;
- **test**: headline runs score these pairs only; their few-shot (and selection) pairs are drawn from dev.

TruthfulQA and HH-RLHF are test-only: nothing is chosen on them, and their few-shot pairs come from the pairs
themselves (left out of that seed's scored pairs, as :func:`armlens.data.split_pairs` does).

The partition files live in the package (``armlens/data/bundled/partitions/<dataset>.json``), beside the data they split,
so ``--partition`` works on an installed copy as on a clone. Each records how it was made (seed, fraction, grouping)
and the hash of the pairs it split; :func:`write_partitions` remakes them and ``tests/test_partition.py`` checks
that the committed files are what it makes, so they can never drift from the code or the data.

How a partition is made: pairs are grouped by :meth:`PreferencePair.prompt_key` (no prompt on both sides); within
each subset (a group counts toward the alphabetically first subset among its pairs) the groups, sorted by key, are shuffled with
``random.Random(f"{dataset}:{seed}")`` and dealt to dev while dev holds fewer than ``round(fraction * n)`` of that
subset's pairs; the rest are test.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from armlens.data.records import PreferencePair, pairs_hash
from armlens.errors import BadInputError, NotFoundError
from armlens.io import read_json, to_json

PARTITION_DIR = Path(__file__).resolve().parent / "bundled" / "partitions"
"""Where the committed partition files live (package data, beside the bundled sets they split)."""
PARTITIONED = ("llmbar", "hhh", "xstest")
"""Datasets with a dev side: the ones choices are made on."""
TEST_ONLY = ("truthfulqa", "hh-rlhf")
"""Datasets nothing is chosen on: every pair is test."""
DEV_FRACTION = 0.4
"""Share of each subset's pairs on the dev side."""
PARTITION_SEED = 0
"""The seed every committed partition was made with (once; never tuned)."""

Side = Literal["dev", "test"]


@dataclass(frozen=True)
class Partition:
    """A dataset's dev and test pair ids."""

    dataset: str
    dev: frozenset[str]
    test: frozenset[str]
    record: dict[str, Any]
    """The file's content (how it was made, counts, the hash of the pairs it split)."""

    def side_of(self, pair_id: str) -> Side:
        if pair_id in self.dev:
            return "dev"
        if pair_id in self.test:
            return "test"
        raise KeyError(pair_id)

    def select(self, pairs: list[PreferencePair], side: Side) -> list[PreferencePair]:
        """The pairs on ``side``, in input order. Every pair must be in the partition: a pair it does not know means
        other data than it was made on (a ValueError naming a few)."""
        if side not in ("dev", "test"):
            raise BadInputError(f"partition side must be 'dev' or 'test', not {side!r}")
        unknown = [p.id for p in pairs if p.id not in self.dev and p.id not in self.test]
        if unknown:
            raise BadInputError(f"{len(unknown)} {self.dataset} pair(s) are not in its committed partition (e.g. "
                                f"{unknown[:3]}): the data differs from what the partition was made on")
        keep = self.dev if side == "dev" else self.test
        return [p for p in pairs if p.id in keep]


def make_partition(pairs: list[PreferencePair], dataset: str, seed: int = PARTITION_SEED,
                   dev_fraction: float = DEV_FRACTION) -> dict[str, Any]:
    """The partition record of ``pairs`` (see the module docstring for how it is made)."""
    if not 0 < dev_fraction < 1:
        raise BadInputError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    groups: dict[str, list[PreferencePair]] = {}
    for p in pairs:
        groups.setdefault(p.prompt_key(), []).append(p)
    by_subset: dict[str, list[str]] = {}
    for key in sorted(groups):  # a group counts toward the first of its pairs' subsets in sorted order
        by_subset.setdefault(min(p.subset for p in groups[key]), []).append(key)
    rng = random.Random(f"{dataset}:{seed}")
    dev_keys: set[str] = set()
    for subset in sorted(by_subset):
        keys = by_subset[subset]
        rng.shuffle(keys)
        target = round(dev_fraction * sum(len(groups[k]) for k in keys))
        taken = 0
        for k in keys:
            if taken >= target:
                break
            dev_keys.add(k)
            taken += len(groups[k])
    dev = [p.id for p in pairs if p.prompt_key() in dev_keys]
    test = [p.id for p in pairs if p.prompt_key() not in dev_keys]
    count = {side: Counter(p.subset for p in pairs if (p.prompt_key() in dev_keys) == (side == "dev"))
             for side in ("dev", "test")}
    return {
        "dataset": dataset, "seed": seed, "dev_fraction": dev_fraction, "grouping": "PreferencePair.prompt_key",
        "made_by": "armlens.data.partition.make_partition: per subset, prompt groups sorted by key, shuffled with "
                   f"random.Random('{dataset}:{seed}'), dealt to dev while dev holds fewer than "
                   f"round({dev_fraction} x the subset's pairs); the rest are test",
        "use": "choices (defaults, sweeps, ablations, wording) on dev pairs only; claims on test pairs only, with "
               "their few-shot pairs drawn from dev",
        "n_pairs": len(pairs), "pairs_sha256": pairs_hash(list(pairs)),
        "n": {"dev": len(dev), "test": len(test)},
        "prompts": {"dev": len(dev_keys), "test": len(groups) - len(dev_keys)},
        "subsets": {side: dict(sorted(count[side].items())) for side in ("dev", "test")},
        "dev": dev, "test": test,
    }


def test_only_record(pairs: list[PreferencePair], dataset: str) -> dict[str, Any]:
    """The record of a test-only dataset: every pair is test."""
    ids = [p.id for p in pairs]
    return {"dataset": dataset, "test_only": True,
            "use": "test only: nothing is chosen on it; a seed's few-shot pairs are drawn from its pairs and left "
                   "out of that seed's scored pairs",
            "n_pairs": len(ids), "pairs_sha256": pairs_hash(list(pairs)), "n": {"dev": 0, "test": len(ids)},
            "dev": [], "test": ids}


def build_partitions() -> dict[str, dict[str, Any]]:
    """Every dataset's partition record, made from the bundled data (the loaders' default options)."""
    from armlens.data import load_pairs
    from armlens.data.bundle import bundled_root

    root = bundled_root()
    out = {d: make_partition(load_pairs(d, root=root), d) for d in PARTITIONED}
    out.update({d: test_only_record(load_pairs(d, root=root), d) for d in TEST_ONLY})
    return out


def write_partitions(folder: Path | None = None) -> list[Path]:
    """Write every partition file (a maintainer's step, done once; the test fails if the files and the code ever
    disagree)."""
    folder = folder or PARTITION_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for dataset, record in build_partitions().items():
        path = folder / f"{dataset}.json"
        path.write_text(to_json(record) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def load_partition(dataset: str) -> Partition:
    """The committed partition of ``dataset``; a FileNotFoundError lists the datasets that have one."""
    path = PARTITION_DIR / f"{dataset}.json"
    if not path.is_file():
        have = sorted(p.stem for p in PARTITION_DIR.glob("*.json"))
        raise NotFoundError(f"no committed dev/test partition for {dataset!r} (partitioned: {', '.join(have)}); "
                            "other data has none: choose on one file and claim on another")
    record = read_json(path)
    return Partition(dataset, frozenset(record["dev"]), frozenset(record["test"]), record)


PartitionChoice = Literal["dev", "test", "all"]
"""Which side a run uses: ``dev`` (choices), ``test`` (claims: scored on test, few-shot from dev) or ``all`` (no
partition: every pair, as before partitions existed; say so wherever its numbers go)."""


def partition_for(dataset: str) -> Partition | None:
    """The committed partition of a registered dataset, or None when it has none (a user's file, a Hub set)."""
    path = PARTITION_DIR / f"{dataset}.json"
    return load_partition(dataset) if path.is_file() else None


def sides(pairs: list[PreferencePair], dataset: str,
          partition: PartitionChoice) -> tuple[list[PreferencePair], list[PreferencePair], dict[str, Any]]:
    """``(choice pool, scored pool, record)`` for a run on ``partition``.

    - ``dev``: both pools are the dev pairs (few-shot, selection and scored pairs all from dev);
    - ``test``: few-shot/selection pairs from dev, scored pairs from test; a test-only dataset (no dev side) gives
      every pair to both pools, and the caller keeps a seed's few-shot pairs out of its scored ones;
    - ``all``, or a dataset without a committed partition: every pair in both pools.

    ``dev`` on a test-only dataset is a ValueError: nothing is chosen on it. ``record["apart"]`` says whether the
    scored pool is apart from the choice pool (``test`` on a partitioned set); when not, the two are one list and the
    caller deals few-shot, selection and scored pairs out of it without overlap.
    """
    part = partition_for(dataset)
    record: dict[str, Any] = {"side": partition, "apart": False}
    if partition == "all" or part is None:
        record["note"] = ("no partition asked for" if partition == "all"
                          else f"{dataset} has no committed partition: every pair is used")
        record["side"] = "all"
        every = list(pairs)
        return every, every, record
    record["partition_sha256"] = part.record["pairs_sha256"]
    if not part.dev:
        if partition == "dev":
            raise BadInputError(f"{dataset} is test-only: nothing is chosen on it, so it has no dev pairs "
                                "(use --partition test, or all)")
        selected = part.select(list(pairs), "test")
        record["note"] = "test-only dataset: few-shot pairs are drawn from its pairs and left out of the scored ones"
        return selected, selected, record
    dev = part.select(list(pairs), "dev")
    if partition == "dev":
        return dev, dev, record
    record["apart"] = True
    return dev, part.select(list(pairs), "test"), record
