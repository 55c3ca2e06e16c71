#!/usr/bin/env bash
# The README's results: ARM against the baselines on LLMBar, HHH, XSTest pairs and HH-RLHF harmless, with the bias
# suite, 2 seeds (each a new few-shot draw and head selection), bootstrap intervals and paired tests.
# Resumable: rerun the same command to finish an interrupted run. ~20 min on an idle 2-core CPU.
# LLMBar, XSTest and HH-RLHF are read from a data root: set ARMLENS_DATA_ROOT (or pass --root DIR after OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/readme-eval}
.venv/bin/armlens eval --data llmbar,hhh,xstest,hh-rlhf \
  --methods arm,zero-shot,longer,shorter \
  --seeds 2 --limit 16 --n-fewshot 12 --n-select 0 --steps 60 --max-field-tokens 96 \
  --bias length,format,positivity,length-real --out "$OUT" "${@:2}"
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from armlens.plots import find_browser, plot_method_accuracy, write_figures
summary = json.load(open(f"{sys.argv[1]}/summary.json"))
figs = {f"eval_{name.replace('-', '_')}": plot_method_accuracy(summary, name) for name in summary["results"]}
formats = ("png", "html") if find_browser() else ("html",)
for path in write_figures(figs, "figures", formats=formats):
    print("wrote", path)
PY
