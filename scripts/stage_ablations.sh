#!/usr/bin/env bash
# The stage ablations and head analyses at today's defaults (ARMConfig(): lr 1.0 and the rest of docs/defaults.md):
# armlens ablate's default axes (head selection, Stage 1 reading, estimator, score reading, head count) on LLMBar,
# XSTest and HHH, 3 seeds x 200 test pairs, 16 few-shot pairs per seed. Round 2 of the defaults sweep
# (experiments/sweep-secondary) measured the same axes with REINFORCE at lr 0.1, the default before round C; this
# run redraws them for the ARM that ships. Hours on 2 cores, resumable (rerun the same command); on C cores run
# C one-thread processes over disjoint datasets, e.g. DATASETS=hhh ... --threads 1 & DATASETS="llmbar xstest" ...
#
#   ARMLENS_DATA_ROOT=/path/to/preference bash scripts/stage_ablations.sh [ABLATE OPTIONS, e.g. --threads 1]
#
# To stop a run started in the background (`&`, nohup), `kill` its armlens process: a background job of a
# non-interactive shell ignores SIGINT. Cells and fits are written atomically as each finishes, so a kill loses only
# the one in flight, and the results folder's lock of a dead process is taken over by the next run.
# Partition: the committed folders were made before the dev/test partitions existed, on every pair (--partition all);
# that is what this script reproduces and resumes, so their numbers mix the pairs choices were made on with the pairs
# claims are made on (issue 37). A run on the partition goes to a new folder: PARTITION=dev (ablate) / test (eval).
set -euo pipefail
cd "$(dirname "$0")/.."
ARMLENS=${ARMLENS:-.venv/bin/armlens}
DATASETS=${DATASETS:-llmbar xstest hhh}
for data in $DATASETS; do
  echo "== stage ablations on $data ($(date -u +%FT%TZ))"
  "$ARMLENS" ablate --data "$data" --partition "${PARTITION:-all}" --seeds 3 --limit 200 --n-fewshot 16 --quiet \
    --out "experiments/ablations/$data" "$@"
done
folders=$(for d in llmbar xstest hhh; do [ -f "experiments/ablations/$d/run.json" ] && echo "experiments/ablations/$d"; done | paste -sd, -)
if [ -n "$folders" ]; then "$ARMLENS" figures --results "$folders" --out figures/ablations; fi
