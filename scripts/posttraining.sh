#!/usr/bin/env bash
# The post-training results in docs/rl.md (issue: an ARM as the reward in post-training), on the default model:
#   1. the default ARM on HHH (ARMConfig's defaults, 16 few-shot pairs: one ARM per criterion) for seeds 0, 1, 2 (each
#      seed a new few-shot draw), a local cache (.arm files are not committed);
#   2. best-of-8 on every HHH prompt outside seed 0's few-shot draw: what the ARM, the zero-shot and few-shot judges,
#      the longer response and a random pick select; seeds 1 and 2's ARMs score the same responses (each on the
#      prompts outside its own draw) so the ARM-vs-judge comparison is pooled over 3 fits
#      (experiments/posttraining/bestofn/);
#   3. a short GRPO with the ARM's reward and with the zero-shot judge's, then both trained policies against the
#      initial one on held-apart prompts (experiments/posttraining/grpo/).
# Every step is resumable: rerun the same command. Hours on 2 cores.
#
#   ARMLENS_DATA_ROOT=/path/to/preference bash scripts/posttraining.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=experiments/posttraining
mkdir -p "$OUT"
[ -f "$OUT/hhh.arm" ] || .venv/bin/armlens fit --data hhh --n-fewshot 16 --seed 0 --quiet --out "$OUT/hhh.arm"
for s in 1 2; do
  [ -f "$OUT/hhh-seed$s.arm" ] || .venv/bin/armlens fit --data hhh --n-fewshot 16 --seed $s --quiet --out "$OUT/hhh-seed$s.arm"
done
.venv/bin/armlens bestofn --rm "$OUT/hhh.arm" --replicates "$OUT/hhh-seed1.arm,$OUT/hhh-seed2.arm" --data hhh --n 8 \
  --limit all --seed 0 --quiet --out "$OUT/bestofn"
.venv/bin/python scripts/grpo_demo.py --rm "$OUT/hhh.arm" --data hhh --out "$OUT/grpo" "$@"
