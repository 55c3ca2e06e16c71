#!/usr/bin/env bash
# The defaults sweep (docs/defaults.md): on the development data only, every axis of `armlens ablate --grid sweep`
# (reading and layout, demonstrations per class, trials, REINFORCE steps, prior, objective, per-criterion vs pooled)
# around ARMConfig's defaults, 3 seeds, up to 200 test pairs per seed. Hours on 2 cores: resumable (rerun the same
# command; finished cells and fits are read back), results in experiments/sweep/<data>/ (cells committed; fitted
# .arm files are a local cache, not committed).
#
#   ARMLENS_DATA_ROOT=/path/to/preference bash scripts/sweep_defaults.sh [hhh llmbar xstest]
set -euo pipefail
cd "$(dirname "$0")/.."
ARMLENS=${ARMLENS:-.venv/bin/armlens}
for data in "${@:-hhh llmbar xstest}"; do
  for d in $data; do
    echo "== sweep on $d ($(date -u +%FT%TZ))"
    "$ARMLENS" ablate --data "$d" --grid sweep --seeds 3 --limit 200 --n-fewshot 16 --quiet \
      --out "experiments/sweep/$d"
  done
done
