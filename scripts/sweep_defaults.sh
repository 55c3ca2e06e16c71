#!/usr/bin/env bash
# The defaults sweep (docs/defaults.md), on the development data only: `armlens ablate` around ARMConfig's defaults
# (every cell is the default ARM with one setting changed), 3 seeds, up to 200 test pairs per seed, 16 few-shot pairs
# drawn per subset. Hours on 2 cores, so it is resumable: rerun the same command and finished cells and fits are read
# back. Results: experiments/sweep/<data>/ (cells, splits, histories committed; fitted .arm files are a local cache).
#
#   ARMLENS_DATA_ROOT=/path/to/preference bash scripts/sweep_defaults.sh [AXES]
#
# AXES defaults to every axis of the sweep (`--grid sweep`: selection, reading and layout, demonstrations per class,
# trials, REINFORCE steps, prior, objective, per-criterion vs pooled); the selection axis adds the zero-shot judge
# (no head patched), every head, and random/top-k heads of the reference's count, as branches of the same scoring
# pass. Seed-major: seed 0 on every dataset, then seed 1, then seed 2, so an interrupted sweep is balanced across
# the datasets. LLMBar asks one criterion, so its criteria axis would repeat the reference.
set -euo pipefail
cd "$(dirname "$0")/.."
ARMLENS=${ARMLENS:-.venv/bin/armlens}
AXES=${1:-sweep,estimator,scoring,heads}
# "sweep" stands for the axes of `--grid sweep`; estimator, scoring and heads make the same folders the stage
# ablations and head analyses at full size (they add fits only for the estimators; the rest are branches)
AXES=$(.venv/bin/python -c "import sys; from armlens.analysis.grid import SWEEP_GRID as S
print(','.join(dict.fromkeys(a for x in sys.argv[1].split(',') for a in (S if x == 'sweep' else (x,)))))" "$AXES")
for seeds in 1 2 3; do
  for data in llmbar xstest hhh; do
    grid=$AXES
    [ "$data" = llmbar ] && grid=$(echo "$grid" | tr ',' '\n' | grep -vx criteria | paste -sd, -)
    echo "== sweep on $data, seeds 0-$((seeds - 1)): $grid ($(date -u +%FT%TZ))"
    "$ARMLENS" ablate --data "$data" --grid "$grid" --seeds "$seeds" --limit 200 --n-fewshot 16 --quiet \
      --out "experiments/sweep/$data"
  done
done
