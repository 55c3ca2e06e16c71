#!/usr/bin/env bash
# The development-partition ablations of issue 37 (item 4) and issue 38 (item 1's top-k and random series): on the
# dev pairs of LLMBar, XSTest and HHH (few-shot and scored pairs all from dev; nothing here is a claim), 3 seeds x
# every dev pair outside the seed's 16 few-shot pairs, the reference ARM (ARMConfig()) and
#   selection: REINFORCE's set against random / top-k / all / none (the zero-shot judge);
#   controls:  the reference's heads given zeros, each other's means (shuffled), or means read on another dataset's
#              dev prompts (foreign: HHH, or LLMBar for HHH);
#   heads:     top-k by P(select), top-k by single-head attribution and random sets, k = 1 2 5 10 20 40 80.
# Cells are branches over one prefix per scored prompt; the fits are the expensive part (one per seed and dataset).
# Resumable: rerun the same command. To stop a background run, `kill` its armlens process.
#
#   bash scripts/dev_ablations.sh [ABLATE OPTIONS, e.g. --threads 2]
set -euo pipefail
cd "$(dirname "$0")/.."
ARMLENS=${ARMLENS:-.venv/bin/armlens}
DATASETS=${DATASETS:-llmbar xstest hhh}
OUT=${OUT:-experiments/ablations-dev}
for data in $DATASETS; do
  echo "== dev ablations on $data ($(date -u +%FT%TZ))"
  "$ARMLENS" ablate --data "$data" --partition dev --seeds 3 --limit 400 --n-fewshot 16 --quiet \
    --grid selection,controls,heads --heads 1,2,5,10,20,40,80 --out "$OUT/$data" "$@"
done
folders=$(for d in llmbar xstest hhh; do [ -f "$OUT/$d/run.json" ] && echo "$OUT/$d"; done | paste -sd, -)
if [ -n "$folders" ]; then "$ARMLENS" figures --results "$folders" --out figures/ablations-dev; fi
