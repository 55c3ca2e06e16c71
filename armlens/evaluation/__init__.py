"""Evaluation: RewardBench's scoring protocol and result files.

- :mod:`armlens.evaluation.protocol`  strict ``chosen > rejected`` correctness with tie counts, per-subset accuracy,
  RewardBench section scores with seeded bootstrap intervals, and atomic per-item JSONL / summary JSON writers
  recording data ids, hashes, split, seed, config and versions.

Bootstrap intervals and the paired bootstrap between two methods live in :mod:`armlens.stats`.
"""

from armlens.evaluation.protocol import (
    EXAMPLE_COUNTS,
    SUBSET_MAPPING,
    accuracy_by_subset,
    environment_versions,
    pairwise_correct,
    rewardbench_overall,
    section_scores,
    write_json_atomic,
    write_jsonl_atomic,
    write_results,
)

__all__ = [
    "EXAMPLE_COUNTS",
    "SUBSET_MAPPING",
    "accuracy_by_subset",
    "environment_versions",
    "pairwise_correct",
    "rewardbench_overall",
    "section_scores",
    "write_json_atomic",
    "write_jsonl_atomic",
    "write_results",
]
