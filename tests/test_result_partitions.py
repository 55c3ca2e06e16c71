"""The committed result folders keep to the dev/test partition they record (issue 37).

- a folder run on ``dev`` (ablations, sweeps: choices and explorations) drew its few-shot pairs and scored its pairs
  from the dataset's dev ids only, and its ``foreign`` control read another dataset's dev ids only;
- a folder run on ``test`` (the headline) scored test ids only, with its few-shot and selection pairs from dev (a
  test-only dataset: from its pairs, never a seed's scored ones);
- a folder that records no partition (or ``all``) predates the partition and must be named in :data:`BEFORE_PARTITION`,
  which says so; nothing else may be committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from armlens.data.partition import PARTITION_DIR, load_partition
from armlens.evaluation.planning import dataset_slug
from armlens.io import read_json, resolve_compressed

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"

BEFORE_PARTITION = {
    "experiments/eval": "the release-2 headline on every pair (re-reported with crossed intervals, not rerun)",
    "experiments/eval-hh-rlhf": "the release-2 headline's HH-RLHF folder (test-only dataset, every pair)",
    "experiments/ablations/llmbar": "release-2 stage ablations on every pair",
    "experiments/ablations/xstest": "release-2 stage ablations on every pair",
    "experiments/ablations/hhh": "release-2 stage ablations on every pair",
    **{f"experiments/{s}/{d}": "a defaults-sweep round on every pair (docs/defaults.md says the defaults were chosen "
       "on pairs the headline reports)" for s in ("sweep", "sweep-icl", "sweep-lr", "sweep-secondary")
       for d in ("llmbar", "xstest", "hhh")},
}
"""Committed folders made before the dev/test partition existed, with what they are."""


def result_folders() -> dict[str, str]:
    """Every committed ablate (``run.json``) or eval (``config.json`` + ``summary.json``) folder, with its kind."""
    found = {}
    for path in EXPERIMENTS.rglob("run.json"):
        found[str(path.parent.relative_to(REPO))] = "ablate"
    for path in EXPERIMENTS.rglob("config.json"):  # finished, or still running (seeds already split)
        if (path.parent / "summary.json").is_file() or any(path.parent.glob("*/seed*/split.json*")):
            found[str(path.parent.relative_to(REPO))] = "eval"
    return found


def recorded_side(folder: Path, kind: str) -> str:
    config = read_json(folder / ("run.json" if kind == "ablate" else "config.json"))
    return (config.get("config", config)).get("partition", "all")


def test_the_partitions_are_committed_under_experiments_splits():
    splits = EXPERIMENTS / "splits"
    assert splits.resolve() == PARTITION_DIR.resolve()
    for name in ("llmbar", "hhh", "xstest", "truthfulqa", "hh-rlhf"):
        record = json.loads((splits / f"{name}.json").read_text())
        assert {"dev", "test"} <= set(record) and ("made_by" in record or record.get("test_only")), name


def test_every_result_folder_records_its_partition_or_predates_it():
    folders = result_folders()
    assert folders, "no result folders found"
    unexplained = [f for f, kind in folders.items()
                   if recorded_side(REPO / f, kind) == "all" and f not in BEFORE_PARTITION]
    assert not unexplained, f"folders on every pair that are not named in BEFORE_PARTITION: {unexplained}"
    stale = [f for f in BEFORE_PARTITION if f not in folders]
    assert not stale, f"BEFORE_PARTITION names folders that are gone: {stale}"


def _seed_splits(folder: Path, kind: str) -> list[tuple[str, dict]]:
    """(dataset, split record) per seed."""
    out = []
    if kind == "ablate":
        data = read_json(folder / "run.json")["config"]["data"]
        for path in sorted((folder / "seeds").glob("seed*/split.json*")):
            out.append((data, read_json(resolve_compressed(path))))
    else:
        if (folder / "summary.json").is_file():
            names = {d.get("folder", n): n for n, d in read_json(folder / "summary.json")["datasets"].items()}
        else:  # a running folder: its datasets' folders are named from config.json's data
            names = {dataset_slug(n): n for n in read_json(folder / "config.json")["data"]}
        for path in sorted(folder.glob("*/seed*/split.json*")):
            out.append((names[path.parent.parent.name], read_json(resolve_compressed(path))))
    return out


PARTITIONED = [f for f, kind in result_folders().items() if recorded_side(REPO / f, kind) != "all"]


@pytest.mark.parametrize("folder", PARTITIONED or [pytest.param(None, marks=pytest.mark.skip("none yet"))])
def test_partitioned_folders_use_only_their_side(folder):
    kind = result_folders()[folder]
    side = recorded_side(REPO / folder, kind)
    seeds = _seed_splits(REPO / folder, kind)
    assert seeds, f"{folder}: no seed splits"
    for data, split in seeds:
        part = load_partition(data)
        fewshot = set(split["ids"]["fewshot"]) | set(split["ids"].get("select", []))
        scored = set(split["test_used"] if kind == "ablate" else split["test_sample"]["ids"])
        assert scored and fewshot and not scored & fewshot, (folder, data)
        if side == "dev":
            assert fewshot <= part.dev and scored <= part.dev, (folder, data)
        else:
            assert scored <= part.test, (folder, data)
            assert fewshot <= (part.dev or part.test), (folder, data)
    if kind == "ablate":  # the foreign control read another dataset's dev pairs
        for path in (REPO / folder / "cells" / "controls" / "foreign").glob("seed*.json*"):
            info = read_json(path)["foreign"]
            other = load_partition(info["data"])
            assert set(info["few_shot_ids"]) <= (other.dev if side == "dev" else other.dev | other.test), path


def test_an_interim_summary_reports_a_partitioned_folder_on_its_side():
    """`eval --summary-only --interim` folders (the README's test-partition numbers while the run goes on) report a
    committed running folder that this file checks, on the same partition side, and only datasets finished there."""
    interims = [p.parent for p in EXPERIMENTS.rglob("summary.json") if "interim" in read_json(p)]
    for folder in interims:
        summary = read_json(folder / "summary.json")
        of = summary["interim"]["of"]
        assert of in PARTITIONED, (folder, of)
        assert summary["config"]["partition"] == recorded_side(REPO / of, "eval"), folder
        running = read_json(REPO / of / "config.json")["data"]
        assert set(summary["config"]["data"]) <= set(running) and set(summary["interim"]["datasets_missing"]) == (
            set(running) - set(summary["config"]["data"])), folder
