#!/usr/bin/env bash
# The defaults sweep (docs/defaults.md), on the development data only: `armlens ablate` around ARMConfig's defaults
# (every cell is the default ARM with one setting changed), 3 seeds, up to 200 test pairs per seed, 16 few-shot pairs
# drawn per subset. Hours on 2 cores, so it is resumable: rerun the same command and finished cells and fits are read
# back. Results: experiments/sweep/<data>/ (cells, splits, histories committed; fitted .arm files are a local cache).
#
#   ARMLENS_DATA_ROOT=/path/to/preference bash scripts/sweep_defaults.sh [ABLATE OPTIONS, e.g. --device cuda]
#
# Two phases, each resumable, so that the decisions that matter most come first on every dataset:
#   A. the primary axes (PRIMARY: selection for context, reading and layout, REINFORCE steps, objective,
#      per-criterion vs pooled), seed-major: seed 0 on every dataset, then seed 1, then seed 2 (an interrupted sweep
#      is balanced across datasets);
#   B. the secondary axes (SECONDARY: demonstrations per class, trials, prior) with the stage ablations (estimator,
#      scoring, heads), dataset by dataset. Finished cells and fits of phase A are read back, never recomputed.
# On a machine of C cores, run C one-thread sweeps over disjoint datasets instead of one C-thread sweep (each dataset
# folder holds a lock, so two runs never share one): on 2 cores two one-thread processes did 1.40x the forwards and
# 1.59x the REINFORCE steps per second of one two-thread process (scripts/thread_scaling.py), e.g.
#   DATASETS=hhh bash scripts/sweep_defaults.sh --threads 1 &  DATASETS="llmbar xstest" bash scripts/sweep_defaults.sh --threads 1
# The selection axis adds the zero-shot judge (no head patched), every head, and random/top-k heads of the
# reference's count as branches of the same scoring pass. LLMBar asks one criterion, so its criteria axis would
# repeat the reference.
set -euo pipefail
cd "$(dirname "$0")/.."
ARMLENS=${ARMLENS:-.venv/bin/armlens}
PRIMARY=${PRIMARY:-selection,reading,steps,objective,criteria}
SECONDARY=${SECONDARY:-demos,trials,prior,estimator,scoring,heads}
DATASETS=${DATASETS:-llmbar xstest hhh}

ablate() {  # ablate DATA SEEDS GRID
  local grid=$3
  [ "$1" = llmbar ] && grid=$(echo "$grid" | tr ',' '\n' | grep -vx criteria | paste -sd, -)
  echo "== sweep on $1, seeds 0-$(($2 - 1)): $grid ($(date -u +%FT%TZ))"
  "$ARMLENS" ablate --data "$1" --grid "$grid" --seeds "$2" --limit 200 --n-fewshot 16 --quiet \
    --out "experiments/sweep/$1" "${@:4}"
}

for seeds in 1 2 3; do
  for data in $DATASETS; do ablate "$data" "$seeds" "$PRIMARY" "$@"; done
done
for data in $DATASETS; do ablate "$data" 3 "$PRIMARY,$SECONDARY" "$@"; done
