#!/usr/bin/env bash
# The defaults sweep (docs/defaults.md), on the development data only: `armlens ablate` around ARMConfig's defaults
# (every cell is the default ARM with one setting changed), 3 seeds, up to 200 test pairs per seed, 16 few-shot pairs
# drawn per subset. Hours on 2 cores, so it is resumable: rerun the same command and finished cells and fits are read
# back. Results: experiments/sweep/<data>/ (cells, splits, histories committed; fitted .arm files are a local cache).
#
#   ARMLENS_DATA_ROOT=/path/to/preference bash scripts/sweep_defaults.sh [AXES]
#
# AXES defaults to the first round (reading and layout, REINFORCE steps, objective, per-criterion vs pooled); the
# second round adds demos,trials,prior. LLMBar asks one criterion, so its criteria axis would repeat the reference.
set -euo pipefail
cd "$(dirname "$0")/.."
ARMLENS=${ARMLENS:-.venv/bin/armlens}
AXES=${1:-reading,steps,objective,criteria}
for data in llmbar xstest hhh; do
  grid=$AXES
  [ "$data" = llmbar ] && grid=$(echo "$AXES" | tr ',' '\n' | grep -vx criteria | paste -sd, -)
  echo "== sweep on $data: $grid ($(date -u +%FT%TZ))"
  "$ARMLENS" ablate --data "$data" --grid "$grid" --seeds 3 --limit 200 --n-fewshot 16 --quiet \
    --out "experiments/sweep/$data"
done
