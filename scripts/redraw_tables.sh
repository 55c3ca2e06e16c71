#!/usr/bin/env bash
# Redraw every committed table and figure under figures/ from the committed result folders (no model, nothing
# refitted): the eval summaries first (armlens eval --summary-only, so their intervals are today's statistics), then
# each `armlens figures` command that docs/ and the other scripts name. Minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${ARMLENS:-.venv/bin/armlens}
three() { echo "experiments/$1/llmbar,experiments/$1/xstest,experiments/$1/hhh"; }
for out in experiments/eval experiments/eval-hh-rlhf; do "$A" eval --out "$out" --summary-only > /dev/null; done
"$A" figures --results experiments/eval,experiments/eval-hh-rlhf --out figures/eval
"$A" figures --results "$(three ablations)" --out figures/ablations
"$A" figures --results "$(three sweep)" --out figures/sweep
"$A" figures --results "$(three sweep-secondary)" --before "$(three sweep)" --out figures/sweep-secondary
"$A" figures --results "$(three sweep-lr)" --out figures/sweep-lr
for steps in 200 300; do
  "$A" figures --results "$(three sweep-lr)" --before "$(three sweep-secondary)" --before-cell "steps/$steps" \
    --cell lr/1 --out figures/sweep-lr
done
