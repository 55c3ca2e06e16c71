#!/usr/bin/env bash
# The README's headline comparison at full size: the ARM (ARMConfig's defaults) against every baseline on every test
# pair of LLMBar, HHH and XSTest, a seeded 500 of HH-RLHF harmless and TruthfulQA, 5 seeds (each a new few-shot draw
# and head selection), with the bias suite; bootstrap intervals and paired tests. Hours on 2 cores: resumable (rerun
# the same command). Results in experiments/eval/ (committed), figures redrawn from them into figures/eval/.
# Data is read from a data root: set ARMLENS_DATA_ROOT (or pass --root DIR after OUT).
# generative and voting decode (greedy, and 5 samples at a temperature) up to 4 tokens after one forward of each judge
# prompt (armlens.generation), and few-shot-icl reads each prompt after its demonstrations (a cached prefix, but every
# query still runs over ~2,000 tokens of context: 1-2 s per prompt on LLMBar). They run on every dataset and seed but
# score the bias suite's real slices only: --bias-methods leaves out their hacked responses, which would cost 1.2-1.5x
# their test pairs again (for few-shot-icl alone, about 8 more hours of this run on 2 cores). Every other method,
# the zero-shot judge included, scores the whole bias suite.
# Partition: the committed folders were made before the dev/test partitions existed, on every pair (--partition all);
# that is what this script reproduces and resumes, so their numbers mix the pairs choices were made on with the pairs
# claims are made on (issue 37). A run on the partition goes to a new folder: PARTITION=dev (ablate) / test (eval).
# ADOPT=experiments/eval (with PARTITION=test): take the units that folder (and experiments/eval-hh-rlhf) finished as
# the very same computation instead of computing them again (armlens eval --adopt: TruthfulQA's and HH-RLHF's, which
# are test-only, so their pools and test pairs are unchanged); each adopted unit says so in its result.json.
set -euo pipefail
cd "$(dirname "$0")/.."
# METHODS: a subset to run first (the mask-based judges share one branch pass and are cheap; voting, implicit and
# few-shot-icl are most of the hours); a later run with every method and --change-settings keeps the finished units.
OUT=${1:-experiments/eval}
ALL=arm,mean-ablation,zero-shot,few-shot-icl,generative,voting,longer,shorter,probe,steering,savs,implicit
METHODS=${METHODS:-$ALL}
BIAS_METHODS=$(for m in arm mean-ablation zero-shot longer shorter probe steering savs implicit; do
  if [[ ",$METHODS," == *",$m,"* ]]; then echo "$m"; fi; done | paste -sd, -)  # in this order, as the committed folders say
.venv/bin/armlens eval --data llmbar,hhh,xstest,truthfulqa --partition "${PARTITION:-all}" --limit all --seeds 5 \
  --n-fewshot 16 --n-select 0 --methods "$METHODS" --bias-methods "$BIAS_METHODS" --out "$OUT" \
  ${ADOPT:+--adopt "$ADOPT"} "${@:2}"
.venv/bin/armlens eval --data hh-rlhf --partition "${PARTITION:-all}" --limit 500 --seeds 5 --n-fewshot 16 \
  --n-select 0 --methods "$METHODS" --bias-methods "$BIAS_METHODS" --out "$OUT-hh-rlhf" \
  ${ADOPT:+--adopt "$ADOPT-hh-rlhf"} "${@:2}"
# every figure of both folders (accuracy per method, bias-suite hack rates), redrawn from the committed summaries
# into figures/<name of OUT> (figures/eval, figures/eval-test)
.venv/bin/armlens figures --results "$OUT,$OUT-hh-rlhf" --out "figures/$(basename "$OUT")"
