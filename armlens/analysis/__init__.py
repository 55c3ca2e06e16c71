"""Analysis: which heads an ARM uses and what each stage contributes.

- :mod:`armlens.analysis.heads`      selection probabilities, stability across seeds, criterion overlap (Jaccard),
  single-head attribution beside REINFORCE's choice, attention rows read from ``blocks.{l}.attn.hook_pattern``
- :mod:`armlens.analysis.grid`     the stage-ablation grid: every cell is the reference ARM with one setting changed
  (reading, estimator, demonstrations, trials, steps, prior, objective, criteria, shots, flipped labels) or another
  head set on its fit (selection, head count), or another score reading
- :mod:`armlens.analysis.runs`     runs the grid per seed through ``ActivationRM`` fits, scoring every cell as a branch
  over one prefix per test prompt; resumable
- :mod:`armlens.analysis.results`  reads results folders back: cell tables, summaries with t-intervals, head artifacts

Computations return tensors ``[n_layers, n_heads]`` or tidy DataFrames; :mod:`armlens.plots` draws them.
"""

from armlens.analysis.grid import AXES, AblationConfig, Cell, plan_cells
from armlens.analysis.heads import (
    AttentionRow,
    attention_from_last,
    expected_random_jaccard,
    head_frame,
    jaccard,
    jaccard_matrix,
    mean_pairwise_jaccard,
    pairwise_jaccard,
    rank_agreement,
    selection_frequency,
    top_heads,
    trajectory_steps,
)
from armlens.analysis.results import AblationResults, load_cells, load_results, summarize, zero_shot_reference
from armlens.analysis.runs import flip_pairs, run_ablations

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
    "mean_pairwise_jaccard",
    "pairwise_jaccard",
    "plan_cells",
    "rank_agreement",
    "run_ablations",
    "selection_frequency",
    "summarize",
    "top_heads",
    "trajectory_steps",
    "zero_shot_reference",
]
