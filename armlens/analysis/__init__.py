"""Analysis: which heads an ARM uses and what each stage contributes.

- :mod:`armlens.analysis.heads`      selection probabilities, stability across seeds, criterion overlap (Jaccard),
  single-head attribution beside REINFORCE's choice, attention rows read from ``blocks.{l}.attn.hook_pattern``
- :mod:`armlens.analysis.ablations`  the stage-ablation grid (selection, estimator, extraction mode, score reading,
  shots, head count, flipped labels, criteria) with shared work per seed, resumable result files, and readers

Computations return tensors ``[n_layers, n_heads]`` or tidy DataFrames; :mod:`armlens.plots` draws them.
"""

from armlens.analysis.ablations import (
    AXES,
    AblationConfig,
    AblationResults,
    Cell,
    flip_pairs,
    load_cells,
    load_results,
    plan_cells,
    run_ablations,
    score_rows,
    summarize,
    zero_shot_reference,
)
from armlens.analysis.heads import (
    AttentionRow,
    attention_from_last,
    expected_random_jaccard,
    head_frame,
    jaccard,
    jaccard_matrix,
    pairwise_jaccard,
    rank_agreement,
    selection_frequency,
    top_heads,
    trajectory_steps,
)

__all__ = [
    "AXES",
    "AblationConfig",
    "AblationResults",
    "AttentionRow",
    "Cell",
    "attention_from_last",
    "expected_random_jaccard",
    "flip_pairs",
    "head_frame",
    "jaccard",
    "jaccard_matrix",
    "load_cells",
    "load_results",
    "pairwise_jaccard",
    "plan_cells",
    "rank_agreement",
    "run_ablations",
    "score_rows",
    "selection_frequency",
    "summarize",
    "top_heads",
    "trajectory_steps",
    "zero_shot_reference",
]
