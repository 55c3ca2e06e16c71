"""The plan of an evaluation: each dataset loaded and split, once per seed, into the pools and the test pairs that
every method of that seed shares.

Context
-------
A :class:`Plan` is one ``(dataset, seed)``: the few-shot and head-selection pools a method is fitted on, the test
pairs it scores (a seeded sample of the test pool, :func:`sample_test`), the bias suite built from them
(:func:`armlens.data.build_bias_suite`), the split record that says how they were drawn, and the folder its units
go to. Planning is cheap (no model) and writes nothing: every dataset is planned before a run writes a file, so bad
data stops it at once.

:func:`plan_dataset` draws a dataset's plans afresh; :func:`recorded_plans` rebuilds them from a finished folder's
split records (re-reporting it). :func:`unit_items` is what a pointwise method scores for one plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from armlens.data import build_bias_suite, load_pairs_with_report, split_pairs
from armlens.data.partition import sides
from armlens.data.records import PreferencePair, pairs_hash
from armlens.errors import BadInputError
from armlens.evaluation.eval_config import EvalConfig
from armlens.evaluation.store import read_split


def dataset_slug(name: str) -> str:
    """A folder name for a dataset (``path:`` names get a short hash of the full name)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
    if slug != name or len(slug) > 60:
        slug = f"{slug[-40:]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return slug


def sample_test(test: Sequence[PreferencePair], limit: int | None, seed: int) -> list[PreferencePair]:
    """``limit`` test pairs drawn with ``seed`` (input order kept); all of them without a limit."""
    if limit is None or limit >= len(test):
        return list(test)
    keep = sorted(random.Random(f"test-sample/{seed}").sample(range(len(test)), limit))
    return [test[i] for i in keep]


@dataclass
class Plan:
    """One dataset x seed: the pools, the test sample and the bias suite every method of that seed shares."""

    dataset: str
    seed: int
    fewshot: list[PreferencePair]
    select: list[PreferencePair]
    test: list[PreferencePair]
    suite: dict[str, list[PreferencePair]]
    split_record: dict[str, Any]
    folder: Path
    """The seed's folder: each method's unit is its subfolder (:mod:`armlens.evaluation.store`)."""

    def with_bias_kinds(self, kinds: Sequence[str]) -> Plan:
        """This plan with only these bias-suite kinds (the clean test pairs stay)."""
        keep = {k: v for k, v in self.suite.items() if k == "clean" or k in kinds}
        return self if keep.keys() == self.suite.keys() else dataclasses.replace(self, suite=keep)


def unit_items(plan: Plan) -> list[tuple[PreferencePair, str]]:
    """Everything a pointwise method scores for one plan: each test pair's chosen and rejected response, and each
    bias-suite transform's hacked rejected response (real slices reuse the test scores)."""
    items = [(p, r) for p in plan.test for r in (p.chosen, p.rejected)]
    for pairs in plan.suite.values():
        items += [(p, p.rejected) for p in pairs if "transform" in p.metadata]
    return items


def plan_dataset(config: EvalConfig, name: str, out: Path) -> tuple[list[Plan], dict[str, Any]]:
    """Load one dataset and build its per-seed plans, and what the summary records of the dataset (cheap: no model
    involved; nothing is written). Reads the data and sampling half of ``config``: ``root``, ``subsets``,
    ``partition``, the seeds, ``n_fewshot``, ``n_select``, ``stratify``, ``limit`` and ``bias_kinds``."""
    pairs, report = load_pairs_with_report(name, root=config.root, subsets=config.subsets)
    if not pairs:  # load_pairs already refuses this; kept for loaders that return nothing silently
        raise BadInputError(f"{name}: no preference pairs")
    folder = out / dataset_slug(name)
    choice, scored, side = sides(pairs, name, config.partition)
    plans = []
    for seed in config.seed_list():
        if not side["apart"]:  # dev, all, or a test-only set: few-shot, selection and scored pairs from one pool
            split = split_pairs(choice, seed, config.n_fewshot, config.n_select, stratify=config.stratify)
            pool = split.test
        else:  # test: few-shot and selection pairs from dev, scored pairs from test
            split = split_pairs(choice, seed, config.n_fewshot, config.n_select, n_test=0, stratify=config.stratify,
                                trim=True)  # the dev pairs left over are used nowhere
            pool = scored
        test = sample_test(pool, config.limit, seed)
        if not test:
            raise BadInputError(f"{name}: no test pairs left after {config.n_fewshot} few-shot and {config.n_select} "
                                f"selection pairs out of {len(choice)}; lower --n-fewshot/--n-select")
        suite = build_bias_suite(test, seed, kinds=config.bias_kinds) if config.bias_kinds else {}
        record = {**split.to_dict(), "partition": side,
                  "test_sample": {"limit": config.limit, "ids": [p.id for p in test], "pairs_sha256": pairs_hash(test)},
                  "bias_suite": {k: len(v) for k, v in suite.items()}}
        plans.append(Plan(name, seed, split.fewshot, split.select, test, suite, record, folder / f"seed{seed}"))
    data = {"name": name, "folder": folder.name, "n_pairs": len(pairs), "pairs_sha256": pairs_hash(pairs),
            "partition": {**side, "n_choice": len(choice), "n_scored": len(scored)}, "report": report.to_dict()}
    return plans, data


def recorded_plans(config: EvalConfig, name: str, out: Path, recorded: dict[str, Any]) -> tuple[
        list[Plan], dict[str, Any]]:
    """A finished folder's plans of one dataset, rebuilt from each seed's split record (no bias suite: its units
    hold what it scored), and the dataset's summary entry, kept from ``recorded`` (the entry on file) where it has
    one. A test pair whose content changed since it was scored is an error."""
    pairs, _ = load_pairs_with_report(name, root=config.root, subsets=config.subsets)
    by_id = {p.id: p for p in pairs}
    folder = out / dataset_slug(name)
    plans = []
    for seed in config.seed_list():
        record = read_split(folder / f"seed{seed}")
        pools = {k: [by_id[i] for i in record["ids"][k]] for k in ("fewshot", "select")}
        test = [by_id[i] for i in record["test_sample"]["ids"]]
        if pairs_hash(test) != record["test_sample"]["pairs_sha256"]:
            raise BadInputError(f"{folder}/seed{seed}: the test pairs' content differs from when they were scored")
        plans.append(Plan(name, seed, pools["fewshot"], pools["select"], test, {}, record, folder / f"seed{seed}"))
    entry = {k: v for k, v in recorded.items() if k != "splits"}
    data = {**entry, "name": name, "folder": folder.name, "n_pairs": len(pairs), "pairs_sha256": pairs_hash(pairs),
            "partition": entry.get("partition", {"side": config.partition})}
    return plans, data
