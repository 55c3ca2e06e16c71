"""Evaluation: RewardBench's scoring protocol, bootstrap intervals, and result files.

- :mod:`armlens.evaluation.protocol`  strict ``chosen > rejected`` correctness with tie counts, per-subset accuracy,
  RewardBench section scores, seeded bootstrap intervals, the paired bootstrap between two methods, and atomic
  per-item JSONL / summary JSON writers recording data ids, hashes, split, seed, config and versions.
"""

from armlens.evaluation.protocol import (
    CI,
    EXAMPLE_COUNTS,
    SUBSET_MAPPING,
    PairedDiff,
    accuracy_by_subset,
    bootstrap_ci,
    environment_versions,
    paired_bootstrap,
    pairwise_correct,
    rewardbench_overall,
    section_scores,
    write_json_atomic,
    write_jsonl_atomic,
    write_results,
)

__all__ = [
    "CI",
    "EXAMPLE_COUNTS",
    "SUBSET_MAPPING",
    "PairedDiff",
    "accuracy_by_subset",
    "bootstrap_ci",
    "environment_versions",
    "paired_bootstrap",
    "pairwise_correct",
    "rewardbench_overall",
    "section_scores",
    "write_json_atomic",
    "write_jsonl_atomic",
    "write_results",
]
